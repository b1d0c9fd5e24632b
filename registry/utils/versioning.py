"""Version ids: ``{prefix}_{YYYYMMDD}_{HHMMSS}`` (UTC), parsing and ordering."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

VERSION_TIME_FORMAT = "%Y%m%d_%H%M%S"


def generate_version_id(prefix: str = "v", include_counter: bool = False, *, now: datetime | None = None) -> str:
    """Return ``f"{prefix}_{YYYYMMDD}_{HHMMSS}"`` for the current UTC time.

    ``include_counter`` is accepted for compatibility and ignored: uniqueness of
    automatic versions is guaranteed by the registry at registration time
    (a taken id gets ``_2``, ``_3``... appended).
    """
    del include_counter
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{prefix}_{moment.strftime(VERSION_TIME_FORMAT)}"


def parse_version_id(version: str) -> dict[str, Any]:
    """Split a version id into ``raw, prefix, date, time`` and ``datetime`` (ISO, when it parses).

    The date/time are looked for as the first ``YYYYMMDD_HHMMSS`` pair, so prefixes
    containing underscores (``bert_als_20251125_061805``) parse correctly.
    """
    parts = version.split("_")
    result: dict[str, Any] = {"raw": version}
    for index in range(len(parts) - 1):
        date, time = parts[index], parts[index + 1][:6]
        if len(date) == 8 and date.isdigit() and len(time) == 6 and time.isdigit():
            try:
                moment = datetime.strptime(f"{date}_{time}", VERSION_TIME_FORMAT)
            except ValueError:
                continue
            result.update(
                prefix="_".join(parts[:index]),
                date=date,
                time=time,
                datetime=moment.strftime("%Y-%m-%dT%H:%M:%S"),
            )
            suffix = "_".join(parts[index + 2:])
            if suffix:
                result["suffix"] = suffix
            return result
    result["prefix"] = parts[0]
    if len(parts) > 1:
        result["date"] = parts[1]
    if len(parts) > 2:
        result["time"] = parts[2]
    return result


def compare_versions(v1: str, v2: str) -> int:
    """Order two version ids by their timestamp: -1, 0 or 1.

    Versions without a timestamp sort before dated ones; two undated versions
    (or equal timestamps) fall back to comparing the raw strings, so the order is total.
    """
    def key(version: str) -> tuple[int, str, str]:
        parsed = parse_version_id(version)
        stamp = parsed.get("datetime")
        return (1, stamp, version) if stamp else (0, "", version)

    k1, k2 = key(v1), key(v2)
    return (k1 > k2) - (k1 < k2)

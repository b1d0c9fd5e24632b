"""The registry's one timestamp format, and the time expressions the CLI accepts.

Every timestamp the registry shows (API dicts, ``registry.json``, the SQL views, the
CLI) is ISO 8601 in UTC to the second with an explicit offset:
``2026-12-02T09:40:52+00:00``. ``datetime.fromisoformat`` reads it on every Python
version since 3.7 (``Z`` only from 3.11), and it sorts chronologically as text.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

from .errors import InvalidArgumentError

TIMESTAMP_EXAMPLE = "2026-12-02T09:40:52+00:00"
_RELATIVE = re.compile(r"^(?P<amount>\d+)\s*(?P<unit>[smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
TIME_SPEC_HELP = (
    "an ISO date or time (2025-01-16, 2025-01-16T14:30:00, with an offset or Z; no offset means UTC), "
    "today, yesterday, now, or an age such as 30m, 2h, 7d, 2w"
)


def utcnow() -> datetime:
    """Current time, timezone-aware UTC."""
    return datetime.now(UTC)


def format_timestamp(moment: datetime | None) -> str | None:
    """``moment`` as ``YYYY-MM-DDTHH:MM:SS+00:00`` (UTC, seconds); naive values count as UTC."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


class SecondStamp:
    """The current UTC time as :func:`format_timestamp` text, formatted once per second.

    For counters stamped many times a second (a loader's reload checks: formatting a
    datetime each time was ~15% of a check).
    """

    def __init__(self) -> None:
        self._second = -1
        self._text: str | None = None

    def now(self) -> str | None:
        """``format_timestamp(now)``, to the second."""
        second = int(time.time())
        if second != self._second:
            self._second, self._text = second, format_timestamp(datetime.fromtimestamp(second, UTC))
        return self._text


def parse_time_spec(text: str, now: datetime | None = None) -> datetime:
    """A point in time (timezone-aware UTC) from a user's expression.

    Accepts ISO dates and times (``2025-01-16``, ``2025-01-16T14:30``, ``...+02:00``,
    ``...Z``; without an offset the time is UTC), ``now``, ``today`` and ``yesterday``
    (midnight UTC), and ages ``<N>s|m|h|d|w`` counted back from ``now``.

    Raises:
        InvalidArgumentError: anything else, naming the accepted forms.
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    spec = text.strip().lower()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if spec == "now":
        return now
    if spec == "today":
        return midnight
    if spec == "yesterday":
        return midnight - timedelta(days=1)
    relative = _RELATIVE.match(spec)
    if relative:
        return now - timedelta(**{_UNITS[relative["unit"]]: int(relative["amount"])})
    candidate = text.strip()
    if candidate[-1:] in ("z", "Z"):
        candidate = candidate[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(candidate)
    except ValueError:
        raise InvalidArgumentError(f"{text!r} is not a time: use {TIME_SPEC_HELP}") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)

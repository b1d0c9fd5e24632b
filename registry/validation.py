"""Input validation at the API boundary: ids, metric names and values, JSON payloads.

Everything a caller hands the registry passes through here before any
transaction starts, so bad input never changes the database.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from numbers import Integral, Real
from typing import Any

from .defaults import MODEL_STATUS
from .errors import InvalidArgumentError

ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
ID_MAX_LENGTH = 128
MODEL_TYPE_MAX_LENGTH = 64
MAX_PATH_LENGTH = 1024
METRIC_NAME_PATTERN = re.compile(r"[A-Za-z0-9@._:/-]{1,64}")
# Bounds for JSON payloads (hyperparameters, training_info, ...): deep or huge
# blobs are a mistake or an attack, never a model description.
MAX_JSON_BYTES = 1 << 20
MAX_JSON_DEPTH = 32



def validate_identifier(value: object, field: str, max_length: int = ID_MAX_LENGTH) -> str:
    """Check a model type, version, model id, test id or embeddings version."""
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{field} must be a string, got {type(value).__name__} {value!r}")
    if len(value) > max_length or not ID_PATTERN.fullmatch(value):
        raise InvalidArgumentError(
            f"invalid {field} {value!r}: use 1-{max_length} characters of letters, digits, "
            "'.', '_' or '-', starting with a letter or digit"
        )
    return value


def validate_flag(value: object, field: str) -> bool:
    """A real bool: ``overwrite='no'`` must not mean yes."""
    if not isinstance(value, bool):
        raise InvalidArgumentError(f"{field} must be True or False, got {value!r}")
    return value


def validate_metric_name(name: object) -> str:
    """Check a metric name such as ``ndcg@10``, ``recall@20`` or ``coverage``."""
    if not isinstance(name, str) or not METRIC_NAME_PATTERN.fullmatch(name):
        raise InvalidArgumentError(
            f"invalid metric name {name!r}: use 1-64 characters of letters, digits and @._:/-"
        )
    return name


def finite_real(value: object) -> float | None:
    """``value`` as a float when it is a finite real number, else None.

    Accepts ints, floats and numpy scalars; refuses bools, strings, NaN, inf and
    integers too large for a float. ``np.float32(0.195)`` gives ``0.195`` (the value
    the user saw), not ``0.19499999284744263``.
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        return None
    dtype = getattr(value, "dtype", None)
    narrow_float = dtype is not None and dtype.kind == "f" and dtype.itemsize < 8
    try:
        number = float(str(value)) if narrow_float else float(value)
    except OverflowError:  # float(10**400)
        return None
    return number if math.isfinite(number) else None


def positive_int(value: object, field: str) -> int:
    """A positive integer (numpy integers accepted; bools refused)."""
    if isinstance(value, bool) or not isinstance(value, Integral) or int(value) <= 0:
        raise InvalidArgumentError(f"{field} must be a positive integer, got {value!r}")
    return int(value)


def metric_value(name: str, value: object) -> float:
    """A finite float from a metric value (numpy scalars accepted; NaN, inf, bool, str refused)."""
    number = finite_real(value)
    if number is None:
        raise InvalidArgumentError(f"metric {name!r} must be a finite real number, got {value!r}")
    return number


def validate_metrics(metrics: object) -> dict[str, float]:
    """Validate a ``{name: value}`` mapping; returns plain floats."""
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise InvalidArgumentError(f"metrics must be a dict of name -> number, got {type(metrics).__name__}")
    return {validate_metric_name(name): metric_value(name, value) for name, value in metrics.items()}


def validate_status(status: object) -> str:
    if not isinstance(status, str) or status not in MODEL_STATUS:
        raise InvalidArgumentError(f"Invalid status {status!r}: use one of {sorted(MODEL_STATUS)}")
    return str(status)


def to_jsonable(value: Any, field: str, _depth: int = 0) -> Any:
    """Convert numpy scalars/arrays and tuples to JSON types; refuse anything else unsafe."""
    if _depth > MAX_JSON_DEPTH:
        raise InvalidArgumentError(f"{field} is nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, str):
        return _encodable(value, field)
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidArgumentError(f"{field} contains a non-finite number {value!r}")
        return value
    if isinstance(value, Mapping):
        converted = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidArgumentError(f"{field} has a non-string key {key!r}")
            if "\x00" in key:
                raise InvalidArgumentError(f"{field} has a key containing NUL: {key!r}")
            _encodable(key, field)
            converted[key] = to_jsonable(item, field, _depth + 1)
        return converted
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item, field, _depth + 1) for item in value]
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays
    if callable(tolist) and hasattr(value, "dtype"):
        return to_jsonable(tolist(), field, _depth + 1)
    raise InvalidArgumentError(f"{field} contains a value that is not JSON-serialisable: {value!r}")


def json_payload(value: object, field: str, *, allow_none: bool = False) -> dict[str, Any] | None:
    """Validate a dict-shaped JSON payload (hyperparameters, training_info...)."""
    if value is None:
        return None if allow_none else {}
    if not isinstance(value, Mapping):
        raise InvalidArgumentError(f"{field} must be a dict, got {type(value).__name__}")
    converted = to_jsonable(value, field)
    try:
        size = len(json.dumps(converted, allow_nan=False))
    except ValueError as exc:  # e.g. an int beyond Python's 4300-digit str conversion limit
        raise InvalidArgumentError(f"{field} cannot be stored as JSON: {exc}") from None
    if size > MAX_JSON_BYTES:
        raise InvalidArgumentError(f"{field} is {size} bytes of JSON; the limit is {MAX_JSON_BYTES}")
    return converted


def optional_text(value: object, field: str, max_length: int = 256) -> str | None:
    """A short single-line string (data_version, git_commit...) or None."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_length or any(ch in value for ch in "\x00\n\r|"):
        raise InvalidArgumentError(
            f"{field} must be a single-line string of at most {max_length} characters without '|', got {value!r}"
        )
    return _encodable(value, field)


def free_text(value: object, field: str, max_length: int) -> str | None:
    """Multi-line text (descriptions) of at most ``max_length`` characters, or None; no NUL bytes."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_length or "\x00" in value:
        raise InvalidArgumentError(f"{field} must be a string of at most {max_length} characters, got {value!r:.80}")
    return _encodable(value, field)


def _encodable(text: str, field: str) -> str:
    # Lone surrogates (e.g. from os.fsdecode of undecodable bytes) would be stored,
    # then break the UTF-8 registry.json export after the change committed.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgumentError(f"{field} contains text that is not valid Unicode: {text!r}") from None
    return text


def path_text(value: object, field: str) -> str:
    """A path as the registry stores it: a ``str``/``PathLike``, single line, at most 1024 characters.

    (1024 keeps every stored path within PostgreSQL's btree limit for the ``models.path`` index.)
    """
    if not isinstance(value, (str, os.PathLike)):
        raise InvalidArgumentError(f"{field} must be a path (str or os.PathLike), got {type(value).__name__} {value!r}")
    text = os.fspath(value)
    if not isinstance(text, str) or not text.strip() or any(ch in text for ch in "\x00\n\r") or len(text) > MAX_PATH_LENGTH:
        raise InvalidArgumentError(f"invalid {field} {text!r}: give a non-empty single-line path of at most {MAX_PATH_LENGTH} characters")
    return _encodable(text, field)


def validate_mde(value: object) -> float:
    """A minimum detectable effect: a relative lift in (0, 10], e.g. 0.05 for +5%."""
    number = finite_real(value)
    if number is None or not 0 < number <= 10:
        raise InvalidArgumentError(f"minimum_detectable_effect must be a relative lift in (0, 10] (0.05 = +5%), got {value!r}")
    return number

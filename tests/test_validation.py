"""Input validation at the API boundary (registry/validation.py): pure functions, no database."""

from __future__ import annotations

import math
import re
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry import InvalidArgumentError, RegistryError
from registry.validation import (
    MAX_JSON_DEPTH,
    MODEL_STATUS,
    json_payload,
    metric_value,
    optional_text,
    path_text,
    to_jsonable,
    validate_identifier,
    validate_metric_name,
    validate_metrics,
    validate_status,
)

ID_CHARS = "abcXYZ019._-"
METRIC_CHARS = "abcXYZ019@._:/-"


# ---------------------------------------------------------------------- identifiers


@pytest.mark.parametrize(
    "value",
    ["als", "v2_20250116_141500", "bert_als", "v1.2-rc", "0abc", "a" * 128, "als_v1_..."],
)
def test_valid_identifiers(value: str) -> None:
    assert validate_identifier(value, "version") == value


@pytest.mark.parametrize(
    "value",
    ["", " ", "a/b", "a|b", "a b", "a\nb", "a\n", "a\x00b", "../x", "a\\b", ".hidden", "_x", "-x",
     "\u202eevil", "ä", "x'; DROP TABLE models;--", "a" * 129, 3, None, b"als"],
)
def test_invalid_identifiers_name_the_field_and_value(value: Any) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        validate_identifier(value, "version")
    message = str(caught.value)
    assert "version" in message and repr(value) in message
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, RegistryError)


@given(st.text(alphabet=ID_CHARS, min_size=1, max_size=128))
def test_identifier_pattern_property(value: str) -> None:
    if value[0] in "._-":
        with pytest.raises(InvalidArgumentError):
            validate_identifier(value, "version")
    else:
        assert validate_identifier(value, "version") == value


@given(st.text(min_size=1, max_size=40).filter(lambda s: re.search(r"[/|\s]", s) is not None))
def test_identifiers_with_separators_or_whitespace_are_always_refused(value: str) -> None:
    with pytest.raises(InvalidArgumentError):
        validate_identifier(value, "model_id")


# ---------------------------------------------------------------------- metric names and values


@pytest.mark.parametrize("name", ["ndcg@10", "recall@20", "coverage", "map.5", "hit_rate:test", "a/b", "x" * 64])
def test_valid_metric_names(name: str) -> None:
    assert validate_metric_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "x" * 65, 'a"."b', "ndcg@10; DROP", "x') OR 1=1 --", "$", "a b", "ä", "\x00", "metric:ndcg@10\"]", 10, None],
)
def test_invalid_metric_names(name: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="metric name"):
        validate_metric_name(name)


@given(st.text(alphabet=METRIC_CHARS, min_size=1, max_size=64))
def test_metric_name_property(name: str) -> None:
    assert validate_metric_name(name) == name


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.195, 0.195),
        (np.float32(0.195), 0.195),  # the value the user saw, not 0.19499999284744263
        (np.float16(0.5), 0.5),
        (np.float64(0.245), 0.245),
        (np.int64(3), 3.0),
        (7, 7.0),
        (-0.25, -0.25),
        (Fraction(1, 4), 0.25),
        (1e300, 1e300),
    ],
)
def test_metric_values_become_plain_floats(value: Any, expected: float) -> None:
    result = metric_value("ndcg@10", value)
    assert result == expected and type(result) is float


@pytest.mark.parametrize(
    "value",
    [math.nan, math.inf, -math.inf, np.float64("nan"), np.float32("inf"), "0.9", None, True, np.bool_(True),
     [0.1], Decimal("0.1"), Decimal("NaN"), 10**400, float("1e309"), 1 + 2j],
)
def test_bad_metric_values_are_refused_with_the_metric_named(value: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="ndcg@10"):
        metric_value("ndcg@10", value)


def test_validate_metrics() -> None:
    assert validate_metrics(None) == {}
    assert validate_metrics({"ndcg@10": np.float32(0.2), "coverage": 1}) == {"ndcg@10": 0.2, "coverage": 1.0}
    for bad in ([("ndcg@10", 0.1)], "ndcg@10=0.1", {"ndcg@10": math.nan}, {"bad name": 0.1}):
        with pytest.raises(InvalidArgumentError):
            validate_metrics(bad)


# ---------------------------------------------------------------------- status


def test_statuses() -> None:
    assert set(MODEL_STATUS) == {"active", "archived", "failed"}
    for status in MODEL_STATUS:
        assert validate_status(status) == status
    for bad in ("deleted", "Active", "", None, ["active"], {"active": 1}):
        with pytest.raises(InvalidArgumentError, match="status"):
            validate_status(bad)


# ---------------------------------------------------------------------- JSON payloads


def test_numpy_and_tuples_become_json_types() -> None:
    payload = {"factors": np.int64(8), "alpha": np.float32(0.5), "grid": np.arange(3), "pair": (1, 2),
               "nested": {"ok": [np.float64(1.5), None, True, "x"]}}
    assert to_jsonable(payload, "hyperparameters") == {
        "factors": 8, "alpha": 0.5, "grid": [0, 1, 2], "pair": [1, 2], "nested": {"ok": [1.5, None, True, "x"]}
    }


def _deep(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"x": value}
    return value


def _recursive() -> dict[str, Any]:
    value: dict[str, Any] = {}
    value["self"] = value
    return value


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"a": math.nan}, "non-finite"),
        ({"a": [1, math.inf]}, "non-finite"),
        ({"a": np.float32("nan")}, "non-finite"),
        ({1: "x"}, "non-string key"),
        ({"a\x00b": 1}, "NUL"),
        ({"a": {1, 2}}, "not JSON-serialisable"),
        ({"a": b"bytes"}, "not JSON-serialisable"),
        ({"a": datetime(2025, 1, 16)}, "not JSON-serialisable"),
        ({"a": object()}, "not JSON-serialisable"),
        ({"a": "\ud800"}, "not valid Unicode"),
        ({"\udcff": 1}, "not valid Unicode"),
        ({"a": 10**5000}, "cannot be stored as JSON"),
        ({"a": "x" * (1 << 20)}, "limit"),
        (_deep(MAX_JSON_DEPTH + 5), "deeper"),
        (_recursive(), "deeper"),
    ],
)
def test_unsafe_payloads_are_refused(payload: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidArgumentError, match=fragment) as caught:
        json_payload(payload, "hyperparameters")
    assert "hyperparameters" in str(caught.value)


def test_payload_shapes() -> None:
    assert json_payload(None, "training_info") == {}
    assert json_payload(None, "baseline_comparison", allow_none=True) is None
    assert json_payload({"a": 1, "b": "é", "c": "a\x00b"}, "training_info") == {"a": 1, "b": "é", "c": "a\x00b"}
    assert json_payload({f"k{i}": i for i in range(10_000)}, "training_info")["k9999"] == 9999
    for bad in ([1, 2], "x", 3):
        with pytest.raises(InvalidArgumentError, match="must be a dict"):
            json_payload(bad, "training_info")


# ---------------------------------------------------------------------- short text and paths


def test_optional_text() -> None:
    assert optional_text(None, "data_version") is None
    assert optional_text("abc123...", "data_version") == "abc123..."
    for bad in ("a|b", "a\nb", "a\rb", "a\x00b", "x" * 257, 5, "\ud800"):
        with pytest.raises(InvalidArgumentError, match="data_version"):
            optional_text(bad, "data_version")
    assert optional_text("x" * 64, "git_commit", 64) == "x" * 64


def test_path_text() -> None:
    from pathlib import Path

    assert path_text("artifacts/cf/als/v1", "artifacts_path") == "artifacts/cf/als/v1"
    assert path_text(Path("artifacts/cf/als/v1"), "artifacts_path") == "artifacts/cf/als/v1"
    for bad in ("", "  ", "a\x00b", "a\nb", "x" * 4097, 42, None, b"artifacts", "bad\udcffname"):
        with pytest.raises(InvalidArgumentError, match="artifacts_path"):
            path_text(bad, "artifacts_path")

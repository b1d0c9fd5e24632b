"""Fuzzing the public API's input checks (docs/reliability.md, D1/D2/D7) with hypothesis.

Every call either succeeds or raises a ``RegistryError`` (whose leaves also are the
builtins the doc names, e.g. ``ValueError``); a call that raises leaves every table
(generation included) and every file under the artifacts root exactly as they were,
and a call that is accepted stored exactly what it was given (read back and compared).
"""

from __future__ import annotations

import math
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import MetaData, create_engine, select

from registry import RegistryError

FUZZ_SETTINGS = settings(
    max_examples=int(os.environ.get("CFREG_FUZZ_EXAMPLES", "60")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

HOSTILE_STRINGS = [
    "", " ", "a" * 129, "a\x00b", "a\nb", "a|b", "../x", "a/b", "a\\b", "\u202eevil", "ä",
    "x'; DROP TABLE models;--", "name; DROP TABLE models", 'a"."b', "x') OR 1=1 --", 'metric:ndcg@10"]',
    "__class__", "$", "a b", "\x00", "m" * 65, "ndcg@10; DROP",
]
VALID_NAMES = ["ndcg@10", "recall@10", "coverage", "map.5", "train/loss", "als", "bpr", "v1", "v_20250116_141500"]

identifiers = st.one_of(
    st.sampled_from(HOSTILE_STRINGS + VALID_NAMES),
    st.text(max_size=140),
    st.integers(),
    st.none(),
    st.binary(max_size=8),
    st.floats(allow_nan=True),
)
metric_names = st.one_of(st.sampled_from(HOSTILE_STRINGS + VALID_NAMES), st.text(max_size=70), st.integers())
metric_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.sampled_from([Decimal("NaN"), Decimal("0.5"), np.float32(0.195), np.float64("nan"), np.int64(3), True, "0.9", None,
                     [], {}, 1e309, complex(1, 0)]),
    st.text(max_size=5),
)
json_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30), st.floats(allow_nan=True),
    st.text(max_size=20), st.binary(max_size=4), st.sampled_from([set(), object(), np.float32(1.5), Decimal("1.5")]),
)
payloads = st.one_of(
    st.none(),
    st.recursive(json_leaves, lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.one_of(st.text(max_size=8), st.integers(), st.sampled_from(["a\x00b"])), children, max_size=3),
    ), max_leaves=10),
    st.sampled_from([["not", "a", "dict"], "text", 5]),
)


class Snapshot:
    """Rows of every table plus the files under the artifacts root."""

    def __init__(self, database_url: str, root: Path) -> None:
        self.engine = create_engine(database_url)
        self.metadata = MetaData()
        self.metadata.reflect(self.engine)
        self.root = root

    def take(self) -> tuple[dict[str, list[str]], dict[str, tuple[int, int]]]:
        tables: dict[str, list[str]] = {}
        with self.engine.connect() as connection:
            for name, table in sorted(self.metadata.tables.items()):
                tables[name] = sorted(repr(tuple(row)) for row in connection.execute(select(table)))
        files = {
            str(path.relative_to(self.root)): (path.stat().st_size, path.stat().st_mtime_ns)
            for path in sorted(self.root.rglob("*")) if path.is_file() and not path.name.endswith(".lock")
        }
        return tables, files

    def close(self) -> None:
        self.engine.dispose()


@pytest.fixture
def snapshot(registry: Any, database_url: str, tmp_path: Path) -> Any:
    shot = Snapshot(database_url, tmp_path / "artifacts")
    yield shot
    shot.close()


def _check_call(snapshot: Snapshot, call: Any, *, reraise: bool = False) -> Any:
    """Run ``call``; on an exception require a RegistryError and an unchanged registry."""
    return _check_call_changed(snapshot, call, reraise=reraise)[0]


def _check_call_changed(snapshot: Snapshot, call: Any, *, reraise: bool = False) -> tuple[Any, bool]:
    """:func:`_check_call` that also says whether an accepted call changed the registry."""
    before = snapshot.take()
    try:
        result = call()
        return result, snapshot.take() != before
    except RegistryError:
        assert snapshot.take() == before, "a refused call changed the registry"
        if reraise:
            raise
        return None, False
    except Exception as exc:
        raise AssertionError(f"{type(exc).__name__} escaped instead of a RegistryError: {exc!r}") from exc


@pytest.mark.slow
@FUZZ_SETTINGS
@given(
    model_type=st.one_of(st.just("als"), identifiers),
    version=st.one_of(st.none(), identifiers),
    metrics=st.one_of(st.none(), st.dictionaries(metric_names, metric_values, max_size=3), st.sampled_from([[1], "m"])),
    hyperparameters=payloads,
    training_info=payloads,
    path_choice=st.sampled_from(["valid", "missing", "absolute_outside", "dotdot", "nul", "long", "empty", "file",
                                 "root", "int"]),
    overwrite=st.booleans(),
)
def test_register_model_refuses_bad_input_cleanly(
    registry: Any, snapshot: Snapshot, model_dir: Any, tmp_path: Path, model_type: Any, version: Any, metrics: Any,
    hyperparameters: Any, training_info: Any, path_choice: str, overwrite: bool,
) -> None:
    valid = model_dir("als/fuzz", seed=1) if not (tmp_path / "artifacts/cf/als/fuzz").exists() else "artifacts/cf/als/fuzz"
    paths = {
        "valid": valid, "missing": "artifacts/cf/als/nope", "absolute_outside": "/etc",
        "dotdot": "artifacts/cf/../../../x", "nul": "artifacts/cf/als\x00x", "long": "a" * 4097, "empty": "",
        "file": valid + "/als_U.npy", "root": "artifacts/cf", "int": 42,
    }
    model_id, changed = _check_call_changed(snapshot, lambda: registry.register_model(
        paths[path_choice], model_type, hyperparameters, metrics, training_info, version=version, overwrite=overwrite))
    if model_id is not None:
        _assert_stored_as_given(registry, model_id, changed, paths[path_choice], model_type, version, metrics,
                                hyperparameters, training_info)


json_text = st.text(alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=12)
valid_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False), json_text,
    st.sampled_from([np.float32(1.5), np.float64(-0.25), np.int64(-7), np.bool_(True)]),
)
valid_payloads = st.recursive(valid_leaves, lambda children: st.one_of(
    st.lists(children, max_size=3), st.tuples(children, children),
    st.dictionaries(json_text, children, max_size=3),
), max_leaves=12).filter(lambda value: isinstance(value, dict)) | st.dictionaries(json_text, valid_leaves, max_size=4)


@FUZZ_SETTINGS
@given(
    version=st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,30}", fullmatch=True),
                      st.sampled_from(["v1", "v1", "v2"])),
    metrics=st.dictionaries(st.one_of(st.sampled_from(VALID_NAMES), st.from_regex(r"[A-Za-z0-9@._:/-]{1,64}", fullmatch=True)),
                            st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-(10**20), 10**20),
                                      st.sampled_from([np.float32(0.195), np.float64(0.5), np.int64(3), np.float16(0.1)])),
                            max_size=4),
    hyperparameters=st.one_of(st.none(), valid_payloads),
    training_info=st.one_of(st.none(), valid_payloads),
    overwrite=st.booleans(),
)
def test_register_model_stores_exactly_the_values_it_accepts(
    registry: Any, snapshot: Snapshot, model_dir: Any, tmp_path: Path, version: Any, metrics: Any,
    hyperparameters: Any, training_info: Any, overwrite: bool,
) -> None:
    """Values near the edge of what is valid: each call is refused cleanly or stores exactly its input."""
    path = model_dir("als/fuzz", seed=1) if not (tmp_path / "artifacts/cf/als/fuzz").exists() else "artifacts/cf/als/fuzz"
    model_id, changed = _check_call_changed(snapshot, lambda: registry.register_model(
        path, "als", hyperparameters, metrics, training_info, version=version, overwrite=overwrite))
    if model_id is not None:
        _assert_stored_as_given(registry, model_id, changed, path, "als", version, metrics, hyperparameters, training_info)


def _assert_stored_as_given(registry: Any, model_id: str, changed: bool, path: str, model_type: Any, version: Any,
                            metrics: Any, hyperparameters: Any, training_info: Any) -> None:
    """An accepted registration stores exactly what was given (after the documented conversions)."""
    stored = registry.get_model(model_id)
    assert stored is not None
    assert model_id == f"{model_type}_{stored['version']}"
    assert stored["model_type"] == model_type and stored["path"] == path
    if version is not None:
        assert stored["version"] == version
    if not changed:
        # An idempotent re-run (same version, path and files): the first registration stands.
        assert version is not None
        return
    assert stored["status"] == "active"
    assert stored["metrics"] == _expected_metrics(metrics)
    assert _same_json(stored["hyperparameters"], _expected_json(hyperparameters or {}))
    assert _same_json(stored["training_info"], _expected_json(training_info or {}))


def _expected_metrics(metrics: Any) -> dict[str, float]:
    """Metric values as the registry documents storing them: plain floats, float32 as printed."""
    expected = {}
    for name, value in (metrics or {}).items():
        if isinstance(value, np.floating) and value.dtype.itemsize < 8:
            expected[name] = float(str(value))
        else:
            expected[name] = float(value)
    return expected


def _expected_json(value: Any) -> Any:
    """A payload as stored: tuples become lists, numpy scalars plain numbers, the rest unchanged."""
    if isinstance(value, dict):
        return {key: _expected_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_expected_json(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _same_json(stored: Any, expected: Any) -> bool:
    """Equal values of the same JSON types (so 1 == 1.0 == True does not hide a conversion)."""
    if isinstance(expected, dict):
        return isinstance(stored, dict) and stored.keys() == expected.keys() and all(
            _same_json(stored[key], expected[key]) for key in expected)
    if isinstance(expected, list):
        return isinstance(stored, list) and len(stored) == len(expected) and all(
            _same_json(a, b) for a, b in zip(stored, expected))
    return type(stored) is type(expected) and stored == expected


@pytest.mark.slow
@FUZZ_SETTINGS
@given(
    metric=metric_names,
    min_improvement=st.one_of(st.floats(allow_nan=True), st.integers(), st.sampled_from(["0.1", None, True, -1])),
    model_type=st.one_of(st.none(), identifiers),
    min_gain=st.one_of(st.none(), st.floats(allow_nan=True), st.sampled_from(["x", -0.5])),
)
def test_select_best_model_refuses_bad_input_cleanly(
    registry: Any, snapshot: Snapshot, model_dir: Any, metric: Any, min_improvement: Any, model_type: Any, min_gain: Any,
) -> None:
    if registry.get_registry_stats()["total_models"] == 0:
        path = model_dir("als/sel", seed=2)
        for index, value in enumerate((0.1, 0.3, 0.2)):
            registry.register_model(path, "als", {}, {"ndcg@10": value, "recall@10": 1 - value}, {}, version=f"s{index}",
                                    baseline_comparison={"improvement_ndcg@10": value})
    result = _check_call(snapshot, lambda: registry.select_best_model(
        metric=metric, min_improvement=min_improvement, model_type=model_type, min_gain_over_current=min_gain))
    if result is not None:
        assert math.isfinite(result["value"]) and result["metric"] == metric
        # Accepted: the stored pointer is the winner, and the winner really has that value.
        current = registry.get_current_best()
        assert current["model_id"] == result["model_id"]
        assert current["selection_metric"] == metric and current["selection_value"] == result["value"]
        winner = registry.get_model(result["model_id"])
        assert winner["metrics"][metric] == result["value"]
        assert model_type is None or winner["model_type"] == model_type
        others = registry.list_models(model_type=model_type, status="active")
        assert result["value"] == others[metric].max()


@pytest.mark.slow
@FUZZ_SETTINGS
@given(
    model_type=st.one_of(st.none(), identifiers),
    status=st.one_of(st.none(), st.sampled_from(["active", "archived", "failed", "deleted", "ACTIVE", ""]), identifiers),
    sort_by=st.one_of(st.sampled_from(["created_at", "model_id", "ndcg@10", "training_time", "version"]),
                      metric_names, identifiers),
    ascending=st.one_of(st.booleans(), st.sampled_from(["yes", None, 2, 0])),
)
def test_list_models_never_changes_anything(
    registry: Any, snapshot: Snapshot, model_dir: Any, model_type: Any, status: Any, sort_by: Any, ascending: Any,
) -> None:
    if registry.get_registry_stats()["total_models"] == 0:
        registry.register_model(model_dir("als/list", seed=3), "als", {}, {"ndcg@10": 0.2}, {}, version="l1")
    before = snapshot.take()
    frame = _check_call(snapshot, lambda: registry.list_models(model_type, status, sort_by, ascending))
    if frame is not None:
        assert list(frame.columns[:5]) == ["model_id", "model_type", "version", "status", "created_at"]
        # Accepted filters: exactly the stored models that match them.
        wanted = [
            row.model_id for row in registry.list_models().itertuples()
            if (model_type is None or row.model_type == model_type) and (status is None or row.status == status)
        ]
        assert sorted(frame["model_id"]) == sorted(wanted)
    assert snapshot.take() == before


def test_legacy_import_refuses_bad_documents_cleanly(registry: Any, snapshot: Snapshot, tmp_path: Path) -> None:
    """D7: hostile legacy registry.json files are refused with a RegistryError and import nothing."""
    from registry import legacy

    importer = legacy.import_registry_json
    cases = {
        "deep.json": "[" * 100_000 + "]" * 100_000,
        "bigint.json": '{"current_best": null, "models": {}, "metadata": {"n": ' + "9" * 5000 + "}}",
        "nan.json": '{"current_best": null, "models": {"m": {"metrics": {"ndcg@10": NaN}}}, "metadata": {}}',
        "inf.json": '{"current_best": null, "models": {"m": {"metrics": {"ndcg@10": Infinity}}}, "metadata": {}}',
        "list.json": "[1, 2, 3]",
        "text.json": "not json at all",
        "badid.json": '{"current_best": null, "models": {"../../x": {"model_type": "als"}}, "metadata": {}}',
        "badmetric.json": '{"current_best": null, "models": {"als_v1": {"model_type": "als", "version": "v1", '
                          '"path": "x", "metrics": {"a\\"b": 1}}}, "metadata": {}}',
    }
    for name, content in cases.items():
        path = tmp_path / name
        path.write_text(content, encoding="utf-8")
        with pytest.raises(RegistryError):
            _check_call(snapshot, lambda path=path: importer(registry.context, path), reraise=True)
    invalid_utf8 = tmp_path / "bytes.json"
    invalid_utf8.write_bytes(b'{"models": {"\xff\xfe": {}}}')
    with pytest.raises(RegistryError):
        _check_call(snapshot, lambda: importer(registry.context, invalid_utf8), reraise=True)

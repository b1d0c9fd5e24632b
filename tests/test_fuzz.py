"""Fuzzing the public API's input checks (docs/reliability.md, D1/D2/D7) with hypothesis.

Every call either succeeds or raises a ``RegistryError`` (whose leaves also are the
builtins the doc names, e.g. ``ValueError``); a call that raises leaves every table
(generation included) and every file under the artifacts root exactly as they were.
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
    before = snapshot.take()
    try:
        return call()
    except RegistryError:
        assert snapshot.take() == before, "a refused call changed the registry"
        if reraise:
            raise
        return None
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
    _check_call(snapshot, lambda: registry.register_model(
        paths[path_choice], model_type, hyperparameters, metrics, training_info, version=version, overwrite=overwrite))


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
    assert snapshot.take() == before


def test_legacy_import_refuses_bad_documents_cleanly(registry: Any, snapshot: Snapshot, tmp_path: Path) -> None:
    """D7: hostile legacy registry.json files are refused with a RegistryError and import nothing."""
    from registry import legacy

    importer = getattr(legacy, "import_registry_json", None)
    if importer is None:
        pytest.skip("registry.legacy.import_registry_json is not implemented yet")
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

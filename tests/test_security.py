"""Security battery (docs/reliability.md, D2-D4): hostile files, escaping deletes, SQL-looking names."""

from __future__ import annotations

import ast
import hashlib
import re
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.lib import format as npformat

import workers
from factories import make_model_dir
from registry import (
    InvalidArgumentError,
    InvalidArtifactsError,
    ModelRegistry,
    RegistryError,
)

PACKAGE = Path(__file__).resolve().parent.parent / "registry"
ALLOCATION_LIMIT = 64 << 20


class _CreatesSentinel:
    """Unpickling this object creates a file: proof that a pickle was (not) executed."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return open, (str(self.path), "w")


def _write_pickled_npy(path: Path, sentinel: Path) -> None:
    array = np.empty(2, dtype=object)
    array[0], array[1] = _CreatesSentinel(sentinel), {"x": 1}
    np.save(path, array, allow_pickle=True)


def _write_lying_header(path: Path, shape: tuple[int, ...]) -> None:
    with open(path, "wb") as handle:
        npformat.write_array_header_1_0(handle, {"descr": "<f4", "fortran_order": False, "shape": shape})
        handle.write(b"\x00" * 64)


def _tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*")) if path.is_file()
    }


def _loader(registry: Any, database_url: str, verify: str) -> Any:
    from registry.loader import ModelLoader

    return ModelLoader(registry.registry_path, True, False, database_url=database_url, verify=verify)


# --------------------------------------------------------------------------- hostile .npy (D4)


def test_pickled_object_npy_is_refused_at_registration(registry: Any, model_dir: Any, tmp_path: Path,
                                                       database_url: str) -> None:
    path = model_dir("als/pickled", seed=1)
    sentinel = tmp_path / "pwned"
    _write_pickled_npy(tmp_path / path / "als_U.npy", sentinel)
    before = workers.table_dump(database_url)
    with pytest.raises(InvalidArtifactsError, match="als_U.npy"):
        registry.register_model(path, "als", {}, {"ndcg@10": 0.1}, {})
    assert not sentinel.exists()
    assert workers.table_dump(database_url) == before


@pytest.mark.parametrize("verify", ["none", "size", "full"])
def test_pickled_object_npy_swapped_in_after_registration_is_refused_at_load(
    registry: Any, model_dir: Any, tmp_path: Path, database_url: str, verify: str
) -> None:
    from registry.artifacts import load_npy, load_npy_verified

    path = model_dir("als/swapped", seed=2)
    model_id = registry.register_model(path, "als", {}, {"ndcg@10": 0.1}, {})
    recorded = {f["file_name"]: f["sha256"] for f in registry.get_model_files(model_id)}
    target, sentinel = tmp_path / path / "als_U.npy", tmp_path / "pwned"
    _write_pickled_npy(target, sentinel)
    with pytest.raises(InvalidArtifactsError):
        load_npy(target)
    with pytest.raises(InvalidArtifactsError):
        load_npy_verified(target, recorded["als_U.npy"])
    loader = _loader(registry, database_url, verify)
    try:
        with pytest.raises(InvalidArtifactsError):
            loader.load_model(model_id)
    finally:
        loader.close()
    assert not sentinel.exists()


@pytest.mark.parametrize("shape", [(200_000, 1_000), (1_000_000, 1_000_000)], ids=["800MB", "3.6TiB"])
def test_npy_header_claiming_a_huge_shape_is_refused_without_allocating(
    registry: Any, model_dir: Any, tmp_path: Path, database_url: str, shape: tuple[int, int]
) -> None:
    from registry.artifacts import load_npy, load_npy_verified

    good = model_dir("als/good", seed=3)
    model_id = registry.register_model(good, "als", {}, {"ndcg@10": 0.1}, {})
    liar = model_dir("als/liar", seed=3)
    _write_lying_header(tmp_path / liar / "als_U.npy", shape)
    before = workers.table_dump(database_url)
    tracemalloc.start()
    try:
        with pytest.raises(InvalidArtifactsError, match="als_U.npy"):
            registry.register_model(liar, "als", {}, {"ndcg@10": 0.2}, {})
        # The registered model's file replaced by the liar: refused at load too.
        _write_lying_header(tmp_path / good / "als_U.npy", shape)
        with pytest.raises(InvalidArtifactsError):
            load_npy(tmp_path / good / "als_U.npy")
        with pytest.raises(InvalidArtifactsError):
            load_npy_verified(tmp_path / good / "als_U.npy", "0" * 64)
        loader = _loader(registry, database_url, "full")
        try:
            with pytest.raises(InvalidArtifactsError):
                loader.load_model(model_id)
        finally:
            loader.close()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < ALLOCATION_LIMIT, f"{peak} bytes allocated while refusing a forged header"
    assert workers.table_dump(database_url) == before


# --------------------------------------------------------------------------- escaping deletes (D3)


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A valid model folder OUTSIDE the artifacts root (``<tmp>/artifacts/cf``) that must survive."""
    return make_model_dir(tmp_path / "victim" / "model", "als", seed=9)


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink", "through_symlinked_dir"])
def test_delete_files_refuses_paths_escaping_the_artifacts_root(
    registry: Any, tmp_path: Path, victim: Path, database_url: str, how: str
) -> None:
    cf = tmp_path / "artifacts" / "cf"
    (cf / "als").mkdir(parents=True, exist_ok=True)
    if how == "dotdot":
        stored = "artifacts/cf/../../victim/model"
    elif how == "absolute":
        stored = str(victim)
    elif how == "symlink":
        (cf / "als" / "link").symlink_to(victim, target_is_directory=True)
        stored = "artifacts/cf/als/link"
    else:
        (cf / "als" / "linkdir").symlink_to(victim.parent, target_is_directory=True)
        stored = "artifacts/cf/als/linkdir/model"
    model_id = registry.register_model(stored, "als", {}, {"ndcg@10": 0.1}, {}, version=f"escape_{how}")
    victim_before = _tree_digest(tmp_path / "victim")
    before = workers.table_dump(database_url)
    with pytest.raises(InvalidArgumentError, match="refusing to delete"):
        registry.delete_model(model_id, delete_files=True)
    assert _tree_digest(tmp_path / "victim") == victim_before
    assert workers.table_dump(database_url) == before
    assert registry.get_model(model_id) is not None
    assert cf.is_dir()


def test_delete_files_removes_only_its_folder_and_never_follows_inner_symlinks(
    registry: Any, model_dir: Any, tmp_path: Path, victim: Path
) -> None:
    path = model_dir("als/doomed", seed=4)
    sibling = model_dir("als/sibling", seed=5)
    (tmp_path / path / "escape").symlink_to(victim.parent, target_is_directory=True)
    (tmp_path / path / "outside_file").symlink_to(victim / "als_U.npy")
    victim_before, sibling_before = _tree_digest(tmp_path / "victim"), _tree_digest(tmp_path / sibling)
    model_id = registry.register_model(path, "als", {}, {"ndcg@10": 0.1}, {})
    assert registry.delete_model(model_id, delete_files=True) is True
    assert not (tmp_path / path).exists()
    assert _tree_digest(tmp_path / "victim") == victim_before
    assert _tree_digest(tmp_path / sibling) == sibling_before


# --------------------------------------------------------------------------- SQL-looking names (D2)


HOSTILE_KEYS = ["name; DROP TABLE models", 'a"."b', "x') OR 1=1 --", "ndcg@10; DROP", 'metric:ndcg@10"]',
                "models WHERE 1=1", "' OR '1'='1", "m" * 65, "", "ndcg@10\x00", "ｎｄｃｇ@10"]


def test_sql_looking_metric_names_and_sort_keys_are_rejected_and_harmless(
    registry: Any, model_dir: Any, database_url: str
) -> None:
    path = model_dir("als/sql", seed=6)
    registry.register_model(path, "als", {}, {"ndcg@10": 0.2, "recall@10": 0.3}, {}, version="v1")
    before = workers.table_dump(database_url)
    for key in HOSTILE_KEYS:
        with pytest.raises(InvalidArgumentError):
            registry.register_model(path, "als", {}, {key: 0.5}, {}, version="v2")
        with pytest.raises(InvalidArgumentError):
            registry.select_best_model(metric=key)
        with pytest.raises(InvalidArgumentError):
            registry.list_models(sort_by=key)
        with pytest.raises(InvalidArgumentError):
            registry.compare_models(["als_v1"], metrics=[key])
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", key):
            with pytest.raises(InvalidArgumentError):
                registry.list_models(model_type=key)
    after = workers.table_dump(database_url)
    assert after == before
    assert {"models", "model_metrics", "audit_events", "settings"} <= set(after)
    assert registry.select_best_model(metric="ndcg@10")["model_id"] == "als_v1"
    assert registry.list_models(sort_by="recall@10")["model_id"].tolist() == ["als_v1"]


SQL_SINKS = {"text", "execute", "exec_driver_sql", "executescript", "executemany"}


def _is_int_cast(node: ast.expr) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "int"


def _is_composed_sql(node: ast.expr) -> bool:
    """``sql.SQL("...").format(sql.Identifier(...))``: psycopg's quoting composition, not string formatting."""
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format"
            and isinstance(node.func.value, ast.Call)
            and getattr(node.func.value.func, "attr", getattr(node.func.value.func, "id", None)) == "SQL")


def _formatted(node: ast.expr) -> bool:
    """True for text built by an f-string, ``%``, ``.format`` or ``+`` with a non-literal part."""
    if isinstance(node, ast.JoinedStr):
        values = [v.value for v in node.values if isinstance(v, ast.FormattedValue)]
        return bool(values) and not all(_is_int_cast(v) for v in values)  # PRAGMA busy_timeout={int(ms)}
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
        return isinstance(node.left, (ast.Constant, ast.JoinedStr)) and isinstance(getattr(node.left, "value", ""), str)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        parts = (node.left, node.right)
        has_text = any(isinstance(p, (ast.Constant, ast.JoinedStr)) for p in parts)
        return has_text and (any(_formatted(p) for p in parts) or not all(isinstance(p, ast.Constant) for p in parts))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        return not _is_composed_sql(node)
    return False


def sql_formatting_offenders(source: str, name: str) -> list[str]:
    """Calls of text()/execute()/exec_driver_sql()/... whose SQL argument is built by string formatting,
    directly or through a local variable assigned in the same function (AST, so multi-line calls count)."""
    tree = ast.parse(source)
    offenders = []
    scopes = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Module))]
    for scope in scopes:
        assigned: dict[str, list[ast.expr]] = {}
        for node in ast.walk(scope):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        assigned.setdefault(target.id, []).append(node.value)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
                assigned.setdefault(node.target.id, []).append(node.value)
        for node in ast.walk(scope):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            callee = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            if callee not in SQL_SINKS:
                continue
            argument = node.args[0]
            values = assigned.get(argument.id, []) if isinstance(argument, ast.Name) else [argument]
            if any(_formatted(value) for value in values):
                offenders.append(f"{name}:{node.lineno}: {ast.get_source_segment(source, node)}")
    return sorted(set(offenders))


def test_no_sql_text_is_built_by_string_formatting() -> None:
    """Static guard (AST): SQL text is never an f-string/format/%-string/concatenation, except integer-cast
    values (``PRAGMA busy_timeout={int(ms)}``) and psycopg's quoting ``sql.SQL(...).format(sql.Identifier(...))``."""
    offenders = []
    for source in sorted(PACKAGE.rglob("*.py")):
        offenders += sql_formatting_offenders(source.read_text(encoding="utf-8"), str(source.relative_to(PACKAGE.parent)))
    assert offenders == []


def test_the_sql_formatting_guard_sees_multi_line_and_indirect_cases() -> None:
    """The guard itself: each of these must be reported (the old line-based check missed the first three)."""
    cases = {
        "multi-line f-string": 'session.execute(\n    text(\n        f"SELECT MAX({column}) "\n        "FROM t"\n    )\n)',
        "through a variable": 'def f(table):\n    query = f"DELETE FROM {table}"\n    cursor.execute(query)',
        "format on the next line": 'connection.exec_driver_sql(\n    "SELECT {}".format(name))',
        "percent": 'cursor.execute("SELECT * FROM %s" % table)',
        "concatenation": 'cursor.execute("SELECT * FROM " + table)',
    }
    for label, source in cases.items():
        assert sql_formatting_offenders(source, label), label
    allowed = [
        'cursor.execute(f"PRAGMA busy_timeout={int(ms)}")',
        'cursor.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(s), sql.Identifier(r)))',
        'session.execute(text("SELECT 1 WHERE a = :a"), {"a": value})',
    ]
    for source in allowed:
        assert sql_formatting_offenders(source, "allowed") == [], source


def test_registry_path_with_sql_looking_name_is_just_a_path(tmp_path: Path) -> None:
    """A registry folder named like SQL is a folder; the URL is built from a resolved path."""
    odd = tmp_path / "x'); DROP TABLE models; --" / "registry.json"
    registry = ModelRegistry(odd, root=tmp_path, export_json=False)
    assert (odd.parent / "registry.db").exists()
    assert registry.get_registry_stats()["total_models"] == 0
    with pytest.raises(RegistryError):
        registry.select_best_model(metric="x') OR 1=1 --")

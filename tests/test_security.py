"""Security battery (docs/reliability.md, D2-D4): hostile files, escaping deletes, SQL-looking names."""

from __future__ import annotations

import hashlib
import re
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import workers
from factories import make_model_dir
from numpy.lib import format as npformat

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


def test_no_sql_text_is_built_by_string_formatting() -> None:
    """Static guard: SQL text is never an f-string/format/%-string, except integer-cast PRAGMA values."""
    call = re.compile(r"""(?:text|execute|exec_driver_sql)\(\s*(f?)(["'])(.*)""")
    offenders = []
    for source in sorted(PACKAGE.rglob("*.py")):
        for number, line in enumerate(source.read_text(encoding="utf-8").splitlines(), 1):
            match = call.search(line)
            if not match:
                continue
            rest = match.group(3)
            formatted = match.group(1) == "f" or ".format(" in rest or re.search(r"""["']\s*%\s*""", rest)
            if not formatted:
                continue
            placeholders = re.findall(r"\{([^}]*)\}", rest)
            if match.group(1) == "f" and placeholders and all(re.fullmatch(r"int\(.*\)", p) for p in placeholders):
                continue  # e.g. PRAGMA busy_timeout={int(ms)}: a number, not text
            offenders.append(f"{source.relative_to(PACKAGE.parent)}:{number}: {line.strip()}")
    assert offenders == []


def test_registry_path_with_sql_looking_name_is_just_a_path(tmp_path: Path) -> None:
    """A registry folder named like SQL is a folder; the URL is built from a resolved path."""
    odd = tmp_path / "x'); DROP TABLE models; --" / "registry.json"
    registry = ModelRegistry(odd, root=tmp_path, export_json=False)
    assert (odd.parent / "registry.db").exists()
    assert registry.get_registry_stats()["total_models"] == 0
    with pytest.raises(RegistryError):
        registry.select_best_model(metric="x') OR 1=1 --")

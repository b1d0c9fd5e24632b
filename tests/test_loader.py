"""ModelLoader: serving, caching, verification, hot reload, thread and process safety."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import create_engine, inspect, update

from factories import make_model_dir
from registry import (
    ChecksumMismatchError,
    InvalidArgumentError,
    InvalidArtifactsError,
    LoaderStats,
    ModelLoader,
    ModelNotFoundError,
    ModelRegistry,
    ModelState,
    NoModelLoadedError,
    RegistryNotFoundError,
    artifacts,
    audit,
    get_loader,
    load_model_from_registry,
    reset_loader,
)
from registry.abtest import get_model_for_user
from registry.models import ABTest

# (40 users + 25 items) x 8 factors x float32: the factories' default model size.
MODEL_BYTES = (40 + 25) * 8 * 4
DOC_STATS_KEYS = {
    "total_loads", "cache_hits", "cache_misses", "cache_hit_rate", "reload_count",
    "last_load_time_ms", "last_reload_at", "cached_models",
}


@pytest.fixture(autouse=True)
def thread_errors() -> Iterator[list[str]]:
    """Fail the test when any thread it started dies of an exception.

    A reader thread that raises would otherwise just stop, and the test could pass on
    what the surviving threads saw.
    """
    import traceback

    errors: list[str] = []
    previous = threading.excepthook

    def collect(args: threading.ExceptHookArgs) -> None:
        name = args.thread.name if args.thread is not None else "?"
        errors.append(f"thread {name}: " + "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback)))

    threading.excepthook = collect
    try:
        yield errors
    finally:
        threading.excepthook = previous
    if errors:
        pytest.fail(f"{len(errors)} thread(s) died of an exception:\n" + "\n".join(errors))


@pytest.fixture
def open_loader(registry_path: Path, database_url: str) -> Iterator[Any]:
    """Factory for loaders on the test registry; closes them at the end."""
    made: list[ModelLoader] = []

    def build(**kwargs: Any) -> ModelLoader:
        loader = ModelLoader(registry_path, database_url=database_url, **kwargs)
        made.append(loader)
        return loader

    yield build
    for loader in made:
        loader.close()


@pytest.fixture
def disk_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every .npy array read (plain, verified or via numpy) from now on."""
    calls: list[str] = []

    def spy(function: Any) -> Any:
        def wrapper(path: Any, *args: Any, **kwargs: Any) -> Any:
            calls.append(str(path))
            return function(path, *args, **kwargs)
        return wrapper

    monkeypatch.setattr(artifacts, "load_npy", spy(artifacts.load_npy))
    monkeypatch.setattr(artifacts, "load_npy_verified", spy(artifacts.load_npy_verified))
    monkeypatch.setattr(np, "load", spy(np.load))
    return calls


def files_of(tmp_path: Path, relative: str, model_type: str = "als") -> tuple[np.ndarray, np.ndarray]:
    folder = tmp_path / relative
    return np.load(folder / f"{model_type}_U.npy"), np.load(folder / f"{model_type}_V.npy")


def register(registry: ModelRegistry, model_dir: Any, version: str, seed: int, ndcg: float,
             recall: float = 0.1, **kwargs: Any) -> str:
    path = model_dir(f"als/{version}", seed=seed, **kwargs)
    return registry.register_model(path, "als", {"factors": 8}, {"ndcg@10": ndcg, "recall@10": recall}, {},
                                   version=version)


def run_in_other_process(code: str, **values: Any) -> None:
    """Run registry code in a fresh interpreter (a real second process)."""
    script = "import sys\n" + "".join(f"{name} = {value!r}\n" for name, value in values.items()) + textwrap.dedent(code)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120,
                   env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)})


# --------------------------------------------------------------------------- the doc's examples


def test_doc_loader_examples_run_as_written(workdir: Path, backend: str, database_url: str,
                                            monkeypatch: pytest.MonkeyPatch, model_dir: Any) -> None:
    if backend == "postgres":
        monkeypatch.setenv("CFREG_DATABASE_URL", database_url)
    registry = ModelRegistry()
    for version, seed, ndcg, model_type in (("v1_20250115_103000", 1, 0.189, "als"),
                                            ("v2_20250116_141500", 2, 0.195, "als"),
                                            ("v1_20250115_120000", 3, 0.150, "bpr")):
        path = model_dir(f"{model_type}/{version}", model_type=model_type, seed=seed)
        registry.register_model(path, model_type, {"factors": 8}, {"ndcg@10": ndcg, "recall@10": 0.2}, {},
                                version=version)
    best = registry.select_best_model(metric="ndcg@10")
    assert best is not None and best["model_id"] == "als_v2_20250116_141500"

    # Quick Start 3 / Serving Integration
    loader = get_loader()
    U, V, metadata = loader.load_current_best()
    assert metadata["model_id"] == "als_v2_20250116_141500"
    expected_U, expected_V = files_of(workdir, "artifacts/cf/als/v2_20250116_141500")
    assert np.array_equal(U, expected_U) and np.array_equal(V, expected_V)
    assert (U.shape, V.shape) == ((40, 8), (25, 8))

    # Initialization, option 1
    loader = ModelLoader(registry_path="artifacts/cf/registry.json", cache_enabled=True, auto_load=True)
    assert loader.get_current_model().model_id == "als_v2_20250116_141500"
    U, V, metadata = loader.load_model("als_v2_20250116_141500")
    assert metadata["version"] == "v2_20250116_141500" and metadata["model_type"] == "als"

    model_changed = loader.reload_model()
    assert model_changed is False

    state = loader.get_current_model()
    assert isinstance(state, ModelState)
    assert (state.model_id, state.model_type, state.version, state.path) == (
        "als_v2_20250116_141500", "als", "v2_20250116_141500", "artifacts/cf/als/v2_20250116_141500")
    assert state.params == {"factors": 8, "regularization": 0.01}
    assert state.metadata["num_users"] == 40 and isinstance(state.loaded_at, str)
    assert "array(" not in repr(state)  # the debug command prints it: no matrix dumps

    U, V = loader.get_embeddings()
    assert U is state.U and V is state.V

    stats = loader.get_stats()
    assert DOC_STATS_KEYS <= set(stats)

    count = loader.preload_models(["als_v1_20250115_103000", "als_v2_20250116_141500", "bpr_v1_20250115_120000"])
    assert count == 3
    assert loader.get_current_model().model_id == "als_v2_20250116_141500"

    # Caching Behavior
    U1, V1, _ = loader.load_model("als_v1_20250115_103000")
    U2, V2, _ = loader.load_model("als_v1_20250115_103000")
    assert U1 is U2 and V1 is V2
    assert f"Hit rate: {loader.get_stats()['cache_hit_rate']:.1%}".endswith("%")

    # Thread Safety
    seen: list[str] = []

    def worker() -> None:
        shared = get_loader()
        U, V, metadata = shared.load_current_best()
        seen.append(metadata["model_id"])

    threads = [threading.Thread(target=worker) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == ["als_v2_20250116_141500"] * 10

    # Best Practices 7: the explicit load_model above left als_v1 serving; a reload returns to the best
    if loader.reload_model():
        logging.getLogger(__name__).info("Model reloaded!")
    assert loader.get_current_model().model_id == "als_v2_20250116_141500"
    assert loader.reload_model() is False
    # Debug Commands, module-level helper
    assert "als_v2_20250116_141500" in repr(get_loader().get_current_model())
    U, V, metadata = load_model_from_registry()
    assert metadata["model_id"] == "als_v2_20250116_141500"
    U, V, metadata = load_model_from_registry("bpr_v1_20250115_120000")
    assert metadata["model_type"] == "bpr"
    loader.close()


def test_loader_stats_dataclass_has_the_documented_defaults() -> None:
    stats = LoaderStats()
    assert (stats.total_loads, stats.cache_hits, stats.cache_misses, stats.reload_count,
            stats.last_load_time_ms, stats.last_reload_at) == (0, 0, 0, 0, 0, None)
    assert (stats.swap_count, stats.evictions) == (0, 0)


# --------------------------------------------------------------------------- loading


def test_load_returns_the_files_of_the_model_read_only_with_metadata_and_id_maps(
        registry: ModelRegistry, model_dir: Any, open_loader: Any, tmp_path: Path) -> None:
    model_id = register(registry, model_dir, "v1", seed=5, ndcg=0.2, id_maps=True)
    loader = open_loader(auto_load=False)

    U, V, metadata = loader.load_model(model_id)

    expected_U, expected_V = files_of(tmp_path, "artifacts/cf/als/v1")
    assert np.array_equal(U, expected_U) and np.array_equal(V, expected_V)
    assert not U.flags.writeable and not V.flags.writeable
    assert metadata == {"num_users": 40, "num_items": 25, "factors": 8, "model_type": "als",
                        "model_id": model_id, "version": "v1", "path": "artifacts/cf/als/v1"}
    metadata["model_id"] = "edited by the caller"
    assert loader.get_current_model().metadata["model_id"] == model_id
    state = loader.get_current_model()
    assert state.user_ids == [f"u{i}" for i in range(40)] and state.item_ids[:2] == ["i0", "i1"]
    assert loader.get_model_info() == {
        "model_id": model_id, "model_type": "als", "version": "v1", "num_users": 40, "num_items": 25,
        "factors": 8, "loaded_at": state.loaded_at, "path": "artifacts/cf/als/v1"}


def test_relative_artifact_paths_resolve_against_the_registry_root_not_the_cwd(
        workdir: Path, database_url: str, model_dir: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = ModelRegistry(database_url=database_url)
    model_id = register(registry, model_dir, "v1", seed=1, ndcg=0.2)
    registry.select_best_model()
    elsewhere = workdir / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)

    with ModelLoader(workdir / "artifacts" / "cf" / "registry.json", database_url=database_url) as loader:
        U, _, metadata = loader.load_current_best()

    assert metadata["model_id"] == model_id and metadata["path"] == "artifacts/cf/als/v1"
    assert np.array_equal(U, files_of(workdir, "artifacts/cf/als/v1")[0])
    assert list(elsewhere.iterdir()) == []


def test_missing_registry_raises_file_not_found_and_creates_nothing(
        tmp_path: Path, backend: str, database_url: str) -> None:
    before = sorted(tmp_path.rglob("*"))

    with pytest.raises(FileNotFoundError) as raised:
        ModelLoader(tmp_path / "artifacts" / "cf" / "registry.json", database_url=database_url)
    with pytest.raises(RegistryNotFoundError):
        get_loader(tmp_path / "artifacts" / "cf" / "registry.json", database_url=database_url)

    assert "registry" in str(raised.value).lower()
    assert sorted(tmp_path.rglob("*")) == before
    if backend == "postgres":
        engine = create_engine(database_url)
        try:
            assert inspect(engine).get_table_names() == []
        finally:
            engine.dispose()


def test_without_a_current_best_init_succeeds_and_loads_explain_what_to_do(
        registry: ModelRegistry, model_dir: Any, open_loader: Any) -> None:
    register(registry, model_dir, "v1", seed=1, ndcg=0.2)
    loader = open_loader()

    assert loader.get_current_model() is None and loader.get_model_info() == {}
    with pytest.raises(NoModelLoadedError, match="select_best_model"):
        loader.load_current_best()
    with pytest.raises(ValueError, match="No model loaded"):
        loader.get_embeddings()
    assert loader.reload_model() is False


def test_a_broken_current_best_fails_loader_creation_loudly(
        registry: ModelRegistry, model_dir: Any, open_loader: Any, tmp_path: Path) -> None:
    register(registry, model_dir, "v1", seed=1, ndcg=0.2)
    registry.select_best_model()
    (tmp_path / "artifacts/cf/als/v1/als_V.npy").unlink()

    with pytest.raises(InvalidArtifactsError, match="als_V.npy"):
        open_loader()
    loader = open_loader(auto_load=False)
    with pytest.raises(InvalidArtifactsError, match="missing"):
        loader.load_current_best()


def test_unknown_or_malformed_model_ids_raise_typed_errors(
        registry: ModelRegistry, model_dir: Any, open_loader: Any) -> None:
    register(registry, model_dir, "v1", seed=1, ndcg=0.2)
    loader = open_loader()

    with pytest.raises(ModelNotFoundError, match="als_v9") as raised:
        loader.load_model("als_v9")
    assert isinstance(raised.value, KeyError)
    with pytest.raises(InvalidArgumentError):
        loader.load_model("../../etc/passwd")
    with pytest.raises(InvalidArgumentError):
        loader.load_model(42)  # type: ignore[arg-type]
    assert loader.get_current_model() is None


def test_load_model_serves_the_model_whether_from_cache_or_disk(
        registry: ModelRegistry, model_dir: Any, open_loader: Any, disk_reads: list[str]) -> None:
    first = register(registry, model_dir, "v1", seed=1, ndcg=0.2)
    second = register(registry, model_dir, "v2", seed=2, ndcg=0.3)
    loader = open_loader(auto_load=False)

    loader.load_model(first)
    loader.load_model(second)
    reads = len(disk_reads)
    _, _, metadata = loader.load_model(first)  # cache hit

    assert len(disk_reads) == reads
    assert metadata["model_id"] == first and loader.get_current_model().model_id == first
    stats = loader.get_stats()
    assert (stats["cache_hits"], stats["cache_misses"], stats["total_loads"]) == (1, 2, 3)
    assert stats["swap_count"] == 2 and stats["cache_hit_rate"] == pytest.approx(1 / 3)


def test_preload_warms_the_cache_without_changing_the_served_model(
        registry: ModelRegistry, model_dir: Any, open_loader: Any, disk_reads: list[str],
        caplog: pytest.LogCaptureFixture) -> None:
    served = register(registry, model_dir, "v1", seed=1, ndcg=0.2)
    others = [register(registry, model_dir, f"v{n}", seed=n, ndcg=0.1) for n in (2, 3)]
    registry.select_best_model()
    loader = open_loader()

    with caplog.at_level(logging.WARNING, logger="registry.loader"):
        count = loader.preload_models([*others, "als_unknown", "not a valid id!"])

    assert count == 2
    assert loader.get_current_model().model_id == served
    assert "als_unknown" in caplog.text and "not a valid id!" in caplog.text
    assert sorted(loader.get_stats()["cached_models"]) == sorted([served, *others])
    reads = len(disk_reads)
    loader.load_model(others[0])
    assert len(disk_reads) == reads


def test_cache_disabled_reads_other_models_from_disk_every_time(
        registry: ModelRegistry, model_dir: Any, open_loader: Any) -> None:
    first = register(registry, model_dir, "v1", seed=1, ndcg=0.2)
    second = register(registry, model_dir, "v2", seed=2, ndcg=0.3)
    loader = open_loader(auto_load=False, cache_enabled=False)

    for model_id in (first, second, first):
        loader.load_model(model_id)

    stats = loader.get_stats()
    assert (stats["cache_misses"], stats["cached_models"], stats["cache_bytes"]) == (3, [], 0)
    assert loader.preload_models([second]) == 0


def test_mmap_serves_read_only_mapped_arrays(
        registry: ModelRegistry, model_dir: Any, open_loader: Any, tmp_path: Path) -> None:
    model_id = register(registry, model_dir, "v1", seed=1, ndcg=0.2)
    registry.select_best_model()

    for verify in ("size", "full"):
        U, V, _ = open_loader(mmap=True, verify=verify).load_current_best()
        assert isinstance(U, np.memmap) and isinstance(V, np.memmap)
        assert not U.flags.writeable
        assert np.array_equal(U, files_of(tmp_path, "artifacts/cf/als/v1")[0])
    assert model_id == "als_v1"


@pytest.mark.parametrize("name", ["als_U.npy", "als_V.npy"])
def test_mmap_with_full_verification_refuses_a_file_changed_since_registration(
        registry: ModelRegistry, model_dir: Any, open_loader: Any, tmp_path: Path, name: str) -> None:
    model_id = register(registry, model_dir, "v1", seed=1, ndcg=0.2)
    path = tmp_path / "artifacts/cf/als/v1" / name
    original = np.load(path)
    np.save(path, original[::-1].copy())  # same size, same header, other content
    with pytest.raises(ChecksumMismatchError, match=name):
        open_loader(mmap=True, verify="full").load_model(model_id)
    # Control: only the checksum refuses it; size verification maps the changed file.
    U, V, _ = open_loader(mmap=True, verify="size", cache_enabled=False).load_model(model_id)
    assert np.array_equal(U if name == "als_U.npy" else V, original[::-1])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"verify": "sha1"}, "verify"),
    ({"max_cache_bytes": -1}, "max_cache_bytes"),
    ({"max_cache_bytes": "1GB"}, "max_cache_bytes"),
])
def test_bad_loader_options_are_refused(registry: ModelRegistry, open_loader: Any,
                                        kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        open_loader(**kwargs)


def test_cache_budget_comes_from_the_environment(
        registry: ModelRegistry, open_loader: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CFREG_LOADER_MAX_CACHE_BYTES", "12345")
    assert open_loader().get_stats()["max_cache_bytes"] == 12345
    monkeypatch.setenv("CFREG_LOADER_MAX_CACHE_BYTES", "lots")
    with pytest.raises(InvalidArgumentError, match="CFREG_LOADER_MAX_CACHE_BYTES"):
        open_loader()


# --------------------------------------------------------------------------- cache budget


def test_cache_never_exceeds_max_cache_bytes_and_keeps_the_served_model(
        registry: ModelRegistry, model_dir: Any, open_loader: Any) -> None:
    ids = [register(registry, model_dir, f"v{n}", seed=n, ndcg=0.1 * n) for n in range(1, 6)]
    budget = 2 * MODEL_BYTES + MODEL_BYTES // 2
    loader = open_loader(auto_load=False, max_cache_bytes=budget)
    rng = np.random.default_rng(0)

    for model_id in [*ids, *rng.choice(ids, size=20)]:
        loader.load_model(str(model_id))
        stats = loader.get_stats()
        assert stats["cache_bytes"] <= budget
        assert loader.get_current_model().model_id in stats["cached_models"]
    assert loader.preload_models(ids) >= 1
    stats = loader.get_stats()
    assert stats["cache_bytes"] <= budget and len(stats["cached_models"]) == 2
    assert stats["evictions"] > 0
    assert loader.get_current_model().model_id in stats["cached_models"]


def test_a_model_larger_than_the_budget_is_served_but_not_cached(
        registry: ModelRegistry, model_dir: Any, open_loader: Any) -> None:
    model_id = register(registry, model_dir, "v1", seed=1, ndcg=0.2)
    registry.select_best_model()
    loader = open_loader(max_cache_bytes=MODEL_BYTES - 1)

    U, _, metadata = loader.load_current_best()

    assert metadata["model_id"] == model_id and U.shape == (40, 8)
    stats = loader.get_stats()
    assert (stats["cached_models"], stats["cache_bytes"]) == ([], 0)
    assert loader.get_embeddings()[0] is U


def test_a_lower_budget_evicts_at_once_and_keeps_the_served_model(
        registry: ModelRegistry, model_dir: Any, open_loader: Any) -> None:
    first, second, third = (register(registry, model_dir, f"v{n}", seed=n, ndcg=0.1 * n) for n in range(1, 4))
    loader = open_loader(auto_load=False)
    loader.load_model(first)
    assert loader.preload_models([second, third]) == 2  # least recently used first: first, second, third
    loader.load_model(first)  # already served: a cache hit
    assert loader.get_stats()["cache_hits"] == 1

    loader.max_cache_bytes = 2 * MODEL_BYTES

    stats = loader.get_stats()
    # `first` is served, so the least recently used of the others goes: `second`.
    assert sorted(stats["cached_models"]) == sorted([first, third]) and stats["evictions"] == 1
    assert stats["cache_bytes"] <= 2 * MODEL_BYTES
    assert loader.get_current_model().model_id == first


def test_clear_cache_keeps_serving(registry: ModelRegistry, model_dir: Any, open_loader: Any) -> None:
    register(registry, model_dir, "v1", seed=1, ndcg=0.2)
    registry.select_best_model()
    loader = open_loader()

    loader.clear_cache()

    assert loader.get_stats()["cached_models"] == []
    assert loader.get_embeddings()[0].shape == (40, 8)


# --------------------------------------------------------------------------- reload


@pytest.mark.slow
def test_reload_sees_a_best_selected_by_another_process_and_reads_nothing_when_unchanged(
        registry: ModelRegistry, model_dir: Any, open_loader: Any, registry_path: Path,
        database_url: str, tmp_path: Path, disk_reads: list[str]) -> None:
    ndcg_best = register(registry, model_dir, "v1", seed=1, ndcg=0.3, recall=0.1)
    recall_best = register(registry, model_dir, "v2", seed=2, ndcg=0.1, recall=0.3)
    registry.select_best_model(metric="ndcg@10")
    loader = open_loader()
    assert loader.get_current_model().model_id == ndcg_best

    run_in_other_process("""
        from registry import ModelRegistry
        ModelRegistry(path, database_url=url, root=root).select_best_model(metric="recall@10")
    """, path=str(registry_path), url=database_url, root=str(tmp_path))

    reads = len(disk_reads)
    assert loader.reload_model() is True
    assert len(disk_reads) > reads
    U, V, metadata = loader.load_current_best()
    assert metadata["model_id"] == recall_best
    assert np.array_equal(U, files_of(tmp_path, "artifacts/cf/als/v2")[0])

    reads = len(disk_reads)
    assert [loader.reload_model() for _ in range(5)] == [False] * 5
    assert len(disk_reads) == reads
    stats = loader.get_stats()
    assert (stats["reload_count"], stats["swap_count"]) == (6, 1)
    assert stats["last_reload_at"] is not None


def test_an_unrelated_registry_change_does_not_reload_the_arrays(
        registry: ModelRegistry, model_dir: Any, open_loader: Any, disk_reads: list[str]) -> None:
    register(registry, model_dir, "v1", seed=1, ndcg=0.3)
    registry.select_best_model()
    loader = open_loader()
    reads = len(disk_reads)

    register(registry, model_dir, "v2", seed=2, ndcg=0.1)

    assert loader.reload_model() is False
    assert len(disk_reads) == reads


def test_reload_returns_to_the_current_best_after_an_explicit_load(
        registry: ModelRegistry, model_dir: Any, open_loader: Any) -> None:
    best = register(registry, model_dir, "v1", seed=1, ndcg=0.3)
    other = register(registry, model_dir, "v2", seed=2, ndcg=0.1)
    registry.select_best_model()
    loader = open_loader()

    loader.load_model(other)
    assert loader.load_current_best()[2]["model_id"] == best
    loader.load_model(other)
    assert loader.reload_model() is True
    assert loader.get_current_model().model_id == best


def test_overwritten_registration_under_the_same_id_is_detected(
        registry: ModelRegistry, model_dir: Any, open_loader: Any, tmp_path: Path) -> None:
    model_id = register(registry, model_dir, "v1", seed=1, ndcg=0.3)
    registry.select_best_model()
    loader = open_loader()
    old_U = loader.get_embeddings()[0]

    path = model_dir("als/v1", seed=99)
    registry.register_model(path, "als", {"factors": 8}, {"ndcg@10": 0.3}, {}, version="v1", overwrite=True)

    assert loader.reload_model() is True
    U, _, metadata = loader.load_current_best()
    assert metadata["model_id"] == model_id
    assert np.array_equal(U, files_of(tmp_path, "artifacts/cf/als/v1")[0])
    assert not np.array_equal(U, old_U)
    assert loader.get_stats()["cached_models"] == [model_id]
    assert loader.reload_model() is False


def test_in_place_rewrite_fails_full_verification_and_the_old_model_keeps_serving(
        registry: ModelRegistry, model_dir: Any, open_loader: Any, tmp_path: Path,
        disk_reads: list[str]) -> None:
    model_id = register(registry, model_dir, "v1", seed=1, ndcg=0.3)
    registry.select_best_model()
    loader = open_loader(verify="full")
    served_U, served_V = loader.get_embeddings()
    u_file = tmp_path / "artifacts/cf/als/v1/als_U.npy"
    original = u_file.read_bytes()
    np.save(u_file, np.ones((40, 8), dtype=np.float32))  # same size, other content

    with pytest.raises(ChecksumMismatchError, match="als_U.npy"):
        loader.reload_model()
    reads = len(disk_reads)
    with pytest.raises(ChecksumMismatchError):
        loader.reload_model()  # unchanged files: the failure is not re-read

    assert len(disk_reads) == reads
    U, V, metadata = loader.load_current_best()
    assert U is served_U and V is served_V and metadata["model_id"] == model_id
    stats = loader.get_stats()
    assert stats["reload_failures"] == 2 and "ChecksumMismatchError" in stats["last_reload_error"]

    u_file.write_bytes(original)
    assert loader.reload_model() is True
    assert np.array_equal(loader.get_embeddings()[0], np.load(u_file))


def test_in_place_rewrite_with_size_verification(
        registry: ModelRegistry, model_dir: Any, open_loader: Any, tmp_path: Path) -> None:
    register(registry, model_dir, "v1", seed=1, ndcg=0.3)
    registry.select_best_model()
    loader = open_loader(verify="size")
    served_U = loader.get_embeddings()[0]
    u_file = tmp_path / "artifacts/cf/als/v1/als_U.npy"

    np.save(u_file, np.ones((41, 8), dtype=np.float32))
    with pytest.raises(ChecksumMismatchError, match="recorded at registration"):
        loader.reload_model()
    assert loader.get_embeddings()[0] is served_U

    np.save(u_file, np.ones((40, 8), dtype=np.float32))  # same size: 'size' cannot tell, but the stat can
    assert loader.reload_model() is True
    assert np.array_equal(loader.get_embeddings()[0], np.ones((40, 8), dtype=np.float32))


@pytest.mark.parametrize("verify", ["none", "size", "full"])
def test_a_corrupt_new_best_leaves_the_old_model_serving(
        registry: ModelRegistry, model_dir: Any, open_loader: Any, tmp_path: Path, verify: str) -> None:
    old = register(registry, model_dir, "v1", seed=1, ndcg=0.1)
    new = register(registry, model_dir, "v2", seed=2, ndcg=0.3)
    registry.promote_model(old)
    loader = open_loader(verify=verify)
    served_U, served_V = loader.get_embeddings()
    u_file = tmp_path / "artifacts/cf/als/v2/als_U.npy"
    original = u_file.read_bytes()
    u_file.write_bytes(b"\x00" * 16 + original[16:])  # header destroyed, size kept

    registry.promote_model(new)
    with pytest.raises(InvalidArtifactsError, match="als_U.npy"):
        loader.reload_model()

    U, V, metadata = loader.load_current_best()
    assert U is served_U and V is served_V and metadata["model_id"] == old
    u_file.write_bytes(original)
    assert loader.reload_model() is True
    assert loader.load_current_best()[2]["model_id"] == new


def test_no_current_best_after_serving_keeps_the_model(
        registry: ModelRegistry, model_dir: Any, open_loader: Any, caplog: pytest.LogCaptureFixture) -> None:
    model_id = register(registry, model_dir, "v1", seed=1, ndcg=0.1)
    registry.select_best_model()
    loader = open_loader()
    from registry.models import Settings

    def clear_pointer(session: Any) -> None:  # as a restore of an empty backup would leave it
        session.execute(update(Settings).where(Settings.id == 1).values(current_model_id=None, current_selection_id=None))
        audit.record(session, "TEST", "settings", "cleared current best")

    registry.context.mutate(clear_pointer)
    with caplog.at_level(logging.WARNING, logger="registry.loader"):
        assert loader.reload_model() is False
    assert loader.get_current_model().model_id == model_id
    assert "no current best" in caplog.text


# --------------------------------------------------------------------------- threads and processes


SWITCHER = """
    import time
    from registry import ModelRegistry
    registry = ModelRegistry(path, database_url=url, root=root, export_json=False)
    for n in range(rounds):
        registry.select_best_model(metric="recall@10" if n % 2 == 0 else "ndcg@10")
        time.sleep(0.02)
"""


@pytest.mark.slow
def test_threads_always_get_one_models_arrays_while_another_process_switches_the_best(
        registry: ModelRegistry, model_dir: Any, open_loader: Any, registry_path: Path,
        database_url: str, tmp_path: Path) -> None:
    first = register(registry, model_dir, "v1", seed=1, ndcg=0.3, recall=0.1)
    second = register(registry, model_dir, "v2", seed=2, ndcg=0.1, recall=0.3, num_items=30)
    registry.select_best_model(metric="ndcg@10")
    expected = {first: files_of(tmp_path, "artifacts/cf/als/v1"), second: files_of(tmp_path, "artifacts/cf/als/v2")}
    loader = open_loader()
    done = threading.Event()
    problems: list[str] = []
    seen: set[str] = set()

    def reader(number: int) -> None:
        while not done.is_set():
            if number % 2:
                U, V, metadata = loader.load_current_best()
                model_id = metadata["model_id"]
            else:
                U, V = loader.get_embeddings()
                model_id = next((m for m, (eu, _) in expected.items() if eu.shape == U.shape and np.array_equal(eu, U)), "?")
            seen.add(model_id)
            if model_id not in expected or not (np.array_equal(U, expected[model_id][0])
                                                and np.array_equal(V, expected[model_id][1])):
                problems.append(f"thread {number}: arrays do not belong to {model_id}")
            time.sleep(0.0005)  # a request handler yields between requests; a tight loop starves the reloader

    def reloader() -> None:
        while not done.is_set():
            try:
                loader.reload_model()
            except Exception as exc:  # recorded, the assertion below reports it
                problems.append(f"reload failed: {exc!r}")
            time.sleep(0.001)

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(16)] + [threading.Thread(target=reloader)]
    for thread in threads:
        thread.start()
    try:
        run_in_other_process(SWITCHER, path=str(registry_path), url=database_url, root=str(tmp_path), rounds=30)
    finally:
        done.set()
        for thread in threads:
            thread.join()

    assert problems == []
    assert seen == {first, second}
    assert loader.get_stats()["swap_count"] >= 2


def test_the_concurrency_pollers_array_check_catches_another_models_arrays(
        registry: ModelRegistry, model_dir: Any, open_loader: Any) -> None:
    """The multi-process battery checks served arrays with workers.served_arrays_problem: it must be able to fail."""
    import dataclasses

    import workers

    first = registry.register_model(model_dir("als/m1", seed=1), "als", {}, {"ndcg@10": 0.1}, {})
    second = registry.register_model(model_dir("als/m2", seed=2), "als", {}, {"ndcg@10": 0.2}, {})
    assert registry.get_model(first)["path"] == workers.seeded_model_path(1)
    loader = open_loader()
    loader.load_model(first)
    state = loader.get_current_model()
    assert workers.served_arrays_problem(state, registry.get_model(first)["path"]) is None
    mislabelled = dataclasses.replace(state, model_id=second)
    problem = workers.served_arrays_problem(mislabelled, registry.get_model(second)["path"])
    assert problem is not None and "serves other arrays" in problem


def test_auto_reload_follows_the_registry_and_survives_errors(
        registry: ModelRegistry, model_dir: Any, open_loader: Any, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    old = register(registry, model_dir, "v1", seed=1, ndcg=0.1)
    new = register(registry, model_dir, "v2", seed=2, ndcg=0.3)
    registry.promote_model(old)
    loader = open_loader()
    changes: list[tuple[str | None, str | None]] = []
    changed = threading.Event()

    def on_change(old_id: str | None, new_id: str | None) -> None:
        changes.append((old_id, new_id))
        changed.set()

    v_file = tmp_path / "artifacts/cf/als/v2/als_V.npy"
    original = v_file.read_bytes()
    v_file.write_bytes(original[:-4])  # truncated
    with pytest.raises(InvalidArgumentError):
        loader.start_auto_reload(0)
    with caplog.at_level(logging.ERROR, logger="registry.loader"):
        loader.start_auto_reload(0.01, callback=on_change)
        registry.promote_model(new)
        deadline = time.monotonic() + 10
        while loader.get_stats()["reload_failures"] < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert loader.get_current_model().model_id == old
        v_file.write_bytes(original)
        assert changed.wait(10), "the auto-reload thread never picked up the repaired model"

    assert changes == [(old, new)]
    assert "auto-reload check failed" in caplog.text
    assert loader.stop_auto_reload() is True
    assert loader.stop_auto_reload() is False


# --------------------------------------------------------------------------- A/B routing


def test_load_for_user_routes_by_the_running_ab_test_from_memory(
        registry: ModelRegistry, model_dir: Any, open_loader: Any, tmp_path: Path, disk_reads: list[str]) -> None:
    control = register(registry, model_dir, "v1", seed=1, ndcg=0.3)
    treatment = register(registry, model_dir, "v2", seed=2, ndcg=0.1)
    registry.select_best_model()

    def start(session: Any) -> None:
        session.add(ABTest(test_id="ab_1", control_model=control, treatment_model=treatment,
                           traffic_split=0.5, status="running"))
        audit.record(session, "AB_START", "ab_1", "test")

    registry.context.mutate(start)
    loader = open_loader()
    expected = {control: files_of(tmp_path, "artifacts/cf/als/v1")[0],
                treatment: files_of(tmp_path, "artifacts/cf/als/v2")[0]}
    config = {"status": "running", "control_model": control, "treatment_model": treatment, "traffic_split": 0.5}
    loader.load_for_user(0)
    reads = len(disk_reads)

    routed = {user: loader.load_for_user(user) for user in range(200)}

    assert len(disk_reads) == reads
    assert {model_id for model_id, _, _ in routed.values()} == {control, treatment}
    for user, (model_id, U, _) in routed.items():
        assert model_id == get_model_for_user(user, config)
        assert np.array_equal(U, expected[model_id])
    assert loader.get_current_model().model_id == control

    def stop(session: Any) -> None:
        session.execute(update(ABTest).where(ABTest.test_id == "ab_1").values(status="stopped"))
        audit.record(session, "AB_STOP", "ab_1", "test")

    registry.context.mutate(stop)
    assert loader.reload_model() is False
    assert {loader.load_for_user(user)[0] for user in range(200)} == {control}


def test_routing_config_is_the_loaders_copy_refreshed_by_the_reload_check(
        registry: ModelRegistry, model_dir: Any, open_loader: Any) -> None:
    control = register(registry, model_dir, "v1", seed=1, ndcg=0.3)
    treatment = register(registry, model_dir, "v2", seed=2, ndcg=0.1)
    registry.select_best_model()
    loader = open_loader()
    assert loader.routing_config() is None
    test = registry.start_ab_test(control, treatment, 0.5)
    assert loader.routing_config() is None  # not before a reload check
    loader.reload_model()
    config = loader.routing_config()
    assert config == test
    config["traffic_split"] = 1.0  # a copy: the loader's table is unchanged
    assert loader.routing_config() == test
    model, routed_with = loader.route_for_user(0)
    assert routed_with == test and model.model_id == get_model_for_user(0, test)


def test_a_stopped_test_stops_routing_even_when_the_new_best_fails_to_load(
        registry: ModelRegistry, model_dir: Any, open_loader: Any, tmp_path: Path) -> None:
    # Regression: a failed reload check left the routing table as it was, so a stopped
    # test kept sending users to its treatment until the new best's files were fixed.
    control = register(registry, model_dir, "v1", seed=1, ndcg=0.3)
    treatment = register(registry, model_dir, "v2", seed=2, ndcg=0.1)
    registry.select_best_model()
    test_id = registry.start_ab_test(control, treatment, 0.5)["test_id"]
    loader = open_loader()
    assert {loader.load_for_user(user)[0] for user in range(200)} == {control, treatment}

    registry.stop_ab_test(test_id)
    broken = register(registry, model_dir, "v3", seed=3, ndcg=0.9)
    registry.promote_model(broken)
    (tmp_path / "artifacts/cf/als/v3/als_V.npy").write_bytes(b"truncated")
    with pytest.raises(InvalidArtifactsError):
        loader.reload_model()

    assert {loader.load_for_user(user)[0] for user in range(200)} == {control}
    assert loader.routing_config() is None


# --------------------------------------------------------------------------- recommend


@pytest.fixture
def state() -> ModelState:
    rng = np.random.default_rng(7)
    U, V = rng.standard_normal((30, 6)).astype(np.float32), rng.standard_normal((50, 6)).astype(np.float32)
    return ModelState("als_v1", "als", "v1", U, V, {}, {}, "2025-01-16T14:30:00", "artifacts/cf/als/v1",
                      user_ids=[f"u{i}" for i in range(30)], item_ids=[f"i{i}" for i in range(50)])


@pytest.mark.parametrize("k", [1, 5, 10, 50, 80])
def test_recommend_matches_a_brute_force_sort(state: ModelState, k: int) -> None:
    for user in range(state.num_users):
        scores = state.U[user] @ state.V.T
        expected = np.argsort(-scores, kind="stable")[:k]

        items, top_scores = state.recommend(user, k)

        assert items.tolist() == expected.tolist()
        assert np.allclose(top_scores, scores[expected])


def test_recommend_skips_excluded_items(state: ModelState) -> None:
    scores = state.U[3] @ state.V.T
    ranked = np.argsort(-scores, kind="stable")
    exclude = ranked[:4].tolist() + [int(ranked[10])]

    items, _ = state.recommend(3, k=10, exclude=exclude)
    everything, _ = state.recommend(3, k=100, exclude=np.array(exclude))

    assert items.tolist() == [i for i in ranked.tolist() if i not in exclude][:10]
    assert len(everything) == state.num_items - len(exclude)
    assert state.recommend(3, k=5, exclude=range(50))[0].size == 0


@pytest.mark.parametrize(("args", "message"), [
    ((-1,), "user_index"), ((30,), "user_index"), ((True,), "user_index"), (("3",), "user_index"),
    ((0, 0), "k"), ((0, -2), "k"), ((0, 2.5), "k"),
    ((0, 5, [50]), "exclude"), ((0, 5, [-1]), "exclude"), ((0, 5, ["i1"]), "exclude"),
])
def test_recommend_refuses_bad_arguments(state: ModelState, args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        state.recommend(*args)


def test_recommend_for_user_uses_the_id_maps(state: ModelState) -> None:
    items, scores = state.recommend_for_user("u3", k=5, exclude=["i7", "not-an-item"])
    indices, expected_scores = state.recommend(3, k=5, exclude=[7])

    assert items == [f"i{i}" for i in indices.tolist()]
    assert np.allclose(scores, expected_scores)
    with pytest.raises(ModelNotFoundError, match="u999"):
        state.recommend_for_user("u999")
    bare = ModelState("m", "als", "v", state.U, state.V, {}, {}, "", "p")
    with pytest.raises(InvalidArgumentError, match="id maps"):
        bare.recommend_for_user("u3")


# --------------------------------------------------------------------------- shared loaders


def test_get_loader_is_one_loader_per_registry(
        registry: ModelRegistry, model_dir: Any, registry_path: Path, database_url: str, tmp_path: Path) -> None:
    register(registry, model_dir, "v1", seed=1, ndcg=0.3)
    registry.select_best_model()
    other_path = tmp_path / "other" / "registry.json"
    other = ModelRegistry(other_path, root=tmp_path)
    make_model_dir(tmp_path / "other" / "bpr" / "v1", "bpr", seed=3)
    other.register_model(tmp_path / "other" / "bpr" / "v1", "bpr", {}, {"ndcg@10": 0.2}, {}, version="v1")
    other.select_best_model()

    first = get_loader(registry_path, database_url=database_url)
    second = get_loader(other_path)

    assert get_loader(registry_path, database_url=database_url) is first
    assert second is not first and get_loader(str(other_path)) is second
    assert first.get_current_model().model_id == "als_v1"
    assert second.get_current_model().model_id == "bpr_v1"
    assert load_model_from_registry(registry_path=other_path)[2]["model_id"] == "bpr_v1"

    second.start_auto_reload(60)
    [thread] = [t for t in threading.enumerate() if t.name == "cfreg-auto-reload-other"]
    reset_loader()
    assert not thread.is_alive()
    assert get_loader(other_path) is not second


# --------------------------------------------------------------------------- custom model types


@pytest.fixture
def ease_model(registry: ModelRegistry, model_dir: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The current best is an 'ease' model whose type records an extra file, ``ease_item_sim.npy``."""
    monkeypatch.setitem(artifacts.REQUIRED_MODEL_FILES, "ease", [])  # restored after the test
    artifacts.register_model_type("ease", [*artifacts.standard_model_files("ease"), "ease_item_sim.npy"])
    path = model_dir("ease/v1", model_type="ease", seed=1)
    extra = tmp_path / path / "ease_item_sim.npy"
    np.save(extra, np.eye(25, dtype=np.float32))
    registry.register_model(path, "ease", {}, {"ndcg@10": 0.3}, {}, version="v1")
    registry.select_best_model()
    return extra


def test_full_verification_covers_every_recorded_file_of_a_custom_type(
        ease_model: Path, open_loader: Any) -> None:
    # Regression: only the four standard files and the id maps were checked.
    np.save(ease_model, np.full((25, 25), 2.0, dtype=np.float32))  # same size, other content
    with pytest.raises(ChecksumMismatchError, match="ease_item_sim.npy"):
        open_loader(verify="full")


def test_size_verification_covers_every_recorded_file_of_a_custom_type(
        ease_model: Path, open_loader: Any) -> None:
    np.save(ease_model, np.eye(30, dtype=np.float32))
    with pytest.raises(ChecksumMismatchError, match="ease_item_sim.npy"):
        open_loader(verify="size")
    ease_model.unlink()
    with pytest.raises(InvalidArtifactsError, match="ease_item_sim.npy.*missing"):
        open_loader(verify="none")


def test_reload_check_watches_every_recorded_file_of_a_custom_type(
        ease_model: Path, open_loader: Any) -> None:
    loader = open_loader(verify="full")
    served = loader.get_current_model()
    assert "ease_item_sim.npy" in {stamp[0] for stamp in served.file_stamps}
    assert loader.reload_model() is False

    np.save(ease_model, np.full((25, 25), 2.0, dtype=np.float32))  # same size, other content
    with pytest.raises(ChecksumMismatchError, match="ease_item_sim.npy"):
        loader.reload_model()
    assert loader.get_current_model() is served

    np.save(ease_model, np.eye(25, dtype=np.float32))  # the registered content again
    assert loader.reload_model() is True
    assert loader.get_current_model().model_id == served.model_id

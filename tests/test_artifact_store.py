"""Artifact stores: content-addressed uploads, registration in place, the loader's verified cache.

Fast unit tests use fsspec's ``memory://``; the rest run against a real S3 API over
HTTP (moto's standalone server, started by the ``s3`` fixture). Database tests run on
SQLite and PostgreSQL.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import time
from pathlib import Path

import numpy as np
import pytest

from factories import make_model_dir
from registry import ModelRegistry
from registry.errors import (
    ArtifactStoreError,
    ChecksumMismatchError,
    InvalidArgumentError,
    InvalidArtifactsError,
)
from registry.loader import ModelLoader
from registry.models import ArtifactFile
from registry.storage import ArtifactStore
from registry.storage.cache import ArtifactCache


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def memory_store() -> str:
    import fsspec

    fs = fsspec.filesystem("memory")
    root = f"memory://cfreg-{time.monotonic_ns()}"
    yield root
    try:
        fs.rm(root.removeprefix("memory://"), recursive=True)
    except FileNotFoundError:
        pass


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """moto's S3 server on a free port, a bucket, and the environment pointing at them."""
    from s3_server import S3Server

    server = S3Server()
    server.start()
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    server.bucket = server.create_bucket()
    yield server
    server.stop()
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


def open_registry(tmp_path: Path, database_url: str, store: str | None) -> ModelRegistry:
    return ModelRegistry(tmp_path / "reg" / "registry.json", database_url=database_url, root=tmp_path,
                         artifact_store=store)


def store_rows(registry: ModelRegistry, model_id: str) -> dict[str, tuple[str, str | None]]:
    def work(session):  # type: ignore[no-untyped-def]
        rows = session.query(ArtifactFile).filter(ArtifactFile.model_id == model_id)
        return {row.file_name: (row.sha256, row.uri) for row in rows}

    return registry.context.read(work)


# --------------------------------------------------------------------------- memory:// (fast)


def test_register_uploads_content_addressed_objects_once(tmp_path: Path, database_url: str, memory_store: str) -> None:
    import fsspec

    registry = open_registry(tmp_path, database_url, memory_store)
    assert registry.artifact_store == memory_store
    folder = make_model_dir(tmp_path / "m1", seed=1)
    first = registry.register_model(str(folder), "als", {}, {"ndcg@10": 0.1}, {})
    info = registry.get_model(first)
    assert info["path"] == f"{memory_store}/models/{first}"
    rows = store_rows(registry, first)
    store = ArtifactStore(memory_store)
    for name, (sha, uri) in rows.items():
        assert uri == store.object_uri(sha)
        assert sha == sha256_of(folder / name)
    fs = fsspec.filesystem("memory")
    objects = fs.find(memory_store.removeprefix("memory://") + "/objects")
    assert len(objects) == len(rows)

    # Same U and V in a second folder (new params): only the changed files are new objects.
    second_folder = make_model_dir(tmp_path / "m2", seed=1, params={"factors": 8, "regularization": 0.5})
    second = registry.register_model(str(second_folder), "als", {}, {"ndcg@10": 0.2}, {})
    assert store_rows(registry, second)["als_U.npy"] == rows["als_U.npy"]
    objects_after = fs.find(memory_store.removeprefix("memory://") + "/objects")
    assert len(objects_after) == len(rows) + 1  # only the params file differs
    # An object already there is not uploaded again.
    sha, _ = rows["als_U.npy"]
    assert store.upload(folder / "als_U.npy", sha, (folder / "als_U.npy").stat().st_size) == (store.object_uri(sha), False)


def test_loader_serves_a_store_model_from_its_cache(tmp_path: Path, database_url: str, memory_store: str) -> None:
    registry = open_registry(tmp_path, database_url, memory_store)
    folder = make_model_dir(tmp_path / "m1", seed=3)
    model_id = registry.register_model(str(folder), "als", {}, {"ndcg@10": 0.1}, {})
    registry.promote_model(model_id)
    cache_dir = tmp_path / "cache"
    with ModelLoader(registry.registry_path, database_url=database_url, artifact_cache_dir=cache_dir, mmap=True,
                     verify="full") as loader:
        U, V, metadata = loader.load_current_best()
        assert metadata["model_id"] == model_id
        np.testing.assert_array_equal(U, np.load(folder / "als_U.npy"))
        np.testing.assert_array_equal(V, np.load(folder / "als_V.npy"))
        assert isinstance(U, np.memmap)  # the cached object is read exactly as a local file
        assert loader.artifact_cache.downloads == 4
        assert not loader.reload_model()  # nothing changed: no download, no swap
        assert loader.artifact_cache.downloads == 4
    # A second loader on the same cache folder downloads nothing.
    with ModelLoader(registry.registry_path, database_url=database_url, artifact_cache_dir=cache_dir) as again:
        assert again.get_model_info()["model_id"] == model_id
        assert again.artifact_cache.downloads == 0


def test_local_registry_without_store_is_unchanged(tmp_path: Path, database_url: str) -> None:
    registry = open_registry(tmp_path, database_url, None)
    assert registry.artifact_store is None
    folder = make_model_dir(tmp_path / "m1")
    model_id = registry.register_model(str(folder), "als", {}, {"ndcg@10": 0.1}, {})
    assert registry.get_model(model_id)["path"] == str(folder)
    assert all(uri is None for _, uri in store_rows(registry, model_id).values())


def test_a_registry_keeps_its_store(tmp_path: Path, database_url: str, memory_store: str) -> None:
    open_registry(tmp_path, database_url, memory_store)
    from registry import cf_registry, db

    cf_registry.reset_registries()
    assert open_registry(tmp_path, database_url, None).artifact_store == memory_store
    with pytest.raises(InvalidArgumentError, match="artifact store is"):
        open_registry(tmp_path, database_url, "memory://elsewhere")
    db.forget_databases()


def test_cache_evicts_least_recently_used_unpinned_objects(tmp_path: Path, memory_store: str) -> None:
    store = ArtifactStore(memory_store)
    blobs = []
    for index in range(3):
        path = tmp_path / f"blob{index}"
        path.write_bytes(bytes([index]) * 1000)
        sha = sha256_of(path)
        uri, _ = store.upload(path, sha, 1000)
        blobs.append((uri, sha))
    cache = ArtifactCache(tmp_path / "cache", max_bytes=2500)
    cache.fetch(*blobs[0], 1000)
    cache.retain([])  # blob 0 no longer served by anyone
    time.sleep(0.01)
    cache.fetch(*blobs[1], 1000)
    time.sleep(0.01)
    cache.fetch(*blobs[2], 1000)  # over budget: the least recently used unpinned object goes
    present = {sha for sha, _, _ in cache.entries()}
    assert present == {blobs[1][1], blobs[2][1]}
    # Pinned objects stay even over budget.
    cache.max_bytes = 1000
    assert cache.evict() == 0 and len(cache.entries()) == 2
    cache.retain([blobs[2][1]])
    assert cache.evict() == 1 and {sha for sha, _, _ in cache.entries()} == {blobs[2][1]}


def test_cache_refuses_bytes_that_do_not_match_the_record(tmp_path: Path, memory_store: str) -> None:
    store = ArtifactStore(memory_store)
    path = tmp_path / "blob"
    path.write_bytes(b"x" * 100)
    uri, _ = store.upload(path, sha256_of(path), 100)
    cache = ArtifactCache(tmp_path / "cache")
    with pytest.raises(ChecksumMismatchError):
        cache.fetch(uri, "0" * 64, 100)
    assert cache.entries() == [] and list((cache.folder / "tmp").iterdir()) == []


# --------------------------------------------------------------------------- S3 (moto over HTTP)


def upload_folder(server, folder: Path, prefix: str) -> str:  # type: ignore[no-untyped-def]
    client = server.client()
    for file in sorted(folder.iterdir()):
        client.upload_file(str(file), "cfreg-test", f"{prefix}/{file.name}")
    return f"{server.bucket}/{prefix}"


def test_register_in_place_from_an_s3_folder(tmp_path: Path, database_url: str, s3) -> None:  # type: ignore[no-untyped-def]
    registry = open_registry(tmp_path, database_url, None)  # no store needed to register in place
    folder = make_model_dir(tmp_path / "local", seed=5, id_maps=True)
    uri = upload_folder(s3, folder, "raw/als1")
    model_id = registry.register_model(uri + "/", "als", {}, {"ndcg@10": 0.3}, {})
    assert registry.get_model(model_id)["path"] == uri
    rows = store_rows(registry, model_id)
    assert set(rows) == {p.name for p in folder.iterdir()}
    for name, (sha, object_uri) in rows.items():
        assert object_uri == f"{uri}/{name}" and sha == sha256_of(folder / name)
    registry.promote_model(model_id)
    with ModelLoader(registry.registry_path, database_url=database_url, artifact_cache_dir=tmp_path / "c") as loader:
        state = loader.get_current_model()
        assert state is not None and state.model_id == model_id and state.user_ids == [f"u{i}" for i in range(40)]

    # An invalid folder (V missing) is refused and nothing is recorded.
    broken = make_model_dir(tmp_path / "broken", seed=6)
    (broken / "als_V.npy").unlink()
    bad_uri = upload_folder(s3, broken, "raw/broken")
    with pytest.raises(InvalidArtifactsError, match="als_V.npy"):
        registry.register_model(bad_uri, "als", {}, {"ndcg@10": 0.3}, {})
    # A truncated .npy is caught from its header alone.
    truncated = make_model_dir(tmp_path / "trunc", seed=7)
    data = (truncated / "als_U.npy").read_bytes()
    (truncated / "als_U.npy").write_bytes(data[:-16])
    with pytest.raises(InvalidArtifactsError, match="truncated"):
        registry.register_model(upload_folder(s3, truncated, "raw/trunc"), "als", {}, {"ndcg@10": 0.3}, {})
    assert [m["model_id"] for m in registry.list_models().to_dict("records")] == [model_id]


def test_failed_upload_records_nothing(tmp_path: Path, database_url: str, s3) -> None:  # type: ignore[no-untyped-def]
    registry = open_registry(tmp_path, database_url, f"{s3.bucket}/store")
    s3.stop()
    try:
        with pytest.raises(ArtifactStoreError):
            registry.register_model(str(make_model_dir(tmp_path / "m")), "als", {}, {"ndcg@10": 0.1}, {})
    finally:
        s3.start()
    assert registry.list_models().empty


def test_interrupted_download_keeps_the_old_model_serving(tmp_path: Path, database_url: str, s3) -> None:  # type: ignore[no-untyped-def]
    registry = open_registry(tmp_path, database_url, f"{s3.bucket}/store")
    first = registry.register_model(str(make_model_dir(tmp_path / "a", seed=1)), "als", {}, {"ndcg@10": 0.1}, {})
    registry.promote_model(first)
    loader = ModelLoader(registry.registry_path, database_url=database_url, artifact_cache_dir=tmp_path / "cache")
    try:
        assert loader.get_model_info()["model_id"] == first
        second = registry.register_model(str(make_model_dir(tmp_path / "b", seed=2)), "als", {}, {"ndcg@10": 0.2}, {})
        registry.promote_model(second)
        s3.stop()
        try:
            with pytest.raises(ArtifactStoreError):
                loader.reload_model()
            assert loader.get_model_info()["model_id"] == first
            U, _ = loader.get_embeddings()
            np.testing.assert_array_equal(U, np.load(tmp_path / "a" / "als_U.npy"))
            assert loader.get_stats()["reload_failures"] == 1
        finally:
            s3.start()
        deadline = time.monotonic() + 10
        while True:  # retried after its backoff (0.5 s first)
            try:
                assert loader.reload_model()
                break
            except ArtifactStoreError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert loader.get_model_info()["model_id"] == second
    finally:
        loader.close()


def test_object_modified_behind_the_registry_is_refused(tmp_path: Path, database_url: str, s3) -> None:  # type: ignore[no-untyped-def]
    registry = open_registry(tmp_path, database_url, f"{s3.bucket}/store")
    first = registry.register_model(str(make_model_dir(tmp_path / "a", seed=1)), "als", {}, {"ndcg@10": 0.1}, {})
    registry.promote_model(first)
    cache_dir = tmp_path / "cache"
    with ModelLoader(registry.registry_path, database_url=database_url, artifact_cache_dir=cache_dir) as loader:
        second_folder = make_model_dir(tmp_path / "b", seed=2)
        second = registry.register_model(str(second_folder), "als", {}, {"ndcg@10": 0.2}, {})
        sha, uri = store_rows(registry, second)["als_U.npy"]
        other = np.load(make_model_dir(tmp_path / "c", seed=9) / "als_U.npy")
        tampered = tmp_path / "tampered.npy"
        np.save(tampered, other)  # same shape and size, other values
        s3.client().upload_file(str(tampered), "cfreg-test", uri.removeprefix("s3://cfreg-test/"))
        registry.promote_model(second)
        with pytest.raises(ChecksumMismatchError, match="changed behind the registry"):
            loader.reload_model()
        assert loader.get_model_info()["model_id"] == first
        assert not loader.artifact_cache.object_path(sha).exists()
        report = registry.verify_artifacts(second)
        assert [(p["file_name"], p["problem"]) for p in report["problems"]] == [("als_U.npy", "sha256 differs")]


def test_download_hashes_the_bytes_in_the_same_pass(tmp_path: Path, s3, memory_store: str) -> None:  # type: ignore[no-untyped-def]
    from registry.storage import store as store_module

    payload = np.random.default_rng(3).bytes(3 * store_module.STREAM_READ_BYTES + 17)  # several reads
    source = tmp_path / "payload"
    source.write_bytes(payload)
    expected = (hashlib.sha256(payload).hexdigest(), len(payload))
    for root in (f"{s3.bucket}/hashed", memory_store):  # a streamed GET (s3fs) and a buffered read
        uri, _ = ArtifactStore(root).upload(source, expected[0], expected[1])
        target = tmp_path / f"copy-{root.split(':')[0]}"
        assert store_module.download_hashed(uri, target) == expected
        assert target.read_bytes() == payload
        with pytest.raises(ArtifactStoreError, match="no such object"):
            store_module.download_hashed(f"{root}/missing", tmp_path / "missing")
    assert store_module._streams(store_module.filesystem(f"{s3.bucket}/hashed")[0])


def test_delete_removes_an_object_only_when_no_record_shares_it(tmp_path: Path, database_url: str, s3) -> None:  # type: ignore[no-untyped-def]
    registry = open_registry(tmp_path, database_url, f"{s3.bucket}/store")
    store = ArtifactStore(f"{s3.bucket}/store")
    from registry.storage.store import object_size

    one = registry.register_model(str(make_model_dir(tmp_path / "a", seed=1)), "als", {}, {"ndcg@10": 0.1}, {})
    two_folder = make_model_dir(tmp_path / "b", seed=1, params={"factors": 8, "regularization": 0.9})
    two = registry.register_model(str(two_folder), "als", {}, {"ndcg@10": 0.2}, {})
    rows_one, rows_two = store_rows(registry, one), store_rows(registry, two)
    shared = rows_one["als_U.npy"][0]
    own = rows_one["als_params.json"][0]
    assert shared == rows_two["als_U.npy"][0] and own != rows_two["als_params.json"][0]
    assert registry.delete_model(one, delete_files=True)
    assert object_size(store.object_uri(shared)) is not None  # model two still records it
    assert object_size(store.object_uri(own)) is None
    three = registry.register_model(str(make_model_dir(tmp_path / "z", seed=4)), "als", {}, {"ndcg@10": 0.3}, {})
    kept = {sha for sha, _ in store_rows(registry, three).values()}
    assert registry.delete_model(two, delete_files=True)
    assert kept & {sha for sha, _ in rows_two.values()}  # the metadata file is shared with model three
    for sha, uri in rows_two.values():
        assert (object_size(uri) is not None) == (sha in kept)


def _cache_worker(registry_path: str, database_url: str, cache_dir: str, env: dict[str, str], barrier, queue) -> None:  # type: ignore[no-untyped-def]
    import os

    os.environ.update(env)
    from registry.loader import ModelLoader

    barrier.wait()
    with ModelLoader(registry_path, database_url=database_url, artifact_cache_dir=cache_dir) as loader:
        queue.put((loader.get_model_info()["model_id"], loader.artifact_cache.downloads))


@pytest.mark.slow
def test_two_loader_processes_share_one_cache_and_download_once(tmp_path: Path, database_url: str, s3) -> None:  # type: ignore[no-untyped-def]
    registry = open_registry(tmp_path, database_url, f"{s3.bucket}/store")
    model_id = registry.register_model(str(make_model_dir(tmp_path / "a", seed=1, num_users=3000)), "als", {},
                                       {"ndcg@10": 0.1}, {})
    registry.promote_model(model_id)
    context = multiprocessing.get_context("spawn")
    barrier, queue = context.Barrier(2), context.Queue()
    args = (str(registry.registry_path), database_url, str(tmp_path / "shared-cache"), s3.env(), barrier, queue)
    workers = [context.Process(target=_cache_worker, args=args) for _ in range(2)]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(30)
    assert [served for served, _ in results] == [model_id, model_id]
    assert sum(downloads for _, downloads in results) == 4  # each of the 4 files downloaded once on the host


def test_push_moves_a_local_model_into_the_store(tmp_path: Path, database_url: str, memory_store: str) -> None:
    local = open_registry(tmp_path, database_url, None)
    folder = make_model_dir(tmp_path / "m", seed=2)
    model_id = local.register_model(str(folder), "als", {}, {"ndcg@10": 0.1}, {})
    local.promote_model(model_id)
    with pytest.raises(InvalidArgumentError, match="no artifact store"):
        local.push_artifacts(model_id)
    from registry import cf_registry

    cf_registry.reset_registries()
    registry = open_registry(tmp_path, database_url, memory_store)
    result = registry.push_artifacts(model_id)
    assert result["path"] == f"{memory_store}/models/{model_id}" and result["uploaded"] == 4
    assert registry.get_model(model_id)["path"] == result["path"]
    assert registry.push_artifacts(model_id)["uploaded"] == 0  # already in the store: nothing to do
    assert registry.verify_artifacts(model_id)["problems"] == []
    document = json.loads(registry.registry_path.read_text())
    assert document["models"][model_id]["path"] == result["path"]
    assert document["metadata"]["artifact_store"] == memory_store

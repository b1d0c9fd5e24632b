"""The artifact store beyond model registration: BERT embeddings, the CLI, diffs, comparisons, cleanup.

Quick tests use fsspec's ``memory://`` (in-process, so CLI runs share it); the slow one
runs against moto's S3 server over HTTP. Database tests run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import fsspec
import numpy as np
import pytest
from typer.testing import CliRunner

from factories import make_embeddings_dir, make_model_dir
from registry import BERTEmbeddingsRegistry, ModelRegistry, write_model_folder
from registry.cli import app
from registry.errors import ChecksumMismatchError, InvalidArtifactsError, ModelInUseError
from registry.maintenance import cleanup_old_models
from registry.storage import ArtifactStore
from registry.storage.store import object_size
from test_artifact_store import memory_store, s3  # noqa: F401 - fixtures

MEMORY = fsspec.filesystem("memory")


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def put_folder(folder: Path, uri: str) -> str:
    """Copy a local folder's files into ``uri`` (a memory:// folder) and return the URI."""
    for file in sorted(folder.iterdir()):
        MEMORY.pipe(f"{uri.removeprefix('memory://')}/{file.name}", file.read_bytes())
    return uri


def open_pair(tmp_path: Path, database_url: str, store: str | None) -> tuple[ModelRegistry, BERTEmbeddingsRegistry]:
    path = tmp_path / "reg" / "registry.json"
    registry = ModelRegistry(path, database_url=database_url, root=tmp_path, artifact_store=store)
    bert = BERTEmbeddingsRegistry(path.parent / "bert_registry.json", database_url=database_url, root=tmp_path,
                                  artifact_cache_dir=tmp_path / "cache")
    return registry, bert


def embeddings_row(bert: BERTEmbeddingsRegistry, version: str) -> dict[str, object]:
    return bert.get_embedding_file(version)


# --------------------------------------------------------------------------- embeddings in the store


def test_embeddings_are_uploaded_once_and_load_through_the_cache(tmp_path: Path, database_url: str,
                                                                 memory_store: str) -> None:  # noqa: F811
    registry, bert = open_pair(tmp_path, database_url, memory_store)
    folder = make_embeddings_dir(tmp_path / "emb" / "v1", num_items=30, dim=8, seed=1)
    expected = np.load(folder / "product_embeddings.npy")
    first = bert.register_embeddings(folder, "m", 30, 8)
    second = bert.register_embeddings(folder, "m", 30, 8, data_version="again")
    store = ArtifactStore(memory_store)
    sha = sha256_of(folder / "product_embeddings.npy")
    for version in (first, second):
        recorded = embeddings_row(bert, version)
        assert recorded["uri"] == store.object_uri(sha) and recorded["sha256"] == sha
        assert recorded["path"] == store.embeddings_uri(version)
        assert bert.get_embeddings(version)["path"] == store.embeddings_uri(version)  # type: ignore[index]
    objects = MEMORY.find(memory_store.removeprefix("memory://") + "/objects")
    assert len(objects) == 1 and objects[0].endswith(f"/objects/sha256/{sha[:2]}/{sha}")
    # The local folder can go: loading reads the verified object from the cache.
    (folder / "product_embeddings.npy").unlink()
    array, info = bert.load_embeddings(first)
    np.testing.assert_array_equal(array, expected)
    assert info["version"] == first
    assert (tmp_path / "cache" / "objects" / sha[:2] / sha).is_file()
    # Explicit re-registration of the same content is idempotent; the version's store path is recorded.
    again = make_embeddings_dir(tmp_path / "emb" / "v1", num_items=30, dim=8, seed=1)
    assert bert.register_embeddings(again, "m", 30, 8, version=first) == first
    assert registry.verify_artifacts() == {"checked": 2, "problems": []}


def test_changed_store_object_is_refused_on_load(tmp_path: Path, database_url: str, memory_store: str) -> None:  # noqa: F811
    _, bert = open_pair(tmp_path, database_url, memory_store)
    version = bert.register_embeddings(make_embeddings_dir(tmp_path / "e", num_items=10, dim=4), "m", 10, 4)
    uri = str(embeddings_row(bert, version)["uri"])
    data = bytearray(MEMORY.cat(uri.removeprefix("memory://")))
    data[-1] ^= 0xFF
    MEMORY.pipe(uri.removeprefix("memory://"), bytes(data))
    with pytest.raises(ChecksumMismatchError):
        bert.load_embeddings(version)
    assert not list((tmp_path / "cache" / "objects").glob("*/*"))  # nothing unverified is cached


def test_embeddings_folder_in_a_store_is_registered_in_place(tmp_path: Path, database_url: str,
                                                            memory_store: str) -> None:  # noqa: F811
    _, bert = open_pair(tmp_path, database_url, None)  # no store needed to register in place
    folder = make_embeddings_dir(tmp_path / "emb", num_items=12, dim=6, seed=3, file_name="item_embeddings.npy")
    uri = put_folder(folder, f"{memory_store}/lake/emb1")
    version = bert.register_embeddings(uri + "/", "m", 12, 6)
    recorded = embeddings_row(bert, version)
    assert recorded["path"] == uri and recorded["uri"] == f"{uri}/item_embeddings.npy"
    assert recorded["sha256"] == sha256_of(folder / "item_embeddings.npy")
    np.testing.assert_array_equal(bert.load_embeddings(version)[0], np.load(folder / "item_embeddings.npy"))
    assert bert.validate_embedding_files(uri) == (True, [])
    with pytest.raises(InvalidArtifactsError, match=r"\(12, 6\) does not match .* \(12, 7\)"):
        bert.register_embeddings(uri, "m", 12, 7)
    ok, problems = bert.validate_embedding_files(put_folder(tmp_path / "reg", f"{memory_store}/lake/empty"))
    assert not ok and f"{memory_store}/lake/empty" in problems[0]


def test_deleting_embeddings_removes_the_object_only_when_unreferenced(tmp_path: Path, database_url: str,
                                                                       memory_store: str) -> None:  # noqa: F811
    registry, bert = open_pair(tmp_path, database_url, memory_store)
    store = ArtifactStore(memory_store)
    folder = make_model_dir(tmp_path / "m", seed=2)
    model_id = registry.register_model(str(folder), "als", {}, {"ndcg@10": 0.1}, {})
    # Embeddings whose bytes are the model's V: one object, recorded by both.
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "product_embeddings.npy").write_bytes((folder / "als_V.npy").read_bytes())
    rows, dim = np.load(folder / "als_V.npy").shape
    keep = bert.register_embeddings(make_embeddings_dir(tmp_path / "current", num_items=3, dim=2), "m", 3, 2)
    one = bert.register_embeddings(shared, "m", rows, dim)
    two = bert.register_embeddings(shared, "m", rows, dim)
    own = bert.register_embeddings(make_embeddings_dir(tmp_path / "own", num_items=5, dim=3, seed=9), "m", 5, 3)
    assert bert.get_current_best()["version"] == keep  # type: ignore[index]
    v_uri = store.object_uri(sha256_of(folder / "als_V.npy"))
    own_uri = str(embeddings_row(bert, own)["uri"])
    assert bert.delete_embeddings(one, delete_files=True)
    assert object_size(v_uri) is not None  # version two and the model still record it
    assert bert.delete_embeddings(two, delete_files=True)
    assert object_size(v_uri) is not None  # the model still records it
    assert bert.delete_embeddings(own, delete_files=True)
    assert object_size(own_uri) is None
    assert registry.delete_model(model_id, delete_files=True)
    assert object_size(v_uri) is None  # nothing records it any more
    with pytest.raises(ModelInUseError):
        bert.delete_embeddings(keep, delete_files=True)


def test_a_record_of_the_same_bytes_elsewhere_does_not_keep_a_store_object(tmp_path: Path, database_url: str,
                                                                          memory_store: str) -> None:  # noqa: F811
    """An in-place model with the same bytes points at its own objects: the store's copy would be an orphan."""
    registry, _ = open_pair(tmp_path, database_url, memory_store)
    folder = make_model_dir(tmp_path / "m", seed=4)
    uploaded = registry.register_model(str(folder), "als", {}, {"ndcg@10": 0.1}, {})
    in_place = registry.register_model(put_folder(folder, f"{memory_store}/lake/m"), "als", {}, {"ndcg@10": 0.2}, {})
    store = ArtifactStore(memory_store)
    objects = [store.object_uri(sha256_of(path)) for path in sorted(folder.iterdir())]
    assert all(object_size(uri) is not None for uri in objects)
    assert registry.delete_model(uploaded, delete_files=True)
    assert [uri for uri in objects if object_size(uri) is not None] == []
    assert registry.verify_artifacts(in_place)["problems"] == []


# --------------------------------------------------------------------------- the CLI


def test_cli_registers_store_folders_in_place(tmp_path: Path, database_url: str, memory_store: str,  # noqa: F811
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    base = ["--registry", str(tmp_path / "reg" / "registry.json"), "--database-url", database_url, "--json"]
    model_folder = make_model_dir(tmp_path / "local" / "v7_20250101", seed=6)
    uri = put_folder(model_folder, f"{memory_store}/lake/als/v7_20250101")
    result = runner.invoke(app, [*base, "register", uri, "--metric", "ndcg@10=0.3"])
    assert result.exit_code == 0, result.output
    registered = json.loads(result.stdout)
    assert registered["model_id"] == "als_v7_20250101" and registered["path"] == uri
    shown = json.loads(runner.invoke(app, [*base, "show", "als_v7_20250101"]).stdout)
    assert shown["path"] == uri and shown["hyperparameters"] == json.loads((model_folder / "als_params.json").read_text())

    emb = put_folder(make_embeddings_dir(tmp_path / "emb", num_items=9, dim=5), f"{memory_store}/lake/emb")
    result = runner.invoke(app, [*base, "bert", "register", emb, "--model-name", "m"])  # shape read from the header
    assert result.exit_code == 0, result.output
    listed = json.loads(runner.invoke(app, [*base, "bert", "list"]).stdout)
    assert [(e["num_items"], e["embedding_dim"]) for e in listed] == [(9, 5)]
    missing = runner.invoke(app, [*base, "register", f"{memory_store}/lake/nothing-here"])
    assert missing.exit_code != 0 and "nothing-here" in missing.output


# --------------------------------------------------------------------------- diffs, comparisons, cleanup


def trained_folder(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    users = [f"u{i}" for i in range(30)]
    return write_model_folder(path, "als", rng.random((30, 6), dtype=np.float32), rng.random((20, 6), dtype=np.float32),
                              params={"factors": 6, "seed": seed}, user_ids=users,
                              interactions=(np.arange(30), np.arange(30) % 20),
                              user_eval=(users, {"ndcg@10": rng.random(30)}))


def test_diff_and_comparison_of_store_models_read_the_cache(tmp_path: Path, database_url: str, memory_store: str,  # noqa: F811
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CFREG_ARTIFACT_CACHE", str(tmp_path / "host-cache"))
    registry, _ = open_pair(tmp_path, database_url, memory_store)
    a = registry.register_model(str(trained_folder(tmp_path / "a", 1)), "als", metrics={"recall@10": 0.1})
    b = registry.register_model(str(trained_folder(tmp_path / "b", 2)), "als", metrics={"recall@10": 0.2})
    for name in ("a", "b"):  # the training folders are gone: only the store has the files
        for file in (tmp_path / name).iterdir():
            file.unlink()
    report = registry.diff_models(a, b)
    assert report.to_dict()["model_a"] == a and report.to_dict()["model_b"] == b
    comparison = registry.compare_metrics(a, b)
    assert comparison["n_users"] == 30
    assert len(list((tmp_path / "host-cache" / "objects").glob("*/*"))) > 0


def test_cleanup_removes_only_unshared_store_objects(tmp_path: Path, database_url: str, memory_store: str) -> None:  # noqa: F811
    registry, _ = open_pair(tmp_path, database_url, memory_store)
    store = ArtifactStore(memory_store)
    ids = []
    for seed in range(3):  # same U and V, different params: U/V objects are shared by all three
        folder = make_model_dir(tmp_path / f"m{seed}", seed=1, params={"factors": 8, "regularization": seed / 10})
        ids.append(registry.register_model(str(folder), "als", {}, {"ndcg@10": 0.1 + seed / 10}, {}))
    registry.promote_model(ids[-1])
    params = {i: store.object_uri(sha256_of(tmp_path / f"m{seed}" / "als_params.json")) for seed, i in enumerate(ids)}
    shared_u = store.object_uri(sha256_of(tmp_path / "m0" / "als_U.npy"))
    report = cleanup_old_models(registry, keep_last=1, delete_files=True)
    assert sorted(report.deleted) == sorted(ids[:2])
    assert [object_size(params[i]) is not None for i in ids] == [False, False, True]
    assert object_size(shared_u) is not None  # the kept model records it
    assert registry.verify_artifacts() == {"checked": 4, "problems": []}


# --------------------------------------------------------------------------- S3 (moto over HTTP)


@pytest.mark.slow
def test_embeddings_round_trip_through_s3(tmp_path: Path, database_url: str, s3) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    store_uri = f"{s3.bucket}/store"
    _, bert = open_pair(tmp_path, database_url, store_uri)
    folder = make_embeddings_dir(tmp_path / "emb", num_items=40, dim=16, seed=5)
    version = bert.register_embeddings(folder, "m", 40, 16)
    recorded = embeddings_row(bert, version)
    assert str(recorded["uri"]).startswith(f"{store_uri}/objects/")
    other = bert.register_embeddings(make_embeddings_dir(tmp_path / "emb2", num_items=4, dim=2), "m", 4, 2)
    bert.set_current_best(other)
    np.testing.assert_array_equal(bert.load_embeddings(version)[0], np.load(folder / "product_embeddings.npy"))
    client = s3.client()
    client.upload_file(str(folder / "product_embeddings.npy"), "cfreg-test", "lake/emb/product_embeddings.npy")
    in_place = bert.register_embeddings(f"{s3.bucket}/lake/emb", "m", 40, 16)
    assert embeddings_row(bert, in_place)["uri"] == f"{s3.bucket}/lake/emb/product_embeddings.npy"
    assert bert.delete_embeddings(version, delete_files=True)
    assert object_size(str(recorded["uri"])) is None
    assert object_size(f"{s3.bucket}/lake/emb/product_embeddings.npy") is not None


# --------------------------------------------------------------------------- the cache's warm path


def test_a_warm_cache_serves_without_lock_download_or_thread_pool(tmp_path: Path, database_url: str, memory_store: str,  # noqa: F811
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from registry.loader import ModelLoader
    from registry.storage import cache as cache_module
    from registry.storage import store as store_module

    registry, _ = open_pair(tmp_path, database_url, memory_store)
    model_id = registry.register_model(str(make_model_dir(tmp_path / "m", seed=8)), "als", {}, {"ndcg@10": 0.1}, {})
    registry.promote_model(model_id)
    cache_dir = tmp_path / "serve-cache"
    with ModelLoader(registry.registry_path, database_url=database_url, artifact_cache_dir=cache_dir) as loader:
        assert loader.artifact_cache.downloads == 4
    for lock in (cache_dir / "locks").glob("*.download*"):
        lock.unlink()

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the warm path must not download or start threads")

    monkeypatch.setattr(store_module, "download_hashed", refuse)
    monkeypatch.setattr(cache_module, "ThreadPoolExecutor", refuse)
    with ModelLoader(registry.registry_path, database_url=database_url, artifact_cache_dir=cache_dir) as again:
        assert again.get_model_info()["model_id"] == model_id and again.artifact_cache.downloads == 0
        assert len(again.artifact_cache.pinned()) == 4  # served objects stay pinned against eviction
    assert not list((cache_dir / "locks").glob("*.download*"))

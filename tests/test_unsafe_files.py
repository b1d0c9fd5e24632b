"""Files the registry must refuse to read: /dev/zero behind a symlink, FIFOs, oversize files,
symlinks leaving the model folder. Checked at registration and at load, on both backends.

An unbounded read of ``/dev/zero`` eats memory until ``MemoryError`` and opening a FIFO
without a writer blocks forever, so every test here runs under :func:`guard`: an alarm
turns a hang into a failure and an address-space limit turns a runaway read into a
quick ``MemoryError`` instead of starving the machine.
"""

from __future__ import annotations

import json
import os
import resource
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import workers
from factories import make_embeddings_dir
from registry import ImportFormatError, InvalidArtifactsError, ModelRegistry, UnsafeFileError, artifacts, fsio, legacy
from registry.bert_registry import BERTEmbeddingsRegistry
from registry.errors import ExportError
from registry.interactions import interactions_from_pairs, save_interactions
from registry.loader import ModelLoader
from registry.utils.backup import backup_registry, copy_to_backup, restore_registry

GUARD_SECONDS = 20
HEADROOM_BYTES = 1 << 30
KINDS = ["dev_zero", "fifo", "oversize", "outside_symlink"]


@pytest.fixture(autouse=True)
def guard() -> Iterator[None]:
    """Fail (not hang, not swap) when a read is unbounded or blocks."""

    def on_alarm(signum: int, frame: Any) -> None:
        raise TimeoutError(f"a file read blocked for {GUARD_SECONDS} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _virtual_memory() + HEADROOM_BYTES
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    signal.alarm(GUARD_SECONDS)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _virtual_memory() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmSize in /proc/self/status")


def make_hostile(path: Path, kind: str, outside: Path) -> None:
    """Replace ``path`` by a hostile entry of ``kind`` (``outside``: a folder beside the model)."""
    content = path.read_bytes() if path.is_file() else b"[]"
    path.unlink(missing_ok=True)
    if kind == "dev_zero":
        path.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "oversize":
        limit = artifacts.MAX_NPY_BYTES if path.suffix == ".npy" else artifacts.MAX_JSON_FILE_BYTES
        with open(path, "wb") as handle:
            handle.truncate(limit + 1)  # sparse: costs no disk space
    else:
        # The very same bytes, but outside the folder: only the confinement can refuse it.
        outside.mkdir(parents=True, exist_ok=True)
        (outside / path.name).write_bytes(content)
        path.symlink_to(outside / path.name)


def _expected(kind: str) -> str:
    return {"dev_zero": "outside its folder", "fifo": "FIFO", "oversize": "exceeds the limit",
            "outside_symlink": "outside its folder"}[kind]


# --------------------------------------------------------------------------- the helper


def test_open_regular_file_refuses_non_regular_and_oversize_files(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "zero").symlink_to("/dev/zero")
    (tmp_path / "big").write_bytes(b"x" * 11)
    (tmp_path / "ok").write_bytes(b"x" * 10)
    with pytest.raises(UnsafeFileError, match="FIFO"):
        artifacts.open_regular_file(tmp_path / "fifo", max_bytes=10)
    with pytest.raises(UnsafeFileError, match="character device"):
        artifacts.open_regular_file(tmp_path / "zero", max_bytes=10)
    with pytest.raises(UnsafeFileError, match="a directory"):
        artifacts.open_regular_file(tmp_path, max_bytes=10)
    with pytest.raises(UnsafeFileError, match="11 bytes exceeds the limit of 10"):
        artifacts.read_regular_file(tmp_path / "big", max_bytes=10)
    assert artifacts.read_regular_file(tmp_path / "ok", max_bytes=10) == b"x" * 10
    with pytest.raises(FileNotFoundError):
        artifacts.open_regular_file(tmp_path / "missing", max_bytes=10)


def test_within_allows_symlinks_inside_the_folder_only(tmp_path: Path) -> None:
    folder, outside = tmp_path / "model", tmp_path / "elsewhere"
    (folder / "sub").mkdir(parents=True)
    outside.mkdir()
    (folder / "sub" / "real.json").write_text("[1]")
    (outside / "real.json").write_text("[2]")
    (folder / "inner.json").symlink_to(folder / "sub" / "real.json")
    (folder / "outer.json").symlink_to(outside / "real.json")
    (folder / "dotdot.json").symlink_to(Path("..") / "elsewhere" / "real.json")
    assert artifacts.read_json_file(folder / "inner.json", within=folder) == [1]
    for name in ("outer.json", "dotdot.json"):
        with pytest.raises(UnsafeFileError, match="outside its folder"):
            artifacts.read_json_file(folder / name, within=folder)
        assert artifacts.read_json_file(folder / name) == [2]  # without a folder, symlinks are followed
    with pytest.raises(UnsafeFileError, match="outside its folder"):
        artifacts.open_regular_file(folder, max_bytes=10, within=folder)


def test_within_judges_the_real_paths_when_the_folder_itself_is_reached_through_a_symlink(tmp_path: Path) -> None:
    real_folder, outside = tmp_path / "real-model", tmp_path / "elsewhere"
    real_folder.mkdir()
    outside.mkdir()
    (real_folder / "ok.json").write_text("[1]")
    (outside / "real.json").write_text("[2]")
    (real_folder / "escape.json").symlink_to(Path("..") / "elsewhere" / "real.json")
    linked = tmp_path / "linked-model"
    linked.symlink_to(real_folder)
    assert artifacts.read_json_file(linked / "ok.json", within=linked) == [1]
    assert artifacts.read_json_file(tmp_path / "x" / ".." / "real-model" / "ok.json",
                                    within=tmp_path / "x" / ".." / "real-model") == [1]
    with pytest.raises(UnsafeFileError, match="outside its folder"):
        artifacts.read_json_file(linked / "escape.json", within=linked)
    with pytest.raises(UnsafeFileError, match="outside its folder"):
        artifacts.read_json_file(linked / ".." / "elsewhere" / "real.json", within=linked)


def test_a_folder_resolved_once_still_confines_every_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder, outside = tmp_path / "model", tmp_path / "elsewhere"
    (folder / "sub").mkdir(parents=True)
    outside.mkdir()
    for name in ("a.json", "b.json", "sub/c.json"):
        (folder / name).write_text("[1]")
    (outside / "real.json").write_text("[2]")
    (folder / "inner.json").symlink_to(folder / "sub" / "c.json")
    (folder / "outer.json").symlink_to(outside / "real.json")
    resolved: list[str] = []
    realpath = os.path.realpath

    def counting(path: Any, *args: Any, **kwargs: Any) -> str:
        resolved.append(os.fspath(path))
        return realpath(path, *args, **kwargs)

    monkeypatch.setattr(os.path, "realpath", counting)
    with fsio.folders_resolved_once():
        assert [artifacts.read_json_file(folder / name, within=folder) for name in ("a.json", "b.json")] == [[1], [1]]
        assert artifacts.read_json_file(folder / "inner.json", within=folder) == [1]
        with pytest.raises(UnsafeFileError, match="outside its folder"):
            artifacts.read_json_file(folder / "outer.json", within=folder)
    assert resolved.count(str(folder)) == 1, resolved  # the symlinked names are resolved themselves
    artifacts.read_json_file(folder / "a.json", within=folder)
    assert resolved.count(str(folder)) == 2  # outside the block: every open resolves the folder again


def test_a_file_that_grows_past_the_limit_while_read_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "grows.json"
    path.write_bytes(b"[1]")
    real_open = fsio.open_regular_file

    def open_then_grow(*args: Any, **kwargs: Any) -> Any:
        handle = real_open(*args, **kwargs)
        path.write_bytes(b"[" + b"1," * 20 + b"1]")  # grows after the size check on the open file
        return handle

    monkeypatch.setattr(fsio, "open_regular_file", open_then_grow)
    with pytest.raises(UnsafeFileError, match="grew beyond the limit of 10"):
        fsio.read_regular_file(path, max_bytes=10)


# --------------------------------------------------------------------------- CF models


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", ["als_user_ids.json", "als_params.json", "als_U.npy"])
def test_register_refuses_an_unsafe_file_quickly_and_changes_nothing(
    registry: ModelRegistry, model_dir: Any, tmp_path: Path, database_url: str, kind: str, name: str
) -> None:
    path = model_dir("als/hostile", id_maps=True)
    make_hostile(tmp_path / path / name, kind, tmp_path / "outside")
    before = workers.table_dump(database_url)
    with pytest.raises(InvalidArtifactsError, match=f"{name}: .*{_expected(kind)}"):
        registry.register_model(path, "als", {}, {"ndcg@10": 0.1}, {})
    ok, problems = registry.validate_artifacts(path, "als")
    assert not ok and any(name in problem and _expected(kind) in problem for problem in problems)
    assert workers.table_dump(database_url) == before


def test_register_accepts_a_symlink_that_stays_in_the_folder(registry: ModelRegistry, model_dir: Any,
                                                             tmp_path: Path) -> None:
    path = model_dir("als/linked", id_maps=True)
    folder = tmp_path / path
    (folder / "maps").mkdir()
    (folder / "als_user_ids.json").rename(folder / "maps" / "users.json")
    (folder / "als_user_ids.json").symlink_to(Path("maps") / "users.json")
    model_id = registry.register_model(path, "als", {}, {"ndcg@10": 0.1}, {})
    recorded = {f["file_name"] for f in registry.get_model_files(model_id)}
    assert "als_user_ids.json" in recorded


@pytest.mark.parametrize(("kind", "name", "verify"), [
    *((kind, name, "none") for kind in KINDS for name in ("als_user_ids.json", "als_metadata.json", "als_V.npy")),
    # With 'full' a FIFO, /dev/zero or oversize file already fails the recorded size;
    # the same bytes behind a symlink pass every checksum and only the confinement refuses them.
    ("outside_symlink", "als_user_ids.json", "full"), ("outside_symlink", "als_V.npy", "full"),
    ("outside_symlink", "als_interactions.npz", "none"), ("outside_symlink", "als_interactions.npz", "full"),
])
def test_loader_refuses_an_unsafe_file_swapped_in_after_registration(
    registry: ModelRegistry, model_dir: Any, tmp_path: Path, database_url: str, kind: str, name: str, verify: str
) -> None:
    path = model_dir("als/swapped", id_maps=True)
    if name == "als_interactions.npz":
        save_interactions(tmp_path / path / name, interactions_from_pairs([0, 1, 2], [3, 4, 5], 40, 25))
    model_id = registry.register_model(path, "als", {}, {"ndcg@10": 0.1}, {})
    make_hostile(tmp_path / path / name, kind, tmp_path / "outside")
    loader = ModelLoader(registry.registry_path, True, False, database_url=database_url, verify=verify)
    try:
        with pytest.raises(InvalidArtifactsError) as caught:
            loader.load_model(model_id)
    finally:
        loader.close()
    assert isinstance(caught.value, UnsafeFileError) and _expected(kind) in str(caught.value)


def test_loader_mmap_refuses_a_fifo_and_an_outside_symlink(registry: ModelRegistry, model_dir: Any,
                                                           tmp_path: Path, database_url: str) -> None:
    for kind, name in (("outside_symlink", "als_U.npy"), ("fifo", "als_V.npy")):
        path = model_dir(f"als/mapped_{kind}")
        model_id = registry.register_model(path, "als", {}, {"ndcg@10": 0.1}, {})
        make_hostile(tmp_path / path / name, kind, tmp_path / "outside")
        loader = ModelLoader(registry.registry_path, True, False, database_url=database_url, verify="none", mmap=True)
        try:
            with pytest.raises(UnsafeFileError, match=_expected(kind)):
                loader.load_model(model_id)
        finally:
            loader.close()


# --------------------------------------------------------------------------- BERT embeddings


@pytest.fixture
def bert(registry_path: Path, database_url: str, tmp_path: Path) -> BERTEmbeddingsRegistry:
    return BERTEmbeddingsRegistry(registry_path.parent / "bert_registry.json", database_url=database_url, root=tmp_path)


@pytest.mark.parametrize("kind", KINDS)
def test_bert_register_and_load_refuse_unsafe_embedding_files(
    bert: BERTEmbeddingsRegistry, tmp_path: Path, database_url: str, kind: str
) -> None:
    good = make_embeddings_dir(tmp_path / "artifacts/cf/bert/good", num_items=10, dim=4)
    version = bert.register_embeddings(good, "m", 10, 4)
    hostile = make_embeddings_dir(tmp_path / "artifacts/cf/bert/hostile", num_items=10, dim=4)
    make_hostile(hostile / "product_embeddings.npy", kind, tmp_path / "outside")
    before = workers.table_dump(database_url)
    with pytest.raises(InvalidArtifactsError, match=f"product_embeddings.npy: .*{_expected(kind)}"):
        bert.register_embeddings(hostile, "m", 10, 4)
    assert workers.table_dump(database_url) == before
    make_hostile(good / "product_embeddings.npy", kind, tmp_path / "outside2")
    with pytest.raises(UnsafeFileError, match=_expected(kind)):
        bert.load_embeddings(version)


# --------------------------------------------------------------------------- legacy files and backups


@pytest.mark.parametrize("kind", ["dev_zero", "fifo", "oversize"])
def test_legacy_json_readers_refuse_unsafe_files(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "registry.json"
    if kind == "dev_zero":
        path.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.write_text(json.dumps({"models": {}}) + " " * 100)
    with pytest.raises(ImportFormatError, match="not a regular file|exceeds the limit"):
        legacy.read_json_strict(path, max_bytes=64)


def test_a_symlinked_legacy_file_is_followed(tmp_path: Path) -> None:
    (tmp_path / "real.json").write_text('{"models": {}}')
    (tmp_path / "registry.json").symlink_to(tmp_path / "real.json")
    assert legacy.read_json_strict(tmp_path / "registry.json") == {"models": {}}


@pytest.mark.parametrize("suffix", [".json", ".db"])
@pytest.mark.parametrize("kind", ["dev_zero", "fifo"])
def test_restore_refuses_a_backup_that_is_not_a_regular_file(
    registry: ModelRegistry, model_dir: Any, tmp_path: Path, database_url: str, kind: str, suffix: str
) -> None:
    registry.register_model(model_dir("als/v1"), "als", {}, {"ndcg@10": 0.1}, {}, version="v1")
    backup = tmp_path / f"registry_backup_hostile{suffix}"
    if kind == "dev_zero":
        backup.symlink_to("/dev/zero")
    else:
        os.mkfifo(backup)
    before = workers.table_dump(database_url)
    with pytest.raises(ImportFormatError, match="not a regular file"):
        restore_registry(backup, registry.registry_path, create_current_backup=False, database_url=database_url)
    assert workers.table_dump(database_url) == before


def test_restore_refuses_an_oversize_sqlite_backup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from registry import restore as restore_module

    registry = ModelRegistry(tmp_path / "sqlite" / "registry.json", root=tmp_path)
    db_backup = Path(backup_registry(tmp_path / "sqlite" / "registry.db"))
    monkeypatch.setattr(restore_module, "MAX_BACKUP_BYTES", db_backup.stat().st_size - 1)
    with pytest.raises(ImportFormatError, match="exceeds the limit"):
        restore_registry(db_backup, registry.registry_path, create_current_backup=False)
    monkeypatch.setattr(restore_module, "MAX_BACKUP_BYTES", db_backup.stat().st_size)
    assert restore_registry(db_backup, registry.registry_path, create_current_backup=False) is True


def test_copy_to_backup_refuses_a_fifo(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "registry.json")
    with pytest.raises(ExportError, match="FIFO"):
        copy_to_backup(tmp_path / "registry.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["registry.json"]


def test_fingerprint_sizes_come_from_the_file_hashed(tmp_path: Path) -> None:
    path = tmp_path / "a.npy"
    np.save(path, np.arange(6, dtype=np.float32))
    print_ = artifacts.fingerprint(path, within=tmp_path)
    assert print_.size_bytes == path.stat().st_size
    assert print_.sha256 == artifacts.sha256_file(path)
    with pytest.raises(InvalidArtifactsError, match="could not be read"):
        artifacts.fingerprint(tmp_path / "gone" / "x.npy", within=tmp_path)


def test_an_export_generation_sidecar_that_is_a_fifo_reads_as_unknown(tmp_path: Path) -> None:
    from registry import export

    target = tmp_path / "registry.json"
    target.write_text("{}")
    os.mkfifo(tmp_path / ".registry.json.generation")
    assert export.file_generation(target) == -1
    (tmp_path / ".registry.json.generation").unlink()
    (tmp_path / ".registry.json.generation").write_text("7\n")
    assert export.file_generation(target) == 7


def test_a_file_that_grows_within_the_limit_while_read_is_read_to_its_end(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "grows.json"
    path.write_bytes(b"[1]")
    real_fstat = os.fstat
    calls: list[int] = []

    def fstat_then_grow(fd: int) -> os.stat_result:
        info = real_fstat(fd)
        calls.append(fd)
        if len(calls) % 2 == 0:  # the file grows after its size was taken for the read
            with open(path, "ab") as handle:
                handle.write(b"," * 3)
        return info

    monkeypatch.setattr(fsio.os, "fstat", fstat_then_grow)
    assert fsio.read_regular_file(path, max_bytes=10) == b"[1],,,"
    with pytest.raises(UnsafeFileError, match="grew beyond the limit of 5"):
        path.write_bytes(b"[1]")
        fsio.read_regular_file(path, max_bytes=5)

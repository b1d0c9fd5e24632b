"""A folder registered again unchanged is not re-read; any change to it is validated again."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from registry import ModelRegistry, artifacts, validated_folders
from registry.errors import InvalidArtifactsError

AN_HOUR_AGO_NS = time.time_ns() - 3600 * 10**9


def age(folder: Path, mtime_ns: int = AN_HOUR_AGO_NS) -> None:
    """Make the folder and its entries older than the racy-mtime window."""
    for path in [*folder.iterdir(), folder]:
        os.utime(path, ns=(mtime_ns, mtime_ns), follow_symlinks=False)


@pytest.fixture
def counted_checks(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    validated_folders.forget_all()
    calls: list[Path] = []
    real = artifacts.check_model_folder

    def counting(path: Path, model_type: str) -> Any:
        calls.append(path)
        return real(path, model_type)

    monkeypatch.setattr(validated_folders, "check_model_folder", counting)
    return calls


def test_an_unchanged_folder_is_validated_once(registry: ModelRegistry, model_dir: Any, tmp_path: Path,
                                               counted_checks: list[Path]) -> None:
    folder = model_dir("als/base")
    age(tmp_path / folder)
    for version in ("a", "b", "c"):
        registry.register_model(folder, "als", {}, {"ndcg@10": 0.1}, {}, version=version)
    assert len(counted_checks) == 1
    assert [m for m in registry.list_models()["model_id"]] == ["als_c", "als_b", "als_a"]


def test_a_changed_file_is_validated_again(registry: ModelRegistry, model_dir: Any, tmp_path: Path,
                                           counted_checks: list[Path]) -> None:
    folder = model_dir("als/base")
    path = tmp_path / folder
    age(path)
    registry.register_model(folder, "als", {}, {"ndcg@10": 0.1}, {}, version="a")
    # Broken in place, then aged again (a different mtime: what a copy from elsewhere would carry).
    (path / "als_params.json").write_text(json.dumps([1, 2]))
    age(path, AN_HOUR_AGO_NS - 10**9)
    with pytest.raises(InvalidArtifactsError, match="als_params.json must hold a JSON object"):
        registry.register_model(folder, "als", {}, {"ndcg@10": 0.1}, {}, version="b")
    assert len(counted_checks) == 2 and list(registry.list_models()["model_id"]) == ["als_a"]


def test_a_new_file_or_a_fresh_mtime_is_validated_again(registry: ModelRegistry, model_dir: Any, tmp_path: Path,
                                                         counted_checks: list[Path]) -> None:
    folder = model_dir("als/base")
    path = tmp_path / folder
    age(path)
    registry.register_model(folder, "als", {}, {"ndcg@10": 0.1}, {}, version="a")
    (path / "notes.txt").write_text("added later")
    age(path)
    registry.register_model(folder, "als", {}, {"ndcg@10": 0.1}, {}, version="b")
    os.utime(path / "als_U.npy")  # just written: inside the racy window, never remembered
    registry.register_model(folder, "als", {}, {"ndcg@10": 0.1}, {}, version="c")
    registry.register_model(folder, "als", {}, {"ndcg@10": 0.1}, {}, version="d")
    assert len(counted_checks) == 4


def test_a_folder_with_a_symlink_is_never_remembered(registry: ModelRegistry, model_dir: Any, tmp_path: Path,
                                                     counted_checks: list[Path]) -> None:
    folder = model_dir("als/base")
    path = tmp_path / folder
    (path / "als_params.json").rename(path / "params_real.json")
    (path / "als_params.json").symlink_to("params_real.json")
    age(path)
    registry.register_model(folder, "als", {}, {"ndcg@10": 0.1}, {}, version="a")
    registry.register_model(folder, "als", {}, {"ndcg@10": 0.1}, {}, version="b")
    assert len(counted_checks) == 2


def test_content_rewritten_at_the_same_size_is_hashed_again(registry: ModelRegistry, model_dir: Any, tmp_path: Path) -> None:
    # The first registration hashes the aged files and remembers them; a same-size rewrite with
    # another (aged) mtime must not be taken for the remembered content.
    folder = model_dir("als/base")
    path = tmp_path / folder
    age(path)
    registry.register_model(folder, "als", {}, {"ndcg@10": 0.1}, {}, version="a")
    before = {f["file_name"]: f["sha256"] for f in registry.get_model_files("als_a")}
    params = path / "als_params.json"
    text = params.read_text()
    params.write_text(text.replace("0", "1") if "0" in text else text.upper())
    assert len(params.read_text()) == len(text)
    age(path, AN_HOUR_AGO_NS - 10**9)
    registry.register_model(folder, "als", {}, {"ndcg@10": 0.1}, {}, version="b")
    after = {f["file_name"]: f["sha256"] for f in registry.get_model_files("als_b")}
    assert after["als_params.json"] != before["als_params.json"]
    assert {k: v for k, v in after.items() if k != "als_params.json"} == {k: v for k, v in before.items() if k != "als_params.json"}


def test_a_hashed_file_swapped_for_a_symlink_outside_the_folder_is_refused(
        registry: ModelRegistry, model_dir: Any, tmp_path: Path) -> None:
    # The file's hash is remembered (keyed by device, inode, size, mtime); the same inode reached
    # through a symlink that leaves the folder must still be refused, not served from that memory.
    folder = model_dir("als/base")
    path = tmp_path / folder
    age(path)
    registry.register_model(folder, "als", {}, {"ndcg@10": 0.1}, {}, version="a")
    outside = tmp_path / "outside_U.npy"
    (path / "als_U.npy").rename(outside)
    (path / "als_U.npy").symlink_to(outside)
    age(path)
    with pytest.raises(InvalidArtifactsError, match="outside its folder"):
        registry.register_model(folder, "als", {}, {"ndcg@10": 0.1}, {}, version="b")
    assert [m["model_id"] for m in registry.list_model_records()] == ["als_a"]


def test_the_hash_memory_answers_only_for_a_regular_file_directly_in_its_folder(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    blob = folder / "sub" / "blob.bin"
    blob.write_bytes(b"x" * 1000)
    age(folder / "sub")
    hashed = artifacts.fingerprint(blob, within=folder)
    assert artifacts.hashed_here(blob, within=folder / "sub") == hashed
    # "sub" could be a symlink leading out of the model folder: lstat of the file would not show it.
    assert artifacts.hashed_here(blob, within=folder) is None
    (folder / "link.bin").symlink_to(blob)
    assert artifacts.hashed_here(folder / "link.bin", within=folder) is None

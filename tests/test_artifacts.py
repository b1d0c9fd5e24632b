"""Artifact validation, safe ``.npy`` reading, checksums and confined deletion (registry/artifacts.py).

The first half exercises the helpers directly on real files; the second half shows
that every bad artifact folder is refused by ``register_model`` with an
``InvalidArtifactsError`` that names the problem, and that nothing is stored.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.lib import format as npformat

from factories import make_model_dir
from registry import (
    REQUIRED_MODEL_FILES,
    ChecksumMismatchError,
    InvalidArgumentError,
    InvalidArtifactsError,
    ModelRegistry,
    RegistryError,
    register_model_type,
    validate_artifacts,
)
from registry.artifacts import (
    check_deletable,
    fingerprint,
    load_npy,
    load_npy_verified,
    read_json_file,
    read_npy_header,
    safe_delete_tree,
)
from registry.npy_header import read_array_header
from registry_snapshot import snapshot


def write_raw_npy(path: Path, shape: tuple[int, ...], descr: str = "<f4", data: bytes = b"", version: int = 1) -> Path:
    """A ``.npy`` whose header says ``shape``/``descr`` followed by exactly ``data``."""
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    with open(path, "wb") as handle:
        if version == 1:
            npformat.write_array_header_1_0(handle, header)
        else:
            npformat.write_array_header_2_0(handle, header)
        handle.write(data)
    return path


class _Sentinel:
    """Unpickling this creates a file: proof that a pickle payload was executed."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.target, "w"))


# ---------------------------------------------------------------------- .npy headers


def test_header_of_a_valid_array(tmp_path: Path) -> None:
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.save(tmp_path / "a.npy", array)
    header = read_npy_header(tmp_path / "a.npy")
    assert header.shape == (3, 4) and header.dtype == np.float32 and not header.fortran_order
    assert header.data_offset + array.nbytes == header.file_size == (tmp_path / "a.npy").stat().st_size


def test_header_of_format_2_and_fortran_order(tmp_path: Path) -> None:
    write_raw_npy(tmp_path / "v2.npy", (2, 3), "<f8", b"\0" * 48, version=2)
    assert read_npy_header(tmp_path / "v2.npy").shape == (2, 3)
    np.save(tmp_path / "f.npy", np.asfortranarray(np.ones((5, 2), dtype=np.float16)))
    assert read_npy_header(tmp_path / "f.npy").fortran_order


def _raw_header(text: bytes, *, declared: int | None = None) -> bytes:
    padded = text + b" " * (63 - (len(text) + 10) % 64) + b"\n"
    length = len(padded) if declared is None else declared
    return b"\x93NUMPY\x01\x00" + length.to_bytes(2, "little") + padded


@pytest.mark.parametrize("shape", [(), (0,), (7,), (3, 4), (26_000, 128), (2, 3, 5)])
@pytest.mark.parametrize("dtype", ["<f4", ">f8", "<i8", "|u1", "<f2", "<c8", "|b1"])
@pytest.mark.parametrize("fortran", [False, True])
def test_headers_read_as_numpy_reads_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shape: tuple[int, ...],
                                          dtype: str, fortran: bool) -> None:
    path = tmp_path / "a.npy"
    with path.open("wb") as handle:
        npformat.write_array_header_1_0(handle, {"descr": dtype, "fortran_order": fortran, "shape": shape})
        position = handle.tell()
    with path.open("rb") as handle:
        npformat.read_magic(handle)
        expected = npformat.read_array_header_1_0(handle)
    # numpy's own layout is parsed without numpy's (literal_eval) reader: the point of the module.
    monkeypatch.setattr(npformat, "read_array_header_1_0", lambda *_: pytest.fail("parsed by numpy"))
    with path.open("rb") as handle:
        assert read_array_header(handle) == expected and handle.tell() == position


@pytest.mark.parametrize(
    "text",
    [
        b"{'descr':'<f4','fortran_order':False,'shape':(3,4)}",  # another writer's spacing
        b"{'shape': (3, 4), 'fortran_order': False, 'descr': '<f4', }",  # another key order
        b"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (3, 4), }",  # structured dtype
    ],
)
def test_headers_numpy_would_write_otherwise_are_read_by_numpy(tmp_path: Path, text: bytes) -> None:
    path = tmp_path / "a.npy"
    path.write_bytes(_raw_header(text))
    with path.open("rb") as handle:
        npformat.read_magic(handle)
        expected = npformat.read_array_header_1_0(handle)
    with path.open("rb") as handle:
        assert read_array_header(handle) == expected and handle.tell() == len(path.read_bytes())


@pytest.mark.parametrize(
    "content",
    [
        _raw_header(b"{'descr': '<f3', 'fortran_order': False, 'shape': (3, 4), }"),  # no such dtype
        _raw_header(b"{'descr': '<f4', 'fortran_order': False, 'shape': (3), }"),  # not a tuple
        _raw_header(b"{'descr': '<f4', 'fortran_order': False, 'shape': (03,), }"),  # leading zero
        _raw_header(b"{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }" + b" " * 10_100),  # too long
        _raw_header(b"{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", declared=200),  # cut short
    ],
)
def test_headers_numpy_refuses_are_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "a.npy"
    path.write_bytes(content)
    with path.open("rb") as handle, pytest.raises((ValueError, SyntaxError, EOFError)):
        npformat.read_magic(handle)
        npformat.read_array_header_1_0(handle)
    with path.open("rb") as handle, pytest.raises((ValueError, SyntaxError, EOFError)):
        read_array_header(handle)
    with pytest.raises(InvalidArtifactsError, match="not a readable .npy"):
        read_npy_header(path)


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda p: np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True), "dtype object"),
        (lambda p: p.write_bytes(pickle.dumps([1, 2, 3])), "not a readable .npy"),
        (lambda p: p.write_bytes(b""), "not a readable .npy"),
        (lambda p: p.write_bytes(os.urandom(300)), "not a readable .npy"),
        (lambda p: np.savez(p, a=np.ones(3)), "not a readable .npy"),
        (lambda p: write_raw_npy(p, (10**6, 10**6)), "header describes"),
        (lambda p: write_raw_npy(p, (2**32, 2**32)), "header describes"),  # int64 product wraps to 0
        (lambda p: write_raw_npy(p, (-2, -2), data=b"\0" * 16), "negative"),
        (lambda p: write_raw_npy(p, (4, 4), data=b"\0" * 60), "header describes"),  # truncated
        (lambda p: write_raw_npy(p, (4, 4), data=b"\0" * 70), "header describes"),  # trailing junk
        (lambda p: write_raw_npy(p, (2, 2), "<c8", b"\0" * 32), "complex64"),
        (lambda p: write_raw_npy(p, (2, 2), "<U3", b"\0" * 48), "<U3"),
        (lambda p: write_raw_npy(p, (2, 2), "|b1", b"\0" * 4), "bool"),
        (lambda p: p.write_bytes(b"\x93NUMPY\x01\x00" + (20_000).to_bytes(2, "little") + b" " * 20_000), "not a readable .npy"),
    ],
)
def test_hostile_npy_files_are_refused_by_header(tmp_path: Path, build: Callable[[Path], Any], fragment: str) -> None:
    path = tmp_path / "x.npy"
    build(path)
    if not path.exists():  # np.savez appends .npz
        (tmp_path / "x.npy.npz").rename(path)
    with pytest.raises(InvalidArtifactsError, match=fragment.replace("(", r"\(")):
        read_npy_header(path)
    with pytest.raises(InvalidArtifactsError):
        load_npy(path)


def test_pickle_payload_is_never_executed(tmp_path: Path) -> None:
    sentinel = tmp_path / "pwned"
    path = tmp_path / "als_U.npy"
    np.save(path, np.array([_Sentinel(str(sentinel))], dtype=object), allow_pickle=True)
    with pytest.raises(InvalidArtifactsError, match="object"):
        load_npy(path)
    with pytest.raises(InvalidArtifactsError):
        load_npy_verified(path, "0" * 64)
    path.write_bytes(pickle.dumps(_Sentinel(str(sentinel))))
    with pytest.raises(InvalidArtifactsError):
        load_npy(path)
    assert not sentinel.exists()


def test_load_npy_and_verified_load_return_the_array(tmp_path: Path) -> None:
    array = np.random.default_rng(0).standard_normal((50, 7)).astype(np.float32)
    path = tmp_path / "a.npy"
    np.save(path, array)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    np.testing.assert_array_equal(load_npy(path), array)
    np.testing.assert_array_equal(load_npy(path, mmap=True), array)
    np.testing.assert_array_equal(load_npy_verified(path, digest, chunk=64), array)
    fortran = np.asfortranarray(array)
    np.save(path, fortran)
    np.testing.assert_array_equal(load_npy_verified(path, hashlib.sha256(path.read_bytes()).hexdigest()), array)


def test_verified_load_detects_a_flipped_byte(tmp_path: Path) -> None:
    path = tmp_path / "a.npy"
    np.save(path, np.ones((10, 4), dtype=np.float32))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatchError, match=digest):
        load_npy_verified(path, digest)


def test_size_limit_is_checked_before_loading(tmp_path: Path) -> None:
    path = tmp_path / "a.npy"
    np.save(path, np.ones((100, 100), dtype=np.float32))
    with pytest.raises(InvalidArtifactsError, match="exceeds the limit"):
        load_npy(path, max_bytes=1000)
    with pytest.raises(InvalidArtifactsError, match="exceeds the limit"):
        load_npy_verified(path, "0" * 64, max_bytes=1000)


# ---------------------------------------------------------------------- JSON files


@pytest.mark.parametrize(
    "content",
    [b"{not json", b'{"a": NaN}', b'{"a": Infinity}', b"\xff\xfe{}", b"[" * 100_000 + b"]" * 100_000, b""],
)
def test_unreadable_json_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.json"
    path.write_bytes(content)
    with pytest.raises(InvalidArtifactsError, match="unreadable JSON"):
        read_json_file(path)


def test_json_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"a": "x" * 200}))
    with pytest.raises(InvalidArtifactsError, match="exceeds the limit"):
        read_json_file(path, max_bytes=100)
    assert read_json_file(path)["a"] == "x" * 200


# ---------------------------------------------------------------------- model folders


def test_validate_artifacts_accepts_a_good_folder_of_every_type(tmp_path: Path) -> None:
    for model_type in ("als", "bpr", "bert_als"):
        folder = make_model_dir(tmp_path / model_type, model_type, id_maps=True)
        assert validate_artifacts(folder, model_type) == (True, [])


def test_validate_artifacts_unknown_type_reports_like_the_original(tmp_path: Path) -> None:
    assert validate_artifacts(tmp_path, "svd") == (False, ["Unknown model type: svd"])


def test_validate_artifacts_lists_every_missing_file(tmp_path: Path) -> None:
    ok, problems = validate_artifacts(tmp_path, "bpr")
    assert not ok
    assert problems == [f"missing required file {name}" for name in REQUIRED_MODEL_FILES["bpr"]]


def test_required_files_match_the_doc() -> None:
    assert REQUIRED_MODEL_FILES["als"] == ["als_U.npy", "als_V.npy", "als_params.json", "als_metadata.json"]
    assert REQUIRED_MODEL_FILES["bpr"] == ["bpr_U.npy", "bpr_V.npy", "bpr_params.json", "bpr_metadata.json"]
    assert REQUIRED_MODEL_FILES["bert_als"] == [
        "bert_als_U.npy", "bert_als_V.npy", "bert_als_params.json", "bert_als_metadata.json"
    ]


def test_register_model_type_adds_a_type(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(REQUIRED_MODEL_FILES, "ease", [])  # restored after the test
    files = register_model_type("ease")
    assert files == ["ease_U.npy", "ease_V.npy", "ease_params.json", "ease_metadata.json"]
    folder = make_model_dir(tmp_path / "ease", "ease")
    assert validate_artifacts(folder, "ease") == (True, [])
    custom = register_model_type("ease", ["ease_U.npy", "ease_V.npy", "ease_extra.txt"])
    assert validate_artifacts(folder, "ease") == (False, ["missing required file ease_extra.txt"])
    assert custom == REQUIRED_MODEL_FILES["ease"]


@pytest.mark.parametrize(
    ("model_type", "files"),
    [("a b", None), ("ease", ["ease_U.npy"]), ("ease", ["U.npy", "V.npy"])],
)
def test_register_model_type_refuses_bad_definitions(
    model_type: str, files: list[str] | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(REQUIRED_MODEL_FILES, "ease", [])
    with pytest.raises(InvalidArgumentError):
        register_model_type(model_type, files)


# ---------------------------------------------------------------------- checksums


def test_fingerprint_matches_sha256_and_size(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc" * 1000)
    print_ = fingerprint(path)
    assert print_.sha256 == hashlib.sha256(b"abc" * 1000).hexdigest() and print_.size_bytes == 3000


def test_fingerprint_of_a_just_written_file_is_rehashed_after_a_same_size_rewrite(tmp_path: Path) -> None:
    # Coarse filesystem clocks can give a rewritten file its old mtime; simulate that with utime.
    path = tmp_path / "f.bin"
    path.write_bytes(b"A" * 64)
    first = fingerprint(path)
    stat = path.stat()
    path.write_bytes(b"B" * 64)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    second = fingerprint(path, {"f.bin": first})
    assert second.sha256 == hashlib.sha256(b"B" * 64).hexdigest()
    assert first.mtime_ns == -1  # too recent to be trusted later


def test_fingerprint_reuses_a_known_digest_for_an_old_unchanged_file(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"A" * 64)
    hour_ago = path.stat().st_mtime_ns - 3600 * 10**9
    os.utime(path, ns=(hour_ago, hour_ago))
    first = fingerprint(path)
    assert first.mtime_ns == hour_ago
    assert fingerprint(path, {"f.bin": first}) is first  # not hashed again


# ---------------------------------------------------------------------- confinement


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "root"
    (root / "models" / "m1").mkdir(parents=True)
    (root / "models" / "m1" / "U.npy").write_bytes(b"u")
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    (root / "link").symlink_to(victim, target_is_directory=True)
    return {"root": root, "victim": victim}


@pytest.mark.parametrize(
    "relative",
    ["../victim", "models/m1/../../../victim", "link", "link/sub", ".", "models/..", "", "a\x00b"],
)
def test_check_deletable_refuses_escapes(tree: dict[str, Path], relative: str) -> None:
    root = tree["root"]
    target = root / relative if relative else Path("")
    with pytest.raises(InvalidArgumentError, match="refusing to delete"):
        check_deletable(target, root)
    with pytest.raises(InvalidArgumentError):
        safe_delete_tree(target, root)
    assert (tree["victim"] / "precious.txt").read_text() == "keep me"
    assert root.exists()


def test_check_deletable_refuses_absolute_paths_outside_and_the_root(tree: dict[str, Path]) -> None:
    for target in (tree["victim"], Path("/etc"), tree["root"], tree["root"].parent):
        with pytest.raises(InvalidArgumentError):
            safe_delete_tree(target, tree["root"])
    assert (tree["victim"] / "precious.txt").exists()


def test_safe_delete_tree_removes_exactly_one_directory(tree: dict[str, Path]) -> None:
    root = tree["root"]
    (root / "models" / "m2").mkdir()
    (root / "models" / "m1" / "escape").symlink_to(tree["victim"], target_is_directory=True)
    assert safe_delete_tree(root / "models" / "m1", root) is True
    assert not (root / "models" / "m1").exists()
    assert (root / "models" / "m2").exists() and (tree["victim"] / "precious.txt").exists()
    assert safe_delete_tree(root / "models" / "m1", root) is False  # already gone


def _swap_parent_for_symlink(parent: Path, outside: Path) -> None:
    """Replace ``parent`` with a symlink to ``outside`` (holding a same-named child)."""
    parent.rename(parent.with_name(parent.name + "_moved"))
    parent.symlink_to(outside, target_is_directory=True)


def test_safe_delete_tree_refuses_a_parent_swapped_for_a_symlink_after_the_check(tree: dict[str, Path]) -> None:
    """Race: between check_deletable and the deletion, models/ becomes a symlink to an outside folder."""
    root, victim = tree["root"], tree["victim"]
    (victim / "m1").mkdir()
    (victim / "m1" / "precious.txt").write_text("keep me too")
    checked = check_deletable(root / "models" / "m1", root)
    _swap_parent_for_symlink(root / "models", victim)
    with pytest.raises(InvalidArgumentError, match="changed after it was checked"):
        safe_delete_tree(checked, root)
    assert (victim / "m1" / "precious.txt").read_text() == "keep me too"
    assert (victim / "precious.txt").read_text() == "keep me"
    assert (root / "models_moved" / "m1" / "U.npy").exists()


def test_safe_delete_tree_refuses_a_directory_replaced_after_the_check(tree: dict[str, Path]) -> None:
    root = tree["root"]
    checked = check_deletable(root / "models" / "m1", root)
    (root / "models" / "m1").rename(root / "models" / "m1_old")
    (root / "models" / "m1").mkdir()
    (root / "models" / "m1" / "new.txt").write_text("new")
    with pytest.raises(InvalidArgumentError, match="changed after it was checked"):
        safe_delete_tree(checked, root)
    assert (root / "models" / "m1" / "new.txt").read_text() == "new"
    assert (root / "models" / "m1_old" / "U.npy").exists()
    assert safe_delete_tree(check_deletable(root / "models" / "m1", root), root) is True  # a fresh check may delete it


def test_delete_model_does_not_follow_a_parent_swapped_after_the_check(
    registry: ModelRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """delete_model(delete_files=True): the swap happens after the transaction, before the rmtree."""
    from registry import deletion

    make_model_dir(tmp_path / "artifacts/cf/als/v1")
    make_model_dir(tmp_path / "artifacts/cf/als/v2")
    registry.register_model("artifacts/cf/als/v1", "als", {}, {"ndcg@10": 0.1}, {}, version="v1")
    registry.register_model("artifacts/cf/als/v2", "als", {}, {"ndcg@10": 0.2}, {}, version="v2")
    registry.select_best_model(metric="ndcg@10")
    outside = tmp_path / "outside"
    (outside / "v1").mkdir(parents=True)
    (outside / "v1" / "precious.txt").write_text("not yours")
    real_delete = deletion.safe_delete_tree

    def swap_then_delete(target: Any, root: Path) -> bool:
        _swap_parent_for_symlink(tmp_path / "artifacts/cf/als", outside)
        return real_delete(target, root)

    monkeypatch.setattr(deletion, "safe_delete_tree", swap_then_delete)
    with pytest.raises(RegistryError, match="files remain.*changed after it was checked"):
        registry.delete_model("als_v1", delete_files=True)
    assert (outside / "v1" / "precious.txt").read_text() == "not yours"
    assert (tmp_path / "artifacts/cf/als_moved/v1/als_U.npy").exists()
    assert "als_v1" not in registry.models  # the row was deleted in the committed transaction


def test_safe_delete_tree_refuses_a_file(tree: dict[str, Path]) -> None:
    with pytest.raises(InvalidArgumentError, match="not a directory"):
        safe_delete_tree(tree["root"] / "models" / "m1" / "U.npy", tree["root"])


# ---------------------------------------------------------------------- through register_model


def _set_array(name: str, array: Any, **kwargs: Any) -> Callable[[Path], None]:
    return lambda folder: np.save(folder / name, array, **kwargs)


def _write(name: str, content: bytes | str) -> Callable[[Path], None]:
    def build(folder: Path) -> None:
        target = folder / name
        target.write_bytes(content) if isinstance(content, bytes) else target.write_text(content)
    return build


def _metadata(**values: Any) -> Callable[[Path], None]:
    def build(folder: Path) -> None:
        meta = json.loads((folder / "als_metadata.json").read_text())
        meta.update(values)
        (folder / "als_metadata.json").write_text(json.dumps(meta))
    return build


def _truncate(name: str) -> Callable[[Path], None]:
    def build(folder: Path) -> None:
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: len(data) // 2])
    return build


def _pickled(folder: Path) -> None:
    (folder / "als_U.npy").write_bytes(pickle.dumps(_Sentinel(str(folder.parent / "pwned"))))


BAD_FOLDERS: dict[str, tuple[Callable[[Path], Any], str]] = {
    "missing file": (lambda f: (f / "als_params.json").unlink(), "missing required file als_params.json"),
    "missing U": (lambda f: (f / "als_U.npy").unlink(), "missing required file als_U.npy"),
    "3-D array": (_set_array("als_U.npy", np.zeros((40, 8, 2), dtype=np.float32)), "must be 2-D"),
    "1-D array": (_set_array("als_V.npy", np.zeros(25, dtype=np.float32)), "must be 2-D"),
    "mismatched factors": (_set_array("als_V.npy", np.zeros((25, 6), dtype=np.float32)), "factor counts differ"),
    "object dtype": (_set_array("als_U.npy", np.array([{}] * 4, dtype=object).reshape(2, 2), allow_pickle=True),
                     "dtype object refused"),
    "pickled .npy": (_pickled, "not a readable .npy"),
    "truncated .npy": (_truncate("als_V.npy"), "truncated"),
    "huge header": (lambda f: write_raw_npy(f / "als_U.npy", (10**6, 10**6)), "header describes"),
    "string dtype": (lambda f: write_raw_npy(f / "als_U.npy", (40, 8), "<U1", b"\0" * 1280), "<U1"),
    "empty .npy": (_write("als_V.npy", b""), "not a readable .npy"),
    "unreadable params JSON": (_write("als_params.json", "{factors: 8"), "unreadable JSON"),
    "NaN in metadata JSON": (_write("als_metadata.json", '{"num_users": NaN}'), "unreadable JSON"),
    "params not an object": (_write("als_params.json", "[1, 2]"), "als_params.json must hold a JSON object"),
    "invalid UTF-8": (_write("als_metadata.json", b'{"a": "\xff"}'), "unreadable JSON"),
    "metadata num_users": (_metadata(num_users=41), "num_users=41 but the arrays give 40"),
    "metadata num_items": (_metadata(num_items=24), "num_items=24 but the arrays give 25"),
    "metadata factors": (_metadata(factors=16), "factors=16 but the arrays give 8"),
    "id map wrong length": (_write("als_user_ids.json", json.dumps([f"u{i}" for i in range(39)])),
                            "has 39 ids but the matrix has 40 rows"),
    "id map duplicates": (_write("als_item_ids.json", json.dumps(["i0"] * 25)), "duplicate ids"),
    "id map not a list": (_write("als_item_ids.json", json.dumps({"i0": 0})), "must be a JSON list"),
    "id map unreadable": (_write("als_user_ids.json", "[1, 2"), "unreadable JSON"),
}


def test_every_bad_artifact_folder_is_refused_and_nothing_is_stored(
    registry: ModelRegistry, tmp_path: Path, subtests
) -> None:
    make_model_dir(tmp_path / "artifacts/cf/als/good")
    registry.register_model("artifacts/cf/als/good", "als", {}, {"ndcg@10": 0.1}, {}, version="good")
    for index, (case, (spoil, fragment)) in enumerate(BAD_FOLDERS.items()):
        with subtests.test(case=case):
            relative = f"artifacts/cf/als/bad{index}"
            folder = make_model_dir(tmp_path / relative)
            spoil(folder)
            before = snapshot(registry, tmp_path)
            with pytest.raises(InvalidArtifactsError) as caught:
                registry.register_model(relative, "als", {}, {"ndcg@10": 0.9}, {})
            assert isinstance(caught.value, ValueError)
            assert fragment in str(caught.value)
            assert relative.split("/")[-1] in str(caught.value)  # names the folder
            assert snapshot(registry, tmp_path) == before
            ok, problems = registry.validate_artifacts(relative, "als")
            assert not ok and any(fragment in problem for problem in problems)
    assert not (tmp_path / "artifacts/cf/als/pwned").exists()
    assert list(registry.list_models()["model_id"]) == ["als_good"]


def test_a_path_that_is_not_a_folder_is_refused(registry: ModelRegistry, tmp_path: Path) -> None:
    (tmp_path / "artifacts/cf").mkdir(parents=True, exist_ok=True)
    (tmp_path / "artifacts/cf/file.txt").write_text("x")
    os.mkfifo(tmp_path / "artifacts/cf/fifo")
    for path in ("artifacts/cf/nowhere", "artifacts/cf/file.txt", "artifacts/cf/fifo", "/dev/zero"):
        with pytest.raises(InvalidArtifactsError, match="is not a directory"):
            registry.register_model(path, "als", {}, {}, {})
    assert registry.list_models().empty


def test_a_required_file_that_is_a_directory_is_reported(registry: ModelRegistry, tmp_path: Path) -> None:
    folder = make_model_dir(tmp_path / "artifacts/cf/als/odd")
    (folder / "als_V.npy").unlink()
    (folder / "als_V.npy").mkdir()
    with pytest.raises(InvalidArtifactsError, match="als_V.npy: is a directory, not a regular file"):
        registry.register_model("artifacts/cf/als/odd", "als", {}, {}, {})
    assert registry.list_models().empty

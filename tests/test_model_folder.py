"""``registry.write_model_folder``: arrays and dicts in, a folder ``register_model`` accepts out."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import registry
from registry import (
    InvalidArgumentError,
    ModelExistsError,
    ModelRegistry,
    validate_artifacts,
    write_model_folder,
)
from registry.interactions import interactions_from_pairs, read_interactions

RNG = np.random.default_rng(0)
U = RNG.standard_normal((6, 3)).astype(np.float32)
V = RNG.standard_normal((5, 3)).astype(np.float32)


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_is_exported_lazily_from_the_package() -> None:
    assert "write_model_folder" in registry.__all__ and registry.write_model_folder is write_model_folder


def test_writes_a_folder_that_registers_and_serves(registry: ModelRegistry, tmp_path: Path) -> None:
    relative = "artifacts/cf/als/v1"
    users, items = [f"u{i}" for i in range(6)], [f"i{i}" for i in range(5)]
    folder = write_model_folder(tmp_path / relative, "als", U, V, params={"factors": 3, "alpha": np.float32(2.0)},
                                metadata={"note": "hello"}, user_ids=users, item_ids=items,
                                interactions=([0, 0, 5], [1, 4, 2]))
    assert folder == tmp_path / relative
    assert _listing(folder) == ["als_U.npy", "als_V.npy", "als_interactions.npz", "als_item_ids.json",
                                "als_metadata.json", "als_params.json", "als_user_ids.json"]
    assert validate_artifacts(folder, "als") == (True, [])
    np.testing.assert_array_equal(np.load(folder / "als_U.npy"), U)
    assert json.loads((folder / "als_params.json").read_text()) == {"factors": 3, "alpha": 2.0}
    meta = json.loads((folder / "als_metadata.json").read_text())
    assert meta == {"num_users": 6, "num_items": 5, "factors": 3, "model_type": "als", "note": "hello"}
    assert json.loads((folder / "als_user_ids.json").read_text()) == users
    seen = read_interactions(folder / "als_interactions.npz", 6, 5)
    assert sorted(seen.seen(0).tolist()) == [1, 4] and seen.seen(5).tolist() == [2]

    model_id = registry.register_model(relative, "als", {"factors": 3}, {"ndcg@10": 0.1}, {})
    files = {entry["file_name"] for entry in registry.get_model_files(model_id)}
    assert "als_interactions.npz" in files and "als_user_ids.json" in files
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_minimal_folder_and_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    folder = write_model_folder("models/bpr/v1", "bpr", U, V, params={})
    assert folder == Path("models/bpr/v1")  # kept relative, as register_model stores it
    assert _listing(tmp_path / folder) == ["bpr_U.npy", "bpr_V.npy", "bpr_metadata.json", "bpr_params.json"]
    assert validate_artifacts(folder, "bpr") == (True, [])


def test_an_interactions_object_is_accepted(tmp_path: Path) -> None:
    seen = interactions_from_pairs([1, 2], [3, 0], 6, 5)
    folder = write_model_folder(tmp_path / "m", "als", U, V, params={}, interactions=seen)
    assert read_interactions(folder / "als_interactions.npz", 6, 5).seen(1).tolist() == [3]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model_type": "nope"}, "Unknown model_type"),
        ({"model_type": "../x"}, "model_type"),
        ({"U": U[:, :2]}, "factors"),
        ({"U": U[0]}, "2-D"),
        ({"U": np.array([["a", "b"]])}, "numbers"),
        ({"U": np.array([[1.0, np.nan, 0.0]] * 6)}, "NaN"),
        ({"U": "U.npy"}, "2-D numeric"),
        ({"params": ["factors"]}, "params must be a dict"),
        ({"params": {"x": float("inf")}}, "non-finite"),
        ({"params": {"x": object()}}, "JSON"),
        ({"metadata": {"num_users": 7}}, "num_users"),
        ({"metadata": {"model_type": "bpr"}}, "model_type"),
        ({"user_ids": ["a"] * 6}, "duplicate"),
        ({"user_ids": ["a", "b"]}, "2 ids but U has 6 rows"),
        ({"item_ids": [1.5] * 5}, "strings or integers"),
        ({"item_ids": "abcde"}, "sequence"),
        ({"interactions": ([0], [5])}, "item indices"),
        ({"interactions": ([6], [0])}, "user indices"),
        ({"interactions": ([0, 1], [0])}, "user indices but 1 item"),
        ({"interactions": ([0.5], [1])}, "integers"),
        ({"interactions": interactions_from_pairs([0], [0], 2, 5)}, "2 users"),
        ({"interactions": [[0], [1], [2]]}, "pair"),
        ({"user_eval": (["u1", "u2"], {"ndcg@10": [0.1]})}, "1 values for 2 users"),
        ({"user_eval": (["u1", "u2"], {"ndcg@10": [0.1, float("nan")]})}, "NaN"),
        ({"user_eval": (["u1", "u1"], {"ndcg@10": [0.1, 0.2]})}, "duplicate"),
        ({"user_eval": (["u1"], {"bad name!": [0.1]})}, "invalid metric name"),
        ({"user_eval": {"ndcg@10": [0.1]}}, "pair"),
    ],
)
def test_bad_input_writes_nothing(tmp_path: Path, kwargs: dict, message: str) -> None:
    arguments = {"model_type": "als", "U": U, "V": V, "params": {"factors": 3}, **kwargs}
    model_type = arguments.pop("model_type")
    with pytest.raises(InvalidArgumentError, match=message):
        write_model_folder(tmp_path / "m", model_type, arguments.pop("U"), arguments.pop("V"), **arguments)
    assert _listing(tmp_path) == []


def test_per_user_evaluation_is_written_and_drives_compare_metrics(registry: ModelRegistry, tmp_path: Path) -> None:
    users = [f"u{i}" for i in range(200)]
    base = np.random.default_rng(1).uniform(0.1, 0.3, size=200)
    ids = []
    for version, values in (("v1", base), ("v2", base + 0.05)):
        folder = write_model_folder(tmp_path / version, "als", U, V, params={"factors": 3},
                                    user_eval=(users, {"ndcg@10": values}))
        assert "als_user_eval.npz" in _listing(folder)
        ids.append(registry.register_model(str(folder), "als", {"factors": 3}, {"ndcg@10": float(values.mean())}, {},
                                           version=version))
    result = registry.compare_metrics(ids[0], ids[1], metric="ndcg@10")
    assert result["n_users"] == 200 and result["difference"] == pytest.approx(0.05)


def test_existing_model_files_need_overwrite(tmp_path: Path) -> None:
    folder = write_model_folder(tmp_path / "m", "als", U, V, params={}, interactions=([0], [0]), user_ids=list(range(6)))
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(ModelExistsError, match="overwrite=True"):
        write_model_folder(folder, "als", V, V, params={})
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before

    write_model_folder(folder, "als", V, V, params={"factors": 3}, overwrite=True)
    assert _listing(folder) == ["als_U.npy", "als_V.npy", "als_metadata.json", "als_params.json"]  # stale optional files gone
    np.testing.assert_array_equal(np.load(folder / "als_U.npy"), V)
    assert validate_artifacts(folder, "als") == (True, [])


def test_a_folder_of_other_files_or_empty_is_filled(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    write_model_folder(tmp_path / "empty", "als", U, V, params={})
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "README").write_text("notes")
    write_model_folder(tmp_path / "other", "bpr", U, V, params={})
    assert "README" in _listing(tmp_path / "other") and validate_artifacts(tmp_path / "other", "bpr")[0]


def test_a_file_in_the_way_is_refused(tmp_path: Path) -> None:
    (tmp_path / "m").write_text("x")
    with pytest.raises(InvalidArgumentError, match="not a directory"):
        write_model_folder(tmp_path / "m", "als", U, V, params={})


def test_a_failed_write_leaves_no_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import registry.model_folder as module

    calls = []

    def failing(path: Path, write) -> None:  # type: ignore[no-untyped-def]
        calls.append(path.name)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real(path, write)

    real = module.atomic_write_bytes
    monkeypatch.setattr(module, "atomic_write_bytes", failing)
    with pytest.raises(OSError):
        write_model_folder(tmp_path / "m", "als", U, V, params={})
    assert _listing(tmp_path) == []


def test_new_files_keep_default_permissions(tmp_path: Path) -> None:
    folder = write_model_folder(tmp_path / "m", "als", U, V, params={})
    umask = os.umask(0)
    os.umask(umask)
    assert (folder / "als_U.npy").stat().st_mode & 0o777 == 0o666 & ~umask

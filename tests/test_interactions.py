"""The optional training-interactions file: format, validation, and recording at registration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from registry.errors import InvalidArtifactsError
from registry.interactions import interactions_file, interactions_from_pairs, read_interactions, save_interactions


def test_round_trip_keeps_each_users_items(tmp_path: Path) -> None:
    built = interactions_from_pairs([0, 0, 2, 2, 2], [3, 1, 0, 0, 4], num_users=3, num_items=5)
    path = save_interactions(tmp_path / interactions_file("als"), built)
    read = read_interactions(path, num_users=3, num_items=5)
    assert sorted(read.seen(0).tolist()) == [1, 3]
    assert read.seen(1).tolist() == []
    assert sorted(read.seen(2).tolist()) == [0, 4]  # the duplicate (2, 0) counted once
    assert read.item_counts().tolist() == [1, 1, 0, 1, 1]


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"indptr": np.array([0, 1, 2]), "indices": np.array([0, 1])}, "num_users"),  # 2 users, expected 3
        ({"indptr": np.array([0, 2, 1, 2]), "indices": np.array([0, 1])}, "rise"),
        ({"indptr": np.array([0, 1, 1, 2]), "indices": np.array([0, 9])}, "item indices"),
        ({"indptr": np.array([0, 1, 1, 2]), "indices": np.array([0.0, 1.0])}, "integer"),
        ({"indptr": np.array([0, 1, 1, 2])}, "expected arrays"),
    ],
)
def test_inconsistent_files_are_refused(tmp_path: Path, arrays: dict, message: str) -> None:
    path = tmp_path / "als_interactions.npz"
    np.savez(path, **arrays)
    with pytest.raises(InvalidArtifactsError, match=message):
        read_interactions(path, num_users=3, num_items=5)


def test_pickled_payload_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "als_interactions.npz"
    np.savez(path, indptr=np.array([0, 1, 1, 2]), indices=np.array([object(), 1], dtype=object))
    with pytest.raises(InvalidArtifactsError):
        read_interactions(path, num_users=3, num_items=5)


def test_registration_records_and_validates_the_file(registry, model_dir, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    relative = model_dir("als/with_seen")
    folder = tmp_path / relative
    num_users = np.load(folder / "als_U.npy").shape[0]
    save_interactions(folder / "als_interactions.npz", interactions_from_pairs([0, 1], [0, 1], num_users, 2))
    model_id = registry.register_model(relative, "als", version="v1")
    assert "als_interactions.npz" in {f["file_name"] for f in registry.get_model_files(model_id)}

    broken = model_dir("als/bad_seen")
    np.savez(tmp_path / broken / "als_interactions.npz", indptr=np.array([0, 5]), indices=np.arange(5))
    before = registry.list_models()
    with pytest.raises(InvalidArtifactsError, match="interactions"):
        registry.register_model(broken, "als", version="v2")
    assert registry.list_models().equals(before)


def test_a_fifo_or_an_escaping_symlink_is_refused_without_blocking(tmp_path: Path) -> None:
    import os

    folder = tmp_path / "model"
    folder.mkdir()
    fifo = folder / "als_interactions.npz"
    os.mkfifo(fifo)  # opening it for reading would block without O_NONBLOCK
    with pytest.raises(InvalidArtifactsError, match="FIFO"):
        read_interactions(fifo, num_users=3, num_items=5, within=folder)
    fifo.unlink()
    outside = save_interactions(tmp_path / "elsewhere.npz", interactions_from_pairs([0], [0], 3, 5))
    (folder / "als_interactions.npz").symlink_to(outside)
    with pytest.raises(InvalidArtifactsError, match="outside"):
        read_interactions(folder / "als_interactions.npz", num_users=3, num_items=5, within=folder)

"""Training interactions in the loader and the service: loaded with the model, verified like
its other files, and the user's seen items left out of recommendations by default."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

from registry import (
    ChecksumMismatchError,
    ModelLoader,
    ModelRegistry,
    write_model_folder,
)
from registry.interactions import interactions_from_pairs, save_interactions
from registry.serving import create_app

RNG = np.random.default_rng(3)
U = RNG.standard_normal((10, 4)).astype(np.float32)
V = RNG.standard_normal((12, 4)).astype(np.float32)
USERS = [f"u{i}" for i in range(10)]
ITEMS = [f"i{i}" for i in range(12)]


def _top(user: int, k: int) -> list[int]:
    return np.argsort(-(V @ U[user]), kind="stable")[:k].tolist()


# user 2 saw its own three best items
SEEN_ROWS = [2, 2, 2, 5]
SEEN_ITEMS = [*_top(2, 3), 0]


@pytest.fixture
def with_seen(registry: ModelRegistry, tmp_path: Path) -> str:
    write_model_folder(tmp_path / "artifacts/cf/als/seen", "als", U, V, params={}, user_ids=USERS, item_ids=ITEMS,
                       interactions=(SEEN_ROWS, SEEN_ITEMS))
    model_id = registry.register_model("artifacts/cf/als/seen", "als", {}, {"ndcg@10": 0.3}, {})
    registry.select_best_model()
    return model_id


def test_loader_reads_the_interactions_and_excludes_seen_items(registry: ModelRegistry, database_url: str,
                                                               with_seen: str) -> None:
    loader = ModelLoader(registry.registry_path, database_url=database_url)
    state = loader.get_current_model()
    assert state is not None and state.interactions is not None
    assert sorted(state.seen_items(2).tolist()) == sorted(_top(2, 3))
    assert not state.interactions.indices.flags.writeable  # shared by every reader: read-only

    items, _ = state.recommend(2, k=4)
    assert items.tolist() == [i for i in _top(2, 7) if i not in SEEN_ITEMS][:4]
    items, _ = state.recommend(2, k=4, exclude_seen=False)
    assert items.tolist() == _top(2, 4)
    ids, _ = state.recommend_for_user("u2", k=12)
    assert len(ids) == 9 and not {ITEMS[i] for i in _top(2, 3)} & set(ids)
    assert len(state.recommend_for_user("u2", k=12, exclude_seen=False)[0]) == 12
    assert state.recommend(3, k=12)[0].size == 12  # a user without interactions loses nothing
    assert state.nbytes == U.nbytes + V.nbytes + state.interactions.indptr.nbytes + state.interactions.indices.nbytes
    loader.close()


def test_service_excludes_seen_items_unless_asked(registry: ModelRegistry, database_url: str, with_seen: str) -> None:
    with TestClient(create_app(registry.registry_path, database_url=database_url)) as client:
        body = client.get("/recommend/u2", params={"k": 3}).json()
        assert body["seen_excluded"] is True
        assert [item["item_id"] for item in body["items"]] == [ITEMS[i] for i in _top(2, 6) if i not in SEEN_ITEMS][:3]
        body = client.get("/recommend/u2", params={"k": 3, "include_seen": "true"}).json()
        assert body["seen_excluded"] is False
        assert [item["item_id"] for item in body["items"]] == [ITEMS[i] for i in _top(2, 3)]
        assert client.get("/model").json()["has_interactions"] is True


def test_without_an_interactions_file_nothing_is_excluded(registry: ModelRegistry, database_url: str, model_dir) -> None:  # type: ignore[no-untyped-def]
    registry.register_model(model_dir("als/plain", id_maps=True), "als", {}, {"ndcg@10": 0.2}, {})
    registry.select_best_model()
    with TestClient(create_app(registry.registry_path, database_url=database_url)) as client:
        body = client.get("/recommend/u2", params={"k": 25}).json()
        assert body["seen_excluded"] is False and len(body["items"]) == 25


@pytest.mark.parametrize("verify", ["size", "full"])
def test_an_altered_interactions_file_is_refused(registry: ModelRegistry, database_url: str, with_seen: str,
                                                 tmp_path: Path, verify: str) -> None:
    path = tmp_path / "artifacts/cf/als/seen/als_interactions.npz"
    if verify == "size":  # another user's items: a different size
        save_interactions(path, interactions_from_pairs([1, 1, 1, 1, 1], [0, 1, 2, 3, 4], 10, 12))
    else:  # same size, other content: only the sha256 sees it
        data = bytearray(path.read_bytes())
        position = data.rfind(bytes([SEEN_ITEMS[0]]))
        data[position] = (data[position] + 1) % 12
        path.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatchError, match="als_interactions.npz"):
        ModelLoader(registry.registry_path, database_url=database_url, verify=verify)


def test_an_interactions_file_added_after_registration_is_not_used(registry: ModelRegistry, database_url: str,
                                                                   model_dir, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    registry.register_model(model_dir("als/late", id_maps=True), "als", {}, {"ndcg@10": 0.2}, {})
    registry.select_best_model()
    save_interactions(tmp_path / "artifacts/cf/als/late/als_interactions.npz",
                      interactions_from_pairs([0, 1], [0, 1], 40, 25))
    loader = ModelLoader(registry.registry_path, database_url=database_url)
    assert loader.get_current_model().interactions is None
    loader.close()


def test_a_reload_picks_up_the_interactions_of_a_new_best(registry: ModelRegistry, database_url: str,
                                                          model_dir, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    registry.register_model(model_dir("als/plain", id_maps=True), "als", {}, {"ndcg@10": 0.2}, {})
    registry.select_best_model()
    loader = ModelLoader(registry.registry_path, database_url=database_url)
    assert loader.get_current_model().interactions is None
    write_model_folder(tmp_path / "artifacts/cf/als/seen", "als", U, V, params={}, user_ids=USERS, item_ids=ITEMS,
                       interactions=(SEEN_ROWS, SEEN_ITEMS))
    registry.register_model("artifacts/cf/als/seen", "als", {}, {"ndcg@10": 0.3}, {})
    registry.select_best_model()
    assert loader.reload_model() is True
    assert loader.get_current_model().interactions is not None
    loader.close()

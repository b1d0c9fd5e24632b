"""Repeated reads come from memory until any process commits a change, never stale after it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from registry import ModelRegistry


@pytest.fixture
def two(registry: ModelRegistry, registry_path: Path, database_url: str, model_dir: Any, tmp_path: Path):  # type: ignore[no-untyped-def]
    """The test's registry with two models, and a second handle on it (another writer)."""
    folder = model_dir("als/base")
    for version, value in (("a", 0.1), ("b", 0.2)):
        registry.register_model(folder, "als", {"factors": 8}, {"ndcg@10": value}, {}, version=version)
    other = ModelRegistry(registry_path, database_url=database_url, root=tmp_path, export_json=False)
    return registry, other, folder


def test_repeated_reads_are_served_without_querying_again(two, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    registry, _, _ = two
    first = (registry.list_models(), registry.get_registry_stats(), registry.get_model("als_a"))
    calls: list[Any] = []
    real_read = registry.context.read
    monkeypatch.setattr(registry.context, "read", lambda work: calls.append(work) or real_read(work))
    again = (registry.list_models(), registry.get_registry_stats(), registry.get_model("als_a"))
    assert calls == []  # only the held-connection stamp was read
    assert again[0].equals(first[0]) and again[1:] == first[1:]


def test_a_change_by_another_handle_is_seen_at_once(two) -> None:  # type: ignore[no-untyped-def]
    registry, other, folder = two
    assert registry.get_current_best() is None and list(registry.list_models()["model_id"]) == ["als_b", "als_a"]
    other.register_model(folder, "als", {}, {"ndcg@10": 0.9}, {}, version="c")
    other.select_best_model(metric="ndcg@10")
    assert registry.get_current_best()["model_id"] == "als_c"
    assert list(registry.list_models()["model_id"]) == ["als_c", "als_b", "als_a"]
    assert registry.get_registry_stats()["total_models"] == 3
    other.set_tag("als_a", "team", "search")
    assert registry.get_model("als_a")["tags"] == {"team": "search"}


def test_a_change_by_another_process_is_seen_at_once(two, registry_path: Path, database_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    registry, _, _ = two
    assert registry.get_model("als_a")["status"] == "active"
    code = ("import sys; from registry import ModelRegistry; "
            "ModelRegistry(sys.argv[1], database_url=sys.argv[2], root=sys.argv[3], export_json=False).archive_model('als_a')")
    subprocess.run([sys.executable, "-c", code, str(registry_path), database_url, str(tmp_path)], check=True, cwd=tmp_path)
    assert registry.get_model("als_a")["status"] == "archived"
    assert registry.get_registry_stats()["archived_models"] == 1


def test_callers_get_their_own_copies(two) -> None:  # type: ignore[no-untyped-def]
    registry, _, _ = two
    registry.get_model("als_a")["metrics"]["ndcg@10"] = 99.0
    registry.get_registry_stats()["by_type"].clear()
    frame = registry.list_models()
    frame.loc[0, "model_id"] = "edited"
    assert registry.get_model("als_a")["metrics"]["ndcg@10"] == 0.1
    assert registry.get_registry_stats()["by_type"] == {"als": 2}
    assert list(registry.list_models()["model_id"]) == ["als_b", "als_a"]


def test_arguments_are_part_of_the_key_and_errors_are_not_kept(two) -> None:  # type: ignore[no-untyped-def]
    registry, _, _ = two
    assert list(registry.list_models(sort_by="ndcg@10", ascending=True)["model_id"]) == ["als_a", "als_b"]
    assert list(registry.list_models(sort_by="ndcg@10", ascending=False)["model_id"]) == ["als_b", "als_a"]
    assert registry.get_model("als_a") != registry.get_model("als_b")
    for _ in range(2):
        with pytest.raises(ValueError, match="sort_by"):
            registry.list_models(sort_by="nope")


def test_aliases_tags_and_searches_follow_changes_by_another_handle(two) -> None:  # type: ignore[no-untyped-def]
    registry, other, _ = two
    assert registry.get_alias("champion") is None and registry.get_tags("als_a") == {}
    search = ("tags.team = 'search'", ["metrics.ndcg@10 desc"])
    assert registry.search_models(search[0], order_by=search[1]).empty
    other.set_alias("champion", "als_a")
    other.set_tag("als_b", "team", "search")
    assert registry.get_alias("champion")["model_id"] == "als_a"
    assert [a["alias"] for a in registry.list_aliases()] == ["champion"]
    assert registry.get_tags("als_b") == {"team": "search"}
    assert list(registry.search_models(search[0], order_by=search[1])["model_id"]) == ["als_b"]
    registry.get_tags("als_b")["team"] = "edited"
    assert registry.get_tags("als_b") == {"team": "search"}


def test_many_registry_objects_share_one_stamp_connection(two, registry_path: Path, database_url: str,  # type: ignore[no-untyped-def]
                                                          tmp_path: Path) -> None:
    registry, _, _ = two
    handles = [ModelRegistry(registry_path, database_url=database_url, root=tmp_path, export_json=False) for _ in range(20)]
    assert all(handle.get_registry_stats()["total_models"] == 2 for handle in handles)  # more than the pool holds
    assert registry.get_current_best() is None


def test_cached_frames_do_not_share_tag_dicts_and_argument_types_count(two) -> None:  # type: ignore[no-untyped-def]
    registry, other, _ = two
    other.set_tag("als_a", "team", "search")
    for read in (registry.list_models, lambda: registry.search_models("", limit=10)):
        read().set_index("model_id").loc["als_a", "tags"]["team"] = "edited"
        assert read().set_index("model_id").loc["als_a", "tags"] == {"team": "search"}
    registry.search_models("", limit=10, offset=0)
    with pytest.raises(ValueError, match="offset"):
        registry.search_models("", limit=10, offset=0.0)  # type: ignore[arg-type]


def test_a_replaced_held_connection_never_matches_an_old_stamp(two) -> None:  # type: ignore[no-untyped-def]
    """SQLite's data_version counts per connection: a new held connection may restart at the old
    value, so its stamp carries which connection it came from."""
    registry, other, folder = two
    reader = registry.context.database.shared_reader()
    before = registry._reads.stamp()
    assert registry.get_registry_stats()["total_models"] == 2
    reader.close()  # e.g. dropped after an error, or a forked child
    if registry.context.database.dialect == "sqlite":  # PostgreSQL's stamp is the generation itself
        assert registry._reads.stamp() != before  # even with no change: a new connection's count is not comparable
    other.register_model(folder, "als", {}, {"ndcg@10": 0.5}, {}, version="c")
    assert registry._reads.stamp() != before
    assert registry.get_registry_stats()["total_models"] == 3


def test_copies_share_no_mutable_value_with_the_kept_result() -> None:
    from registry.read_cache import copy_plain

    kept = {"metrics": {"ndcg@10": 0.1}, "files": [{"name": "U.npy"}], "pair": ([1], 2), "seen": {1, 2}, "n": 3}
    copied = copy_plain(kept)
    copied["metrics"]["ndcg@10"] = 9.0
    copied["files"][0]["name"] = "x"
    copied["pair"][0].append(5)  # a tuple holding a list: copied too (deepcopy for what is not dict/list/scalar)
    copied["seen"].add(3)
    assert kept == {"metrics": {"ndcg@10": 0.1}, "files": [{"name": "U.npy"}], "pair": ([1], 2), "seen": {1, 2}, "n": 3}

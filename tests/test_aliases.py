"""Named aliases: compare-and-set, history, guards, export, current_best as an alias; both backends."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from registry import ModelRegistry
from registry.errors import AliasConflictError, AliasNotFoundError, InvalidArgumentError, ModelInUseError, ModelNotFoundError


@pytest.fixture
def models(registry, model_dir):  # type: ignore[no-untyped-def]
    return [
        registry.register_model(model_dir("als/v1"), "als", version="v1", metrics={"ndcg@10": 0.10}),
        registry.register_model(model_dir("als/v2", seed=2), "als", version="v2", metrics={"ndcg@10": 0.20}),
        registry.register_model(model_dir("bpr/v1", "bpr"), "bpr", version="v1", metrics={"ndcg@10": 0.15}),
    ]


def test_set_get_move_delete_with_history(registry: ModelRegistry, models) -> None:  # type: ignore[no-untyped-def]
    assert registry.get_alias("champion") is None
    first = registry.set_alias("champion", "als_v1", expected=None, reason="first champion")
    assert first == {"alias": "champion", "model_id": "als_v1", "previous_model_id": None, "changed": True}
    assert registry.get_alias("champion") == {"alias": "champion", "model_id": "als_v1", "model_type": "als", "version": "v1"}
    assert registry.set_alias("champion", "als_v1")["changed"] is False
    registry.set_alias("champion", "als_v2", expected="als_v1", reason="better ndcg")
    assert registry.delete_alias("champion", expected="als_v2") == "als_v2"
    assert registry.get_alias("champion") is None
    moves = registry.alias_history("champion")
    assert [(m["from"], m["to"], m["reason"]) for m in moves] == [
        ("als_v2", None, None), ("als_v1", "als_v2", "better ndcg"), (None, "als_v1", "first champion"),
    ]
    assert all(m["by"] and m["at"] for m in moves)
    assert registry.get_selection_history() == []  # named aliases never show up as current-best history


def test_compare_and_set_names_the_current_target_and_changes_nothing(registry: ModelRegistry, models) -> None:  # type: ignore[no-untyped-def]
    registry.set_alias("challenger", "als_v2")
    with pytest.raises(AliasConflictError) as caught:
        registry.set_alias("challenger", "bpr_v1", expected="als_v1")
    assert caught.value.current == "als_v2" and "'als_v2'" in str(caught.value)
    with pytest.raises(AliasConflictError, match="points at 'als_v2'"):
        registry.set_alias("challenger", "bpr_v1", expected=None)  # "must not exist"
    with pytest.raises(AliasConflictError, match="does not exist"):
        registry.set_alias("fresh", "bpr_v1", expected="als_v1")
    with pytest.raises(AliasConflictError):
        registry.delete_alias("challenger", expected="bpr_v1")
    assert registry.get_alias("challenger")["model_id"] == "als_v2"
    assert registry.get_alias("fresh") is None
    assert len(registry.alias_history("challenger")) == 1


def test_bad_requests_are_typed_and_change_nothing(registry: ModelRegistry, models) -> None:  # type: ignore[no-untyped-def]
    registry.archive_model("bpr_v1")
    with pytest.raises(ModelInUseError):
        registry.set_alias("champion", "bpr_v1")
    with pytest.raises(ModelNotFoundError):
        registry.set_alias("champion", "nope_v1")
    with pytest.raises(InvalidArgumentError):
        registry.set_alias("bad name", "als_v1")
    with pytest.raises(AliasNotFoundError):
        registry.delete_alias("champion")
    with pytest.raises(InvalidArgumentError):
        registry.delete_alias("current_best")
    assert registry.list_aliases() == []


def test_current_best_is_an_alias(registry: ModelRegistry, models) -> None:  # type: ignore[no-untyped-def]
    registry.select_best_model(metric="ndcg@10")
    assert registry.get_alias("current_best")["model_id"] == "als_v2"
    with pytest.raises(AliasConflictError):
        registry.set_alias("current_best", "als_v1", expected="bpr_v1")
    result = registry.set_alias("current_best", "als_v1", expected="als_v2", reason="hotfix")
    assert result["changed"] is True
    assert registry.get_current_best()["model_id"] == "als_v1"
    assert registry.get_selection_history()[0]["model_id"] == "als_v1"
    assert [m["to"] for m in registry.alias_history("current_best")] == ["als_v1", "als_v2"]
    assert [a["alias"] for a in registry.list_aliases()] == ["current_best"]


def test_aliased_models_cannot_be_deleted_archived_or_deactivated(registry: ModelRegistry, models) -> None:  # type: ignore[no-untyped-def]
    registry.set_alias("champion_bpr", "bpr_v1")
    for action in (lambda: registry.delete_model("bpr_v1"), lambda: registry.archive_model("bpr_v1"),
                   lambda: registry.update_model_status("bpr_v1", "failed")):
        with pytest.raises(ModelInUseError, match="champion_bpr"):
            action()
    assert registry.get_model("bpr_v1")["status"] == "active"
    registry.delete_alias("champion_bpr")
    assert registry.delete_model("bpr_v1") is True


def test_export_lists_named_aliases(registry: ModelRegistry, models, registry_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert "aliases" not in json.loads(registry_path.read_text())
    registry.set_alias("champion_als", "als_v2")
    registry.set_alias("champion_bpr", "bpr_v1")
    assert json.loads(registry_path.read_text())["aliases"] == {"champion_als": "als_v2", "champion_bpr": "bpr_v1"}


def _race(args: tuple[str, str, str, str]) -> str:
    registry_path, database_url, root, target = args
    registry = ModelRegistry(registry_path, database_url=database_url, root=root)
    try:
        registry.set_alias("champion", target, expected="als_v1")
        return "won"
    except AliasConflictError as exc:
        return f"conflict:{exc.current}"


@pytest.mark.slow
def test_two_processes_racing_with_expected_exactly_one_wins(registry: ModelRegistry, models, registry_path: Path,
                                                              database_url: str, tmp_path: Path) -> None:
    for round_number in range(5):
        registry.set_alias("champion", "als_v1")
        context = multiprocessing.get_context("spawn")
        with context.Pool(2) as pool:
            outcomes = pool.map(_race, [(str(registry_path), database_url, str(tmp_path), t) for t in ("als_v2", "bpr_v1")])
        winner = registry.get_alias("champion")["model_id"]
        assert sorted(o.split(":")[0] for o in outcomes) == ["conflict", "won"], (round_number, outcomes)
        assert [o for o in outcomes if o.startswith("conflict")] == [f"conflict:{winner}"]
        assert winner in ("als_v2", "bpr_v1")


def test_cli_alias_commands(registry: ModelRegistry, models, registry_path: Path, database_url: str, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from registry.cli import app

    base = ["--registry", str(registry_path), "--database-url", database_url]
    runner = CliRunner()

    def cfreg(*args: str, code: int = 0):  # type: ignore[no-untyped-def]
        result = runner.invoke(app, [*base, *args])
        assert result.exit_code == code, (args, result.stdout, result.stderr)
        return result

    cfreg("alias", "set", "champion", "als_v1", "--expected", "none", "--reason", "first")
    assert json.loads(cfreg("--json", "alias", "get", "champion").stdout)["model_id"] == "als_v1"
    conflict = cfreg("alias", "set", "champion", "als_v2", "--expected", "bpr_v1", code=1)
    assert "points at 'als_v1'" in conflict.stderr
    cfreg("alias", "set", "champion", "als_v2", "--expected", "als_v1")
    listed = json.loads(cfreg("--json", "alias", "list").stdout)
    assert [(row["alias"], row["model_id"]) for row in listed] == [("champion", "als_v2")]
    history = json.loads(cfreg("--json", "alias", "history", "champion").stdout)
    assert [(row["from"], row["to"]) for row in history] == [("als_v1", "als_v2"), (None, "als_v1")]
    cfreg("alias", "delete", "champion")
    assert "not set" in cfreg("alias", "get", "champion", code=1).stderr


def test_a_loader_follows_an_alias_with_hot_reload(registry: ModelRegistry, models, registry_path: Path,
                                                   database_url: str, tmp_path: Path) -> None:
    import numpy as np

    from registry import ModelLoader, get_loader
    from registry.errors import NoModelLoadedError

    registry.select_best_model(metric="ndcg@10")  # current best: als_v2
    loader = ModelLoader(registry_path, database_url=database_url, root=tmp_path, alias="challenger")
    with pytest.raises(NoModelLoadedError, match="challenger"):
        loader.load_current_best()
    registry.set_alias("challenger", "bpr_v1")
    assert loader.reload_model() is True
    U, V, metadata = loader.load_current_best()
    assert loader.get_model_info()["model_id"] == "bpr_v1"
    assert np.array_equal(U, np.load(tmp_path / "artifacts/cf/bpr/v1/bpr_U.npy"))
    assert loader.reload_model() is False  # cheap check, nothing moved
    registry.promote_model("als_v1")  # the current best moving does not move the alias
    assert loader.reload_model() is False and loader.get_model_info()["model_id"] == "bpr_v1"
    registry.set_alias("challenger", "als_v1")
    assert loader.reload_model() is True and loader.get_model_info()["model_id"] == "als_v1"
    loader.close()

    shared = get_loader(registry_path, database_url=database_url, root=tmp_path, alias="challenger")
    default = get_loader(registry_path, database_url=database_url, root=tmp_path)
    assert shared is not default and shared.alias == "challenger" and default.alias == "current_best"
    assert default.load_current_best() and default.get_model_info()["model_id"] == "als_v1"
    with pytest.raises(InvalidArgumentError):
        ModelLoader(registry_path, database_url=database_url, root=tmp_path, alias="bad alias")

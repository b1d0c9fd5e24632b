"""Selection, promotion and rollback on any alias; serving an alias; A/B arms that follow an alias.

Both backends (the ``registry`` fixture runs on SQLite and, when configured, PostgreSQL).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from registry import ModelRegistry, get_model_for_user
from registry.errors import AliasInUseError, AliasNotFoundError, InvalidArgumentError, ModelInUseError
from registry.models import AuditEvent


@pytest.fixture
def models(registry: ModelRegistry, model_dir) -> list[str]:  # type: ignore[no-untyped-def]
    """als_v1 (0.10), als_v2 (0.20), bpr_v1 (0.15), bpr_v2 (0.12): ids."""
    return [
        registry.register_model(model_dir("als/v1", id_maps=True), "als", version="v1", metrics={"ndcg@10": 0.10}),
        registry.register_model(model_dir("als/v2", seed=2, id_maps=True), "als", version="v2", metrics={"ndcg@10": 0.20}),
        registry.register_model(model_dir("bpr/v1", "bpr", seed=3, id_maps=True), "bpr", version="v1",
                                metrics={"ndcg@10": 0.15}),
        registry.register_model(model_dir("bpr/v2", "bpr", seed=4, id_maps=True), "bpr", version="v2",
                                metrics={"ndcg@10": 0.12}),
    ]


def _events(registry: ModelRegistry, action: str) -> list[AuditEvent]:
    def work(session):  # type: ignore[no-untyped-def]
        rows = session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id))
        return [(row.target, row.summary, dict(row.details)) for row in rows]

    return registry.context.read(work)


# --------------------------------------------------------------------------- select / promote / rollback


def test_select_best_on_a_per_type_alias_leaves_current_best_untouched(registry: ModelRegistry, models) -> None:  # type: ignore[no-untyped-def]
    registry.select_best_model(metric="ndcg@10")
    assert registry.get_current_best()["model_id"] == "als_v2"
    history_before = registry.get_selection_history()
    generation = registry.get_registry_stats()["generation"]

    chosen = registry.select_best_model(metric="ndcg@10", model_type="bpr", alias="bpr_champion")
    assert chosen["model_id"] == "bpr_v1" and chosen["value"] == pytest.approx(0.15)
    assert set(chosen) == {"model_id", "model_info", "metric", "value"}
    assert registry.get_alias("bpr_champion")["model_id"] == "bpr_v1"
    assert registry.get_current_best()["model_id"] == "als_v2"
    assert registry.get_selection_history() == history_before
    assert registry.get_registry_stats()["generation"] > generation  # loaders following the alias reload
    moves = registry.alias_history("bpr_champion")
    assert [(m["from"], m["to"], m["selected_by"], m["metric"]) for m in moves] == [(None, "bpr_v1", "auto", "ndcg@10")]
    target, summary, details = _events(registry, "SELECT_BEST")[-1]
    assert target == "bpr_champion" and summary.startswith("-> bpr_v1 ndcg@10=0.1500")
    assert details["alias"] == "bpr_champion" and details["model_id"] == "bpr_v1" and details["model_type"] == "bpr"

    # Again: already the target, nothing written.
    outcome = registry.select_best_model_outcome(metric="ndcg@10", model_type="bpr", alias="bpr_champion")
    assert outcome["changed"] is False and outcome["previous_model_id"] == "bpr_v1"
    assert len(registry.alias_history("bpr_champion")) == 1
    # The default is still today's current best: als_v2 stays.
    assert registry.select_best_model_outcome(metric="ndcg@10")["changed"] is False


def test_min_gain_over_current_compares_with_the_alias_target(registry: ModelRegistry, models) -> None:  # type: ignore[no-untyped-def]
    registry.set_alias("bpr_champion", "bpr_v2")
    # bpr_v1 beats bpr_v2 by 25%: not enough for 50%, enough for 20%.
    assert registry.select_best_model(metric="ndcg@10", model_type="bpr", alias="bpr_champion",
                                      min_gain_over_current=0.5) is None
    assert registry.get_alias("bpr_champion")["model_id"] == "bpr_v2"
    assert registry.select_best_model(metric="ndcg@10", model_type="bpr", alias="bpr_champion",
                                      min_gain_over_current=0.2)["model_id"] == "bpr_v1"


def test_promote_with_alias_moves_only_that_alias(registry: ModelRegistry, models) -> None:  # type: ignore[no-untyped-def]
    registry.promote_model("als_v1")
    result = registry.promote_model("bpr_v2", reason="canary", alias="challenger", metric="ndcg@10")
    assert (result["changed"], result["previous_model_id"], result["value"]) == (True, None, pytest.approx(0.12))
    assert registry.get_alias("challenger")["model_id"] == "bpr_v2"
    assert registry.get_current_best()["model_id"] == "als_v1"
    assert registry.promote_model("bpr_v2", alias="challenger")["changed"] is False
    target, summary, details = _events(registry, "PROMOTE")[-1]
    assert (target, details["alias"], details["model_id"], details["reason"]) == ("challenger", "challenger", "bpr_v2", "canary")
    registry.archive_model("als_v2")
    with pytest.raises(ModelInUseError, match="active"):
        registry.promote_model("als_v2", alias="challenger")
    with pytest.raises(InvalidArgumentError):
        registry.promote_model("bpr_v1", alias="not an alias")
    assert registry.get_alias("challenger")["model_id"] == "bpr_v2"


def test_rollback_with_alias_restores_that_alias_previous_target(registry: ModelRegistry, models) -> None:  # type: ignore[no-untyped-def]
    registry.select_best_model(metric="ndcg@10")  # current best als_v2
    registry.set_alias("champion", "als_v1")
    registry.set_alias("champion", "bpr_v1", reason="try bpr")
    registry.set_alias("champion", "bpr_v2")

    back = registry.rollback(alias="champion", reason="bpr_v2 regressed")
    assert (back["model_id"], back["previous_model_id"], back["changed"]) == ("bpr_v1", "bpr_v2", True)
    assert registry.get_alias("champion")["model_id"] == "bpr_v1"
    assert registry.rollback(alias="champion")["model_id"] == "als_v1"  # walks back, never toggles
    assert registry.get_current_best()["model_id"] == "als_v2"
    newest = registry.alias_history("champion")[0]
    assert (newest["from"], newest["to"], newest["selected_by"]) == ("bpr_v1", "als_v1", "rollback")
    target, _, details = _events(registry, "ROLLBACK")[-1]
    assert (target, details["alias"], details["model_id"]) == ("champion", "champion", "als_v1")

    with pytest.raises(InvalidArgumentError, match="alias 'champion' has no earlier state") as caught:
        registry.rollback(alias="champion")
    assert "alias='champion'" in str(caught.value)
    registry.set_alias("champion", "bpr_v2")
    assert registry.rollback(alias="champion", to="als_v1")["model_id"] == "als_v1"
    with pytest.raises(InvalidArgumentError, match="not an earlier target of alias 'champion'"):
        registry.rollback(alias="champion", to="als_v2")
    # The default rollback still walks the current best's own history.
    with pytest.raises(InvalidArgumentError, match="^nothing to roll back to: the current best has no earlier state"):
        registry.rollback()


def test_deleting_an_alias_ends_its_rollback_line(registry: ModelRegistry, models) -> None:  # type: ignore[no-untyped-def]
    registry.set_alias("champion", "als_v1")
    registry.set_alias("champion", "als_v2")
    registry.delete_alias("champion")
    with pytest.raises(InvalidArgumentError, match="no earlier state"):
        registry.rollback(alias="champion")
    registry.set_alias("champion", "bpr_v1")
    with pytest.raises(InvalidArgumentError, match="no earlier state"):
        registry.rollback(alias="champion")
    assert registry.get_alias("champion")["model_id"] == "bpr_v1"


def test_cli_select_best_promote_rollback_with_alias(registry: ModelRegistry, models, registry_path: Path,  # type: ignore[no-untyped-def]
                                                     database_url: str, workdir: Path) -> None:
    from typer.testing import CliRunner

    from registry.cli import app

    base = ["--registry", str(registry_path), "--database-url", database_url]

    def cfreg(*args: str, code: int = 0):  # type: ignore[no-untyped-def]
        result = CliRunner().invoke(app, [*base, *args])
        assert result.exit_code == code, (args, result.stdout, result.stderr)
        return result

    assert "Changed: alias bpr_champion none -> bpr_v1" in cfreg("select-best", "--type", "bpr", "--alias", "bpr_champion").stdout
    assert "Changed: current best none -> als_v2" in cfreg("select-best").stdout
    assert "Changed: alias bpr_champion bpr_v1 -> bpr_v2" in cfreg("promote", "bpr_v2", "--alias", "bpr_champion").stdout
    assert "already the target of alias bpr_champion" in cfreg("promote", "bpr_v2", "--alias", "bpr_champion").stdout
    rolled = json.loads(cfreg("--json", "rollback", "--alias", "bpr_champion").stdout)
    assert (rolled["model_id"], rolled["previous_model_id"]) == ("bpr_v1", "bpr_v2")
    assert registry.get_current_best()["model_id"] == "als_v2"
    assert "no earlier state" in cfreg("rollback", "--alias", "bpr_champion", code=1).stderr
    assert "--alias bpr_champion" in cfreg("rollback", "--alias", "bpr_champion", code=1).stderr  # the hint


# --------------------------------------------------------------------------- A/B arms following aliases


def test_an_ab_arm_naming_an_alias_follows_its_moves(registry: ModelRegistry, models, registry_path: Path) -> None:  # type: ignore[no-untyped-def]
    registry.select_best_model(metric="ndcg@10")  # als_v2
    registry.set_alias("challenger", "bpr_v1")
    test = registry.start_ab_test("@current_best", "@challenger", 0.5, test_id="ab_alias")
    assert (test["control_model"], test["treatment_model"]) == ("als_v2", "bpr_v1")
    assert (test["control_alias"], test["treatment_alias"]) == ("current_best", "challenger")
    users = [f"u{i}" for i in range(40)]
    assert {registry.route_user(u) for u in users} == {"als_v2", "bpr_v1"}

    registry.set_alias("challenger", "bpr_v2", reason="retrained")
    moved = registry.get_ab_test("ab_alias")
    assert moved["treatment_model"] == "bpr_v2"
    for user in users:
        assert registry.route_user(user) == get_model_for_user(user, moved)
    assert {registry.route_user(u) for u in users} == {"als_v2", "bpr_v2"}
    assert json.loads(registry_path.read_text())["ab_test"]["treatment_model"] == "bpr_v2"  # external routers too
    target, summary, details = _events(registry, "AB_ARM")[-1]
    assert (target, details["arm"], details["previous_model_id"], details["model_id"]) == ("ab_alias", "treatment", "bpr_v1", "bpr_v2")

    registry.promote_model("als_v1")  # the control follows the current best
    assert registry.get_ab_test("ab_alias")["control_model"] == "als_v1"
    # bpr_v1 left the test when the alias moved: it may be archived again; the arms may not.
    registry.archive_model("bpr_v1")
    with pytest.raises(ModelInUseError):
        registry.archive_model("bpr_v2")


def test_a_selection_moves_the_arms_that_follow_the_alias_it_moves(registry: ModelRegistry, models) -> None:  # type: ignore[no-untyped-def]
    registry.promote_model("als_v1")
    registry.set_alias("bpr_champion", "bpr_v2")
    registry.start_ab_test("@current_best", "@bpr_champion", 0.5, test_id="ab_follow")

    registry.select_best_model(metric="ndcg@10", model_type="als")  # current best: als_v1 -> als_v2
    registry.select_best_model(metric="ndcg@10", model_type="bpr", alias="bpr_champion")  # bpr_v2 -> bpr_v1
    test = registry.get_ab_test("ab_follow")
    assert (test["control_model"], test["treatment_model"]) == ("als_v2", "bpr_v1")
    moves = [(target, details["arm"], details["model_id"]) for target, _, details in _events(registry, "AB_ARM")]
    assert moves == [("ab_follow", "control", "als_v2"), ("ab_follow", "treatment", "bpr_v1")]


def test_an_alias_named_by_a_running_test_cannot_be_deleted(registry: ModelRegistry, models) -> None:  # type: ignore[no-untyped-def]
    registry.set_alias("champion", "als_v1")
    registry.set_alias("challenger", "als_v2")
    registry.start_ab_test("@champion", "@challenger", 0.1, test_id="ab_guard")
    with pytest.raises(AliasInUseError, match="ab_guard") as caught:
        registry.delete_alias("challenger")
    assert caught.value.test_id == "ab_guard" and isinstance(caught.value, ModelInUseError)
    assert registry.get_alias("challenger")["model_id"] == "als_v2"
    # Moving it onto the other arm's model would leave one model in both arms.
    with pytest.raises(ModelInUseError, match="control arm already serves 'als_v1'"):
        registry.set_alias("challenger", "als_v1")
    assert registry.get_alias("challenger")["model_id"] == "als_v2"
    assert registry.get_ab_test("ab_guard")["treatment_model"] == "als_v2"
    registry.stop_ab_test("ab_guard")
    assert registry.delete_alias("challenger") == "als_v2"


def test_starting_with_alias_arms_checks_them(registry: ModelRegistry, models) -> None:  # type: ignore[no-untyped-def]
    registry.set_alias("champion", "als_v1")
    with pytest.raises(AliasNotFoundError, match="treatment alias 'nope' is not set"):
        registry.start_ab_test("@champion", "@nope", 0.1)
    with pytest.raises(InvalidArgumentError, match="both 'als_v1'"):
        registry.start_ab_test("@champion", "als_v1", 0.1)
    with pytest.raises(InvalidArgumentError):
        registry.start_ab_test("@bad alias", "als_v2", 0.1)
    assert registry.get_ab_test() is None
    plain = registry.start_ab_test("als_v1", "als_v2", 0.1)
    assert "control_alias" not in plain and "treatment_alias" not in plain  # model arms: today's dict


def test_a_loader_routes_an_alias_arm_to_its_target_and_follows_a_move(registry: ModelRegistry, models,  # type: ignore[no-untyped-def]
                                                                        registry_path: Path, database_url: str,
                                                                        tmp_path: Path) -> None:
    from registry import ModelLoader

    registry.select_best_model(metric="ndcg@10")
    registry.set_alias("challenger", "bpr_v1")
    registry.start_ab_test("@current_best", "@challenger", 1.0, test_id="ab_all")  # everyone: treatment
    loader = ModelLoader(registry_path, database_url=database_url, root=tmp_path)
    try:
        assert loader.state_for_user("u1").model_id == "bpr_v1"
        registry.set_alias("challenger", "bpr_v2")
        assert loader.state_for_user("u1").model_id == "bpr_v1"  # the loader's copy, until its next check
        loader.reload_model()
        assert loader.state_for_user("u1").model_id == "bpr_v2"
        assert loader.routing_config()["treatment_model"] == "bpr_v2"
    finally:
        loader.close()


def test_a_loader_following_another_alias_routes_no_ab_test(registry: ModelRegistry, models,  # type: ignore[no-untyped-def]
                                                           registry_path: Path, database_url: str, tmp_path: Path) -> None:
    from registry import ModelLoader

    registry.select_best_model(metric="ndcg@10")  # als_v2
    registry.set_alias("champion_bpr", "bpr_v2")
    registry.start_ab_test("als_v2", "bpr_v1", 1.0, test_id="ab_all")  # the current best's users: all treatment
    loader = ModelLoader(registry_path, database_url=database_url, root=tmp_path, alias="champion_bpr")
    try:
        assert loader.routing_config() is None
        assert {loader.state_for_user(f"u{i}").model_id for i in range(20)} == {"bpr_v2"}
    finally:
        loader.close()


# --------------------------------------------------------------------------- serving an alias


@pytest.fixture
def test_client():  # type: ignore[no-untyped-def]
    from starlette.exceptions import StarletteDeprecationWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StarletteDeprecationWarning)
        from fastapi.testclient import TestClient
    return TestClient


def _serve(test_client, registry: ModelRegistry, database_url: str, alias: str) -> Iterator:  # type: ignore[no-untyped-def]
    """An app following ``alias`` that changes model on ``POST /reload_model`` only (``watch=False``)."""
    from registry.serving import create_app

    return test_client(create_app(registry.registry_path, database_url=database_url, alias=alias, watch=False))


def test_serve_alias_serves_its_target_and_switches_after_set_alias(registry: ModelRegistry, models, test_client,  # type: ignore[no-untyped-def]
                                                                    database_url: str) -> None:
    registry.select_best_model(metric="ndcg@10")  # current best als_v2
    registry.set_alias("bpr_champion", "bpr_v1")
    with _serve(test_client, registry, database_url, "bpr_champion") as client:
        described = client.get("/model").json()
        assert (described["model_id"], described["alias"]) == ("bpr_v1", "bpr_champion")
        assert client.get("/recommend/u1").json()["model_id"] == "bpr_v1"
        registry.promote_model("als_v1")  # the current best moving changes nothing here
        assert client.post("/reload_model").json()["reloaded"] is False
        registry.set_alias("bpr_champion", "bpr_v2", expected="bpr_v1")
        reloaded = client.post("/reload_model").json()
        assert (reloaded["reloaded"], reloaded["model_id"], reloaded["previous_model_id"]) == (True, "bpr_v2", "bpr_v1")
        assert client.get("/recommend/u1").json()["model_id"] == "bpr_v2"
        assert client.get("/health").json() == {"status": "ok", "model_id": "bpr_v2"}


def test_a_default_app_follows_its_alias_without_reload_model(registry: ModelRegistry, models, test_client,  # type: ignore[no-untyped-def]
                                                              database_url: str) -> None:
    import time

    from registry.serving import create_app

    registry.select_best_model(metric="ndcg@10")
    registry.set_alias("bpr_champion", "bpr_v1")
    with test_client(create_app(registry.registry_path, database_url=database_url, alias="bpr_champion")) as client:
        assert client.get("/model").json()["model_id"] == "bpr_v1"
        registry.set_alias("bpr_champion", "bpr_v2", expected="bpr_v1")
        deadline = time.monotonic() + 30
        while client.get("/model").json()["model_id"] != "bpr_v2":
            assert time.monotonic() < deadline, "the watching app never followed the alias"
            time.sleep(0.02)
        assert client.get("/recommend/u1").json()["model_id"] == "bpr_v2"


def test_serve_an_unset_alias_answers_503_naming_it(registry: ModelRegistry, models, test_client,  # type: ignore[no-untyped-def]
                                                    database_url: str) -> None:
    registry.select_best_model(metric="ndcg@10")
    with _serve(test_client, registry, database_url, "challenger") as client:
        assert client.get("/health").status_code == 503
        response = client.get("/recommend/u1")
        assert response.status_code == 503 and "alias 'challenger' is not set" in response.json()["detail"]
        registry.set_alias("challenger", "als_v1")
        assert client.post("/reload_model").json()["model_id"] == "als_v1"
        assert client.get("/recommend/u1").json()["model_id"] == "als_v1"


def test_serve_rejects_a_bad_alias_name() -> None:
    from registry.serving import create_app

    with pytest.raises(InvalidArgumentError):
        create_app("unused/registry.json", alias="bad alias")


def test_cfreg_serve_passes_the_alias(registry: ModelRegistry, models, registry_path: Path, database_url: str,  # type: ignore[no-untyped-def]
                                      monkeypatch: pytest.MonkeyPatch, workdir: Path) -> None:
    import importlib

    from typer.testing import CliRunner

    from registry.cli import app

    serving = importlib.import_module("registry.serving")
    calls: list[dict] = []
    monkeypatch.setattr(serving, "serve", lambda *args, **kwargs: calls.append(kwargs))
    base = ["--registry", str(registry_path), "--database-url", database_url, "serve"]
    result = CliRunner().invoke(app, [*base, "--alias", "champion_als"])
    assert result.exit_code == 0, result.output
    assert calls[-1]["alias"] == "champion_als"
    result = CliRunner().invoke(app, [*base, "--alias", "bad alias"])
    assert result.exit_code == 1 and "invalid alias" in result.output and len(calls) == 1

"""A/B tests and canary rollout: routing, lifecycle, current-best changes, audit, concurrency."""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from registry import (
    InvalidArgumentError,
    ModelInUseError,
    ModelNotFoundError,
    NoModelLoadedError,
    RegistryError,
    abtest,
    audit,
    get_model_for_user,
)
from registry.models import ABTest, Selection

DOC_KEYS = {"test_id", "start_time", "control_model", "treatment_model", "traffic_split", "status"}


def doc_get_model_for_user(user_id: int, ab_config: dict) -> str:
    """The design doc's function, copied verbatim, as the reference for the documented assignment."""
    if ab_config["status"] != "running":
        return ab_config["control_model"]
    hash_val = int(hashlib.md5(str(user_id).encode()).hexdigest(), 16)
    if (hash_val % 100) < ab_config["traffic_split"] * 100:
        return ab_config["treatment_model"]
    return ab_config["control_model"]


def config(split: float, status: str = "running") -> dict[str, Any]:
    return {"test_id": "t", "control_model": "ctl", "treatment_model": "trt", "traffic_split": split, "status": status}


@pytest.fixture
def two_models(registry, model_dir) -> tuple[str, str]:
    """``(control, treatment)``: control is the current best, treatment a newer active model."""
    control = registry.register_model(model_dir("als/v1", seed=1), "als", {"factors": 8}, {"ndcg@10": 0.20}, {}, version="v1")
    treatment = registry.register_model(model_dir("als/v2", seed=2), "als", {"factors": 8}, {"ndcg@10": 0.19}, {}, version="v2")
    assert registry.select_best_model()["model_id"] == control
    return control, treatment


def audit_actions(registry) -> list[tuple[str, str]]:
    events = registry.context.read(lambda s: audit.query_events(s))
    return [(e["action"], e["target"]) for e in events if e["action"].startswith("AB_")]


# --------------------------------------------------------------------------- routing (pure)


def test_routing_matches_hand_computed_md5() -> None:
    # md5("42") % 100 == 74, md5("1") % 100 == 11, md5("12345") % 100 == 15 (computed by hand with hashlib)
    for user_id, bucket in [(42, 74), ("42", 74), (1, 11), (12345, 15), ("user_7", 45)]:
        assert int(hashlib.md5(str(user_id).encode()).hexdigest(), 16) % 100 == bucket
        assert abtest.user_bucket(user_id) == bucket
    assert get_model_for_user(1, config(0.12)) == "trt"      # bucket 11 < 12
    assert get_model_for_user(12345, config(0.12)) == "ctl"  # bucket 15 >= 12
    assert get_model_for_user(12345, config(0.16)) == "trt"  # bucket 15 < 16
    assert get_model_for_user(42, config(0.74)) == "ctl"     # bucket 74 is not < 74
    assert get_model_for_user(42, config(0.75)) == "trt"
    assert get_model_for_user(42, config(1.0)) == "trt"
    assert get_model_for_user(1, config(0.0)) == "ctl"


def test_routing_equals_the_doc_function_for_the_doc_split() -> None:
    for split in (0.0, 0.1, 0.25, 0.5, 0.9, 1.0):
        for user_id in range(2000):
            assert get_model_for_user(user_id, config(split)) == doc_get_model_for_user(user_id, config(split))


def test_stopped_test_routes_everyone_to_control() -> None:
    assert {get_model_for_user(u, config(1.0, status="stopped")) for u in range(500)} == {"ctl"}


def test_every_whole_percent_split_agrees_with_the_doc_function_bucket_by_bucket() -> None:
    # Services still routing with the doc's code must put every user in the same arm as we do,
    # including the float quirk 0.07 * 100 == 7.000000000000001 (bucket 7 is treated at 0.07).
    for k in range(101):
        for bucket in range(100):
            user = abtest_user_in_bucket(bucket)
            assert get_model_for_user(user, config(k / 100)) == doc_get_model_for_user(user, config(k / 100)), (k, bucket)
    assert get_model_for_user(abtest_user_in_bucket(7), config(0.07)) == "trt"


def abtest_user_in_bucket(bucket: int) -> int:
    return next(u for u in range(10_000) if abtest.user_bucket(u) == bucket)


@pytest.mark.parametrize("split", [0.05, 0.1, 0.33, 0.5, 0.9])
def test_treatment_share_over_100k_users_is_within_one_point(split: float) -> None:
    cfg = config(split)
    treated = sum(get_model_for_user(user_id, cfg) == "trt" for user_id in range(100_000))
    assert abs(treated / 100_000 - split) <= 0.01


@settings(max_examples=60, deadline=None)
@given(
    user_ids=st.lists(st.one_of(st.integers(), st.text(max_size=20)), min_size=1, max_size=50),
    low=st.floats(0, 1),
    high=st.floats(0, 1),
)
def test_arm_is_stable_and_only_moves_to_treatment_when_split_grows(user_ids: list[Any], low: float, high: float) -> None:
    low, high = min(low, high), max(low, high)
    for user_id in user_ids:
        first = get_model_for_user(user_id, config(low))
        assert get_model_for_user(user_id, config(low)) == first  # unchanged split -> unchanged arm
        if first == "trt":
            assert get_model_for_user(user_id, config(high)) == "trt"  # growing never moves treatment -> control


def test_growing_split_moves_some_users_control_to_treatment_only() -> None:
    before = {u: get_model_for_user(u, config(0.1)) for u in range(20_000)}
    after = {u: get_model_for_user(u, config(0.3)) for u in range(20_000)}
    moved = [u for u in before if before[u] != after[u]]
    assert moved and all(before[u] == "ctl" and after[u] == "trt" for u in moved)


# --------------------------------------------------------------------------- starting


def test_start_returns_the_doc_shape_and_routes_users(registry, two_models) -> None:
    control, treatment = two_models
    test = registry.start_ab_test(control, treatment, 0.1)
    assert set(test) == DOC_KEYS
    assert test["status"] == "running" and test["traffic_split"] == 0.1
    assert (test["control_model"], test["treatment_model"]) == (control, treatment)
    assert test["test_id"].startswith(f"ab_{treatment}_") and len(test["test_id"].split("_")[-3]) == 4
    assert test["start_time"][:10].replace("-", "_") == test["test_id"][-10:]
    assert registry.get_ab_test() == test == registry.get_ab_test(test["test_id"])
    for user_id in range(300):
        assert registry.route_user(user_id) == get_model_for_user(user_id, test)
    assert {registry.route_user(u) for u in range(300)} == {control, treatment}


def test_default_ids_are_made_unique(registry, two_models) -> None:
    control, treatment = two_models
    first = registry.start_ab_test(control, treatment, 0.1)["test_id"]
    registry.stop_ab_test(first)
    second = registry.start_ab_test(control, treatment, 0.1)["test_id"]
    registry.stop_ab_test(second)
    third = registry.start_ab_test(control, treatment, 0.1)["test_id"]
    assert (second, third) == (f"{first}_2", f"{first}_3")
    assert [t["test_id"] for t in registry.list_ab_tests()] == [third, second, first]


def test_explicit_test_id(registry, two_models) -> None:
    control, treatment = two_models
    assert registry.start_ab_test(control, treatment, 0.2, test_id="ab_als_v2_2025_01_16")["test_id"] == "ab_als_v2_2025_01_16"
    registry.stop_ab_test("ab_als_v2_2025_01_16")
    with pytest.raises(InvalidArgumentError, match="already used"):
        registry.start_ab_test(control, treatment, 0.2, test_id="ab_als_v2_2025_01_16")


@pytest.mark.parametrize(
    ("args", "error", "fragment"),
    [
        (("{c}", "{t}", float("nan")), InvalidArgumentError, "traffic_split"),
        (("{c}", "{t}", math.inf), InvalidArgumentError, "traffic_split"),
        (("{c}", "{t}", -0.01), InvalidArgumentError, "between 0 and 1"),
        (("{c}", "{t}", 1.5), InvalidArgumentError, "between 0 and 1"),
        (("{c}", "{t}", True), InvalidArgumentError, "traffic_split"),
        (("{c}", "{t}", "0.1"), InvalidArgumentError, "traffic_split"),
        (("{c}", "{c}", 0.1), InvalidArgumentError, "two different models"),
        (("{c}", "als_missing", 0.1), ModelNotFoundError, "als_missing"),
        (("{c}", "{t}", 0.1, "bad id|x"), InvalidArgumentError, "test_id"),
        (("{c}", "../etc", 0.1), InvalidArgumentError, "treatment_model"),
    ],
)
def test_bad_start_is_refused_and_changes_nothing(registry, two_models, args, error, fragment) -> None:
    control, treatment = two_models
    json_before = registry.registry_path.read_text()
    generation = registry.context.generation()
    call = [a.format(c=control, t=treatment) if isinstance(a, str) else a for a in args]
    with pytest.raises(error, match=fragment):
        registry.start_ab_test(*call)
    assert registry.list_ab_tests() == []
    assert registry.context.generation() == generation
    assert registry.registry_path.read_text() == json_before


def test_numpy_split_is_accepted(registry, two_models) -> None:
    control, treatment = two_models
    assert registry.start_ab_test(control, treatment, np.float32(0.25))["traffic_split"] == 0.25


def test_inactive_model_cannot_join_a_test(registry, two_models) -> None:
    control, treatment = two_models
    registry.archive_model(treatment)
    with pytest.raises(ModelInUseError, match="archived"):
        registry.start_ab_test(control, treatment, 0.1)
    assert registry.list_ab_tests() == []


def test_second_running_test_is_refused(registry, two_models, model_dir) -> None:
    control, treatment = two_models
    other = registry.register_model(model_dir("als/v3", seed=3), "als", {}, {"ndcg@10": 0.18}, {}, version="v3")
    running = registry.start_ab_test(control, treatment, 0.1)
    with pytest.raises(ModelInUseError, match=running["test_id"]):
        registry.start_ab_test(control, other, 0.1)
    assert [t["test_id"] for t in registry.list_ab_tests()] == [running["test_id"]]


def test_unique_index_violation_becomes_a_typed_error(registry, two_models, model_dir, monkeypatch) -> None:
    # Simulate a writer that slipped past the in-transaction check: the partial unique index must still
    # refuse it, as a RegistryError rather than a raw SQLAlchemy IntegrityError.
    control, treatment = two_models
    other = registry.register_model(model_dir("als/v3", seed=3), "als", {}, {"ndcg@10": 0.18}, {}, version="v3")
    first = registry.start_ab_test(control, treatment, 0.1)
    monkeypatch.setattr(abtest, "running_test", lambda session: None)
    with pytest.raises(ModelInUseError, match="uq_ab_tests_one_running"):
        registry.start_ab_test(control, other, 0.1)
    monkeypatch.undo()
    assert registry.list_ab_tests() == [first]


def _start_in_process(database_url: str, registry_path: str, root: str, control: str, treatment: str,
                      barrier: Any, results: Any) -> None:
    from registry import ModelRegistry

    registry = ModelRegistry(registry_path, database_url=database_url, root=root)
    barrier.wait(timeout=30)
    try:
        results.put(("ok", registry.start_ab_test(control, treatment, 0.1)["test_id"]))
    except RegistryError as exc:
        results.put((type(exc).__name__, str(exc)))
    except Exception as exc:  # anything else is a failure the test must see
        results.put(("unexpected " + type(exc).__name__, str(exc)))


@pytest.mark.slow
def test_two_processes_starting_at_once_exactly_one_wins(registry, two_models, database_url, tmp_path, model_dir) -> None:
    control, treatment = two_models
    other = registry.register_model(model_dir("als/v3", seed=3), "als", {}, {"ndcg@10": 0.18}, {}, version="v3")
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    workers = [
        ctx.Process(target=_start_in_process,
                    args=(database_url, str(registry.registry_path), str(tmp_path), control, arm, barrier, results))
        for arm in (treatment, other)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    kinds = sorted(kind for kind, _ in outcomes)
    assert kinds == ["InvalidStateError", "ok"], outcomes
    winner = next(message for kind, message in outcomes if kind == "ok")
    assert [t["test_id"] for t in registry.list_ab_tests()] == [winner]
    assert "running" in next(message for kind, message in outcomes if kind != "ok")


# --------------------------------------------------------------------------- queries and split


def test_get_without_a_running_test(registry, two_models) -> None:
    assert registry.get_ab_test() is None
    with pytest.raises(ModelNotFoundError, match="ab_nope"):
        registry.get_ab_test("ab_nope")
    with pytest.raises(ModelNotFoundError, match="no A/B test is running"):
        registry.stop_ab_test()


def test_update_traffic_split_moves_users_to_treatment(registry, two_models) -> None:
    control, treatment = two_models
    test_id = registry.start_ab_test(control, treatment, 0.1)["test_id"]
    before = {u: registry.route_user(u) for u in range(400)}
    updated = registry.update_traffic_split(test_id, 0.5)
    assert updated["traffic_split"] == 0.5 and registry.get_ab_test()["traffic_split"] == 0.5
    after = {u: registry.route_user(u) for u in range(400)}
    moved = [u for u in before if before[u] != after[u]]
    assert moved and all(before[u] == control and after[u] == treatment for u in moved)
    with pytest.raises(InvalidArgumentError, match="between 0 and 1"):
        registry.update_traffic_split(test_id, 2)
    registry.stop_ab_test(test_id)
    with pytest.raises(InvalidArgumentError, match="stopped"):
        registry.update_traffic_split(test_id, 0.2)
    assert registry.get_ab_test(test_id)["traffic_split"] == 0.5


# --------------------------------------------------------------------------- stop, promote, rollback


def test_stop_routes_everyone_to_control(registry, two_models) -> None:
    control, treatment = two_models
    test_id = registry.start_ab_test(control, treatment, 0.5)["test_id"]
    stopped = registry.stop_ab_test(test_id)
    assert stopped["status"] == "stopped" and stopped["end_time"] >= stopped["start_time"]
    assert "promoted" not in stopped
    assert registry.get_ab_test() is None
    assert {registry.route_user(u) for u in range(300)} == {control}
    assert {get_model_for_user(u, stopped) for u in range(300)} == {control}
    assert registry.get_current_best()["model_id"] == control
    assert registry.stop_ab_test(test_id) == stopped  # stopping again changes nothing


def test_stop_with_promote_makes_the_winner_current_in_the_same_change(registry, two_models) -> None:
    control, treatment = two_models
    test_id = registry.start_ab_test(control, treatment, 0.1)["test_id"]
    generation = registry.context.generation()[0]
    stopped = registry.stop_ab_test(test_id, promote="treatment")
    assert stopped["promoted"] == "treatment"
    assert registry.context.generation()[0] == generation + 1  # one transaction
    best = registry.get_current_best()
    assert best["model_id"] == treatment and best["selected_by"] == "ab_test"
    assert {registry.route_user(u) for u in range(200)} == {treatment}
    latest = registry.get_selection_history()[0]
    assert (latest["model_id"], latest["previous_model_id"], latest["selected_by"]) == (treatment, control, "ab_test")
    assert ("AB_PROMOTE", treatment) in audit_actions(registry)
    with pytest.raises(InvalidArgumentError, match="already stopped"):
        registry.stop_ab_test(test_id, promote="control")


def test_bad_promote_value_is_refused(registry, two_models) -> None:
    control, treatment = two_models
    registry.start_ab_test(control, treatment, 0.1)
    with pytest.raises(InvalidArgumentError, match="promote"):
        registry.stop_ab_test(None, promote=treatment)
    assert registry.get_ab_test()["status"] == "running"


def test_rollback_of_a_running_test(registry, two_models) -> None:
    control, treatment = two_models
    test_id = registry.start_ab_test(control, treatment, 0.3)["test_id"]
    rolled = registry.rollback_ab_test(test_id)
    assert (rolled["status"], rolled["traffic_split"]) == ("stopped", 0.0)
    assert registry.get_current_best()["model_id"] == control
    assert {registry.route_user(u) for u in range(300)} == {control}
    assert ("AB_ROLLBACK", test_id) in audit_actions(registry)


def test_rollback_after_promoting_the_treatment_restores_control(registry, two_models) -> None:
    control, treatment = two_models
    test_id = registry.start_ab_test(control, treatment, 0.3)["test_id"]
    registry.stop_ab_test(test_id, promote="treatment")
    rolled = registry.rollback_ab_test(test_id)
    assert rolled["promoted"] == "control" and rolled["traffic_split"] == 0.3  # a stopped test keeps its record
    best = registry.get_current_best()
    assert best["model_id"] == control and best["selected_by"] == "ab_test"
    assert {registry.route_user(u) for u in range(300)} == {control}
    count = len(audit_actions(registry))
    assert registry.rollback_ab_test(test_id) == rolled  # already rolled back: no new change
    assert len(audit_actions(registry)) == count


def test_rollback_when_control_was_not_current_makes_it_current(registry, two_models, model_dir) -> None:
    control, treatment = two_models
    baseline = registry.register_model(model_dir("als/v0", seed=9), "als", {}, {"ndcg@10": 0.5}, {}, version="v0")
    registry.select_best_model()
    assert registry.get_current_best()["model_id"] == baseline
    registry.start_ab_test(control, treatment, 0.2)
    registry.rollback_ab_test()
    assert registry.get_current_best()["model_id"] == control


def test_rollback_of_a_stopped_unpromoted_test_changes_nothing(registry, two_models, model_dir) -> None:
    # Regression: rolling back an old stopped test demoted the current best to its control
    # and rewrote the test's history (split 0, promoted 'control').
    control, treatment = two_models
    test_id = registry.start_ab_test(control, treatment, 0.3)["test_id"]
    stopped = registry.stop_ab_test(test_id)
    newer = registry.register_model(model_dir("als/v3", seed=3), "als", {}, {"ndcg@10": 0.9}, {}, version="v3")
    registry.select_best_model()
    assert registry.get_current_best()["model_id"] == newer
    generation, actions = registry.context.generation()[0], audit_actions(registry)

    with pytest.raises(InvalidArgumentError, match="never promoted"):
        registry.rollback_ab_test(test_id)

    assert registry.get_current_best()["model_id"] == newer
    assert registry.get_ab_test(test_id) == stopped
    assert registry.context.generation()[0] == generation and audit_actions(registry) == actions


def test_rollback_of_a_promoted_treatment_that_is_no_longer_current_changes_nothing(
        registry, two_models, model_dir) -> None:
    control, treatment = two_models
    test_id = registry.start_ab_test(control, treatment, 0.3)["test_id"]
    stopped = registry.stop_ab_test(test_id, promote="treatment")
    newer = registry.register_model(model_dir("als/v3", seed=3), "als", {}, {"ndcg@10": 0.9}, {}, version="v3")
    registry.promote_model(newer)
    generation = registry.context.generation()[0]

    with pytest.raises(InvalidArgumentError, match=f"current best is now {newer}"):
        registry.rollback_ab_test(test_id)

    assert registry.get_current_best()["model_id"] == newer
    assert registry.get_ab_test(test_id) == stopped
    assert registry.context.generation()[0] == generation


def test_second_rollback_of_a_running_test_changes_nothing(registry, two_models) -> None:
    control, treatment = two_models
    test_id = registry.start_ab_test(control, treatment, 0.3)["test_id"]
    rolled = registry.rollback_ab_test(test_id)  # control was already current: nothing promoted
    generation = registry.context.generation()[0]
    assert registry.rollback_ab_test(test_id) == rolled
    assert registry.context.generation()[0] == generation


def test_route_user_without_test_or_best_raises(registry, model_dir) -> None:
    registry.register_model(model_dir("als/v1"), "als", {}, {"ndcg@10": 0.2}, {})
    with pytest.raises(NoModelLoadedError, match="no current best"):
        registry.route_user(1)



def test_serving_model_id_is_the_one_routing_decision() -> None:
    running = {"status": "running", "traffic_split": 0.3, "control_model": "c", "treatment_model": "t"}
    stopped = {**running, "status": "stopped"}
    for user_id in range(200):
        assert abtest.serving_model_id(user_id, running, "best") == doc_get_model_for_user(user_id, running)
        assert abtest.serving_model_id(user_id, stopped, "best") == "c"
        assert abtest.serving_model_id(user_id, None, "best") == "best"
    assert abtest.serving_model_id(1, None, None) is None
    assert {abtest.serving_model_id(u, running, None) for u in range(200)} == {"c", "t"}


def test_every_routing_entry_point_agrees_per_user(registry, two_models, database_url) -> None:
    from registry import ModelLoader

    control, treatment = two_models
    registry.select_best_model(metric="ndcg@10", min_improvement=0.0)
    with ModelLoader(registry.registry_path, database_url=database_url) as loader:
        for start in (False, True):
            test = registry.start_ab_test(control, treatment, 0.4) if start else None
            loader.reload_model()
            best = registry.get_current_best()["model_id"]
            assert loader.routing_config() == test == registry.get_ab_test()
            for user_id in range(150):
                expected = abtest.serving_model_id(user_id, test, best)
                state, routed_with = loader.route_for_user(user_id)
                assert registry.route_user(user_id) == expected == state.model_id
                assert loader.state_for_user(user_id) is state and loader.load_for_user(user_id)[0] == expected
                assert routed_with == test
            assert {registry.route_user(u) for u in range(150)} == ({best} if test is None else {control, treatment})


# --------------------------------------------------------------------------- registry.json, guards, audit


def test_registry_json_shows_the_test_in_the_doc_shape(registry, two_models) -> None:
    control, treatment = two_models
    test = registry.start_ab_test(control, treatment, 0.1)
    exported = json.loads(Path(registry.registry_path).read_text())["ab_test"]
    assert exported == test and set(exported) == DOC_KEYS
    registry.update_traffic_split(test["test_id"], 0.2)
    assert json.loads(Path(registry.registry_path).read_text())["ab_test"]["traffic_split"] == 0.2
    registry.stop_ab_test(test["test_id"])
    exported = json.loads(Path(registry.registry_path).read_text())["ab_test"]
    assert exported["status"] == "stopped" and "end_time" in exported


@pytest.mark.parametrize("arm", [0, 1])
def test_models_in_a_running_test_cannot_be_archived_deleted_or_deactivated(registry, model_dir, arm) -> None:
    best = registry.register_model(model_dir("als/v0", seed=9), "als", {}, {"ndcg@10": 0.5}, {}, version="v0")
    registry.select_best_model()
    pair = [registry.register_model(model_dir(f"als/v{i}", seed=i), "als", {}, {"ndcg@10": 0.1}, {}, version=f"v{i}")
            for i in (1, 2)]
    test_id = registry.start_ab_test(pair[0], pair[1], 0.5)["test_id"]
    target = pair[arm]
    for action in (lambda: registry.archive_model(target), lambda: registry.delete_model(target),
                   lambda: registry.update_model_status(target, "failed")):
        with pytest.raises(ModelInUseError, match=test_id):
            action()
    assert registry.get_model(target)["status"] == "active"
    assert best == registry.get_current_best()["model_id"]
    registry.stop_ab_test(test_id)
    assert registry.archive_model(target) is True
    assert registry.delete_model(target) is True


def test_audit_rows_and_log_lines(registry, two_models) -> None:
    control, treatment = two_models
    test_id = registry.start_ab_test(control, treatment, 0.1)["test_id"]
    registry.update_traffic_split(test_id, 0.1)  # unchanged: no audit row
    registry.update_traffic_split(test_id, 0.4)
    registry.stop_ab_test(test_id, promote="treatment")
    assert audit_actions(registry) == [
        ("AB_START", test_id), ("AB_SPLIT", test_id), ("AB_STOP", test_id), ("AB_PROMOTE", treatment),
    ]
    log = Path(registry.audit_log_path).read_text().splitlines()
    assert any(f"| AB_START | {test_id} | control={control} treatment={treatment} traffic_split=0.1" in line for line in log)
    assert any(f"| AB_SPLIT | {test_id} | traffic_split=0.1->0.4" in line for line in log)
    assert any(f"| AB_PROMOTE | {treatment} |" in line for line in log)
    rows = registry.context.read(lambda s: [(t.status, t.promoted) for t in s.scalars(select(ABTest))])
    assert rows == [("stopped", "treatment")]
    by = registry.context.read(lambda s: s.scalars(select(Selection.selected_by).order_by(Selection.id.desc())).first())
    assert by == "ab_test"


# --------------------------------------------------------------------------- loader: both arms served from memory


def test_loader_serves_both_arms_concurrently_without_rereading_files(registry, two_models, database_url, tmp_path,
                                                                     monkeypatch) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from registry import ModelLoader, artifacts

    control, treatment = two_models
    expected = {
        model_id: (np.load(tmp_path / f"artifacts/cf/als/{folder}/als_U.npy"),
                   np.load(tmp_path / f"artifacts/cf/als/{folder}/als_V.npy"))
        for model_id, folder in ((control, "v1"), (treatment, "v2"))
    }
    reads: dict[str, int] = {}
    for name in ("load_npy", "load_npy_verified"):
        original = getattr(artifacts, name)

        def counting(path, *args, _original=original, **kwargs):  # type: ignore[no-untyped-def]
            reads[str(path)] = reads.get(str(path), 0) + 1
            return _original(path, *args, **kwargs)

        monkeypatch.setattr(artifacts, name, counting)

    test = registry.start_ab_test(control, treatment, 0.5)
    loader = ModelLoader(registry.registry_path, database_url=database_url)
    user_ids = list(range(3000))

    def serve(user_id: int) -> tuple[int, str, bool]:
        model_id, U, V = loader.load_for_user(user_id)
        U_expected, V_expected = expected[model_id]
        return user_id, model_id, bool(np.array_equal(U, U_expected) and np.array_equal(V, V_expected))

    with ThreadPoolExecutor(max_workers=8) as pool:
        served = list(pool.map(serve, user_ids))
    assert all(matches for _, _, matches in served)
    assert all(model_id == get_model_for_user(user_id, test) for user_id, model_id, _ in served)
    assert {model_id for _, model_id, _ in served} == {control, treatment}
    assert reads and max(reads.values()) == 1 and len(reads) == 4  # U and V of each arm, read once

    # Split changes and stops reach the loader through its reload check, still without disk reads.
    registry.update_traffic_split(test["test_id"], 0.9)
    loader.reload_model()
    widened = registry.get_ab_test()
    assert all(loader.load_for_user(u)[0] == get_model_for_user(u, widened) for u in user_ids[:500])
    registry.stop_ab_test(test["test_id"], promote="treatment")
    loader.reload_model()
    assert {loader.load_for_user(u)[0] for u in user_ids[:500]} == {treatment}
    assert max(reads.values()) == 1 and len(reads) == 4
    loader.close()

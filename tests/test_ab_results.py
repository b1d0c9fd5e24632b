"""A/B outcomes and results: recording batches (retries count once), the analysis through the
registry, promoting the winner on stop, the CLI and the reporting view."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from registry import InvalidArgumentError, ModelNotFoundError, audit
from registry.cli import app
from registry_snapshot import snapshot


@pytest.fixture
def test_id(registry, model_dir) -> str:  # type: ignore[no-untyped-def]
    control = registry.register_model(model_dir("als/v1", seed=1), "als", {}, {"ndcg@10": 0.21}, {}, version="v1")
    treatment = registry.register_model(model_dir("als/v2", seed=2), "als", {}, {"ndcg@10": 0.20}, {}, version="v2")
    registry.select_best_model()
    return registry.start_ab_test(control, treatment, 0.5, test_id="t1", minimum_detectable_effect=0.1)["test_id"]


def feed(registry, test_id: str, *, rate_c: float, rate_t: float, batches: int, size: int, seed: int = 0) -> None:  # type: ignore[no-untyped-def]
    """Daily batches ``s<seed>-day<n>`` of binomial conversions for both arms."""
    rng = np.random.default_rng(seed)
    for day in range(batches):
        for arm, rate in (("control", rate_c), ("treatment", rate_t)):
            registry.record_ab_outcomes(test_id, arm, size, int(rng.binomial(size, rate)), batch_id=f"s{seed}-day{day}")


def test_record_counts_a_retried_batch_once(registry, test_id: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert registry.record_ab_outcomes(test_id, "control", 1000, 100, batch_id="b1")["recorded"] is True
    before = snapshot(registry, tmp_path)
    assert registry.record_ab_outcomes(test_id, "control", 1000, 100, batch_id="b1")["recorded"] is False
    assert snapshot(registry, tmp_path) == before
    with pytest.raises(InvalidArgumentError, match="already recorded with other figures"):
        registry.record_ab_outcomes(test_id, "control", 1000, 101, batch_id="b1")
    registry.record_ab_outcomes(test_id, "treatment", 1000, 120, batch_id="b1")  # same batch id, other arm
    result = registry.ab_test_results(test_id)
    arms = {arm["arm"]: arm for arm in result["arms"]}
    assert arms["control"]["exposures"] == 1000 and arms["control"]["rate"] == pytest.approx(0.1)
    assert arms["treatment"]["rate"] == pytest.approx(0.12)
    events = registry.context.read(lambda s: audit.query_events(s, action="AB_OUTCOMES"))
    assert len(events) == 2 and events[0]["target"] == test_id


@pytest.mark.parametrize("kwargs, message", [
    ({"arm": "both", "exposures": 10, "conversions": 1}, "arm must be"),
    ({"arm": "control", "exposures": -1, "conversions": 0}, "non-negative integer"),
    ({"arm": "control", "exposures": 10, "conversions": 11}, "cannot exceed"),
    ({"arm": "control", "exposures": 10, "conversions": True}, "non-negative integer"),
    ({"arm": "control", "exposures": 10}, "a batch needs an outcome"),
    ({"arm": "control", "exposures": 10, "value_sum": 5.0}, "together"),
    ({"arm": "control", "exposures": 10, "value_sum": 50.0, "value_sum_squares": 10.0}, "cannot be the sum"),
    ({"arm": "control", "exposures": 10, "value_sum": float("nan"), "value_sum_squares": 10.0}, "finite"),
    ({"arm": "control", "exposures": 10, "conversions": 1, "batch_id": "bad id"}, "invalid batch_id"),
])
def test_bad_outcomes_change_nothing(registry, test_id: str, tmp_path, kwargs, message) -> None:  # type: ignore[no-untyped-def]
    kwargs = {"batch_id": "b1", **kwargs}
    before = snapshot(registry, tmp_path)
    with pytest.raises(InvalidArgumentError, match=message):
        registry.record_ab_outcomes(test_id, **kwargs)
    assert snapshot(registry, tmp_path) == before


def test_unknown_test_and_bad_options(registry, test_id: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ModelNotFoundError):
        registry.record_ab_outcomes("nope", "control", 10, 1, batch_id="b1")
    with pytest.raises(InvalidArgumentError, match="method"):
        registry.ab_test_results(test_id, method="bayes")
    with pytest.raises(InvalidArgumentError, match="metric"):
        registry.ab_test_results(test_id, metric="revenue")
    with pytest.raises(InvalidArgumentError, match="minimum_detectable_effect"):
        registry.start_ab_test("als_v1", "als_v2", 0.5, minimum_detectable_effect=0)


def test_results_keep_running_then_declare_the_winner(registry, test_id: str) -> None:  # type: ignore[no-untyped-def]
    empty = registry.ab_test_results(test_id)
    assert empty["verdict"] == "keep running" and empty["batches"] == 0
    feed(registry, test_id, rate_c=0.10, rate_t=0.13, batches=2, size=2000)
    early = registry.ab_test_results(test_id)
    assert early["verdict"] == "keep running" and early["exposures_needed"] > 0 and not early["final"]
    assert early["method"] == "fixed_horizon" and "fixed-horizon" in early["method_name"]
    assert early["minimum_detectable_effect"] == 0.1 and early["planned_exposures"] > 8000
    feed(registry, test_id, rate_c=0.10, rate_t=0.13, batches=14, size=2000, seed=1)
    done = registry.ab_test_results(test_id)
    assert done["verdict"] == "treatment wins" and done["final"] and done["exposures_needed"] == 0
    treatment = done["arms"][1]
    assert treatment["lift_ci_low"] > 0 and treatment["p_value"] < 0.05
    assert done["lift"] == pytest.approx(treatment["lift"])
    sequential = registry.ab_test_results(test_id, method="msprt")
    assert sequential["method"] == "msprt" and "mSPRT" in sequential["method_name"]
    assert sequential["ci_high"] - sequential["ci_low"] > done["ci_high"] - done["ci_low"]  # always-valid is wider


def test_continuous_outcomes_from_sums(registry, test_id: str) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(4)
    for day in range(30):
        for arm, mean in (("control", 2.0), ("treatment", 2.0)):
            values = rng.poisson(mean, 500).astype(float)
            registry.record_ab_outcomes(test_id, arm, 500, batch_id=f"d{day}", value_sum=float(values.sum()),
                                        value_sum_squares=float((values**2).sum()))
    result = registry.ab_test_results(test_id, metric="value")
    assert result["arms"][0]["mean"] == pytest.approx(2.0, abs=0.05)
    assert result["verdict"] == "no detectable difference" and result["final"]
    assert registry.ab_test_results(test_id)["batches"] == 0  # no conversion batches recorded


def test_stop_promotes_the_winner_with_its_evidence(registry, test_id: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    feed(registry, test_id, rate_c=0.10, rate_t=0.13, batches=2, size=2000)
    before = snapshot(registry, tmp_path)
    with pytest.raises(InvalidArgumentError, match="no winner: the verdict is 'keep running'"):
        registry.stop_ab_test(test_id, promote_winner=True)
    assert snapshot(registry, tmp_path) == before
    feed(registry, test_id, rate_c=0.10, rate_t=0.13, batches=16, size=2000, seed=5)
    stopped = registry.stop_ab_test(test_id, promote_winner=True)
    assert stopped["status"] == "stopped" and stopped["promoted"] == "treatment"
    assert registry.get_current_best()["model_id"] == "als_v2"
    events = {e["action"]: e for e in registry.context.read(lambda s: audit.query_events(s))}
    assert events["AB_STOP"]["details"]["result"]["verdict"] == "treatment wins"
    assert events["AB_PROMOTE"]["details"]["result"]["p_value"] < 0.05
    with pytest.raises(InvalidArgumentError, match="not both"):
        registry.stop_ab_test(test_id, promote="control", promote_winner=True)


def test_cli_record_results_and_stop(registry, test_id: str, registry_path, database_url) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    base = ["--registry", str(registry_path), "--database-url", database_url]
    recorded = runner.invoke(app, [*base, "ab", "record", test_id, "control", "--exposures", "15000",
                                   "--conversions", "1500", "--batch-id", "d1"])
    assert recorded.exit_code == 0, recorded.output
    runner.invoke(app, [*base, "ab", "record", test_id, "treatment", "--exposures", "15000", "--conversions", "1800",
                        "--batch-id", "d1"])
    table = runner.invoke(app, [*base, "ab", "results", test_id])
    assert table.exit_code == 0, table.output
    assert "treatment wins" in table.output and "fixed-horizon" in table.output
    as_json = runner.invoke(app, [*base, "--json", "ab", "results", test_id, "--method", "msprt"])
    document = json.loads(as_json.output)
    assert document["method"] == "msprt" and document["arms"][1]["exposures"] == 15000
    stop = runner.invoke(app, [*base, "ab", "stop", test_id, "--promote-winner"])
    assert stop.exit_code == 0, stop.output
    assert "promoted the treatment" in stop.output
    assert registry.get_current_best()["model_id"] == "als_v2"


def test_reporting_view_totals(registry, test_id: str) -> None:  # type: ignore[no-untyped-def]
    registry.record_ab_outcomes(test_id, "control", 1000, 100, batch_id="b1")
    registry.record_ab_outcomes(test_id, "control", 3000, 200, batch_id="b2")
    registry.record_ab_outcomes(test_id, "treatment", 500, batch_id="b1", value_sum=100.0, value_sum_squares=400.0)
    rows = registry.context.read(lambda s: [tuple(r) for r in s.execute(text(
        "SELECT arm, model_id, batches, exposures, conversions, conversion_rate, mean_value "
        "FROM v_ab_arm_totals ORDER BY arm"))])
    assert rows[0][:5] == ("control", "als_v1", 2, 4000, 300) and rows[0][5] == pytest.approx(0.075)
    assert rows[1][:3] == ("treatment", "als_v2", 1) and rows[1][5] is None and rows[1][6] == pytest.approx(0.2)

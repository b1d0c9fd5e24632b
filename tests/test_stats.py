"""registry.stats: the t distribution and paired tests against scipy, and seeded simulations of
the paired bootstrap and the A/B methods (false alarms under no difference, power under an effect)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from registry import ab_results, stats


@pytest.mark.parametrize("df", [1, 2, 5, 30, 499, 20000])
def test_student_t_matches_scipy(df: int) -> None:
    for t in (-6.0, -2.1, -0.3, 0.0, 0.7, 1.96, 4.5):
        assert stats.student_t_cdf(t, df) == pytest.approx(scipy_stats.t.cdf(t, df), abs=1e-11)
    for q in (0.6, 0.9, 0.975, 0.995):
        assert stats.student_t_ppf(q, df) == pytest.approx(scipy_stats.t.ppf(q, df), abs=1e-8)
        assert stats.student_t_ppf(1 - q, df) == pytest.approx(scipy_stats.t.ppf(1 - q, df), abs=1e-8)


def test_paired_t_test_matches_scipy() -> None:
    rng = np.random.default_rng(3)
    a = rng.random(500)
    b = a + rng.normal(0.01, 0.1, 500)
    ours = stats.paired_t_test(a, b, confidence=0.9)
    theirs = scipy_stats.ttest_rel(b, a)
    interval = theirs.confidence_interval(confidence_level=0.9)
    assert ours.p_value == pytest.approx(theirs.pvalue, rel=1e-9)
    assert (ours.ci_low, ours.ci_high) == pytest.approx((interval.low, interval.high), rel=1e-9)
    assert ours.difference == pytest.approx(b.mean() - a.mean()) and ours.n_users == 500
    assert ours.relative == pytest.approx(b.mean() / a.mean() - 1)
    assert ours.relative_ci_low < ours.relative < ours.relative_ci_high


def test_paired_bootstrap_is_seeded_and_agrees_with_the_t_test_on_large_samples() -> None:
    rng = np.random.default_rng(5)
    a = rng.random(4000)
    b = a + rng.normal(0.02, 0.2, 4000)
    first = stats.paired_bootstrap(a, b, seed=11)
    assert first == stats.paired_bootstrap(a, b, seed=11)
    assert first != stats.paired_bootstrap(a, b, seed=12)
    t = stats.paired_t_test(a, b)
    assert first.ci_low == pytest.approx(t.ci_low, abs=0.002) and first.ci_high == pytest.approx(t.ci_high, abs=0.002)
    assert first.relative_ci_low == pytest.approx(t.relative_ci_low, abs=0.01)
    assert first.p_value < 0.01 and t.p_value < 0.01


def test_paired_inputs_are_checked() -> None:
    with pytest.raises(ValueError, match="same length"):
        stats.paired_bootstrap([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="at least 2"):
        stats.paired_t_test([1.0], [2.0])
    with pytest.raises(ValueError, match="finite"):
        stats.paired_t_test([1.0, math.nan], [2.0, 1.0])
    with pytest.raises(ValueError, match="unknown method"):
        stats.paired_compare([1.0, 2.0], [1.0, 3.0], method="wilcoxon")
    same = stats.paired_t_test([1.0, 2.0, 3.0], [1.5, 2.5, 3.5])  # zero spread of the differences
    assert (same.ci_low, same.ci_high, same.p_value) == (0.5, 0.5, 0.0)


def test_bootstrap_false_alarms_under_no_difference_are_near_five_percent() -> None:
    """1,000 comparisons of two models with no true difference: the 95% interval excludes 0 in 3-7%."""
    rng = np.random.default_rng(2026)
    excluded = 0
    for trial in range(1000):
        base = rng.random(150)
        a = np.clip(base + rng.normal(0, 0.15, 150), 0, 1)
        b = np.clip(base + rng.normal(0, 0.15, 150), 0, 1)
        result = stats.paired_bootstrap(a, b, resamples=500, seed=trial)
        excluded += result.ci_low > 0 or result.ci_high < 0
    assert 30 <= excluded <= 70, excluded


# --------------------------------------------------------------------------- A/B methods


def simulate_looks(rng: np.random.Generator, *, rate: float, lift: float, batches: int, batch: int,
                   share: float = 0.5) -> list[tuple[stats.ArmStats, stats.ArmStats]]:
    """Cumulative (control, treatment) conversion stats after each daily batch."""
    treated = rng.binomial(batch, share, size=batches)
    conversions_t = rng.binomial(treated, rate * (1 + lift))
    conversions_c = rng.binomial(batch - treated, rate)
    looks = []
    for n_t, n_c, c_t, c_c in zip(np.cumsum(treated), np.cumsum(batch - treated), np.cumsum(conversions_t),
                                  np.cumsum(conversions_c), strict=True):
        looks.append((stats.ArmStats.from_counts(int(n_c), int(c_c)), stats.ArmStats.from_counts(int(n_t), int(c_t))))
    return looks


def verdicts_at_every_look(looks, method: str, mde: float) -> list[str]:  # type: ignore[no-untyped-def]
    return [ab_results.analyse(looks[:k], metric="conversion", method=method, mde=mde, treatment_share=0.5,
                               confidence=0.95)["verdict"] for k in range(1, len(looks) + 1)]


WINS = {"treatment wins", "control wins"}


def false_alarms(method: str, trials: int = 1000) -> int:
    """Tests (no true difference, 24 daily batches) in which a winner is declared at some look.

    Both methods make "a winner at some look" the same event as "a winner at the last look":
    the fixed-horizon verdict is frozen once taken (see the next test), and the mSPRT p-value
    is the running minimum over looks (its interval the running intersection).
    """
    rng = np.random.default_rng(7)
    planned = stats.fixed_horizon_exposures(0.09, 0.0979, effect=0.01, treatment_share=0.5)
    batch = math.ceil(planned / 16)  # the planned size is reached around batch 16 of 24
    alarms = 0
    for _ in range(trials):
        looks = simulate_looks(rng, rate=0.1, lift=0.0, batches=24, batch=batch)
        result = ab_results.analyse(looks, metric="conversion", method=method, mde=0.1, treatment_share=0.5,
                                    confidence=0.95)
        alarms += result["verdict"] in WINS
    return alarms


def test_ab_false_alarms_when_looking_after_every_batch() -> None:
    """1,000 tests with no true difference: a winner in 3-7% (fixed horizon), at most 5% (mSPRT)."""
    assert 30 <= false_alarms("fixed_horizon") <= 70
    assert false_alarms("msprt") <= 50


def test_msprt_running_minimum_equals_any_look() -> None:
    rng = np.random.default_rng(12)
    for _ in range(40):
        looks = simulate_looks(rng, rate=0.1, lift=0.05, batches=12, batch=2000)
        verdicts = verdicts_at_every_look(looks, "msprt", 0.1)
        first = next((k for k, v in enumerate(verdicts) if v in WINS), None)
        if first is not None:
            assert all(v == verdicts[first] for v in verdicts[first:])


def test_fixed_horizon_verdict_is_frozen_at_the_planned_size() -> None:
    rng = np.random.default_rng(8)
    planned = stats.fixed_horizon_exposures(0.09, 0.0979, effect=0.01, treatment_share=0.5)
    looks = simulate_looks(rng, rate=0.1, lift=0.0, batches=30, batch=math.ceil(planned / 10))
    results = [ab_results.analyse(looks[:k], metric="conversion", method="fixed_horizon", mde=0.1,
                                  treatment_share=0.5, confidence=0.95) for k in range(1, len(looks) + 1)]
    decided = next(k for k, r in enumerate(results) if r["final"])
    assert 8 <= decided <= 11
    assert all(r["verdict"] == "keep running" and not r["final"] for r in results[:decided])
    frozen = {key: results[decided][key] for key in ("verdict", "difference", "p_value", "ci_low", "decided_at_exposures")}
    assert all({key: r[key] for key in frozen} == frozen for r in results[decided:])


@pytest.mark.parametrize("lift, right", [(0.1, "treatment wins"), (-0.1, "control wins")])
def test_ab_verdict_picks_the_right_arm_under_a_known_effect(lift: float, right: str) -> None:
    rng = np.random.default_rng(9)
    planned = stats.fixed_horizon_exposures(0.09, 0.0979, effect=0.01, treatment_share=0.5)
    outcomes = {"fixed_horizon": [], "msprt": []}  # type: dict[str, list[str]]
    for _ in range(200):
        looks = simulate_looks(rng, rate=0.1, lift=lift, batches=20, batch=math.ceil(planned / 10))
        for method in outcomes:
            outcomes[method].append(ab_results.analyse(looks, metric="conversion", method=method, mde=0.1,
                                                       treatment_share=0.5, confidence=0.95)["verdict"])
    wrong = "control wins" if right == "treatment wins" else "treatment wins"
    for method, verdicts in outcomes.items():
        assert verdicts.count(wrong) == 0, method
        assert verdicts.count(right) >= 140, (method, verdicts.count(right))


def test_reported_sample_size_matches_simulated_power() -> None:
    """The planned size for a +10% lift at 80% power agrees with the size at which 80% of simulated
    fixed-horizon tests find it (within 20%)."""
    rng = np.random.default_rng(10)
    looks = simulate_looks(rng, rate=0.1, lift=0.1, batches=5, batch=2000)
    reported = ab_results.analyse(looks, metric="conversion", method="fixed_horizon", mde=0.1, treatment_share=0.5,
                                  confidence=0.95)["planned_exposures"]
    powers = {}
    for fraction in (0.6, 0.8, 1.0, 1.2, 1.4):
        total = int(reported * fraction)
        n = total // 2
        c = rng.binomial(n, 0.1, size=2000)
        t = rng.binomial(n, 0.11, size=2000)
        hits = 0
        for conv_c, conv_t in zip(c, t, strict=True):
            result = stats.two_sample_z(stats.ArmStats.from_counts(n, int(conv_c)), stats.ArmStats.from_counts(n, int(conv_t)))
            hits += result is not None and result.p_value <= 0.05 and result.difference > 0
        powers[total] = hits / 2000
    sizes = sorted(powers)
    crossing = next(size for size in sizes if powers[size] >= 0.8)
    assert abs(crossing - reported) / reported <= 0.2, (reported, powers)

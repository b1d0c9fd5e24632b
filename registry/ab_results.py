"""A/B test results: record what each arm did, and say which arm won.

Outcomes arrive in batches (``record_ab_outcomes``): per arm, exposures plus
either conversions (a rate) or the sum and sum of squares of a per-exposure
value (a continuous metric such as clicks per session). A ``batch_id`` makes a
retried batch count once. :func:`ab_test_results` analyses them with one of two
methods that stay valid when results are looked at every day:

* ``"fixed_horizon"`` (default): a two-sample z-test at the sample size planned
  for the test's minimum detectable effect (80% power). Before that size is
  reached the verdict is ``keep running`` (the figures shown are provisional);
  at the first batch that reaches it the verdict is taken and frozen, so later
  looks and later batches cannot change it.
* ``"msprt"``: the always-valid mixture sequential probability ratio test; its
  p-value and interval may be acted on at any batch, so a clear winner can stop
  the test early. It is conservative (fewer false alarms than its level).

Each look is the cumulative data after one recorded batch (in recording order).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import audit, stats
from .errors import InvalidArgumentError
from .models import ABOutcome, ABTest
from .queries import ARMS, require_test
from .validation import finite_real, validate_identifier, validate_mde  # noqa: F401 - validate_mde: importable here too

if TYPE_CHECKING:
    from .context import RegistryContext

logger = logging.getLogger(__name__)

METHODS = ("fixed_horizon", "msprt")
METRICS = ("conversion", "value")
DEFAULT_MDE = 0.05
POWER = 0.8
# Exposures each arm needs before any verdict (variance estimates are unstable below).
MIN_EXPOSURES_PER_ARM = 100
VERDICTS = ("keep running", "treatment wins", "control wins", "no detectable difference")

__all__ = ["DEFAULT_MDE", "METHODS", "METRICS", "VERDICTS", "ab_test_results", "analyse", "default_metric", "record_ab_outcomes"]


def _count(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) and not hasattr(value, "__index__"):
        raise InvalidArgumentError(f"{field} must be a non-negative integer, got {value!r}")
    number = int(value)
    if number < 0 or number > 2**62:
        raise InvalidArgumentError(f"{field} must be a non-negative integer, got {value!r}")
    return number


def _outcome_fields(arm: object, exposures: object, conversions: object, value_sum: object,
                    value_sum_squares: object) -> dict[str, Any]:
    if arm not in ARMS:
        raise InvalidArgumentError(f"arm must be 'control' or 'treatment', got {arm!r}")
    count = _count(exposures, "exposures")
    fields: dict[str, Any] = {"arm": arm, "exposures": count, "conversions": None, "value_sum": None,
                              "value_sum_squares": None}
    if conversions is not None:
        converted = _count(conversions, "conversions")
        if converted > count:
            raise InvalidArgumentError(f"conversions ({converted}) cannot exceed exposures ({count})")
        fields["conversions"] = converted
    if (value_sum is None) != (value_sum_squares is None):
        raise InvalidArgumentError("give value_sum and value_sum_squares together (sum and sum of squares of the values)")
    if value_sum is not None:
        total, squares = finite_real(value_sum), finite_real(value_sum_squares)
        if total is None or squares is None or squares < 0:
            raise InvalidArgumentError(
                f"value_sum and value_sum_squares must be finite numbers (squares >= 0), got {value_sum!r}, {value_sum_squares!r}"
            )
        if total * total > count * squares * (1 + 1e-9) + 1e-9:  # Cauchy-Schwarz: sum^2 <= n * sum of squares
            raise InvalidArgumentError(
                f"value_sum^2 ({total * total:g}) exceeds exposures x value_sum_squares ({count * squares:g}): "
                "these cannot be the sum and sum of squares of the same values"
            )
        fields["value_sum"], fields["value_sum_squares"] = total, squares
    if fields["conversions"] is None and fields["value_sum"] is None:
        raise InvalidArgumentError("give conversions, or value_sum and value_sum_squares (a batch needs an outcome)")
    return fields


def record_ab_outcomes(
    context: RegistryContext,
    test_id: str,
    arm: str,
    exposures: int,
    conversions: int | None = None,
    *,
    batch_id: str,
    value_sum: float | None = None,
    value_sum_squares: float | None = None,
) -> dict[str, Any]:
    """Add one batch of outcomes for an arm (audit ``AB_OUTCOMES``).

    Args:
        context: the opened registry.
        test_id: the A/B test (running or stopped: late batches are accepted).
        arm: ``'control'`` or ``'treatment'``.
        exposures: users (or sessions) exposed in this batch.
        conversions: how many of them converted (conversion metrics).
        batch_id: the batch's id, unique per test and arm; recording the same
            batch again with the same figures changes nothing.
        value_sum: sum of a per-exposure value (continuous metrics) ...
        value_sum_squares: ... and the sum of its squares.

    Returns:
        ``{"test_id", "arm", "batch_id", "recorded"}``; ``recorded`` is False for a retried batch.

    Raises:
        ModelNotFoundError: unknown test.
        InvalidArgumentError: bad figures, or a batch id already recorded with other figures.
    """
    validate_identifier(test_id, "test_id")
    validate_identifier(batch_id, "batch_id")
    fields = _outcome_fields(arm, exposures, conversions, value_sum, value_sum_squares)

    def work(session: Session) -> dict[str, Any]:
        test = require_test(session, test_id)
        existing = session.scalars(select(ABOutcome).where(
            ABOutcome.test_id == test.test_id, ABOutcome.arm == arm, ABOutcome.batch_id == batch_id)).first()
        result = {"test_id": test.test_id, "arm": arm, "batch_id": batch_id, "recorded": existing is None}
        if existing is not None:
            recorded = {name: getattr(existing, name) for name in fields}
            if recorded != fields:
                raise InvalidArgumentError(
                    f"batch {batch_id!r} of the {arm} arm of {test.test_id!r} was already recorded with other figures "
                    f"({recorded}); a retry must send the same figures, a new batch needs a new batch_id"
                )
            return result
        session.add(ABOutcome(test_id=test.test_id, batch_id=batch_id, **fields))
        summary = f"arm={arm} batch={batch_id} exposures={fields['exposures']}"
        if fields["conversions"] is not None:
            summary += f" conversions={fields['conversions']}"
        if fields["value_sum"] is not None:
            summary += f" value_sum={fields['value_sum']:g}"
        audit.record(session, "AB_OUTCOMES", test.test_id, summary, {"batch_id": batch_id, **fields})
        return result

    return context.mutate(work)


# --------------------------------------------------------------------------- analysis


def _arm_stats(metric: str, exposures: int, conversions: int, value_sum: float, value_sum_squares: float) -> stats.ArmStats:
    if metric == "conversion":
        return stats.ArmStats.from_counts(exposures, conversions)
    return stats.ArmStats.from_sums(exposures, value_sum, value_sum_squares)


def _cumulative_looks(rows: list[tuple[str, int, int | None, float | None, float | None]], metric: str
                      ) -> list[tuple[stats.ArmStats, stats.ArmStats]]:
    """``(control, treatment)`` cumulative stats after each batch that carries the metric."""
    totals = {arm: [0, 0, 0.0, 0.0] for arm in ARMS}
    looks = []
    for arm, exposures, conversions, value_sum, value_sum_squares in rows:
        if (conversions if metric == "conversion" else value_sum) is None:
            continue
        total = totals[arm]
        total[0] += exposures
        total[1] += conversions or 0
        total[2] += value_sum or 0.0
        total[3] += value_sum_squares or 0.0
        looks.append(tuple(_arm_stats(metric, *totals[side]) for side in ARMS))  # type: ignore[arg-type]
    return looks  # type: ignore[return-value]


def _planned_total(control: stats.ArmStats, treatment: stats.ArmStats, metric: str, mde: float, share: float,
                   method: str, confidence: float) -> int | None:
    """Total exposures to detect a relative lift of ``mde`` over the control's mean (80% power)."""
    effect = mde * control.mean
    if metric == "conversion":
        lifted = min(1.0, control.mean * (1 + mde))
        treatment_variance = lifted * (1 - lifted)
    else:
        treatment_variance = treatment.variance if treatment.n > 1 else control.variance
    if method == "fixed_horizon":
        return stats.fixed_horizon_exposures(control.variance, treatment_variance, effect=effect,
                                             treatment_share=share, confidence=confidence, power=POWER)
    return stats.required_exposures(control, stats.ArmStats(treatment.n, treatment.mean, treatment_variance),
                                    effect=effect, treatment_share=share, tau=abs(effect),
                                    alpha=1 - confidence, power=POWER)


def _verdict(low: float, high: float, significant: bool) -> str:
    if significant and low > 0:
        return "treatment wins"
    if significant and high < 0:
        return "control wins"
    return "no detectable difference"


def analyse(looks: list[tuple[stats.ArmStats, stats.ArmStats]], *, metric: str, method: str, mde: float,
            treatment_share: float, confidence: float) -> dict[str, Any]:
    """The analysis of a sequence of cumulative looks (pure; the simulations call it directly).

    Returns the method's figures: ``difference``, ``ci_low``/``ci_high`` (absolute),
    ``lift``/``lift_ci_low``/``lift_ci_high`` (relative to the control's mean),
    ``p_value``, ``planned_exposures``, ``exposures_needed`` (still to collect),
    ``verdict``, ``final`` (True once the verdict can no longer change), ``decided_at_exposures``.
    """
    alpha = 1 - confidence
    out: dict[str, Any] = {
        "difference": None, "ci_low": None, "ci_high": None, "lift": None, "lift_ci_low": None,
        "lift_ci_high": None, "p_value": None, "planned_exposures": None, "exposures_needed": None,
        "verdict": "keep running", "final": False, "decided_at_exposures": None,
    }
    usable = [(c, t) for c, t in looks if c.n >= MIN_EXPOSURES_PER_ARM and t.n >= MIN_EXPOSURES_PER_ARM]
    if not usable:
        return out
    control, treatment = usable[-1]
    total = control.n + treatment.n
    if method == "fixed_horizon":
        figures: tuple[float, float, float, float] | None = None
        decided = None
        for look_control, look_treatment in usable:
            planned = _planned_total(look_control, look_treatment, metric, mde, treatment_share, method, confidence)
            if planned is not None and look_control.n + look_treatment.n >= planned:
                control, treatment, decided = look_control, look_treatment, planned
                break
        result = stats.two_sample_z(control, treatment, confidence=confidence)
        if result is not None:
            figures = (result.difference, result.ci_low, result.ci_high, result.p_value)
        planned = decided or _planned_total(control, treatment, metric, mde, treatment_share, method, confidence)
        out["planned_exposures"] = planned
        out["exposures_needed"] = None if planned is None else max(0, planned - (control.n + treatment.n))
        if decided is not None and figures is not None:
            out["verdict"] = _verdict(figures[1], figures[2], figures[3] <= alpha)
            out["final"], out["decided_at_exposures"] = True, control.n + treatment.n
    else:
        sequence = [stats.msprt_look(c, t, tau=abs(mde * (c.mean * c.n + t.mean * t.n) / (c.n + t.n)), alpha=alpha)
                    for c, t in usable]
        summary = stats.sequential_summary(sequence, alpha)
        figures = None
        if summary is not None:
            p_value, low, high = summary
            figures = (treatment.mean - control.mean, low, high, p_value)
        planned = _planned_total(control, treatment, metric, mde, treatment_share, method, confidence)
        out["planned_exposures"] = planned
        out["exposures_needed"] = None if planned is None else max(0, planned - total)
        if figures is not None and figures[3] <= alpha:
            out["verdict"] = _verdict(figures[1], figures[2], True)
            out["final"] = True
        elif planned is not None and total >= planned:
            out["verdict"] = "no detectable difference"
    if figures is not None:
        difference, low, high, p_value = figures
        out.update(difference=difference, ci_low=low, ci_high=high, p_value=p_value)
        if control.mean > 0:
            out.update(lift=difference / control.mean, lift_ci_low=low / control.mean, lift_ci_high=high / control.mean)
    return out


def results_in_session(session: Session, test: ABTest, *, metric: str, method: str, confidence: float) -> dict[str, Any]:
    """Body of :func:`ab_test_results` inside an open transaction."""
    rows = session.execute(
        select(ABOutcome.arm, ABOutcome.exposures, ABOutcome.conversions, ABOutcome.value_sum, ABOutcome.value_sum_squares)
        .where(ABOutcome.test_id == test.test_id).order_by(ABOutcome.id)
    ).all()
    looks = _cumulative_looks([tuple(row) for row in rows], metric)  # type: ignore[misc]
    mde = test.minimum_detectable_effect or DEFAULT_MDE
    analysis = analyse(looks, metric=metric, method=method, mde=mde, treatment_share=test.traffic_split,
                       confidence=confidence)
    control, treatment = looks[-1] if looks else (stats.ArmStats(0, 0.0, 0.0), stats.ArmStats(0, 0.0, 0.0))
    arms = []
    for arm, model_id, arm_stats in (("control", test.control_model, control), ("treatment", test.treatment_model, treatment)):
        entry: dict[str, Any] = {"arm": arm, "model_id": model_id, "exposures": arm_stats.n,
                                 "rate" if metric == "conversion" else "mean": arm_stats.mean if arm_stats.n else None}
        if arm == "treatment":
            entry.update({key: analysis[key] for key in ("lift", "lift_ci_low", "lift_ci_high", "p_value")})
        arms.append(entry)
    return {
        "test_id": test.test_id, "status": test.status, "metric": metric, "method": method,
        "method_name": METHOD_NAMES[method], "confidence": confidence, "minimum_detectable_effect": mde,
        "traffic_split": test.traffic_split, "batches": len(looks), "arms": arms, **analysis,
    }


METHOD_NAMES = {
    "fixed_horizon": "fixed-horizon two-sample z-test (verdict only at the planned sample size)",
    "msprt": "always-valid mixture sequential probability ratio test (mSPRT)",
}


def validate_result_options(metric: object, method: object, confidence: object) -> tuple[str, str, float]:
    """Checked ``(metric, method, confidence)``."""
    if metric not in METRICS:
        raise InvalidArgumentError(f"metric must be one of {METRICS}, got {metric!r}")
    if method not in METHODS:
        raise InvalidArgumentError(f"method must be one of {METHODS}, got {method!r}")
    level = finite_real(confidence)
    if level is None or not 0.5 <= level < 1.0:
        raise InvalidArgumentError(f"confidence must be a number in [0.5, 1), e.g. 0.95, got {confidence!r}")
    return str(metric), str(method), level


def ab_test_results(context: RegistryContext, test_id: str | None = None, *, metric: str | None = "conversion",
                    method: str = "fixed_horizon", confidence: float = 0.95) -> dict[str, Any]:
    """Which arm won: per arm exposures and rate (or mean), the treatment's lift over control with
    its interval, the p-value, the exposures still needed for the test's minimum detectable effect,
    and a verdict (one of :data:`VERDICTS`).

    Args:
        context: the opened registry.
        test_id: the test (None: the running one).
        metric: ``"conversion"`` (batches with conversions) or ``"value"`` (batches with sums);
            None: conversion when any batch carries conversions, else value.
        method: ``"fixed_horizon"`` or ``"msprt"`` (see the module docstring).
        confidence: the interval's level; ``1 - confidence`` is the test's false-alarm rate.

    Raises:
        ModelNotFoundError: unknown test (or none running).
        InvalidArgumentError: bad options.
    """
    if test_id is not None:
        validate_identifier(test_id, "test_id")
    checked, method, level = validate_result_options("conversion" if metric is None else metric, method, confidence)

    def work(session: Session) -> dict[str, Any]:
        test = require_test(session, test_id)
        chosen = checked if metric is not None else default_metric(session, test.test_id)
        return results_in_session(session, test, metric=chosen, method=method, confidence=level)

    return context.read(work)


def default_metric(session: Session, test_id: str) -> str:
    """``"conversion"`` when any batch of the test carries conversions, else ``"value"``."""
    has_conversions = session.scalar(select(ABOutcome.id).where(
        ABOutcome.test_id == test_id, ABOutcome.conversions.is_not(None)).limit(1)) is not None
    return "conversion" if has_conversions else "value"


def winner(session: Session, test: ABTest) -> tuple[str, dict[str, Any]]:
    """The winning arm by the default analysis of conversions (else of values), and that result.

    Raises:
        InvalidArgumentError: no arm has won yet (the verdict is named).
    """
    result = results_in_session(session, test, metric=default_metric(session, test.test_id),
                                method="fixed_horizon", confidence=0.95)
    if result["verdict"] == "treatment wins":
        return "treatment", result
    if result["verdict"] == "control wins":
        return "control", result
    needed = result["exposures_needed"]
    raise InvalidArgumentError(
        f"A/B test {test.test_id!r} has no winner: the verdict is {result['verdict']!r}"
        + (f" ({needed} more exposures planned)" if needed else "")
        + "; stop it without promoting, or promote an arm explicitly"
    )

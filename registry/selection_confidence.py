"""``select_best_model(..., confidence=0.95)``: replace the current best only on evidence.

The top candidate by the metric (as in :func:`registry.selection.best_candidate`)
is compared with the current best on the users both were evaluated on (their
``{type}_user_eval.npz`` files, checksums verified), by a seeded paired bootstrap
of the relative improvement ``mean(candidate) / mean(current) - 1``. The candidate
replaces the current best only when the lower bound of that interval is above
``min_improvement``; the selection row's ``reason`` and the ``SELECT_BEST`` audit
event carry the interval.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from . import evaluation, selection
from .errors import InvalidArgumentError, NoUserEvaluationError
from .models import CURRENT_BEST_ALIAS

if TYPE_CHECKING:
    from .context import RegistryContext

logger = logging.getLogger(__name__)

METHOD = "paired_bootstrap"
RESAMPLES = 2000
SEED = 0


def reason_text(comparison: dict[str, Any]) -> str:
    """One line for the selection row: relative improvement, interval, p-value, users, method."""
    level = round(comparison["confidence"] * 100, 4)
    return (
        f"{comparison['metric']} {comparison['relative']:+.2%} over {comparison['model_a']} "
        f"[{level:g}% CI {comparison['relative_ci_low']:+.2%}, {comparison['relative_ci_high']:+.2%}], "
        f"p={comparison['p_value']:.3g}, {comparison['n_users']} users, {comparison['method']}"
    )


def select_best_with_confidence(
    context: RegistryContext, session: Session, metric: str, min_improvement: float, model_type: str | None,
    confidence: float, require_evaluation: bool, alias: str = CURRENT_BEST_ALIAS,
) -> dict[str, Any] | None:
    """Body of ``select_best_model`` when ``confidence`` is given (arguments validated); moves ``alias``.

    Returns the doc's selection dict plus ``comparison`` (the interval, or None when
    there was nothing to compare with) and, on a fallback, ``fallback`` (why).

    Raises:
        NoUserEvaluationError: a model lacks per-user evaluation and ``require_evaluation``.
        InvalidArgumentError: the current best's mean is not positive (no relative interval).
    """
    winner = selection.best_candidate(session, metric, 0.0, model_type)
    if winner is None:
        logger.warning("no active model has metric %r%s", metric, f" (type {model_type})" if model_type else "")
        return None
    model, value = winner.model, winner.value
    previous_id = selection.pointer_target(session, alias)
    if previous_id is None or previous_id == model.model_id:
        result = selection.select_best(session, metric, 0.0, model_type, None, alias=alias)
        return None if result is None else {**result, "comparison": None}
    try:
        comparison = evaluation.compare_in_session(
            context, session, previous_id, model.model_id, metric,
            confidence=confidence, method=METHOD, seed=SEED, resamples=RESAMPLES,
        )
    except NoUserEvaluationError as exc:
        if require_evaluation:
            raise NoUserEvaluationError(
                f"{exc}. select_best_model(confidence=...) compares per-user results; pass "
                "require_evaluation=False to fall back to comparing the registered averages"
            ) from None
        logger.warning("no per-user evaluation (%s); falling back to the registered averages", exc)
        result = selection.select_best(session, metric, min_improvement, model_type, None, alias=alias)
        return None if result is None else {**result, "comparison": None, "fallback": str(exc)}
    if comparison["relative"] is None:
        raise InvalidArgumentError(
            f"{'the current best' if alias == CURRENT_BEST_ALIAS else f'alias {alias!r} target'} {previous_id!r} averages {comparison['mean_a']:g} on {metric}; "
            "a relative improvement needs a positive baseline"
        )
    if comparison["relative_ci_low"] <= min_improvement:
        logger.info("%s not selected: lower bound %+.4f of the improvement over %s is not above %.4f",
                    model.model_id, comparison["relative_ci_low"], previous_id, min_improvement)
        return None
    previous_value = selection.metric_value(session, previous_id, metric)
    selection.move_pointer(session, alias, model, metric, value, selection.AUTO, reason_text(comparison))
    selection.record_move(
        session, alias, "SELECT_BEST", model.model_id,
        f"{metric}={value:.4f}{selection.improvement_text(value, previous_value)} "
        f"ci=[{comparison['relative_ci_low']:+.2%},{comparison['relative_ci_high']:+.2%}]",
        {"metric": metric, "value": value, "previous_model_id": previous_id, "previous_value": previous_value,
         "min_improvement": min_improvement, "model_type": model_type, "comparison": comparison},
    )
    result = selection.selection_result(session, model, metric, value, changed=True, previous_model_id=previous_id)
    return {**result, "comparison": comparison}

"""Choosing the current best: selection by metric, manual promotion, rollback, history.

Every function here runs inside the caller's write (or read) transaction; the
registry classes validate arguments first and wrap these in ``RegistryContext.mutate``.
The pointer is ``settings.current_model_id``; each change adds a ``selections`` row
and an audit event in the same transaction.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from . import audit
from .errors import InvalidArgumentError, ModelInUseError, ModelNotFoundError
from .export import current_best_info, iso, metrics_by_model, model_info
from .models import CURRENT_BEST_ALIAS, Model, ModelMetric, Selection, Settings
from .validation import finite_real

logger = logging.getLogger(__name__)


def baseline_improvement(baseline: dict[str, Any] | None, metric: str, value: float) -> float | None:
    """A model's relative improvement over its baseline on ``metric``, as a fraction.

    Reads ``improvement_<metric>`` or ``improvement_<metric without @>`` (fractions),
    the same keys with ``_pct`` (percent), or computes it from ``baseline_<metric>``.
    None when no figure is available (the model is then not eligible).
    """
    if not baseline:
        return None
    plain = metric.replace("@", "")
    for key in (f"improvement_{metric}", f"improvement_{plain}"):
        figure = finite_real(baseline.get(key))
        if figure is not None:
            return figure
    for key in (f"improvement_{metric}_pct", f"improvement_{plain}_pct"):
        figure = finite_real(baseline.get(key))
        if figure is not None:
            return figure / 100.0
    for key in (f"baseline_{metric}", f"baseline_{plain}"):
        base = finite_real(baseline.get(key))
        if base is not None and base > 0:
            return (value - base) / base
    return None


def non_negative_fraction(value: object, name: str) -> float:
    """A finite number >= 0, or InvalidArgumentError naming ``name``."""
    number = finite_real(value)
    if number is None or number < 0:
        raise InvalidArgumentError(f"{name} must be a finite number >= 0, got {value!r}")
    return number


def improvement_text(value: float, previous: float | None) -> str:
    """`` improvement=+X.X%`` versus the previous best (empty without a usable previous value)."""
    if previous is None or previous == 0:
        return ""
    return f" improvement={(value - previous) / abs(previous) * 100:+.1f}%"


def require_model(session: Session, model_id: str) -> Model:
    """The model row, or ModelNotFoundError naming the id."""
    model = session.get(Model, model_id)
    if model is None:
        raise ModelNotFoundError(f"Model {model_id!r} not found in registry; run `cfreg list` to see registered ids")
    return model


def current_model_id(session: Session) -> str | None:
    """The id of the current best (None when nothing is selected)."""
    return session.scalar(select(Settings.current_model_id).where(Settings.id == 1))


def metric_value(session: Session, model_id: str | None, metric: str) -> float | None:
    """One metric of one model (None when the model lacks it)."""
    if model_id is None:
        return None
    return session.scalar(select(ModelMetric.value).where(ModelMetric.model_id == model_id, ModelMetric.name == metric))


def metrics_of(session: Session, model_id: str) -> dict[str, float]:
    """All metrics of one model."""
    return metrics_by_model(session, [model_id]).get(model_id, {})


def best_candidate(session: Session, metric: str, min_improvement: float, model_type: str | None) -> tuple[Model, float] | None:
    """The eligible active model with the highest ``metric`` (ties: earliest registered)."""
    statement = (
        select(Model, ModelMetric.value)
        .join(ModelMetric, and_(ModelMetric.model_id == Model.model_id, ModelMetric.name == metric))
        .where(Model.status == "active")
        .order_by(ModelMetric.value.desc(), Model.created_at, Model.model_id)
    )
    if model_type is not None:
        statement = statement.where(Model.model_type == model_type)
    if min_improvement <= 0:
        row = session.execute(statement.limit(1)).first()
        return (row[0], row[1]) if row else None
    for model, value in session.execute(statement.execution_options(yield_per=256)):
        improvement = baseline_improvement(model.baseline_comparison, metric, value)
        if improvement is not None and improvement >= min_improvement:
            return model, value
    return None


def set_current(session: Session, settings: Settings, model_id: str, metric: str | None, value: float | None,
                 selected_by: str, reason: str | None) -> None:
    """Move the current-best pointer to ``model_id`` and record the selection row."""
    selection = Selection(
        model_id=model_id, metric=metric, value=value, previous_model_id=settings.current_model_id,
        selected_by=selected_by, reason=reason, actor=audit.current_actor(),
    )
    session.add(selection)
    session.flush()
    settings.current_model_id = model_id
    settings.current_selection_id = selection.id
    if metric and selected_by == "auto":
        settings.selection_criteria = metric


def refresh_current_selection(session: Session, settings: Settings, model_id: str, metrics: dict[str, float]) -> None:
    """Record a new selection row for a current best re-registered with ``overwrite=True``."""
    current = session.get(Selection, settings.current_selection_id) if settings.current_selection_id else None
    metric = current.metric if current else settings.selection_criteria
    selection = Selection(
        model_id=model_id, metric=metric, value=metrics.get(metric) if metric else None,
        previous_model_id=current.previous_model_id if current else None,
        selected_by=current.selected_by if current else "auto",
        reason="re-registered with overwrite=True",
    )
    session.add(selection)
    session.flush()
    settings.current_model_id = model_id
    settings.current_selection_id = selection.id


def previous_best(session: Session, current_model_id: str | None) -> str | None:
    """The model that was current before the current one.

    The newest selection that moved the pointer away from another model; rows that
    re-selected the same model (another metric, overwrite refresh) are skipped.
    """
    statement = select(Selection.previous_model_id).where(
        Selection.alias == CURRENT_BEST_ALIAS, Selection.previous_model_id.is_not(None)
    )
    if current_model_id is not None:
        statement = statement.where(Selection.previous_model_id != current_model_id)
    return session.scalar(statement.order_by(Selection.id.desc()).limit(1))


def selection_result(session: Session, model: Model, metric: str, value: float | None) -> dict[str, Any]:
    """The doc's return shape of ``select_best_model``."""
    return {
        "model_id": model.model_id,
        "model_info": model_info(model, metrics_of(session, model.model_id)),
        "metric": metric,
        "value": value,
    }


def settings_row(session: Session) -> Settings:
    """The single ``settings`` row."""
    settings = session.get(Settings, 1)
    assert settings is not None, "settings row missing (the migration creates it)"
    return settings


def current_selection(session: Session, settings: Settings) -> Selection | None:
    """The selection row in force, if any."""
    return session.get(Selection, settings.current_selection_id) if settings.current_selection_id else None


def select_best(
    session: Session, metric: str, min_improvement: float, model_type: str | None, min_gain_over_current: float | None
) -> dict[str, Any] | None:
    """Body of :meth:`ModelRegistry.select_best_model` (arguments already validated)."""
    winner = best_candidate(session, metric, min_improvement, model_type)
    if winner is None:
        logger.warning("no active model has metric %r%s", metric, f" (type {model_type})" if model_type else "")
        return None
    model, value = winner
    settings = settings_row(session)
    previous_id = settings.current_model_id
    previous_value = metric_value(session, previous_id, metric) if previous_id else None
    if previous_id == model.model_id:
        if min_gain_over_current is not None:
            return None
        current = current_selection(session, settings)
        if current is not None and current.metric == metric:
            return selection_result(session, model, metric, value)
    elif min_gain_over_current is not None and previous_value is not None:
        gain = (value - previous_value) / abs(previous_value) if previous_value else math.inf
        if value <= previous_value or gain < min_gain_over_current:
            logger.info("best %s (%.6g) does not beat current %s (%.6g) by %.1f%%",
                        model.model_id, value, previous_id, previous_value, min_gain_over_current * 100)
            return None
    set_current(session, settings, model.model_id, metric, value, "auto", None)
    audit.record(
        session, "SELECT_BEST", model.model_id,
        f"{metric}={value:.4f}{improvement_text(value, previous_value)}",
        {"metric": metric, "value": value, "previous_model_id": previous_id, "previous_value": previous_value,
         "min_improvement": min_improvement, "model_type": model_type},
    )
    return selection_result(session, model, metric, value)


def promote(session: Session, model_id: str, reason: str | None, metric: str | None) -> dict[str, Any]:
    """Body of :meth:`ModelRegistry.promote_model`."""
    model = require_model(session, model_id)
    if model.status != "active":
        raise ModelInUseError(f"Model {model_id!r} is {model.status}; only active models can become the current best")
    settings = settings_row(session)
    chosen = metric or settings.selection_criteria
    value = metric_value(session, model_id, chosen)
    if settings.current_model_id != model_id:
        previous = settings.current_model_id
        set_current(session, settings, model_id, chosen, value, "manual", reason)
        audit.record(session, "PROMOTE", model_id, f"from={previous or 'none'} reason={reason or 'manual'}",
                     {"previous_model_id": previous, "reason": reason, "metric": chosen})
    return selection_result(session, model, chosen, value)


def rollback(session: Session, to: str | None, reason: str | None) -> dict[str, Any]:
    """Body of :meth:`ModelRegistry.rollback`."""
    settings = settings_row(session)
    current = current_selection(session, settings)
    target_id = to or previous_best(session, settings.current_model_id)
    if target_id is None:
        raise InvalidArgumentError("nothing to roll back to: the registry has no previous current best")
    target = require_model(session, target_id)
    if target.status != "active":
        raise ModelInUseError(f"cannot roll back to {target_id!r}: it is {target.status}")
    chosen = current.metric if current and current.metric else settings.selection_criteria
    value = metric_value(session, target_id, chosen)
    previous = settings.current_model_id
    if previous != target_id:
        set_current(session, settings, target_id, chosen, value, "rollback", reason)
        audit.record(session, "ROLLBACK", target_id, f"from={previous or 'none'}",
                     {"previous_model_id": previous, "reason": reason})
    return selection_result(session, target, chosen, value)


def history(session: Session, limit: int | None) -> list[dict[str, Any]]:
    """Selections newest first, ``is_current`` marking the one in force."""
    current_id = session.scalar(select(Settings.current_selection_id).where(Settings.id == 1))
    statement = select(Selection).where(Selection.alias == CURRENT_BEST_ALIAS).order_by(Selection.id.desc())
    if limit:
        statement = statement.limit(limit)
    return [
        {
            "id": row.id, "model_id": row.model_id, "metric": row.metric, "value": row.value,
            "previous_model_id": row.previous_model_id, "selected_at": iso(row.selected_at),
            "selected_by": row.selected_by, "reason": row.reason, "is_current": row.id == current_id,
        }
        for row in session.scalars(statement)
    ]


def current_best(session: Session) -> dict[str, Any] | None:
    """The doc's ``current_best`` fields plus ``model_info``; None when nothing is selected."""
    settings = settings_row(session)
    if settings.current_model_id is None:
        return None
    model = require_model(session, settings.current_model_id)
    result = current_best_info(model, current_selection(session, settings))
    result["model_info"] = model_info(model, metrics_of(session, model.model_id))
    return result

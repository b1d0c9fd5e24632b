"""Choosing the current best: selection by metric, manual promotion, rollback, history.

Every function here runs inside the caller's write (or read) transaction; the
registry classes validate arguments first and wrap these in ``RegistryContext.mutate``.
The pointer is ``settings.current_model_id``; each change adds a ``selections`` row
and an audit event in the same transaction.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from typing import Any, NamedTuple

from sqlalchemy import Select, and_, bindparam, select
from sqlalchemy.orm import Session

from . import ab_aliases, aliases, audit
from .artifacts import REQUIRED_MODEL_FILES
from .documents import current_best_info, model_info
from .errors import InvalidArgumentError, InvalidStateError, ModelNotFoundError, UnknownMetricError, UnknownModelTypeError
from .history_rows import add_move
from .models import CURRENT_BEST_ALIAS, Model, ModelMetric, Selection, Settings, table
from .settings_access import settings_row, settings_view, update_settings
from .timestamps import format_timestamp as iso
from .validation import finite_real

logger = logging.getLogger(__name__)

# selections.selected_by values written here (A/B tests write "ab_test", imports keep the file's).
AUTO = "auto"
MANUAL = "manual"
ROLLBACK = "rollback"

# Core statements of the hot paths (table-level: no ORM compile or unit of work).
_METRICS = table(ModelMetric)


def _metric_of(model_id: Any, metric: Any) -> Select[float]:
    """``SELECT value`` of one metric of one model (bind parameters in, built once by the callers)."""
    return select(_METRICS.c.value).where(_METRICS.c.model_id == model_id, _METRICS.c.name == metric)


_METRIC_VALUE = _metric_of(bindparam("model_id"), bindparam("name"))
_METRICS_OF_MODEL = (select(_METRICS.c.name, _METRICS.c.value).where(_METRICS.c.model_id == bindparam("model_id"))
                     .order_by(_METRICS.c.name))


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
        raise ModelNotFoundError.unknown_model(model_id)
    return model


def current_model_id(session: Session) -> str | None:
    """The id of the current best (None when nothing is selected)."""
    return session.scalar(select(Settings.current_model_id).where(Settings.id == 1))


def metric_value(session: Session, model_id: str | None, metric: str) -> float | None:
    """One metric of one model (None when the model lacks it)."""
    if model_id is None:
        return None
    return session.scalar(_METRIC_VALUE, {"model_id": model_id, "name": metric})


def metrics_of(session: Session, model_id: str) -> dict[str, float]:
    """All metrics of one model, by name."""
    return {name: value for name, value in session.execute(_METRICS_OF_MODEL, {"model_id": model_id})}


class Candidate(NamedTuple):
    """The winner of a selection and what its move needs, read by one statement."""

    model: Model
    value: float
    previous_value: float | None  # the metric of the alias's current target (None: it has none)
    followed: bool  # whether a running A/B test arm follows the alias


def best_candidate(session: Session, metric: str, min_improvement: float, model_type: str | None,
                   previous_id: str | None = None, alias: str = CURRENT_BEST_ALIAS) -> Candidate | None:
    """The eligible active model with the highest ``metric`` (ties: earliest registered), with the
    metric of ``previous_id`` and whether a running A/B arm follows ``alias``, in one statement."""
    parameters = {"metric": metric, "model_type": model_type, "previous": previous_id, "alias": alias}
    if min_improvement <= 0:
        row = session.execute(_candidates(model_type is not None, first_only=True), parameters).first()
        return Candidate(*row) if row else None
    for row in session.execute(_candidates(model_type is not None, first_only=False), parameters):
        improvement = baseline_improvement(row[0].baseline_comparison, metric, row[1])
        if improvement is not None and improvement >= min_improvement:
            return Candidate(*row)
    return None


@functools.cache
def _candidates(of_one_type: bool, *, first_only: bool) -> Select[Model, float, float, bool]:
    """Active models with metric ``:metric`` (of type ``:model_type``), best first, each row with
    the metric of model ``:previous`` and whether a running test follows alias ``:alias``
    (uncorrelated subqueries: evaluated once). Built once each."""
    previous_value = _metric_of(bindparam("previous"), bindparam("metric"))
    statement = (
        select(Model, ModelMetric.value, previous_value.scalar_subquery(), ab_aliases.RUNNING_TESTS_FOLLOWING.exists())
        .join(ModelMetric, and_(ModelMetric.model_id == Model.model_id, ModelMetric.name == bindparam("metric")))
        .where(Model.status == "active")
        .order_by(ModelMetric.value.desc(), Model.created_at, Model.model_id)
    )
    if of_one_type:
        statement = statement.where(Model.model_type == bindparam("model_type"))
    return statement.limit(1) if first_only else statement.execution_options(yield_per=256)


def set_current(session: Session, model_id: str, metric: str | None, value: float | None,
                selected_by: str, reason: str | None, restored_selection_id: int | None = None,
                followed: bool | None = None) -> None:
    """Move the current-best pointer to ``model_id`` and record the selection row (Core statements;
    see :mod:`registry.settings_access`). ``followed``: whether a running A/B arm follows the
    current best, when the caller already read it (None: asked here)."""
    previous = settings_view(session).current_model_id
    selection_id = add_move(session, alias=CURRENT_BEST_ALIAS, model_id=model_id, previous_model_id=previous,
                            metric=metric, value=value, selected_by=selected_by, reason=reason,
                            restored_selection_id=restored_selection_id)
    if previous != model_id and followed is not False:
        ab_aliases.follow_alias(session, CURRENT_BEST_ALIAS, model_id)
    changes: dict[str, Any] = {"current_model_id": model_id, "current_selection_id": selection_id}
    if metric and selected_by == AUTO:
        changes["selection_criteria"] = metric
    update_settings(session, **changes)


def refresh_current_selection(session: Session, model_id: str, metrics: dict[str, float]) -> None:
    """Record a new selection row for a current best re-registered with ``overwrite=True``."""
    settings = settings_view(session)
    current = session.get(Selection, settings.current_selection_id) if settings.current_selection_id else None
    metric = current.metric if current else settings.selection_criteria
    selection_id = add_move(
        session, alias=CURRENT_BEST_ALIAS, model_id=model_id, metric=metric,
        value=metrics.get(metric) if metric else None,
        previous_model_id=current.previous_model_id if current else None,
        selected_by=current.selected_by if current else AUTO,
        reason="re-registered with overwrite=True",
        restored_selection_id=current.restored_selection_id if current else None,
    )
    update_settings(session, current_model_id=model_id, current_selection_id=selection_id)


def history_line(session: Session, alias: str = CURRENT_BEST_ALIAS) -> list[Selection]:
    """The current line of history, oldest first: the states a rollback walks back through.

    Replays every selection row in order. A row for another model than the last state
    pushes a new state; a row for the same model (re-selection by another metric, an
    overwrite refresh) is not a new state; a rollback row pops back to the state it
    restored (``restored_selection_id``; rows written before that column existed: the
    nearest earlier state of the same model). So after ``A -> B -> C`` one rollback goes
    to B and the next to A; it never toggles back to C. ``alias`` picks whose history
    (default the current best); deleting a named alias ends its line, so setting it
    again starts a new one.
    """
    line: list[Selection] = []
    for row in session.scalars(select(Selection).where(Selection.alias == alias).order_by(Selection.id)):
        if row.model_id is None:  # a named alias was deleted
            line = []
        elif row.selected_by == ROLLBACK:
            index = _restored_index(line, row)
            line = line[: index + 1] if index is not None else [row]
        elif not line or line[-1].model_id != row.model_id:
            line.append(row)
    return line


def _restored_index(line: list[Selection], row: Selection) -> int | None:
    for index in range(len(line) - 2, -1, -1):
        if row.restored_selection_id is not None:
            if line[index].id == row.restored_selection_id:
                return index
        elif line[index].model_id == row.model_id:
            return index
    return None


def pointer_target(session: Session, alias: str) -> str | None:
    """The model id alias ``alias`` points at (``current_best``: the current best)."""
    return aliases.target_of(session, alias)


def move_pointer(session: Session, alias: str, model: Model, metric: str | None, value: float | None,
                 selected_by: str, reason: str | None, restored_selection_id: int | None = None,
                 followed: bool | None = None) -> None:
    """Move ``alias`` to ``model`` with its history row (the caller records the audit event).

    ``followed``: whether a running A/B arm follows ``alias``, when already read (None: asked).
    """
    if alias == CURRENT_BEST_ALIAS:
        set_current(session, model.model_id, metric, value, selected_by, reason,
                    restored_selection_id=restored_selection_id, followed=followed)
    else:
        aliases.point(session, alias, model, reason=reason, selected_by=selected_by, metric=metric, value=value,
                      restored_selection_id=restored_selection_id, followed=followed)


def record_move(session: Session, alias: str, action: str, model_id: str, summary: str, details: dict[str, Any]) -> None:
    """The audit event of a move: target the model for the current best, the alias for a named alias
    (whose summary starts ``-> MODEL`` and whose details add ``alias`` and ``model_id``)."""
    if alias == CURRENT_BEST_ALIAS:
        audit.record(session, action, model_id, summary, details)
    else:
        audit.record(session, action, alias, f"-> {model_id} {summary}", {**details, "alias": alias, "model_id": model_id})


def selection_result(session: Session, model: Model, metric: str | None, value: float | None, *,
                     changed: bool, previous_model_id: str | None) -> dict[str, Any]:
    """The doc's return shape of ``select_best_model`` plus ``changed`` and ``previous_model_id``.

    ``changed`` is False when the call left the current best as it was;
    ``previous_model_id`` is the current best before the call.
    """
    return {
        "model_id": model.model_id,
        "model_info": model_info(model, metrics_of(session, model.model_id)),
        "metric": metric,
        "value": value,
        "changed": changed,
        "previous_model_id": previous_model_id,
    }


def current_selection(session: Session, settings: Settings) -> Selection | None:
    """The selection row in force, if any."""
    return session.get(Selection, settings.current_selection_id) if settings.current_selection_id else None


def known_metrics(session: Session) -> list[str]:
    """Every metric name some registered model has, sorted."""
    return list(session.scalars(select(ModelMetric.name).distinct().order_by(ModelMetric.name)))


def known_model_types(session: Session) -> list[str]:
    """The registered model types (``REQUIRED_MODEL_FILES``) plus any type stored in the registry, sorted."""
    stored = set(session.scalars(select(Model.model_type).distinct()))
    return sorted(stored | set(REQUIRED_MODEL_FILES))


def require_known_metric(session: Session, metric: str) -> None:
    """UnknownMetricError when models have metrics but none has ``metric`` (a typo, e.g. ``bogus@10``).

    A registry without any metric yet (nothing registered) accepts every name.
    """
    known = known_metrics(session)
    if known and metric not in known:
        raise UnknownMetricError(f"No model has metric {metric!r}; known metrics: {', '.join(known)}", known=known)


def require_known_model_type(session: Session, model_type: str) -> None:
    """UnknownModelTypeError for a type that is neither registered nor stored (a typo, e.g. ``xyz``)."""
    known = known_model_types(session)
    if model_type not in known:
        raise UnknownModelTypeError(f"Unknown model type {model_type!r}; known types: {', '.join(known)}", known=known)


# churn_guard(session, current_id, candidate_id) -> an object with ``text`` and ``details`` for the
# audit event, or raises to refuse the change (see registry.diff.policy.ChurnGuard).
ChurnGuardFn = Callable[[Session, str, str], Any]


def churn_checked(session: Session, churn_guard: ChurnGuardFn | None, previous: str | None, candidate: str,
                  summary: str, details: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The audit summary and details with the churn check's outcome (unchanged without a guard or a previous best)."""
    if churn_guard is None or previous is None:
        return summary, details
    check = churn_guard(session, previous, candidate)
    return summary + check.text, {**details, "churn_check": check.details}


def select_best(
    session: Session, metric: str, min_improvement: float, model_type: str | None, min_gain_over_current: float | None,
    churn_guard: ChurnGuardFn | None = None, alias: str = CURRENT_BEST_ALIAS,
) -> dict[str, Any] | None:
    """Body of :meth:`ModelRegistry.select_best_model` (arguments already validated); moves ``alias``."""
    previous_id = pointer_target(session, alias)
    winner = best_candidate(session, metric, min_improvement, model_type, previous_id, alias)
    if winner is None:
        # Only now: a typo in the metric or type finds no candidate (one statement less when all is well).
        require_known_metric(session, metric)
        if model_type is not None:
            require_known_model_type(session, model_type)
        logger.warning("no eligible active model has metric %r%s", metric, f" (type {model_type})" if model_type else "")
        return None
    model, value, previous_value, followed = winner
    if previous_id == model.model_id:
        # Already current: nothing to record (no X -> X history row, no audit event).
        if min_gain_over_current is not None:
            return None
        return selection_result(session, model, metric, value, changed=False, previous_model_id=previous_id)
    if min_gain_over_current is not None and previous_value is not None:
        gain = (value - previous_value) / abs(previous_value) if previous_value else math.inf
        if value <= previous_value or gain < min_gain_over_current:
            logger.info("best %s (%.6g) does not beat current %s (%.6g) by %.1f%%",
                        model.model_id, value, previous_id, previous_value, min_gain_over_current * 100)
            return None
    summary, details = churn_checked(
        session, churn_guard, previous_id, model.model_id,
        f"{metric}={value:.4f}{improvement_text(value, previous_value)}",
        {"metric": metric, "value": value, "previous_model_id": previous_id, "previous_value": previous_value,
         "min_improvement": min_improvement, "model_type": model_type},
    )
    move_pointer(session, alias, model, metric, value, AUTO, None, followed=followed)
    record_move(session, alias, "SELECT_BEST", model.model_id, summary, details)
    return selection_result(session, model, metric, value, changed=True, previous_model_id=previous_id)


def promote(session: Session, model_id: str, reason: str | None, metric: str | None,
            churn_guard: ChurnGuardFn | None = None, alias: str = CURRENT_BEST_ALIAS) -> dict[str, Any]:
    """Body of :meth:`ModelRegistry.promote_model`: point ``alias`` at ``model_id``.

    Recorded as ``selected_by='manual'`` with no metric, unless the caller names one
    (then its value is recorded too). Promoting the alias's own target changes nothing.
    """
    model = require_model(session, model_id)
    if alias != CURRENT_BEST_ALIAS:
        aliases.require_active(model)
    elif model.status != "active":
        raise InvalidStateError(f"Model {model_id!r} is {model.status}; only active models can become the current best")
    value = metric_value(session, model_id, metric) if metric else None
    previous = pointer_target(session, alias)
    if previous == model_id:
        return selection_result(session, model, metric, value, changed=False, previous_model_id=previous)
    summary, details = churn_checked(
        session, churn_guard, previous, model_id, f"from={previous or 'none'} reason={reason or 'manual'}",
        {"previous_model_id": previous, "reason": reason, "metric": metric},
    )
    move_pointer(session, alias, model, metric, value, MANUAL, reason)
    record_move(session, alias, "PROMOTE", model_id, summary, details)
    return selection_result(session, model, metric, value, changed=True, previous_model_id=previous)


def rollback(session: Session, to: str | None, steps: int, reason: str | None,
             alias: str = CURRENT_BEST_ALIAS) -> dict[str, Any]:
    """Body of :meth:`ModelRegistry.rollback`: walk ``alias`` back ``steps`` states, or back to ``to``.

    The states are :func:`history_line`; the target's own selection (metric, value) is
    what the new rollback row records, with ``restored_selection_id`` pointing at it.
    """
    words = _RollbackWords(alias)
    line = history_line(session, alias)
    current_id = pointer_target(session, alias)
    earlier = line[:-1] if line and line[-1].model_id == current_id else line
    listed = ", ".join(row.model_id for row in reversed(earlier)) or "none"  # type: ignore[misc]
    if to is not None:
        matches = [row for row in earlier if row.model_id == to]
        if not matches:
            model = require_model(session, to)
            if to == current_id:
                return selection_result(session, model, None, None, changed=False, previous_model_id=current_id)
            raise InvalidArgumentError(
                f"cannot roll back to {to!r}: it is not an earlier {words.state} on the selection history "
                f"(earlier, newest first: {listed})",
                hint=f"make it current with {words.promote_call(to)}",
                cli_hint=f"make it current with `{words.promote_command(to)}`",
            )
        restored = matches[-1]
    elif not earlier:
        raise InvalidArgumentError(
            f"nothing to roll back to: {words.subject} has no earlier state in the selection history",
            hint=f"make a model current with {words.promote_call('model_id', quoted=False)}",
            cli_hint=f"make a model current with `{words.promote_command('MODEL_ID')}`",
        )
    elif steps > len(earlier):
        raise InvalidArgumentError(
            f"cannot roll back {steps} steps: the history has only {len(earlier)} earlier {words.state}(s) "
            f"(newest first: {listed})"
        )
    else:
        restored = earlier[-steps]
    target = require_model(session, restored.model_id)  # type: ignore[arg-type]
    if target.status != "active":
        raise InvalidStateError(f"cannot roll back to {target.model_id!r}: it is {target.status}")
    metric = restored.metric
    value = metric_value(session, target.model_id, metric) if metric else None
    move_pointer(session, alias, target, metric, value, ROLLBACK, reason, restored_selection_id=restored.id)
    record_move(session, alias, "ROLLBACK", target.model_id, f"from={current_id or 'none'}",
                {"previous_model_id": current_id, "reason": reason, "restored_selection_id": restored.id})
    return selection_result(session, target, metric, value, changed=target.model_id != current_id,
                            previous_model_id=current_id)


class _RollbackWords:
    """How rollback messages name the pointer: the current best, or a named alias."""

    def __init__(self, alias: str) -> None:
        self.alias = alias
        named = alias != CURRENT_BEST_ALIAS
        self.state = f"target of alias {alias!r}" if named else "current best"
        self.subject = f"alias {alias!r}" if named else "the current best"

    def promote_call(self, model: str, *, quoted: bool = True) -> str:
        shown = repr(model) if quoted else model
        if self.alias == CURRENT_BEST_ALIAS:
            return f"promote_model({shown})"
        return f"promote_model({shown}, alias={self.alias!r})"

    def promote_command(self, model: str) -> str:
        if self.alias == CURRENT_BEST_ALIAS:
            return f"cfreg promote {model}"
        return f"cfreg promote {model} --alias {self.alias}"


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
            "selected_by": row.selected_by, "reason": row.reason,
            "restored_selection_id": row.restored_selection_id, "is_current": row.id == current_id,
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

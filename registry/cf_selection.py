"""Selection, the part of :class:`~registry.cf_registry.ModelRegistry` that decides which model
serves: select the best by a metric, promote, roll back, the current best and its history,
named aliases.

A mixin, like :mod:`registry.admin_facade`; the rules live in :mod:`registry.selection` and
:mod:`registry.aliases`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from . import aliases, selection
from .defaults import DEFAULT_METRIC
from .errors import InvalidArgumentError
from .facade_base import RegistryFacade
from .models import CURRENT_BEST_ALIAS, Model
from .read_cache import copy_plain, generation_cached
from .validation import optional_text, positive_int, validate_flag, validate_identifier, validate_metric_name

if TYPE_CHECKING:
    from .diff.report import DiffReport

DOC_SELECTION_KEYS = ("model_id", "model_info", "metric", "value")


class RegistrySelection(RegistryFacade):
    """Choosing the served model and naming models with aliases (mixed into ``ModelRegistry``)."""

    def select_best_model(
        self,
        metric: str = DEFAULT_METRIC,
        min_improvement: float = 0.0,
        model_type: str | None = None,
        *,
        min_gain_over_current: float | None = None,
        max_churn: float | None = None,
        confidence: float | None = None,
        require_evaluation: bool = True,
        alias: str = CURRENT_BEST_ALIAS,
    ) -> dict[str, Any] | None:
        """Make the active model with the highest ``metric`` the current best (or the target of ``alias``).

        Candidates are active models (of ``model_type``) that have the metric; a
        missing metric is never treated as 0. With ``min_improvement > 0`` a
        candidate must also beat its own baseline by that fraction (see
        :func:`registry.selection.baseline_improvement`). Ties go to the earliest registered model.
        With ``min_gain_over_current`` the current best is replaced only when the
        winner beats it by that relative fraction, and None is returned otherwise.
        With ``max_churn`` the winner must also keep its top-10 churn against the
        current best (see :meth:`diff_models`) at or below that fraction; the check
        is written into the ``SELECT_BEST`` audit event.

        With ``confidence`` (e.g. 0.95) the top candidate replaces the current best
        only when the lower bound of the ``confidence`` interval of its relative
        improvement over the current best, from a paired bootstrap over the users
        both were evaluated on (their ``{type}_user_eval.npz``), is above
        ``min_improvement`` (which then means that, not the baseline rule); see
        :mod:`registry.selection_confidence`. A model without per-user evaluation
        raises :class:`~registry.errors.NoUserEvaluationError` unless
        ``require_evaluation=False``, which falls back to the rules above.

        With ``alias`` (default ``"current_best"``) the same selection moves that alias
        instead, creating it when missing: ``select_best_model(metric="ndcg@10",
        model_type="bpr", alias="bpr_champion")`` keeps one champion per type and leaves
        the current best alone. "Current best" above then means the alias's target; the
        move adds a row to :meth:`alias_history` and a ``SELECT_BEST`` audit event whose
        target is the alias (details: ``alias``, ``model_id``).

        Returns:
            ``{'model_id', 'model_info', 'metric', 'value'}`` (the doc's shape), or None
            when there is no eligible candidate (nothing changes). When the winner is
            already current nothing is written (no history row, no audit event);
            :meth:`select_best_model_outcome` also says whether anything changed.

        Raises:
            UnknownMetricError: no registered model has ``metric`` (a typo); the error
                lists the known metrics. (A registry without any metric accepts any name.)
            UnknownModelTypeError: ``model_type`` is neither registered nor in the registry.
            ChurnLimitError: the winner's churn exceeds ``max_churn`` (nothing changes).
            With ``confidence`` the dict also has ``comparison`` (the interval; None when
            there was no other current best) and, after a fallback, ``fallback``; None
            also means "not significantly better".
        """
        if confidence is not None:
            if max_churn is not None:
                raise InvalidArgumentError("pass either confidence or max_churn, not both")
            return self._select_with_confidence(metric, min_improvement, model_type, min_gain_over_current,
                                                confidence, require_evaluation, alias)
        outcome = self.select_best_model_outcome(metric, min_improvement, model_type,
                                                 min_gain_over_current=min_gain_over_current, max_churn=max_churn,
                                                 alias=alias)
        return None if outcome is None else {key: outcome[key] for key in DOC_SELECTION_KEYS}

    def _select_with_confidence(self, metric: str, min_improvement: float, model_type: str | None,
                                min_gain_over_current: float | None, confidence: float,
                                require_evaluation: bool, alias: str) -> dict[str, Any] | None:
        from .evaluation import validate_comparison_options
        from .selection_confidence import select_best_with_confidence

        validate_metric_name(metric)
        min_improvement = selection.non_negative_fraction(min_improvement, "min_improvement")
        if model_type is not None:
            validate_identifier(model_type, "model_type")
        aliases.validate_alias_name(alias)
        level, *_ = validate_comparison_options(confidence, "paired_bootstrap", 0, 2000)
        require = validate_flag(require_evaluation, "require_evaluation")
        if min_gain_over_current is not None:
            raise InvalidArgumentError("pass either confidence or min_gain_over_current, not both")
        return self._ctx.mutate(lambda session: select_best_with_confidence(
            self._ctx, session, metric, min_improvement, model_type, level, require, alias))

    def select_best_model_outcome(
        self,
        metric: str = DEFAULT_METRIC,
        min_improvement: float = 0.0,
        model_type: str | None = None,
        *,
        min_gain_over_current: float | None = None,
        max_churn: float | None = None,
        alias: str = CURRENT_BEST_ALIAS,
    ) -> dict[str, Any] | None:
        """:meth:`select_best_model` returning also ``changed`` (False: the winner was already
        current, nothing written) and ``previous_model_id`` (the current best, or the target of
        ``alias``, before the call)."""
        validate_metric_name(metric)
        min_improvement = selection.non_negative_fraction(min_improvement, "min_improvement")
        if model_type is not None:
            validate_identifier(model_type, "model_type")
        aliases.validate_alias_name(alias)
        if min_gain_over_current is not None:
            min_gain_over_current = selection.non_negative_fraction(min_gain_over_current, "min_gain_over_current")
        if max_churn is None:
            return self._ctx.mutate(
                lambda session: selection.select_best(session, metric, min_improvement, model_type, min_gain_over_current,
                                                      alias=alias)
            )
        from .diff import policy

        return policy.guarded(self._ctx, policy.ChurnGuard(_churn_bound(max_churn)), lambda guard: self._ctx.mutate(
            lambda session: selection.select_best(session, metric, min_improvement, model_type, min_gain_over_current, guard,
                                                  alias)
        ))

    def compare_metrics(self, a: str, b: str, metric: str = DEFAULT_METRIC, *, confidence: float = 0.95,
                        method: str = "paired_bootstrap", seed: int = 0, resamples: int = 2000) -> dict[str, Any]:
        """Is ``b`` really better than ``a`` on ``metric``? Paired over the users both were evaluated on.

        Reads both models' ``{type}_user_eval.npz`` (checksums verified). ``method`` is
        ``"paired_bootstrap"`` (seeded, ``resamples`` resamples) or ``"paired_t_test"``.
        See :func:`registry.evaluation.compare_models` for the returned fields
        (``difference = mean_b - mean_a``, its interval, ``p_value``, ``n_users``...).
        """
        from .evaluation import compare_models

        return compare_models(self._ctx, a, b, metric, confidence=confidence, method=method, seed=seed, resamples=resamples)

    def promote_model(self, model_id: str, reason: str | None = None, *, metric: str | None = None,
                      max_churn: float | None = None, force: bool = False,
                      alias: str = CURRENT_BEST_ALIAS) -> dict[str, Any]:
        """Make ``model_id`` the current best by hand (``selected_by='manual'``), or with ``alias`` the
        target of that alias (audit ``PROMOTE`` targeting the alias; churn is checked against its target).

        The selection is recorded without a metric unless ``metric`` names one (its value
        is then recorded too). Promoting the current best writes nothing (``changed`` False).
        With ``max_churn`` the promotion is refused when the model's top-10 churn against
        the current best (see :meth:`diff_models`) exceeds that fraction; ``force=True``
        (which needs a ``reason``) promotes anyway. The check, forced or not, is written
        into the ``PROMOTE`` audit event.

        Raises:
            ModelNotFoundError: unknown id.
            ModelInUseError: the model is not active.
            ChurnLimitError: churn above ``max_churn`` without ``force``.
            InvalidArgumentError: ``force`` without ``max_churn`` or without a reason.
        """
        validate_identifier(model_id, "model_id")
        if metric is not None:
            validate_metric_name(metric)
        aliases.validate_alias_name(alias)
        reason = optional_text(reason, "reason", 1024)
        force = validate_flag(force, "force")
        if max_churn is None:
            if force:
                raise InvalidArgumentError("force=True overrides max_churn; pass max_churn too (or drop force)")
            return self._ctx.mutate(lambda session: selection.promote(session, model_id, reason, metric, alias=alias))
        if force and not reason:
            raise InvalidArgumentError("force=True needs a reason (it is kept in the audit trail)")
        from .diff import policy

        guard = policy.ChurnGuard(_churn_bound(max_churn), force=force)
        return policy.guarded(self._ctx, guard, lambda g: self._ctx.mutate(
            lambda session: selection.promote(session, model_id, reason, metric, g, alias)))

    def diff_models(self, model_a: str, model_b: str, *, k: int = 10, users: int = 2000, items: int = 2000,
                    seed: int = 0, full: bool = False) -> DiffReport:
        """What changes if ``model_b`` replaces ``model_a``: churn, neighbours, coverage, drift, metrics.

        Computed from both models' recorded files (checksums verified) over a seeded sample
        of ``users`` shared users and ``items`` shared items (``full=True``: churn over every
        shared user, in batches), then stored keyed by both models' file checksums and the
        parameters: asking again returns the stored report. See docs/model-diff.md.

        Raises:
            ModelNotFoundError: an id is not registered.
            InvalidArgumentError: bad ``k``, ``users``, ``items``, ``seed`` or ``full``.
            InvalidArtifactsError / ChecksumMismatchError: a file is missing or changed.
        """
        from .diff import compute

        params = compute.DiffParams.checked(k, users, items, seed, full)
        return compute.diff_models(self._ctx, model_a, model_b, params)

    def rollback(self, to: str | None = None, reason: str | None = None, *, steps: int = 1,
                 alias: str = CURRENT_BEST_ALIAS) -> dict[str, Any]:
        """Walk the current best (or ``alias``) back through its selection history; audit ``ROLLBACK``.

        The history is a line of states (each change of the current best adds one;
        re-selecting the current model adds none). ``rollback()`` goes one state back,
        ``rollback(steps=N)`` N states back, ``rollback(to=model_id)`` back to the most
        recent earlier state of that model. A rollback moves back along the line, so
        after A -> B -> C two rollbacks lead to B, then A (never back to C); a later
        selection or promotion starts a new line from there.

        With ``alias`` the same walk runs over that alias's history (:meth:`alias_history`);
        deleting a named alias ends its line.

        Returns:
            The ``select_best_model`` dict with ``changed`` and ``previous_model_id``;
            ``metric``/``value`` are those of the restored selection.

        Raises:
            InvalidArgumentError: no earlier state, ``steps`` beyond the history, ``to``
                not an earlier current best, or both ``to`` and ``steps`` given.
            ModelNotFoundError / ModelInUseError: the target was deleted or is not active.
        """
        if to is not None:
            validate_identifier(to, "model_id")
        steps = positive_int(steps, "steps")
        if to is not None and steps != 1:
            raise InvalidArgumentError("give either to= or steps=, not both")
        aliases.validate_alias_name(alias)
        reason = optional_text(reason, "reason", 1024)
        return self._ctx.mutate(lambda session: selection.rollback(session, to, steps, reason, alias))

    def get_selection_history(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Current-best changes, newest first (``is_current`` marks the one in force)."""
        if limit is not None:
            limit = positive_int(limit, "limit")
        return self._ctx.read(lambda session: selection.history(session, limit))

    @generation_cached(copy=copy_plain)
    def get_current_best(self) -> dict[str, Any] | None:
        """The current best: ``model_id``, ``model_info`` and the ``current_best`` fields; None if unset."""
        return self._ctx.read(selection.current_best)

    # ------------------------------------------------------------------ aliases

    def set_alias(self, name: str, model_id: str, *, expected: Any = aliases.UNSET, reason: str | None = None) -> dict[str, Any]:
        """Point alias ``name`` at ``model_id`` (an active model); ``current_best`` is a promotion.

        Args:
            expected: compare-and-set. The model id the caller last saw the alias point at, or
                None for "the alias must not exist yet"; omitted, the move is unconditional.
            reason: recorded in the alias history and the audit event.

        Returns:
            ``{"alias", "model_id", "previous_model_id", "changed"}``.

        Raises:
            AliasConflictError: ``expected`` was given and the alias points elsewhere (the message
                names the current target). ModelNotFoundError: unknown model.
            ModelInUseError: the model is not active.
        """
        aliases.validate_alias_name(name)
        validate_identifier(model_id, "model_id")
        if expected is not aliases.UNSET and expected is not None:
            validate_identifier(expected, "expected")
        reason = optional_text(reason, "reason", 1024)

        def work(session: Session) -> dict[str, Any]:
            if name == CURRENT_BEST_ALIAS:
                previous = aliases.target_of(session, name)
                aliases.check_expected(name, previous, expected)
                selection.promote(session, model_id, reason, None)
                changed = previous != model_id
            else:
                previous, changed = aliases.set_named(session, name, model_id, expected=expected, reason=reason)
            return {"alias": name, "model_id": model_id, "previous_model_id": previous, "changed": changed}

        return self._ctx.mutate(work)

    @generation_cached(copy=copy_plain)
    def get_alias(self, name: str) -> dict[str, Any] | None:
        """``{"alias", "model_id", "model_type", "version"}`` of the alias's target, or None when unset."""
        aliases.validate_alias_name(name)

        def work(session: Session) -> dict[str, Any] | None:
            model_id = aliases.target_of(session, name)
            model = session.get(Model, model_id) if model_id else None
            if model is None:
                return None
            return {"alias": name, "model_id": model.model_id, "model_type": model.model_type, "version": model.version}

        return self._ctx.read(work)

    def delete_alias(self, name: str, *, expected: Any = aliases.UNSET, reason: str | None = None) -> str:
        """Remove a named alias; returns the model id it pointed at.

        Raises:
            AliasNotFoundError: no such alias. AliasConflictError: ``expected`` given and stale.
            InvalidArgumentError: ``current_best`` (promote or roll back instead).
        """
        aliases.validate_alias_name(name)
        reason = optional_text(reason, "reason", 1024)
        return self._ctx.mutate(lambda session: aliases.delete(session, name, expected, reason))

    @generation_cached(copy=copy_plain)
    def list_aliases(self) -> list[dict[str, Any]]:
        """Every alias (``current_best`` first when set): ``alias, model_id, model_type, updated_at, updated_by, reason``."""
        return self._ctx.read(aliases.listing)

    def alias_history(self, name: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Moves of one alias, newest first: ``id, alias, at, by, from, to, reason, selected_by, metric, value``."""
        aliases.validate_alias_name(name)
        if limit is not None:
            positive_int(limit, "limit")
        return self._ctx.read(lambda session: aliases.history(session, name, limit))


def _churn_bound(value: object) -> float:
    bound = selection.non_negative_fraction(value, "max_churn")
    if bound > 1:
        raise InvalidArgumentError(f"max_churn is a fraction of users' top-k lists, in [0, 1]; got {value!r}")
    return bound

"""What the web app reads and does, through the public registry facades only.

:class:`RegistryService` is shared by the JSON API and the HTML pages, so a page
and its endpoint cannot disagree. Reads return plain dicts; operator actions take
the acting identity and run inside :func:`registry.audit.acting_as`, so the audit
event names who clicked.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from .. import aliases, audit, evaluation, selection, stats
from ..bert_registry import BERTEmbeddingsRegistry
from ..cf_registry import ModelRegistry
from ..defaults import DEFAULT_METRIC
from ..errors import AliasNotFoundError, InvalidArgumentError, ModelInUseError, ModelNotFoundError
from ..leaderboard import MAX_PAGE, LeaderboardPage
from ..validation import positive_int, validate_identifier

MAX_COMPARE = 10
MAX_AUDIT_LIMIT = 1000
ACTION_LENGTH = 32
AUDIT_TARGET_LENGTH = 160
# Bounds on a diff computed for a web request (the CLI and Python API have none): one request stays ~1 s.
MAX_DIFF_K = 100
MAX_DIFF_SAMPLE = 20_000
MAX_ALIAS_HISTORY = 1000

__all__ = ["MAX_AUDIT_LIMIT", "MAX_COMPARE", "MAX_DIFF_K", "MAX_DIFF_SAMPLE", "RegistryService", "parse_time"]


def parse_time(value: str | None, name: str) -> datetime | None:
    """``YYYY-MM-DD[THH:MM[:SS]]`` (UTC unless an offset is given) as an aware datetime."""
    if value is None or value == "":
        return None
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"{name} must be a time like 2025-01-16 or 2025-01-16T10:30:00, got {value!r}") from exc
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def routing(test: dict[str, Any]) -> dict[str, float]:
    """The share of users each arm of a test gets now (a stopped test sends everyone to control)."""
    treatment = test["traffic_split"] if test["status"] == "running" else 0.0
    return {"control": 1.0 - treatment, "treatment": treatment}


class RegistryService:
    """The registry as the web app sees it: one CF registry and the BERT registry on the same database."""

    def __init__(self, registry_path: str | os.PathLike[str], database_url: str | None = None, *,
                 export_json: bool = True) -> None:
        self.registry = ModelRegistry(registry_path, auto_create=False, database_url=database_url,
                                      export_json=export_json)
        self.bert = BERTEmbeddingsRegistry(registry_path, auto_create=False, database_url=database_url,
                                           export_json=export_json)

    # ------------------------------------------------------------------ reads

    def page(self, **filters: Any) -> LeaderboardPage:
        """A leaderboard page (see :meth:`ModelRegistry.leaderboard_page`)."""
        return self.registry.leaderboard_page(**filters)

    def model(self, model_id: str) -> dict[str, Any]:
        """Everything about one model: entry, files, links, selections, A/B tests.

        Raises:
            ModelNotFoundError: unknown id. InvalidArgumentError: malformed id.
        """
        info = self.registry.get_model(model_id)
        if info is None:
            raise ModelNotFoundError(f"Model {model_id!r} not found in registry")
        current = self.registry.get_current_best()
        return {
            "model_id": model_id,
            **info,
            "tags": info.get("tags") or {},
            "description": info.get("description"),
            "aliases": self.registry.aliases_of(model_id),
            "files": self.registry.get_model_files(model_id),
            "embeddings": [e["version"] for e in self.bert.list_embeddings() if model_id in e["linked_models"]],
            "is_current": bool(current and current["model_id"] == model_id),
            "selections": [h for h in self.registry.get_selection_history()
                           if model_id in (h["model_id"], h["previous_model_id"])],
            "ab_tests": [t for t in self.ab_tests() if model_id in (t["control_model"], t["treatment_model"])],
        }

    def current_best(self) -> dict[str, Any] | None:
        """The current best (the doc's ``current_best`` fields) or None."""
        best = self.registry.get_current_best()
        if best is None:
            return None
        return {key: value for key, value in best.items() if key != "model_info"}

    def selections(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Current-best changes, newest first."""
        return self.registry.get_selection_history(limit)

    def stats(self) -> dict[str, Any]:
        """Registry counts plus the embeddings count."""
        stats = self.registry.get_registry_stats()
        bert = self.bert.get_stats()
        return {**stats, "total_embeddings": bert["total_embeddings"], "current_embeddings": bert["current_best"]}

    def embeddings(self) -> list[dict[str, Any]]:
        """Every embeddings version with its linked models, newest first."""
        return self.bert.list_embeddings()

    def ab_tests(self) -> list[dict[str, Any]]:
        """Every A/B test, newest first, each with its current ``routing`` shares."""
        return [{**test, "routing": routing(test)} for test in self.registry.list_ab_tests()]

    def route(self, user_id: str) -> dict[str, Any]:
        """The model serving ``user_id`` now, and the arm when a test runs."""
        if not isinstance(user_id, str) or not 1 <= len(user_id) <= 256:
            raise InvalidArgumentError("user_id must be 1 to 256 characters")
        model_id = self.registry.route_user(user_id)
        test = self.registry.get_ab_test()
        arm = None
        if test is not None:
            arm = "treatment" if model_id == test["treatment_model"] else "control"
        return {"user_id": user_id, "model_id": model_id, "test_id": test["test_id"] if test else None, "arm": arm}

    def audit_events(self, *, action: str | None = None, model: str | None = None, since: str | None = None,
                     until: str | None = None, limit: int = 100, page: int = 1) -> list[dict[str, Any]]:
        """Audit events, newest first, filtered by action, target and UTC time range: page ``page``
        of ``limit`` events (see :meth:`audit_page` for the total).

        Raises:
            InvalidArgumentError: a malformed filter, ``limit`` outside 1..1000 or ``page`` outside 1..1,000,000.
        """
        return self.audit_page(action=action, model=model, since=since, until=until, limit=limit, page=page,
                               count=False)["items"]

    def audit_page(self, *, action: str | None = None, model: str | None = None, since: str | None = None,
                   until: str | None = None, limit: int = 100, page: int = 1, count: bool = True) -> dict[str, Any]:
        """One page of the newest-first audit log: ``items``, ``total`` (None unless ``count``),
        ``page``, ``per_page``, ``pages``; the filters as in :meth:`audit_events`.

        Raises:
            InvalidArgumentError: as :meth:`audit_events`.
        """
        if action:
            action = action.strip().upper()
            if not action.replace("_", "").isalnum() or len(action) > ACTION_LENGTH:
                raise InvalidArgumentError(f"action must be an audit action such as SELECT_BEST, got {action!r}")
        if model and (len(model) > AUDIT_TARGET_LENGTH or not model.isprintable()):
            raise InvalidArgumentError(f"model must be at most {AUDIT_TARGET_LENGTH} printable characters")
        start, end = parse_time(since, "since"), parse_time(until, "until")
        if start and end and start > end:
            raise InvalidArgumentError(f"since ({since}) is after until ({until})")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_AUDIT_LIMIT:
            raise InvalidArgumentError(f"limit must be an integer between 1 and {MAX_AUDIT_LIMIT}, got {limit!r}")
        if isinstance(page, bool) or not isinstance(page, int) or not 1 <= page <= MAX_PAGE:
            raise InvalidArgumentError(f"page must be an integer between 1 and {MAX_PAGE:,}, got {page!r}")
        action_filter, target_filter = action or None, model or None

        events = self.registry.audit_events(action=action_filter, target=target_filter, since=start, until=end,
                                            limit=limit, offset=(page - 1) * limit)
        total = (self.registry.count_audit_events(action=action_filter, target=target_filter, since=start, until=end)
                 if count else None)
        pages = None if total is None else max(1, -(-total // limit))
        return {"items": list(reversed(events)), "total": total, "page": page, "per_page": limit, "pages": pages}

    def compare(self, model_ids: list[str]) -> dict[str, Any]:
        """Two to ten models side by side: every metric with its difference from the first
        model, and every hyperparameter with whether the models differ on it.

        Raises:
            InvalidArgumentError: fewer than two or more than ten ids, or a repeated id.
            ModelNotFoundError: an id is not registered.
        """
        ids = [validate_identifier(model_id, "model_id") for model_id in model_ids]
        if not 2 <= len(ids) <= MAX_COMPARE:
            raise InvalidArgumentError(f"compare needs 2 to {MAX_COMPARE} model ids, got {len(ids)}")
        if len(set(ids)) != len(ids):
            raise InvalidArgumentError("compare got the same model id twice")
        infos = {}
        for model_id in ids:
            info = self.registry.get_model(model_id)
            if info is None:
                raise ModelNotFoundError(f"Model {model_id!r} not found in registry")
            infos[model_id] = info
        base = ids[0]
        metric_names = sorted({name for info in infos.values() for name in info["metrics"]})
        metrics = []
        for name in metric_names:
            values = {model_id: infos[model_id]["metrics"].get(name) for model_id in ids}
            first = values[base]
            differences = {model_id: (None if value is None or first is None else value - first)
                           for model_id, value in values.items()}
            metrics.append({"name": name, "values": values, "differences": differences})
        param_names = sorted({name for info in infos.values() for name in info["hyperparameters"]})
        parameters = []
        for name in param_names:
            values = {model_id: infos[model_id]["hyperparameters"].get(name) for model_id in ids}
            distinct = {repr(value) for value in values.values()}
            parameters.append({"name": name, "values": values, "differs": len(distinct) > 1})
        current = self.registry.get_current_best()
        models = [{"model_id": model_id, "model_type": infos[model_id]["model_type"],
                   "version": infos[model_id]["version"], "status": infos[model_id]["status"],
                   "created_at": infos[model_id]["created_at"], "data_version": infos[model_id]["data_version"],
                   "is_current": bool(current and current["model_id"] == model_id)} for model_id in ids]
        return {"model_ids": ids, "models": models, "metrics": metrics, "hyperparameters": parameters}

    def diff(self, model_a: str, model_b: str, *, k: int = 10, users: int = 2000, items: int = 2000,
             seed: int = 0) -> dict[str, Any]:
        """What changes if ``model_b`` replaces ``model_a`` (:meth:`ModelRegistry.diff_models`'s report
        as a dict, plus ``stored`` and ``summary``).

        A stored report for the same files and parameters is returned as is; otherwise the
        report is computed from the verified files and *not* stored (a read never writes;
        ``cfreg diff`` and promotions with ``max_churn`` store theirs). ``k`` is at most
        :data:`MAX_DIFF_K`, the samples at most :data:`MAX_DIFF_SAMPLE`.

        Raises:
            ModelNotFoundError: an id is not registered. InvalidArgumentError: bad parameters or the
                same id twice. InvalidArtifactsError / ChecksumMismatchError: a file is missing or changed.
        """
        from ..diff import compute, store

        validate_identifier(model_a, "model_a")
        validate_identifier(model_b, "model_b")
        if model_a == model_b:
            raise InvalidArgumentError("a diff needs two different models")
        params = compute.DiffParams.checked(k, users, items, seed, False)
        if params.k > MAX_DIFF_K or max(params.users, params.items) > MAX_DIFF_SAMPLE:
            raise InvalidArgumentError(f"the web UI computes diffs with k <= {MAX_DIFF_K} and at most "
                                       f"{MAX_DIFF_SAMPLE:,} sampled users and items; use `cfreg diff` for more")
        context = self.registry.context

        def stored_key(session: Any) -> bool:
            key = compute.diff_key(compute.require_record(session, model_a), compute.require_record(session, model_b),
                                   params)
            return store.find(session, key) is not None

        was_stored = context.read(stored_key)
        report = compute.diff_models(context, model_a, model_b, params, save=False)
        return {**report.to_dict(), "stored": was_stored, "summary": report.summary()}

    def significance(self, model_a: str, model_b: str, *, confidence: float = 0.95,
                     method: str = "paired_bootstrap", seed: int = 0, resamples: int = 2000) -> dict[str, Any]:
        """``model_b`` against ``model_a`` on the users both were evaluated on, for every metric both
        per-user evaluation files carry: mean difference, interval, p-value (see
        :func:`registry.evaluation.compare_models`).

        Raises:
            ModelNotFoundError: unknown id. NoUserEvaluationError: a model has no per-user
                evaluation file. ChecksumMismatchError: a file changed since registration.
            InvalidArgumentError: bad options, the same id twice, or fewer than 2 shared users.
        """
        validate_identifier(model_a, "model_a")
        validate_identifier(model_b, "model_b")
        if model_a == model_b:
            raise InvalidArgumentError("a comparison needs two different models")
        level, method, seed, resamples = evaluation.validate_comparison_options(confidence, method, seed, resamples)
        context = self.registry.context

        def load(session: Any) -> tuple[evaluation.UserEvaluation, evaluation.UserEvaluation]:
            selection.require_model(session, model_a)  # an unknown id is a 404 before a missing file is a 422
            selection.require_model(session, model_b)
            return evaluation.load_recorded(context, session, model_a), evaluation.load_recorded(context, session, model_b)

        first, second = context.read(load)
        names = sorted(set(first.metrics) & set(second.metrics))
        rows = []
        for name in names:
            values_a, values_b = evaluation.align(first, second, name, (model_a, model_b))
            result = stats.paired_compare(values_a, values_b, method=method, confidence=level, seed=seed,
                                          resamples=resamples)
            rows.append({"metric": name, **result.to_dict()})
        return {"model_a": model_a, "model_b": model_b, "method": method, "confidence": level, "metrics": rows,
                "only_a": sorted(set(first.metrics) - set(second.metrics)),
                "only_b": sorted(set(second.metrics) - set(first.metrics))}

    def ab_results(self, test_id: str, *, metric: str | None = None, method: str = "fixed_horizon",
                   confidence: float = 0.95) -> dict[str, Any]:
        """An A/B test's results (:func:`registry.ab_results.ab_test_results`); ``metric`` None picks
        conversion when any batch carries conversions, else value.

        Raises:
            ModelNotFoundError: unknown test. InvalidArgumentError: bad options.
        """
        validate_identifier(test_id, "test_id")
        return self.registry.ab_test_results(test_id, metric=metric or None, method=method, confidence=confidence)

    def list_aliases(self) -> list[dict[str, Any]]:
        """Every alias (``current_best`` first when set) with its target, who moved it last and when."""
        return self.registry.list_aliases()

    def alias_detail(self, name: str, limit: int = 100) -> dict[str, Any]:
        """One alias: its target (None after a deletion) and its moves, newest first.

        Raises:
            AliasNotFoundError: the alias never existed. InvalidArgumentError: a malformed name or limit.
        """
        aliases.validate_alias_name(name)
        limit = positive_int(limit, "limit")
        if limit > MAX_ALIAS_HISTORY:
            raise InvalidArgumentError(f"limit must be at most {MAX_ALIAS_HISTORY}, got {limit}")
        target = self.registry.get_alias(name)
        moves = self.registry.alias_history(name, limit)
        if target is None and not moves:
            raise AliasNotFoundError(f"Alias {name!r} does not exist")
        history = [{"id": move["id"], "at": move["at"], "by": move["by"], "model_id": move["to"],
                    "previous_model_id": move["from"], "reason": move["reason"], "selected_by": move["selected_by"],
                    "metric": move["metric"], "value": move["value"]} for move in moves]
        return {"alias": name, "model_id": target["model_id"] if target else None,
                "model_type": target["model_type"] if target else None,
                "version": target["version"] if target else None, "history": history}

    # ------------------------------------------------------------------ operator actions

    def select_best(self, identity: str, metric: str = DEFAULT_METRIC, min_improvement: float = 0.0,
                    model_type: str | None = None, *, max_churn: float | None = None,
                    confidence: float | None = None, require_evaluation: bool = True) -> dict[str, Any]:
        """Select the best model by ``metric`` (with the ``max_churn`` / ``confidence`` rules of
        :meth:`ModelRegistry.select_best_model`); ``selected`` is False when no model qualifies."""
        with audit.acting_as(identity):
            result = self.registry.select_best_model(metric=metric, min_improvement=min_improvement,
                                                     model_type=model_type or None, max_churn=max_churn,
                                                     confidence=confidence, require_evaluation=require_evaluation)
        if result is None:
            return {"selected": False, "model_id": None, "metric": metric, "value": None}
        return {"selected": True, "model_id": result["model_id"], "metric": result["metric"], "value": result["value"],
                "comparison": result.get("comparison")}

    def promote(self, identity: str, model_id: str, reason: str | None = None, *, max_churn: float | None = None,
                force: bool = False) -> dict[str, Any]:
        """Make ``model_id`` the current best by hand (refused over ``max_churn`` unless ``force``)."""
        with audit.acting_as(identity):
            result = self.registry.promote_model(model_id, reason=reason or None, max_churn=max_churn, force=force)
        return {"model_id": result["model_id"], "metric": result["metric"], "value": result["value"]}

    def rollback(self, identity: str, to: str | None = None, reason: str | None = None) -> dict[str, Any]:
        """Go back to the previous current best (or to ``to``)."""
        with audit.acting_as(identity):
            result = self.registry.rollback(to=to or None, reason=reason or None)
        return {"model_id": result["model_id"], "metric": result["metric"], "value": result["value"]}

    def archive(self, identity: str, model_id: str) -> dict[str, Any]:
        """Archive a model.

        Raises:
            ModelInUseError: it is the current best (the Python API returns False there)
                or in a running A/B test.
        """
        with audit.acting_as(identity):
            archived = self.registry.archive_model(model_id)
        if not archived:
            raise ModelInUseError(f"Model {model_id!r} is the current best and cannot be archived; promote another model first")
        return {"model_id": model_id, "status": "archived"}

    def start_ab_test(self, identity: str, control_model: str, treatment_model: str, traffic_split: float,
                      test_id: str | None = None) -> dict[str, Any]:
        """Start an A/B test."""
        with audit.acting_as(identity):
            test = self.registry.start_ab_test(control_model, treatment_model, traffic_split, test_id=test_id or None)
        return {**test, "routing": routing(test)}

    def stop_ab_test(self, identity: str, test_id: str, promote: str | None = None, *,
                     promote_winner: bool = False) -> dict[str, Any]:
        """Stop an A/B test, optionally promoting ``'control'`` or ``'treatment'``, or the arm its
        results declare the winner (``promote_winner``; without a winner nothing changes)."""
        validate_identifier(test_id, "test_id")
        if promote and promote_winner:
            raise InvalidArgumentError("give promote or promote_winner, not both")
        with audit.acting_as(identity):
            test = self.registry.stop_ab_test(test_id, promote=promote or None, promote_winner=promote_winner)
        return {**test, "routing": routing(test)}

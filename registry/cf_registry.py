"""``ModelRegistry``: register CF models, pick the best by a metric, promote, roll back.

Usage::

    registry = ModelRegistry("artifacts/cf/registry.json")
    model_id = registry.register_model("artifacts/cf/als/v2", "als", {"factors": 64}, {"ndcg@10": 0.19}, {})
    best = registry.select_best_model(metric="ndcg@10")

Every public method validates its input first, then runs one transaction that
holds the change and its audit row (``RegistryContext.mutate``), and returns
plain dicts or DataFrames; ORM rows never leave the transaction.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from . import abtest, aliases, audit, search, selection, tags, usage
from .admin_facade import RegistryAdmin
from .artifacts import (
    REQUIRED_MODEL_FILES,
    DeletionTarget,
    FileFingerprint,
    check_deletable,
    fingerprint,
    model_files,
    required_files,
    safe_delete_tree,
    user_eval_file,
)
from .artifacts import validate_artifacts as _validate_artifacts
from .context import RegistryContext
from .dashboard_facade import RegistryDashboards
from .defaults import DEFAULT_COMPARE_METRICS, DEFAULT_METRIC, DEFAULT_REGISTRY_PATH
from .errors import (
    InvalidArgumentError,
    InvalidArtifactsError,
    ModelExistsError,
    ModelInUseError,
    ModelNotFoundError,
    RegistryError,
)
from .export import (
    build_registry_document,
    create_empty_registry,
    iso,
    metrics_by_model,
    model_info,
    validate_registry_schema,
)
from .instances import SharedInstances
from .listing import (
    LIST_BASE_COLUMNS,
    SORT_KEY,
    metric_columns,
    models_frame,
    models_records,
    public_columns,
    sort_records,
)
from .models import (
    CURRENT_BEST_ALIAS,
    Alias,
    ArtifactFile,
    BertEmbedding,
    EmbeddingLink,
    Model,
    ModelMetric,
    utcnow,
)
from .opening import open_context
from .read_cache import ReadCache, copy_frame, generation_cached
from .storage import is_uri
from .storage.refs import remove_unreferenced, store_objects_of_model
from .storage.upload import inspect_remote_folder, upload_files
from .tags import tags_of
from .utils.git import get_git_commit as _detect_git_commit
from .utils.versioning import generate_version_id as _generate_version_id
from .validated_folders import check_model_folder_remembered
from .validation import (
    ID_MAX_LENGTH,
    MODEL_STATUS,
    MODEL_TYPE_MAX_LENGTH,
    finite_real,
    json_payload,
    optional_text,
    path_text,
    positive_int,
    validate_flag,
    validate_identifier,
    validate_metric_name,
    validate_metrics,
    validate_status,
)

if TYPE_CHECKING:
    import pandas as pd

    from .diff.report import DiffReport

logger = logging.getLogger(__name__)

DOC_SELECTION_KEYS = ("model_id", "model_info", "metric", "value")
GIT_CACHE_SECONDS = 10.0
MAX_VERSIONS_PER_SECOND = 10_000

__all__ = [
    "DEFAULT_REGISTRY_PATH",
    "MODEL_STATUS",
    "REQUIRED_MODEL_FILES",
    "ModelRegistry",
    "create_empty_registry",
    "diff_models",
    "get_registry",
    "register_model",
    "select_best_model",
    "validate_registry_schema",
]


class ModelRegistry(RegistryAdmin, RegistryDashboards):
    """The CF model registry on a SQLite file (default) or a PostgreSQL URL.

    Args:
        registry_path: where ``registry.json`` lives; the SQLite database is
            ``registry.db`` beside it (a ``.db`` path is the database itself).
        auto_create: create a missing registry; otherwise ``FileNotFoundError``.
        audit_log_path: text mirror of the audit trail (default
            ``logs/registry_audit.log`` under ``root``).
        database_url: a SQLAlchemy URL (overrides ``$CFREG_DATABASE_URL``).
        export_json: rewrite ``registry.json`` after every change.
        root: base of relative artifact paths (default: stored at creation,
            i.e. the working directory then; ``$CFREG_ROOT`` overrides).
        artifacts_root: the only tree file deletion may touch (default: the
            folder of ``registry.json``).
        artifact_store: URI of an artifact store (``s3://bucket/prefix``, ``gs://...``,
            ``file:///...`` or a folder), recorded in the database when the registry has
            none yet: registered folders are then uploaded into it (see docs/fleet.md).
    """

    generate_version_id = staticmethod(_generate_version_id)

    def __init__(
        self,
        registry_path: str | os.PathLike[str] = DEFAULT_REGISTRY_PATH,
        auto_create: bool = True,
        audit_log_path: str | os.PathLike[str] | None = None,
        *,
        database_url: str | None = None,
        export_json: bool = True,
        root: str | os.PathLike[str] | None = None,
        artifacts_root: str | os.PathLike[str] | None = None,
        artifact_store: str | os.PathLike[str] | None = None,
    ) -> None:
        self._ctx = open_context(
            registry_path,
            database_url=database_url,
            auto_create=auto_create,
            root=root,
            audit_log_path=audit_log_path,
            export_json=export_json,
            artifacts_root=artifacts_root,
            artifact_store=artifact_store,
        )
        self.registry_path = self._ctx.json_path
        self.audit_log_path = self._ctx.audit_log_path
        self._git_cache: tuple[float, str | None] | None = None
        self._reads = ReadCache(self._ctx)

    def __repr__(self) -> str:
        return f"ModelRegistry({str(self.registry_path)!r}, database={self._ctx.database.describe()!r})"

    # ------------------------------------------------------------------ properties

    @property
    def context(self) -> RegistryContext:
        """The opened registry (database, paths) shared with the loader, BERT and A/B code."""
        return self._ctx

    @property
    def database_url(self) -> str:
        """The database URL (password hidden)."""
        return self._ctx.database.describe()

    @property
    def root(self) -> Path:
        """Base directory of relative artifact paths."""
        return self._ctx.root

    @property
    def artifact_store(self) -> str | None:
        """The artifact store URI recorded in the database, or None (files stay on the local disk)."""
        return self._ctx.artifact_store_uri

    @property
    def registry(self) -> dict[str, Any]:
        """The whole ``registry.json`` document, read fresh from the database."""
        return self._ctx.read(build_registry_document)[0]

    @property
    def models(self) -> dict[str, dict[str, Any]]:
        """``{model_id: entry}`` as in ``registry.json`` (a fresh copy; editing it changes nothing)."""
        return self.registry["models"]

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def generate_model_id(model_type: str, version: str) -> str:
        """``f"{model_type}_{version}"``."""
        return f"{model_type}_{version}"

    @staticmethod
    def get_git_commit() -> str | None:
        """The working directory's git commit (None outside a repository)."""
        return _detect_git_commit()

    def validate_artifacts(self, artifacts_path: str | os.PathLike[str], model_type: str) -> tuple[bool, list[str]]:
        """Check a model folder without registering it: ``(ok, problems)``."""
        return _validate_artifacts(self._ctx.resolve(str(artifacts_path)), model_type)

    def _detected_git_commit(self) -> str | None:
        now = time.monotonic()
        if self._git_cache is None or now - self._git_cache[0] > GIT_CACHE_SECONDS:
            self._git_cache = (now, _detect_git_commit(self._ctx.root))
        return self._git_cache[1]

    # ------------------------------------------------------------------ registration

    def register_model(
        self,
        artifacts_path: str | os.PathLike[str],
        model_type: str,
        hyperparameters: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
        training_info: dict[str, Any] | None = None,
        data_version: str | None = None,
        git_commit: str | None = None,
        baseline_comparison: dict[str, Any] | None = None,
        bert_integration: dict[str, Any] | None = None,
        version: str | None = None,
        overwrite: bool = False,
    ) -> str:
        """Register the model in ``artifacts_path``; returns its ``model_id``.

        The folder is validated (required files, ``.npy`` headers, shapes, JSON,
        metadata and id maps) and every file's size and sha256 recorded. Without
        ``version`` the id is ``{type}_v_YYYYMMDD_HHMMSS`` (UTC), suffixed ``_2``,
        ``_3``... when taken. An explicit existing version returns its id when path
        and checksums are identical (idempotent re-run), is replaced in one
        transaction with ``overwrite=True``, and raises otherwise.

        Raises:
            InvalidArgumentError: unknown model type, bad ids, metrics or payloads.
            InvalidArtifactsError: missing or invalid files.
            ModelExistsError: the explicit version exists with other content.
            ModelNotFoundError: ``bert_integration`` names an unknown embeddings version.
        """
        validate_identifier(model_type, "model_type", MODEL_TYPE_MAX_LENGTH)
        required_files(model_type)
        if version is not None:
            validate_identifier(version, "version")
            if len(self.generate_model_id(model_type, version)) > ID_MAX_LENGTH:
                raise InvalidArgumentError(
                    f"model id {model_type}_{version} is longer than {ID_MAX_LENGTH} characters; use a shorter version"
                )
        metric_values = validate_metrics(metrics)
        hyperparameters = json_payload(hyperparameters, "hyperparameters")
        training_info = json_payload(training_info, "training_info")
        baseline_comparison = json_payload(baseline_comparison, "baseline_comparison", allow_none=True) or None
        bert_integration = json_payload(bert_integration, "bert_integration", allow_none=True) or None
        data_version = optional_text(data_version, "data_version") or "unknown"
        git_commit = optional_text(git_commit, "git_commit", 64) or self._detected_git_commit()
        embeddings_version = (bert_integration or {}).get("embeddings_version")
        if embeddings_version is not None:
            validate_identifier(embeddings_version, "bert_integration.embeddings_version")
        overwrite = validate_flag(overwrite, "overwrite")
        stored_path = path_text(artifacts_path, "artifacts_path")
        uris: dict[str, str] = {}
        artifact_store = self._ctx.artifact_store
        if is_uri(stored_path):
            # Registered in place: validated from ranged reads, hashed by streaming; nothing is copied.
            stored_path = stored_path.rstrip("/")
            prints, uris = inspect_remote_folder(stored_path, model_type)
        else:
            folder = self._ctx.resolve(stored_path)
            _, problems = check_model_folder_remembered(folder, model_type)
            if not problems and (folder / user_eval_file(model_type)).is_file():
                from .user_eval import mean_mismatches

                problems = mean_mismatches(folder, model_type, metric_values)
            if problems:
                raise InvalidArtifactsError(f"Invalid artifacts in {str(folder)!r} for model type {model_type!r}: " + "; ".join(problems))
            known = self._ctx.read(lambda session: _known_fingerprints(session, stored_path))
            prints = [fingerprint(folder / name, known, within=folder) for name in model_files(folder, model_type)]
            if artifact_store is not None:
                # Uploaded before anything is recorded: a failed upload leaves no row behind.
                uris = upload_files(artifact_store, folder, prints)
        source_path = stored_path

        def work(session: Session) -> str:
            if embeddings_version is not None and session.get(BertEmbedding, embeddings_version) is None:
                raise ModelNotFoundError(
                    f"bert_integration names embeddings version {embeddings_version!r}, which is not registered"
                )
            existing: Model | None = None
            if version is None:
                model_id, model_version = _allocate_model_id(session, model_type)
            else:
                model_id, model_version = self.generate_model_id(model_type, version), version
            # Uploaded into the store: the model's address there (its files are content-addressed objects).
            stored_path = artifact_store.model_uri(model_id) if uris and not is_uri(source_path) else source_path
            if version is not None:
                existing = session.get(Model, model_id)
                if existing is not None:
                    if not overwrite:
                        if _same_content(session, existing, stored_path, prints):
                            logger.info("model %s is already registered with identical files", model_id)
                            return model_id
                        raise ModelExistsError(
                            f"Model {model_id!r} already exists with a different path or files; "
                            "register another version or pass overwrite=True"
                        )
                    session.execute(delete(ModelMetric).where(ModelMetric.model_id == model_id))
                    session.execute(delete(ArtifactFile).where(ArtifactFile.model_id == model_id))
            fields: dict[str, Any] = {
                "model_type": model_type,
                "version": model_version,
                "path": stored_path,
                "status": "active",
                "data_version": data_version,
                "git_commit": git_commit,
                "hyperparameters": hyperparameters,
                "training_info": training_info,
                "baseline_comparison": baseline_comparison,
                "bert_integration": bert_integration,
            }
            if existing is not None:
                # Replaced in place: the row may be the current best, which a restricting
                # foreign key (settings.current_model_id) keeps from being deleted.
                for name, value in {**fields, "created_at": utcnow(), "extra": None}.items():
                    setattr(existing, name, value)
            else:
                session.add(Model(model_id=model_id, **fields))
            session.flush()
            session.add_all(ModelMetric(model_id=model_id, name=n, value=v) for n, v in metric_values.items())
            session.add_all(
                ArtifactFile(model_id=model_id, file_name=p.file_name, size_bytes=p.size_bytes, sha256=p.sha256,
                             mtime_ns=p.mtime_ns, uri=uris.get(p.file_name))
                for p in prints
            )
            # Links made with link_to_model survive an overwrite; bert_integration adds its own.
            if embeddings_version is not None and session.get(EmbeddingLink, (embeddings_version, model_id)) is None:
                session.add(EmbeddingLink(embedding_version=embeddings_version, model_id=model_id))
            settings = selection.settings_row(session)
            criteria = settings.selection_criteria
            value = metric_values.get(criteria)
            summary = f"{criteria}={value if value is not None else 'N/A'}"
            if overwrite and version is not None and settings.current_model_id == model_id:
                selection.refresh_current_selection(session, settings, model_id, metric_values)
                summary += " overwrite=True"
            details = {"path": stored_path, "model_type": model_type, "metrics": metric_values, "overwrite": overwrite}
            if stored_path != source_path:
                details["uploaded_from"] = source_path
            audit.record(session, "REGISTER", model_id, summary, details)
            return model_id

        return self._ctx.mutate(work)

    # ------------------------------------------------------------------ selection

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

    @generation_cached(copy=copy.deepcopy)
    def get_current_best(self) -> dict[str, Any] | None:
        """The current best: ``model_id``, ``model_info`` and the ``current_best`` fields; None if unset."""
        return self._ctx.read(selection.current_best)

    # ------------------------------------------------------------------ queries

    @generation_cached(copy=copy.deepcopy)
    def get_model(self, model_id: str) -> dict[str, Any] | None:
        """A model's ``registry.json`` entry (a copy), or None when unknown."""
        validate_identifier(model_id, "model_id")

        def work(session: Session) -> dict[str, Any] | None:
            model = session.get(Model, model_id)
            if model is None:
                return None
            return model_info(model, selection.metrics_of(session, model_id), tags_of(session, "model", [model_id]).get(model_id))

        return self._ctx.read(work)

    def get_model_files(self, model_id: str) -> list[dict[str, Any]]:
        """The files recorded at registration: ``file_name``, ``size_bytes``, ``sha256`` (and ``uri``
        for a file in an artifact store)."""
        validate_identifier(model_id, "model_id")

        def work(session: Session) -> list[dict[str, Any]]:
            selection.require_model(session, model_id)
            rows = session.scalars(select(ArtifactFile).where(ArtifactFile.model_id == model_id).order_by(ArtifactFile.file_name))
            return [{"file_name": r.file_name, "size_bytes": r.size_bytes, "sha256": r.sha256, **({"uri": r.uri} if r.uri else {})}
                    for r in rows]

        return self._ctx.read(work)

    @generation_cached(copy=copy_frame)
    def list_models(
        self,
        model_type: str | None = None,
        status: str | None = None,
        sort_by: str = "created_at",
        ascending: bool = False,
    ) -> pd.DataFrame:
        """Models as a DataFrame.

        Columns: ``model_id, model_type, version, status, created_at``, one column per
        metric (alphabetical; NaN where a model lacks it), ``training_time``
        (``training_info.training_time_seconds``, NaN when absent). The same columns
        are present when nothing matches. ``sort_by`` is one of those columns or any
        metric name known to the registry; NaN sorts last.

        Raises:
            InvalidArgumentError: unknown ``status`` or ``sort_by``.
            UnknownModelTypeError: ``model_type`` is neither a registered type nor
                stored in the registry (a typo); the error lists the known types.
        """
        models, metric_rows, tags, metric_names = self._list_rows(model_type, status, sort_by, ascending)
        frame = models_frame(models, metric_rows, tags)
        for name in metric_names:
            if name not in frame:
                frame[name] = float("nan")
        key = SORT_KEY if sort_by == "created_at" else sort_by
        if key not in frame:
            frame[key] = float("nan")
        frame = frame.sort_values(key, ascending=ascending, na_position="last", kind="stable")
        return frame[public_columns(metric_names)].reset_index(drop=True)

    def list_model_records(
        self,
        model_type: str | None = None,
        status: str | None = None,
        sort_by: str = "created_at",
        ascending: bool = False,
    ) -> list[dict[str, Any]]:
        """The rows of :meth:`list_models` as dicts in the same order (None where it has NaN).

        Same arguments and errors; it does not import pandas, so a short-lived process that only
        prints the list (``cfreg list``) starts about half a second sooner.
        """
        models, metric_rows, tags, metric_names = self._list_rows(model_type, status, sort_by, ascending)
        records = models_records(models, metric_rows, tags, metric_names)
        records = sort_records(records, SORT_KEY if sort_by == "created_at" else sort_by, ascending=ascending)
        columns = public_columns(metric_names)
        return [{column: record.get(column) for column in columns} for record in records]

    def _list_rows(
        self, model_type: str | None, status: str | None, sort_by: str, ascending: bool,
    ) -> tuple[Sequence[Any], list[Any], dict[str, dict[str, str]], list[str]]:
        """Validated arguments, then ``(models, metric rows, tags, metric names)`` in creation order."""
        if model_type is not None:
            validate_identifier(model_type, "model_type")
        if status is not None:
            validate_status(status)
        if not isinstance(sort_by, str):
            raise InvalidArgumentError(f"sort_by must be a column name, got {sort_by!r}")
        if isinstance(ascending, str) or ascending not in (True, False):
            raise InvalidArgumentError(f"ascending must be True or False, got {ascending!r}")

        def work(session: Session) -> tuple[Sequence[Any], list[Any], set[str], dict[str, dict[str, str]]]:
            conditions = []
            if model_type is not None:
                selection.require_known_model_type(session, model_type)
                conditions.append(Model.model_type == model_type)
            if status is not None:
                conditions.append(Model.status == status)
            # Core execution (no ORM row processing): ~1.5x faster on 10,000 models x 5 metrics.
            connection = session.connection()
            models = connection.execute(
                select(Model.model_id, Model.model_type, Model.version, Model.status, Model.created_at, Model.training_info)
                .where(*conditions).order_by(Model.created_at, Model.model_id)
            ).all()
            metric_rows = connection.execute(
                select(ModelMetric.model_id, ModelMetric.name, ModelMetric.value)
                .join(Model, Model.model_id == ModelMetric.model_id).where(*conditions)
            ).all()
            known = set(session.scalars(select(ModelMetric.name).distinct()))
            # Plain tuples: pandas probes each Row for namedtuple attributes, which costs ~50 ms per 1,000 models.
            return models, [tuple(row) for row in metric_rows], known, tags_of(session, "model")

        models, metric_rows, known_metrics, tags = self._ctx.read(work)
        allowed = set(LIST_BASE_COLUMNS) | {"training_time"} | known_metrics
        if sort_by not in allowed:
            raise InvalidArgumentError(
                f"unknown sort_by {sort_by!r}: use one of {LIST_BASE_COLUMNS + ['training_time']} or a metric name"
            )
        return models, metric_rows, tags, metric_columns(metric_rows)

    @generation_cached(copy=copy_frame)
    def search_models(
        self,
        filter_string: str = "",
        *,
        order_by: list[str] | None = None,
        limit: int | None = 100,
        offset: int = 0,
    ) -> pd.DataFrame:
        """Models matching an MLflow-like filter, as a :meth:`list_models` frame in ``order_by`` order.

        Example: ``search_models("metrics.ndcg@10 > 0.1 and model_type = 'als' and tags.team =
        'search'", order_by=["metrics.ndcg@10 desc"], limit=20)``. Fields: ``metrics.<name>``,
        ``tags.<key>``, ``model_id``, ``model_type``, ``version``, ``status``, ``created_at`` (ISO
        dates), ``data_version``, ``git_commit``, ``description``; operators ``= != < <= > >= like
        ilike in``, ``not in``, joined with ``and``/``or`` and parentheses. Default order: newest first.
        Page with ``limit`` (at most 10,000; None for all) and ``offset``.

        Raises:
            FilterSyntaxError: the filter or an ``order_by`` entry does not parse; the message
                points at the offending token (a ValueError).
        """
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= search.MAX_PAGE_SIZE):
            raise InvalidArgumentError(f"limit must be a whole number from 1 to {search.MAX_PAGE_SIZE} or None, got {limit!r}")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise InvalidArgumentError(f"offset must be a whole number >= 0, got {offset!r}")

        def work(session: Session) -> tuple[list[Any], list[Any], dict[str, dict[str, str]]]:
            rows = search.search_rows(session, filter_string, order_by, limit, offset)
            ids = [row[0] for row in rows]
            metric_rows = [tuple(r) for r in session.execute(
                select(ModelMetric.model_id, ModelMetric.name, ModelMetric.value).where(ModelMetric.model_id.in_(ids))
            )] if ids else []
            return rows, metric_rows, tags_of(session, "model", ids) if ids else {}

        rows, metric_rows, found_tags = self._ctx.read(work)
        metric_names = metric_columns(metric_rows)
        frame = models_frame(rows, metric_rows, found_tags)
        for name in metric_names:
            if name not in frame:
                frame[name] = float("nan")
        return frame[public_columns(metric_names)].reset_index(drop=True)

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
            # Held for the transaction: the later lookups of the row come from the session, not the database.
            row = session.get(Alias, name) if name != CURRENT_BEST_ALIAS else None  # noqa: F841
            previous = aliases.target_of(session, name)
            aliases.check_expected(name, previous, expected)
            if name == CURRENT_BEST_ALIAS:
                selection.promote(session, model_id, reason, None)
                changed = previous != model_id
            else:
                changed = aliases.move(session, name, selection.require_model(session, model_id), reason=reason)
            return {"alias": name, "model_id": model_id, "previous_model_id": previous, "changed": changed}

        return self._ctx.mutate(work)

    @generation_cached(copy=copy.deepcopy)
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

    @generation_cached(copy=copy.deepcopy)
    def list_aliases(self) -> list[dict[str, Any]]:
        """Every alias (``current_best`` first when set): ``alias, model_id, model_type, updated_at, updated_by, reason``."""
        return self._ctx.read(aliases.listing)

    def alias_history(self, name: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Moves of one alias, newest first: ``id, alias, at, by, from, to, reason, selected_by, metric, value``."""
        aliases.validate_alias_name(name)
        if limit is not None:
            positive_int(limit, "limit")
        return self._ctx.read(lambda session: aliases.history(session, name, limit))

    # ------------------------------------------------------------------ tags and descriptions

    def set_tag(self, model_id: str, key: str, value: str) -> bool:
        """Set tag ``key`` of a model to ``value``; False when it already had that value.

        Raises:
            ModelNotFoundError: unknown id. InvalidArgumentError: a key outside the id rules or
                a value that is not single-line text of at most 1,024 characters.
        """
        validate_identifier(model_id, "model_id")
        key, value = tags.validate_tag(key, value)

        def work(session: Session) -> bool:
            selection.require_model(session, model_id)
            return tags.set_tag(session, "model", model_id, key, value)

        return self._ctx.mutate(work)

    def delete_tag(self, model_id: str, key: str) -> bool:
        """Remove a model's tag; False when it was not set.

        Raises:
            ModelNotFoundError: unknown id.
        """
        validate_identifier(model_id, "model_id")
        key, _ = tags.validate_tag(key)

        def work(session: Session) -> bool:
            selection.require_model(session, model_id)
            return tags.delete_tag(session, "model", model_id, key)

        return self._ctx.mutate(work)

    @generation_cached(copy=copy.deepcopy)
    def get_tags(self, model_id: str) -> dict[str, str]:
        """A model's tags as ``{key: value}`` (empty when none).

        Raises:
            ModelNotFoundError: unknown id.
        """
        validate_identifier(model_id, "model_id")

        def work(session: Session) -> dict[str, str]:
            selection.require_model(session, model_id)
            return tags_of(session, "model", [model_id]).get(model_id, {})

        return self._ctx.read(work)

    def set_description(self, model_id: str, description: str | None) -> bool:
        """Set a model's description (None or "" clears it); False when unchanged.

        Raises:
            ModelNotFoundError: unknown id. InvalidArgumentError: not text, or over 10,000 characters.
        """
        validate_identifier(model_id, "model_id")
        text = tags.validate_description(description)

        def work(session: Session) -> bool:
            return tags.set_description(session, selection.require_model(session, model_id), model_id, text)

        return self._ctx.mutate(work)

    def compare_models(self, model_ids: list[str], metrics: list[str] | None = None) -> pd.DataFrame:
        """Side by side: ``model_id, model_type, factors``, the metrics, ``training_time``.

        Raises:
            ModelNotFoundError: an id is not registered.
        """
        import pandas as pd

        if isinstance(model_ids, str) or not isinstance(model_ids, (list, tuple)):
            raise InvalidArgumentError(f"model_ids must be a list of model ids, got {model_ids!r}")
        if metrics is not None and (isinstance(metrics, str) or not isinstance(metrics, (list, tuple))):
            raise InvalidArgumentError(f"metrics must be a list of metric names, got {metrics!r}")
        ids = [validate_identifier(model_id, "model_id") for model_id in model_ids]
        wanted = [validate_metric_name(m) for m in (metrics if metrics is not None else DEFAULT_COMPARE_METRICS)]

        def work(session: Session) -> list[dict[str, Any]]:
            models = {m.model_id: m for m in session.scalars(select(Model).where(Model.model_id.in_(ids)))}
            missing = [model_id for model_id in ids if model_id not in models]
            if missing:
                raise ModelNotFoundError(f"Model(s) not found: {missing}", hint="list_models() shows the registered ids",
                                         cli_hint="`cfreg list` shows the registered ids")
            values = metrics_by_model(session, ids)
            rows = []
            for model_id in ids:
                model = models[model_id]
                row: dict[str, Any] = {
                    "model_id": model_id,
                    "model_type": model.model_type,
                    "factors": (model.hyperparameters or {}).get("factors", "N/A"),
                }
                row.update({name: values.get(model_id, {}).get(name) for name in wanted})
                row["training_time"] = finite_real((model.training_info or {}).get("training_time_seconds"))
                rows.append(row)
            return rows

        rows = self._ctx.read(work)
        return pd.DataFrame(rows, columns=["model_id", "model_type", "factors", *wanted, "training_time"])

    @generation_cached(copy=copy.deepcopy)
    def get_registry_stats(self) -> dict[str, Any]:
        """Counts by status and type, the current best, last update and generation."""
        def work(session: Session) -> dict[str, Any]:
            by_status = dict(session.execute(select(Model.status, func.count()).group_by(Model.status)).all())
            by_type = dict(session.execute(select(Model.model_type, func.count()).group_by(Model.model_type).order_by(Model.model_type)).all())
            settings = selection.settings_row(session)
            return {
                "total_models": sum(by_status.values()),
                "active_models": by_status.get("active", 0),
                "archived_models": by_status.get("archived", 0),
                "failed_models": by_status.get("failed", 0),
                "by_type": by_type,
                "current_best": settings.current_model_id,
                "last_updated": iso(settings.last_updated),
                "generation": settings.generation,
            }

        return self._ctx.read(work)

    # ------------------------------------------------------------------ lifecycle

    def archive_model(self, model_id: str) -> bool:
        """Archive a model (kept, no longer selectable).

        Returns:
            True when archived (or already archived); False for the current best.

        Raises:
            ModelNotFoundError: unknown id. ModelInUseError: in a running A/B test.
        """
        validate_identifier(model_id, "model_id")

        def work(session: Session) -> bool:
            model = selection.require_model(session, model_id)
            if selection.current_model_id(session) == model_id:
                logger.warning("Cannot archive %s: it is the current best; select or promote another model first", model_id)
                return False
            usage.refuse_if_in_running_test(session, model_id, "archive")
            aliases.refuse_if_aliased(session, model_id, "archive")
            if model.status == "archived":
                return True
            previous, model.status = model.status, "archived"
            audit.record(session, "ARCHIVE", model_id, "reason=manual", {"previous_status": previous})
            return True

        return self._ctx.mutate(work)

    def update_model_status(self, model_id: str, status: str) -> bool:
        """Set a model's status (``active``, ``archived``, ``failed``).

        Raises:
            InvalidArgumentError: unknown status. ModelNotFoundError: unknown id.
            ModelInUseError: deactivating the current best or a model in a running A/B test.
        """
        validate_identifier(model_id, "model_id")
        validate_status(status)

        def work(session: Session) -> bool:
            model = selection.require_model(session, model_id)
            if status != "active":
                if selection.current_model_id(session) == model_id:
                    raise ModelInUseError(f"Model {model_id!r} is the current best and cannot become {status}; promote another model first")
                usage.refuse_if_in_running_test(session, model_id, f"mark {status}")
                aliases.refuse_if_aliased(session, model_id, f"mark {status}")
            if model.status == status:
                return True
            previous, model.status = model.status, status
            audit.record(session, "UPDATE_STATUS", model_id, f"status={status}", {"previous_status": previous, "status": status})
            return True

        return self._ctx.mutate(work)

    def delete_model(self, model_id: str, delete_files: bool = False) -> bool:
        """Remove a model from the registry (and optionally its artifact folder).

        Files are deleted only when the folder resolves inside the artifacts root,
        is not a symlink, and is not used by any other model or embeddings version.
        The database change commits first; the folder is removed after.

        Raises:
            ModelNotFoundError: unknown id.
            ModelInUseError: current best, running A/B test, or shared files.
            InvalidArgumentError: the folder escapes the artifacts root.
        """
        validate_identifier(model_id, "model_id")
        delete_files = validate_flag(delete_files, "delete_files")
        to_remove: list[DeletionTarget] = []
        objects: list[tuple[str, str]] = []

        def work(session: Session) -> bool:
            model = selection.require_model(session, model_id)
            if selection.current_model_id(session) == model_id:
                raise ModelInUseError(f"Model {model_id!r} is the current best and cannot be deleted; promote another model first")
            usage.refuse_if_in_running_test(session, model_id, "delete")
            aliases.refuse_if_aliased(session, model_id, "delete")
            to_remove.clear()
            objects[:] = store_objects_of_model(session, model_id)
            if delete_files and (objects or is_uri(model.path)):
                pass  # store objects: removed after commit when nothing else records their sha256
            elif delete_files:
                folder = self._ctx.resolve(model.path)
                to_remove.append(check_deletable(folder, self._ctx.artifacts_root))
                usage.refuse_if_folder_shared(session, self._ctx, folder, f"model {model_id!r}", skip_model=model_id)
            session.delete(model)
            audit.record(session, "DELETE", model_id, f"delete_files={delete_files}",
                         {"path": model.path, "delete_files": delete_files})
            return True

        result = self._ctx.mutate(work)
        if delete_files and objects:
            remove_unreferenced(self._ctx, objects)
        for folder in to_remove:
            try:
                safe_delete_tree(folder, self._ctx.artifacts_root)
            except (OSError, InvalidArgumentError) as exc:
                raise RegistryError(f"model {model_id} was deleted from the registry but its files remain in {folder}: {exc}") from exc
        return result

    # ------------------------------------------------------------------ artifact store

    def verify_artifacts(self, model_id: str | None = None) -> dict[str, Any]:
        """Check that recorded files exist with their size and sha256 (local or in a store).

        Args:
            model_id: one model; None checks every model and embeddings version.

        Returns:
            ``{"checked": n, "problems": [{"kind", "id", "file_name", "location", "problem"}]}``.
        """
        if model_id is not None:
            validate_identifier(model_id, "model_id")
        from .storage.manage import verify_files

        return verify_files(self._ctx, model_id)

    def push_artifacts(self, model_id: str) -> dict[str, Any]:
        """Move a local model's files into the registry's artifact store (see :func:`registry.storage.manage.push_model`)."""
        validate_identifier(model_id, "model_id")
        from .storage.manage import push_model

        return push_model(self._ctx, model_id)

    # ------------------------------------------------------------------ A/B tests
    # Thin delegations only; the behaviour and its documentation live in registry.abtest.

    def start_ab_test(self, control_model: str, treatment_model: str, traffic_split: float,
                      test_id: str | None = None, *, minimum_detectable_effect: float | None = None) -> dict[str, Any]:
        """Start an A/B test (see :func:`registry.abtest.start_ab_test`); returns the ``ab_test`` dict."""

        return abtest.start_ab_test(self._ctx, control_model, treatment_model, traffic_split, test_id,
                                    minimum_detectable_effect=minimum_detectable_effect)

    def get_ab_test(self, test_id: str | None = None) -> dict[str, Any] | None:
        """The running test (or ``test_id``) as the ``ab_test`` dict; None when none runs."""

        return abtest.get_ab_test(self._ctx, test_id)

    def list_ab_tests(self) -> list[dict[str, Any]]:
        """Every A/B test, newest first."""

        return abtest.list_ab_tests(self._ctx)

    def update_traffic_split(self, test_id: str | None, traffic_split: float) -> dict[str, Any]:
        """Change a running test's treatment share (see :func:`registry.abtest.update_traffic_split`)."""

        return abtest.update_traffic_split(self._ctx, test_id, traffic_split)

    def stop_ab_test(self, test_id: str | None = None, promote: str | None = None, *,
                     promote_winner: bool = False) -> dict[str, Any]:
        """Stop a test, optionally promoting ``'control'`` or ``'treatment'``, or the winner by
        :meth:`ab_test_results` (``promote_winner=True``; see :func:`registry.abtest.stop_ab_test`)."""

        return abtest.stop_ab_test(self._ctx, test_id, promote, promote_winner=promote_winner)  # type: ignore[arg-type]

    def record_ab_outcomes(self, test_id: str, arm: str, exposures: int, conversions: int | None = None, *,
                           batch_id: str, value_sum: float | None = None,
                           value_sum_squares: float | None = None) -> dict[str, Any]:
        """Add one batch of an arm's outcomes; a retried ``batch_id`` counts once
        (see :func:`registry.ab_results.record_ab_outcomes`)."""
        from . import ab_results

        return ab_results.record_ab_outcomes(self._ctx, test_id, arm, exposures, conversions, batch_id=batch_id,
                                             value_sum=value_sum, value_sum_squares=value_sum_squares)

    def ab_test_results(self, test_id: str | None = None, *, metric: str | None = "conversion",
                        method: str = "fixed_horizon", confidence: float = 0.95) -> dict[str, Any]:
        """Per arm exposures and rate, lift with interval, p-value, exposures still needed, verdict
        (see :func:`registry.ab_results.ab_test_results`; ``metric=None`` picks conversion when
        any batch carries conversions, else value)."""
        from . import ab_results

        return ab_results.ab_test_results(self._ctx, test_id, metric=metric, method=method, confidence=confidence)

    def rollback_ab_test(self, test_id: str | None = None) -> dict[str, Any]:
        """Split to 0, stop, current best back to control, in one transaction."""

        return abtest.rollback_ab_test(self._ctx, test_id)

    def route_user(self, user_id: Any) -> str:
        """The model id serving ``user_id``: the running test's arm, else the current best."""

        return abtest.route_user(self._ctx, user_id)


    def export_registry_json(self, *, force: bool = True) -> Path:
        """Write ``registry.json`` (and ``bert_registry.json``) now; returns the registry.json path."""
        self._ctx.export(force=force)
        return self._ctx.json_path


# ---------------------------------------------------------------------- transaction helpers


def _churn_bound(value: object) -> float:
    bound = selection.non_negative_fraction(value, "max_churn")
    if bound > 1:
        raise InvalidArgumentError(f"max_churn is a fraction of users' top-k lists, in [0, 1]; got {value!r}")
    return bound


def _known_fingerprints(session: Session, stored_path: str) -> dict[str, FileFingerprint]:
    """Fingerprints recorded for the newest model registered from the same path."""
    latest = (
        select(Model.model_id).where(Model.path == stored_path)
        .order_by(Model.created_at.desc()).limit(1).scalar_subquery()
    )
    rows = session.execute(
        select(ArtifactFile.file_name, ArtifactFile.size_bytes, ArtifactFile.sha256, ArtifactFile.mtime_ns)
        .where(ArtifactFile.model_id == latest)
    )
    return {name: FileFingerprint(name, size, sha, mtime or -1) for name, size, sha, mtime in rows}


# (database, model_type, version base) -> the last suffix this process allocated: only a
# starting point for the search below, so a stale hint can never produce a duplicate.
_suffix_hints: dict[tuple[str, str, str], int] = {}


def _allocate_model_id(session: Session, model_type: str) -> tuple[str, str]:
    # Writers are serialised (BEGIN IMMEDIATE / settings row lock), so the
    # first free id found here is still free at commit; the primary key is the backstop.
    base = _generate_version_id("v")
    hint_key = (str(session.get_bind().engine.url), model_type, base)
    hint = _suffix_hints.get(hint_key)
    if hint is None and session.get(Model, f"{model_type}_{base}") is None:
        return f"{model_type}_{base}", base
    # Exact-id lookups in batches (index equality; no collation-dependent range scans).
    for start in range(max(2, (hint or 1) + 1), MAX_VERSIONS_PER_SECOND, 64):
        versions = {f"{model_type}_{base}_{n}": (f"{base}_{n}", n) for n in range(start, start + 64)}
        taken = set(session.scalars(select(Model.model_id).where(Model.model_id.in_(list(versions)))))
        for model_id, (version, suffix) in versions.items():
            if model_id not in taken:
                _suffix_hints.clear()  # one entry is enough: the clock only moves forward
                _suffix_hints[hint_key] = suffix
                return model_id, version
    raise RegistryError(f"too many automatic versions of {model_type!r} in one second",
                        hint="pass version=", cli_hint="pass --version")


def _same_content(session: Session, model: Model, stored_path: str, prints: list[FileFingerprint]) -> bool:
    if model.path != stored_path:
        return False
    recorded = {row.file_name: row.sha256 for row in session.scalars(select(ArtifactFile).where(ArtifactFile.model_id == model.model_id))}
    return recorded == {p.file_name: p.sha256 for p in prints}


# ---------------------------------------------------------------------- module-level API


def generate_model_id(model_type: str, version: str) -> str:
    """``f"{model_type}_{version}"``: how a model id is built."""
    return ModelRegistry.generate_model_id(model_type, version)


_shared = SharedInstances(ModelRegistry)


def get_registry(registry_path: str | os.PathLike[str] = DEFAULT_REGISTRY_PATH, **kwargs: Any) -> ModelRegistry:
    """The shared :class:`ModelRegistry` for a location (one instance per registry and process).

    Keyword arguments are used when the instance is first created.
    """
    return _shared.get(registry_path, **kwargs)


def reset_registries() -> None:
    """Forget the shared registry instances (tests)."""
    _shared.clear()


def register_model(
    artifacts_path: str | os.PathLike[str],
    model_type: str,
    hyperparameters: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    training_info: dict[str, Any] | None = None,
    registry_path: str | os.PathLike[str] = DEFAULT_REGISTRY_PATH,
    **kwargs: Any,
) -> str:
    """Register a model in the registry at ``registry_path`` (see :meth:`ModelRegistry.register_model`)."""
    return get_registry(registry_path).register_model(artifacts_path, model_type, hyperparameters, metrics, training_info, **kwargs)


def diff_models(model_a: str, model_b: str, registry_path: str | os.PathLike[str] = DEFAULT_REGISTRY_PATH,
                **kwargs: Any) -> DiffReport:
    """Diff two models of the registry at ``registry_path`` (see :meth:`ModelRegistry.diff_models`)."""
    return get_registry(registry_path).diff_models(model_a, model_b, **kwargs)


def select_best_model(metric: str = DEFAULT_METRIC, registry_path: str | os.PathLike[str] = DEFAULT_REGISTRY_PATH, **kwargs: Any) -> dict[str, Any] | None:
    """Select the best model in the registry at ``registry_path`` (see :meth:`ModelRegistry.select_best_model`)."""
    return get_registry(registry_path).select_best_model(metric=metric, **kwargs)

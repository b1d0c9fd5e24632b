"""``ModelRegistry``: register CF models, pick the best by a metric, promote, roll back.

Usage::

    registry = ModelRegistry("artifacts/cf/registry.json")
    model_id = registry.register_model("artifacts/cf/als/v2", "als", {"factors": 64}, {"ndcg@10": 0.19}, {})
    best = registry.select_best_model(metric="ndcg@10")

Every public method validates its input first, then runs one transaction that
holds the change and its audit row (``RegistryContext.mutate``), and returns
plain dicts or DataFrames; ORM rows never leave the transaction.

This module holds the class itself (opening, the registry-wide properties) and the
module-level shortcuts; the operations are mixins, one module per job:
:mod:`~registry.cf_register` (registration), :mod:`~registry.cf_selection` (selection,
promotion, rollback, aliases), :mod:`~registry.cf_queries` (reads),
:mod:`~registry.cf_lifecycle` (tags, status, archive, delete, artifact store),
:mod:`~registry.cf_abtests` (A/B tests), :mod:`~registry.admin_facade` and
:mod:`~registry.dashboard_facade`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .admin_facade import RegistryAdmin
from .artifacts import REQUIRED_MODEL_FILES
from .cf_abtests import RegistryABTests
from .cf_lifecycle import RegistryLifecycle
from .cf_queries import RegistryQueries
from .cf_register import RegistryRegistration
from .cf_selection import RegistrySelection
from .context import RegistryContext
from .dashboard_facade import RegistryDashboards
from .defaults import DEFAULT_METRIC, DEFAULT_REGISTRY_PATH
from .documents import build_registry_document, create_empty_registry, validate_registry_schema
from .instances import SharedInstances
from .opening import open_context
from .read_cache import ReadCache
from .validation import MODEL_STATUS

if TYPE_CHECKING:
    from .diff.report import DiffReport

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


class ModelRegistry(
    RegistryRegistration,
    RegistrySelection,
    RegistryQueries,
    RegistryLifecycle,
    RegistryABTests,
    RegistryAdmin,
    RegistryDashboards,
):
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

    def export_registry_json(self, *, force: bool = True) -> Path:
        """Write ``registry.json`` (and ``bert_registry.json``) now; returns the registry.json path."""
        self._ctx.export(force=force)
        return self._ctx.json_path


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

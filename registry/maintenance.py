"""Operator tasks shared by ``cfreg`` and the automation scripts in ``tools/``.

* :func:`read_model_folder` / :func:`update_registry_from_folder`: register a
  trained model from its artifact folder alone (``tools/update_registry.py``,
  ``cfreg register``), optionally promoting it when it beats the current best.
* :func:`plan_cleanup` / :func:`cleanup_old_models`: keep the newest models per
  type and archive or delete the rest (``tools/cleanup_old_models.py``,
  ``cfreg cleanup``), never touching the current best, a model in a running
  A/B test or a model linked to BERT embeddings (:func:`cleanup_protection`, the
  rule ``registry.utils.cleanup_old_artifacts`` applies too).

Read-only SQL (``cfreg sql``) lives in :mod:`registry.readonly_sql`.

Everything here goes through the public registry API, so validation, audit and
the JSON export happen exactly as for any other caller.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .abtest import running_test
from .artifacts import REQUIRED_MODEL_FILES, read_json_file
from .defaults import DEFAULT_METRIC
from .errors import (
    InvalidArgumentError,
    InvalidArtifactsError,
    ModelInUseError,
    ModelNotFoundError,
    RegistryError,
)
from .models import EmbeddingLink, Model
from .selection import require_known_metric, settings_row
from .storage import is_uri
from .storage.upload import standin_folder
from .timestamps import format_timestamp as iso
from .validation import validate_identifier, validate_metrics

if TYPE_CHECKING:
    from .cf_registry import ModelRegistry

logger = logging.getLogger(__name__)

DEFAULT_SELECTION_METRIC = DEFAULT_METRIC
# Metadata keys that are registered as their own fields, not as training info.
_RESERVED_METADATA_KEYS = frozenset(
    {"model_type", "metrics", "data_version", "git_commit", "baseline_comparison", "bert_integration",
     "training_info", "hyperparameters", "params", "version"}
)

__all__ = [
    "CleanupItem",
    "CleanupReport",
    "ModelFolder",
    "UpdateResult",
    "cleanup_old_models",
    "cleanup_protection",
    "detect_model_type",
    "metrics_from_document",
    "plan_cleanup",
    "read_model_folder",
    "stored_artifacts_path",
    "update_registry_from_folder",
]


# =========================================================================== model folders


@dataclass
class ModelFolder:
    """What a trained model's artifact folder says about itself."""

    path: str
    model_type: str
    version: str | None
    hyperparameters: dict[str, Any]
    metrics: dict[str, Any]
    metrics_source: str | None
    training_info: dict[str, Any]
    data_version: str | None = None
    git_commit: str | None = None
    baseline_comparison: dict[str, Any] | None = None
    bert_integration: dict[str, Any] | None = None


@dataclass
class UpdateResult:
    """Outcome of :func:`update_registry_from_folder`."""

    model_id: str
    model_type: str
    path: str
    metrics: dict[str, Any]
    metrics_source: str | None
    auto_select: bool
    promoted: bool
    current_best: str | None
    decision: str
    selection: dict[str, Any] | None = None
    already_registered: bool = False
    note: str | None = None
    # Where the version came from: "argument", "folder name" or "generated" (v_YYYYMMDD_HHMMSS, UTC).
    version_source: str = "generated"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def detect_model_type(folder: str | os.PathLike[str]) -> str:
    """The model type of an artifact folder, from its ``{type}_U.npy`` file.

    Raises:
        InvalidArtifactsError: the folder is missing or holds no ``*_U.npy``.
        InvalidArgumentError: several types are present (pass the type explicitly).
    """
    path = Path(folder)
    if not path.is_dir():
        raise InvalidArtifactsError(f"model path {str(path)!r} is not a directory")
    found = sorted(name[: -len("_U.npy")] for name in os.listdir(path) if name.endswith("_U.npy") and len(name) > 6)
    if not found:
        raise InvalidArtifactsError(
            f"no {{type}}_U.npy file in {str(path)!r}: expected e.g. als_U.npy ({sorted(REQUIRED_MODEL_FILES)} are known types)"
        )
    if len(found) > 1:
        raise InvalidArgumentError(
            f"ambiguous model type in {str(path)!r}: found {', '.join(f + '_U.npy' for f in found)}; "
            "pass the type explicitly (--type)"
        )
    return found[0]


def _version_of(name: str) -> str | None:
    """The folder name when it is a valid version id, else None."""
    try:
        return validate_identifier(name, "version")
    except InvalidArgumentError:
        return None


def _optional_json_object(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    data = read_json_file(path)
    if not isinstance(data, dict):
        raise InvalidArtifactsError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def metrics_from_document(document: dict[str, Any]) -> dict[str, Any]:
    """The metrics of a metrics file: the object itself, or its ``metrics`` object when it has one."""
    inner = document.get("metrics")
    return dict(inner) if isinstance(inner, dict) else dict(document)


def read_model_folder(folder: str | os.PathLike[str], model_type: str | None = None, *, base: Path | None = None) -> ModelFolder:
    """Read type, params, metrics, training info and provenance from an artifact folder.

    Rules:
        * type: ``model_type`` when given, else the ``{type}`` of the single ``{type}_U.npy``.
        * hyperparameters: ``{type}_params.json``.
        * metrics: ``{type}_metrics.json`` when present (a JSON object of name -> number, or
          one with a ``metrics`` object inside), else the ``metrics`` object of
          ``{type}_metadata.json``, else none.
        * training info: ``{type}_metadata.json``'s ``training_info`` object merged over its
          other keys, except the ones registered as their own fields (``metrics``,
          ``data_version``, ``git_commit``, ``baseline_comparison``, ``bert_integration``,
          ``model_type``, ``version``, ``hyperparameters``/``params``).
        * ``data_version``, ``git_commit``, ``baseline_comparison``, ``bert_integration``:
          the metadata keys of those names, when present.
        * version: the folder's name when it is a valid version id (``v2_20250116_141500``),
          else None (the registry then generates one).

    Args:
        folder: the artifact folder (absolute, or relative to ``base``), or a folder in an
            artifact store (``s3://...``: its JSON files are read, its arrays are not).
        model_type: skip detection.
        base: directory relative paths are resolved against (default: working directory).
    """
    stored = os.fspath(folder)
    if is_uri(stored):
        location = stored.rstrip("/")
        with standin_folder(location, lambda name: name.endswith((".json", "_U.npy"))) as (standin, _):
            found = read_model_folder(standin, model_type)
        return replace(found, path=location, version=_version_of(location.rsplit("/", 1)[-1]))
    path = Path(stored) if Path(stored).is_absolute() or base is None else base / stored
    if model_type is None:
        model_type = detect_model_type(path)
    else:
        validate_identifier(model_type, "model_type")
    if not path.is_dir():
        raise InvalidArtifactsError(f"model path {str(path)!r} is not a directory")
    params = _optional_json_object(path / f"{model_type}_params.json") or {}
    metadata = _optional_json_object(path / f"{model_type}_metadata.json") or {}
    metrics_file = path / f"{model_type}_metrics.json"
    metrics_doc = _optional_json_object(metrics_file)
    if metrics_doc is not None:
        metrics, source = metrics_from_document(metrics_doc), metrics_file.name
    elif isinstance(metadata.get("metrics"), dict):
        metrics, source = metadata["metrics"], f"{model_type}_metadata.json:metrics"
    else:
        metrics, source = {}, None
    training_info = {k: v for k, v in metadata.items() if k not in _RESERVED_METADATA_KEYS}
    if isinstance(metadata.get("training_info"), dict):
        training_info.update(metadata["training_info"])
    version = _version_of(Path(os.path.normpath(path)).name)

    def text(key: str) -> str | None:
        value = metadata.get(key)
        return value if isinstance(value, str) and value else None

    def mapping(key: str) -> dict[str, Any] | None:
        value = metadata.get(key)
        return value if isinstance(value, dict) and value else None

    return ModelFolder(
        path=stored,
        model_type=model_type,
        version=version,
        hyperparameters=params,
        metrics=dict(metrics),
        metrics_source=source,
        training_info=training_info,
        data_version=text("data_version"),
        git_commit=text("git_commit"),
        baseline_comparison=mapping("baseline_comparison"),
        bert_integration=mapping("bert_integration"),
    )


def stored_artifacts_path(root: str | os.PathLike[str], user_path: str | os.PathLike[str], cwd: Path | None = None) -> str:
    """The path to store for a folder the user named relative to their working directory.

    Registered relative paths are resolved against the registry's ``root``, not the
    working directory, so a folder under the root is stored relative to it (the doc's
    ``artifacts/cf/als/v2_...`` form) and any other folder as an absolute path.

    Args:
        root: the registry's root (``ModelRegistry.root``).
        user_path: the folder as the user typed it.
        cwd: what ``user_path`` is relative to (default: the working directory).

    A store URI (``s3://bucket/folder``) is returned as given.
    """
    if is_uri(os.fspath(user_path)):
        return os.fspath(user_path)  # a folder in an artifact store: registered in place
    given = Path(user_path).expanduser()
    absolute = Path(os.path.abspath(given if given.is_absolute() else (cwd or Path.cwd()) / given))
    root = Path(os.path.abspath(root))
    if absolute.is_relative_to(root) and absolute != root:
        return absolute.relative_to(root).as_posix()
    return str(absolute)


def update_registry_from_folder(
    registry: ModelRegistry,
    model_path: str | os.PathLike[str],
    *,
    model_type: str | None = None,
    version: str | None = None,
    hyperparameters: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    training_info: dict[str, Any] | None = None,
    data_version: str | None = None,
    git_commit: str | None = None,
    overwrite: bool = False,
    auto_select: bool = False,
    metric: str = DEFAULT_SELECTION_METRIC,
    min_gain: float = 0.0,
    min_improvement: float = 0.0,
) -> UpdateResult:
    """Register the model in ``model_path`` from its own files; optionally promote it.

    ``model_path`` is stored as given (relative paths are relative to the registry's
    root; see :func:`stored_artifacts_path`). What is read from the folder follows
    :func:`read_model_folder`; every explicit argument replaces the value read.

    With ``auto_select``, ``select_best_model(metric, min_improvement,
    min_gain_over_current=min_gain)`` runs after registration: the current best is
    replaced only when the best active model beats it by at least ``min_gain``
    (relative). The decision is logged and returned.

    Raises:
        InvalidArtifactsError, InvalidArgumentError, ModelExistsError: as
            :meth:`ModelRegistry.register_model`; nothing is registered.
    """
    folder = read_model_folder(model_path, model_type, base=registry.root)
    chosen_version = version or folder.version
    if auto_select:
        # A typo in the selection metric must fail before anything is registered.
        new_metrics = validate_metrics(metrics if metrics is not None else folder.metrics)
        if metric not in new_metrics:
            registry.context.read(lambda session: require_known_metric(session, metric))
    existing = (registry.get_model(f"{folder.model_type}_{chosen_version}")
                if chosen_version is not None and not overwrite else None)
    model_id = registry.register_model(
        artifacts_path=folder.path,
        model_type=folder.model_type,
        hyperparameters=hyperparameters if hyperparameters is not None else folder.hyperparameters,
        metrics=metrics if metrics is not None else folder.metrics,
        training_info=training_info if training_info is not None else folder.training_info,
        data_version=data_version or folder.data_version,
        git_commit=git_commit or folder.git_commit,
        baseline_comparison=folder.baseline_comparison,
        bert_integration=folder.bert_integration,
        version=chosen_version,
        overwrite=overwrite,
    )
    used_metrics = metrics if metrics is not None else folder.metrics
    result = UpdateResult(
        model_id=model_id, model_type=folder.model_type, path=folder.path, metrics=dict(used_metrics),
        metrics_source="arguments" if metrics is not None else folder.metrics_source,
        auto_select=auto_select, promoted=False, current_best=None, decision="registered (no auto-select)",
        already_registered=existing is not None,
        version_source="argument" if version else ("folder name" if folder.version else "generated"),
    )
    if existing is not None:
        # register_model treats the same folder with the same files as an idempotent re-run.
        result.metrics = existing["metrics"]
        result.note = f"{model_id} was already registered from these files; nothing changed"
        if existing["metrics"] != validate_metrics(used_metrics):
            result.note += f" (its metrics stay {existing['metrics']}; use overwrite to replace them)"
        result.decision = result.note
        logger.warning("%s", result.note)
    else:
        logger.info("registered %s from %s", model_id, folder.path)
    if auto_select:
        previous = (registry.get_current_best() or {}).get("model_id")
        selection = registry.select_best_model(metric=metric, min_improvement=min_improvement,
                                               min_gain_over_current=min_gain)
        result.selection = selection
        result.current_best = (registry.get_current_best() or {}).get("model_id")
        if selection is None and previous == model_id:
            result.decision = f"{model_id} is already the current best"
        elif selection is not None and selection["model_id"] == model_id:
            result.promoted = True
            result.decision = f"promoted {model_id}: {metric}={selection['value']} beats " + (
                f"the previous best {previous}" if previous else "no previous best"
            )
        elif selection is not None:
            result.decision = (
                f"{model_id} is not the best by {metric}; selected {selection['model_id']} "
                f"({metric}={selection['value']}) instead"
            )
        elif metric not in result.metrics:
            result.decision = f"not promoted: {model_id} has no {metric} metric; current best stays {previous}"
        else:
            result.decision = (
                f"not promoted: {model_id} ({metric}={result.metrics[metric]}) does not beat the current best "
                f"{previous} by at least {min_gain:.1%}; current best stays {result.current_best}"
            )
    else:
        result.current_best = (registry.get_current_best() or {}).get("model_id")
    logger.info("%s", result.decision)
    return result


# =========================================================================== cleanup


@dataclass
class CleanupItem:
    """One model's fate in a cleanup: ``keep``, ``archive``, ``delete``, ``skip`` or ``none``."""

    model_id: str
    model_type: str
    created_at: str | None
    status: str
    action: str
    reason: str
    done: bool = False
    error: str | None = None  # an error after the change committed (e.g. files left behind), or the failure


@dataclass
class CleanupReport:
    """Outcome (or, with ``dry_run``, the plan) of :func:`cleanup_old_models`."""

    keep_last: int
    archive_old: bool
    delete_files: bool
    dry_run: bool
    items: list[CleanupItem] = field(default_factory=list)

    def ids(self, action: str) -> list[str]:
        """Model ids whose action is ``action``."""
        return [item.model_id for item in self.items if item.action == action]

    @property
    def kept(self) -> list[str]:
        return self.ids("keep")

    @property
    def archived(self) -> list[str]:
        return [item.model_id for item in self.items if item.action == "archive" and item.done]

    @property
    def deleted(self) -> list[str]:
        return [item.model_id for item in self.items if item.action == "delete" and item.done]

    @property
    def skipped(self) -> list[dict[str, str]]:
        return [{"model_id": item.model_id, "reason": item.reason} for item in self.items if item.action == "skip"]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(kept=self.kept, archived=self.archived, deleted=self.deleted, skipped=self.skipped)
        return data


def cleanup_protection(session: Session) -> dict[str, str]:
    """Models no cleanup may archive, delete or remove the files of: ``{model_id: reason}``.

    The one rule both cleanups apply (:func:`cleanup_old_models` and
    ``registry.utils.cleanup_old_artifacts``): the current best (``"current best"``),
    the two models of the running A/B test (``"in running A/B test T"``) and every
    model linked to BERT embeddings (``"linked to BERT embeddings V"``; deleting it
    would silently drop the link).
    """
    protected: dict[str, str] = {}
    current = settings_row(session).current_model_id
    if current:
        protected[current] = "current best"
    test = running_test(session)
    if test is not None:
        for model_id in (test.control_model, test.treatment_model):
            protected.setdefault(model_id, f"in running A/B test {test.test_id}")
    links = select(EmbeddingLink.model_id, EmbeddingLink.embedding_version).order_by(
        EmbeddingLink.model_id, EmbeddingLink.embedding_version
    )
    for model_id, version in session.execute(links):
        protected.setdefault(model_id, f"linked to BERT embeddings {version}")
    return protected


def plan_cleanup(registry: ModelRegistry, keep_last: int, *, archive_old: bool = False,
                 delete_files: bool = False) -> CleanupReport:
    """What :func:`cleanup_old_models` would do now, without changing anything.

    Per model type, models (any status) are ranked by ``created_at``, newest first
    (ties by id); the first ``keep_last`` are kept. Of the rest, the models of
    :func:`cleanup_protection` (current best, running A/B test, linked to BERT
    embeddings) are skipped; the others are archived (``archive_old``; already
    archived ones are left as they are) or deleted.
    """
    if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 0:
        raise InvalidArgumentError(f"keep_last must be an integer >= 0, got {keep_last!r}")

    def work(session: Session) -> tuple[list[tuple[str, str, Any, str]], dict[str, str]]:
        rows = session.execute(
            select(Model.model_id, Model.model_type, Model.created_at, Model.status)
            .order_by(Model.model_type, Model.created_at.desc(), Model.model_id.desc())
        ).all()
        return [(model_id, model_type, created, status) for model_id, model_type, created, status in rows], cleanup_protection(session)

    rows, protected = registry.context.read(work)
    report = CleanupReport(keep_last=keep_last, archive_old=archive_old, delete_files=delete_files, dry_run=True)
    rank: dict[str, int] = {}
    for model_id, model_type, created_at, status in rows:
        rank[model_type] = rank.get(model_type, 0) + 1
        item = CleanupItem(model_id, model_type, iso(created_at), status, "keep", "")
        if rank[model_type] <= keep_last:
            item.reason = f"among the {keep_last} newest {model_type} models"
        elif model_id in protected:
            item.action, item.reason = "skip", protected[model_id]
        elif archive_old and status == "archived":
            item.action, item.reason = "none", "already archived"
        else:
            item.action = "archive" if archive_old else "delete"
            item.reason = f"older than the {keep_last} newest {model_type} models"
        report.items.append(item)
    return report


def cleanup_old_models(
    registry: ModelRegistry,
    keep_last: int,
    *,
    archive_old: bool = False,
    dry_run: bool = False,
    delete_files: bool = False,
    on_item: Callable[[CleanupItem, int, int], None] | None = None,
) -> CleanupReport:
    """Keep the ``keep_last`` newest models per type; archive or delete the others.

    See :func:`plan_cleanup` for who is kept and who is spared. Just before each
    change the protection is read again (a model linked or promoted meanwhile is
    skipped), and each change goes through :meth:`ModelRegistry.archive_model` /
    :meth:`ModelRegistry.delete_model` (audited; files removed only with
    ``delete_files`` and only inside the artifacts root), so a model that became the
    current best or entered an A/B test meanwhile is still refused. Refusals, shared
    or unsafe folders and any other registry error of one model (e.g. its folder
    could not be removed after its entry was deleted) are recorded on the item
    (``reason``, and ``error`` for failures) instead of stopping the run.

    Args:
        registry: the registry to clean.
        keep_last: models kept per type (>= 0).
        archive_old: archive instead of delete.
        dry_run: only plan; nothing changes.
        delete_files: with deletion, also remove the model folders.
        on_item: called as ``on_item(item, done, total)`` after each model is handled (progress display).
    """
    if archive_old and delete_files:
        raise InvalidArgumentError("delete_files applies to deletion; drop it or drop archive_old")
    report = plan_cleanup(registry, keep_last, archive_old=archive_old, delete_files=delete_files)
    report.dry_run = dry_run
    if dry_run:
        return report
    total = len(report.items)
    for done, item in enumerate(report.items, start=1):
        if item.action in ("archive", "delete"):
            _apply(registry, item, delete_files)
            logger.info("cleanup %s: %s (%s)", item.model_id, item.action, item.reason)
        if on_item is not None:
            on_item(item, done, total)
    return report


def _apply(registry: ModelRegistry, item: CleanupItem, delete_files: bool) -> None:
    """Archive or delete one planned model, recording the outcome on ``item``."""
    reason = registry.context.read(cleanup_protection).get(item.model_id)
    if reason is not None:  # promoted, linked or put in a test since the plan was made
        item.action, item.reason = "skip", reason
        return
    try:
        if item.action == "archive":
            item.done = registry.archive_model(item.model_id)
            if not item.done:
                item.action, item.reason = "skip", "current best"
        else:
            item.done = registry.delete_model(item.model_id, delete_files=delete_files)
    except (ModelInUseError, InvalidArgumentError) as exc:
        item.action, item.reason = "skip", str(exc)
    except ModelNotFoundError:  # removed meanwhile by another process
        item.action, item.reason = "none", "already gone"
    except RegistryError as exc:
        # E.g. delete_model: the entry was deleted (committed) but its folder could not be removed;
        # or the export after the commit failed. Whether the change took effect is read back.
        logger.error("cleanup %s: %s", item.model_id, exc)
        item.error = str(exc)
        try:
            model = registry.get_model(item.model_id)
        except RegistryError:
            model = {}  # cannot tell: report it as not done
        item.done = model is None if item.action == "delete" else (model or {}).get("status") == "archived"
        item.reason = str(exc) if item.done else f"failed: {exc}"
        if not item.done:
            item.action = "skip"

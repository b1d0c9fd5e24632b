"""Registering a trained model from its artifact folder alone (``tools/update_registry.py``,
``cfreg register``), optionally promoting it when it beats the current best.

:func:`read_model_folder` says what a folder holds; :func:`update_registry_from_folder`
registers it through the public registry API, so validation, audit and the JSON export
happen exactly as for any other caller.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .artifacts import REQUIRED_MODEL_FILES, read_json_file
from .defaults import DEFAULT_METRIC
from .errors import InvalidArgumentError, InvalidArtifactsError
from .selection import require_known_metric
from .storage import is_uri
from .storage.upload import standin_folder
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

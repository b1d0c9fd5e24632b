"""cf-model-registry: versioned CF models, best-model selection, hot-reloading serving.

The public API is ``__all__``. Names are imported lazily so that ``import registry``
stays fast (no pandas/numpy/SQLAlchemy work until a name is used).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # ModelRegistry
    "ModelRegistry": "cf_registry",
    "get_registry": "cf_registry",
    "reset_registries": "cf_registry",
    "register_model": "cf_registry",
    "select_best_model": "cf_registry",
    "diff_models": "cf_registry",
    "DiffReport": "diff.report",
    "generate_model_id": "cf_registry",
    "baseline_improvement": "selection",
    "DEFAULT_REGISTRY_PATH": "cf_registry",
    "MODEL_STATUS": "validation",
    "REQUIRED_MODEL_FILES": "artifacts",
    "register_model_type": "artifacts",
    "validate_artifacts": "artifacts",
    "write_model_folder": "model_folder",
    "generate_version_id": "utils.versioning",
    # Utilities the original package also exported at top level (registry.utils has them too)
    "parse_version_id": "utils.versioning",
    "compare_versions": "utils.versioning",
    "get_git_commit": "utils.git",
    "get_git_commit_short": "utils.git",
    "get_git_branch": "utils.git",
    "is_git_clean": "utils.git",
    "compute_file_hash": "utils.hashing",
    "compute_directory_hash": "utils.hashing",
    "compute_data_version": "utils.hashing",
    "validate_model_path": "utils.artifact_management",
    "ensure_directory": "utils.artifact_management",
    "copy_model_artifacts": "utils.artifact_management",
    "cleanup_old_artifacts": "artifact_cleanup",
    "backup_registry": "backup",
    "restore_registry": "restore",
    "list_backups": "backup",
    "create_model_metadata": "utils.metadata",
    "load_model_metadata": "utils.metadata",
    "save_model_metadata": "utils.metadata",
    "create_empty_registry": "documents",
    "validate_registry_schema": "documents",
    "write_user_eval": "evaluation",
    "read_user_eval": "evaluation",
    # ModelLoader
    "ModelLoader": "serving.loader",
    "ModelState": "serving.loader",
    "LoaderStats": "serving.loader",
    "get_loader": "serving.loader",
    "reset_loader": "serving.loader",
    "load_model_from_registry": "serving.loader",
    # BERT embeddings
    "BERTEmbeddingsRegistry": "bert_registry",
    "get_bert_registry": "bert_registry",
    "load_bert_embeddings": "bert_registry",
    "DEFAULT_BERT_REGISTRY_PATH": "bert_registry",
    "EMBEDDING_TYPES": "bert_registry",
    "reset_bert_registries": "bert_registry",
    # A/B tests
    "get_model_for_user": "abtest",
    # Errors
    "RegistryError": "errors",
    "InvalidArgumentError": "errors",
    "InvalidArtifactsError": "errors",
    "ChecksumMismatchError": "errors",
    "UnsafeFileError": "errors",
    "ModelNotFoundError": "errors",
    "ModelExistsError": "errors",
    "ModelInUseError": "errors",
    "RegistryNotFoundError": "errors",
    "SchemaVersionError": "errors",
    "RegistryBusyError": "errors",
    "NoModelLoadedError": "errors",
    "NonFiniteNumberError": "errors",
    "NoUserEvaluationError": "errors",
    "ExportError": "errors",
    "ImportFormatError": "errors",
    "ReadOnlyQueryError": "errors",
    "ChurnLimitError": "errors",
    "UnknownMetricError": "errors",
    "UnknownModelTypeError": "errors",
    "ConflictError": "errors",
    "AliasConflictError": "errors",
    "AliasInUseError": "errors",
    "AliasNotFoundError": "errors",
    "EmbeddingsNotFoundError": "errors",
    "ABTestNotFoundError": "errors",
    "InvalidStateError": "errors",
    "FilterSyntaxError": "errors",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .abtest import get_model_for_user
    from .artifact_cleanup import cleanup_old_artifacts
    from .artifacts import REQUIRED_MODEL_FILES, register_model_type, validate_artifacts
    from .backup import backup_registry, list_backups
    from .bert_registry import (
        DEFAULT_BERT_REGISTRY_PATH,
        EMBEDDING_TYPES,
        BERTEmbeddingsRegistry,
        get_bert_registry,
        load_bert_embeddings,
        reset_bert_registries,
    )
    from .cf_registry import (
        DEFAULT_REGISTRY_PATH,
        ModelRegistry,
        diff_models,
        generate_model_id,
        get_registry,
        register_model,
        reset_registries,
        select_best_model,
    )
    from .diff.report import DiffReport
    from .documents import create_empty_registry, validate_registry_schema
    from .errors import *  # noqa: F403
    from .evaluation import read_user_eval, write_user_eval
    from .model_folder import write_model_folder
    from .restore import restore_registry
    from .selection import baseline_improvement
    from .serving.loader import LoaderStats, ModelLoader, ModelState, get_loader, load_model_from_registry, reset_loader
    from .utils.artifact_management import copy_model_artifacts, ensure_directory, validate_model_path
    from .utils.git import get_git_branch, get_git_commit, get_git_commit_short, is_git_clean
    from .utils.hashing import compute_data_version, compute_directory_hash, compute_file_hash
    from .utils.metadata import create_model_metadata, load_model_metadata, save_model_metadata
    from .utils.versioning import compare_versions, generate_version_id, parse_version_id
    from .validation import MODEL_STATUS

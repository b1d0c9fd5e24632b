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
    "generate_model_id": "cf_registry",
    "baseline_improvement": "selection",
    "DEFAULT_REGISTRY_PATH": "cf_registry",
    "MODEL_STATUS": "validation",
    "REQUIRED_MODEL_FILES": "artifacts",
    "register_model_type": "artifacts",
    "validate_artifacts": "artifacts",
    "generate_version_id": "utils.versioning",
    "create_empty_registry": "export",
    "validate_registry_schema": "export",
    "write_user_eval": "evaluation",
    "read_user_eval": "evaluation",
    # ModelLoader
    "ModelLoader": "loader",
    "ModelState": "loader",
    "LoaderStats": "loader",
    "get_loader": "loader",
    "reset_loader": "loader",
    "load_model_from_registry": "loader",
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
    "ModelNotFoundError": "errors",
    "ModelExistsError": "errors",
    "ModelInUseError": "errors",
    "RegistryNotFoundError": "errors",
    "SchemaVersionError": "errors",
    "RegistryBusyError": "errors",
    "NoModelLoadedError": "errors",
    "NoUserEvaluationError": "errors",
    "ExportError": "errors",
    "ImportFormatError": "errors",
    "ReadOnlyQueryError": "errors",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .abtest import get_model_for_user
    from .artifacts import REQUIRED_MODEL_FILES, register_model_type, validate_artifacts
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
        generate_model_id,
        get_registry,
        register_model,
        reset_registries,
        select_best_model,
    )
    from .errors import *  # noqa: F403
    from .evaluation import read_user_eval, write_user_eval
    from .selection import baseline_improvement
    from .export import create_empty_registry, validate_registry_schema
    from .loader import LoaderStats, ModelLoader, ModelState, get_loader, load_model_from_registry, reset_loader
    from .utils.versioning import generate_version_id
    from .validation import MODEL_STATUS

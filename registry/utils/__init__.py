"""The documented ``registry.utils`` helpers, one topic per module, imported lazily."""

from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "generate_version_id": "versioning",
    "parse_version_id": "versioning",
    "compare_versions": "versioning",
    "compute_data_version": "hashing",
    "compute_file_hash": "hashing",
    "compute_directory_hash": "hashing",
    "get_git_commit": "git",
    "get_git_commit_short": "git",
    "get_git_branch": "git",
    "is_git_clean": "git",
    "backup_registry": "backup",
    "restore_registry": "backup",
    "list_backups": "backup",
    "copy_model_artifacts": "artifact_management",
    "cleanup_old_artifacts": "artifact_management",
    "validate_model_path": "artifact_management",
    "ensure_directory": "artifact_management",
    "create_model_metadata": "metadata",
    "load_model_metadata": "metadata",
    "save_model_metadata": "metadata",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)

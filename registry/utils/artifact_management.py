"""Model artifact folders: validate and copy whole-or-nothing (the documented ``registry.utils`` helpers).

``cleanup_old_artifacts`` lives in :mod:`registry.artifact_cleanup` (it consults and
changes the registry) and is re-exported here, where ``registry.utils`` finds it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ..artifact_cleanup import cleanup_old_artifacts
from ..artifacts import REQUIRED_MODEL_FILES, model_files, required_files
from ..errors import InvalidArgumentError, InvalidArtifactsError
from ..fsio import TEMP_SUFFIX, fsync_directory

__all__ = ["cleanup_old_artifacts", "copy_model_artifacts", "ensure_directory", "validate_model_path"]


def validate_model_path(
    model_path: str | os.PathLike[str], model_type: str, required_files: list[str] | None = None
) -> tuple[bool, list[str]]:
    """Check that a model folder holds its required files.

    Args:
        model_path: the artifact folder.
        model_type: ``"als"``, ``"bpr"``, ``"bert_als"`` or a registered type.
        required_files: file names to require instead of the type's.

    Returns:
        ``(ok, missing)``: the missing file names; ``[model_path]`` when the folder
        itself is missing; ``["Unknown model type: X"]`` for an unknown type.
    """
    path = Path(model_path)
    if required_files is None:
        if model_type not in REQUIRED_MODEL_FILES:
            return False, [f"Unknown model type: {model_type}"]
        required_files = REQUIRED_MODEL_FILES[model_type]
    if not path.is_dir():
        return False, [str(model_path)]
    missing = [name for name in required_files if not (path / name).is_file()]
    return not missing, missing


def ensure_directory(dir_path: str | os.PathLike[str]) -> Path:
    """Create a folder and its parents if needed; returns it as a ``Path``."""
    path = Path(dir_path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def copy_model_artifacts(src_path: str | os.PathLike[str], dest_path: str | os.PathLike[str], model_type: str) -> bool:
    """Copy a model's files (the required ones plus id maps) to a new folder, all or nothing.

    The files are copied into a hidden temporary folder beside ``dest_path``,
    flushed to disk, and the folder is renamed into place, so ``dest_path`` never
    exists half-copied.

    Returns:
        True.

    Raises:
        InvalidArgumentError: unknown model type, or ``dest_path`` exists and is not empty.
        InvalidArtifactsError: ``src_path`` is not a folder or lacks a required file.
    """
    names_required = required_files(model_type)
    source, target = Path(src_path), Path(dest_path)
    if not source.is_dir():
        raise InvalidArtifactsError(f"cannot copy {str(source)!r}: it is not a directory")
    missing = [name for name in names_required if not (source / name).is_file()]
    if missing:
        raise InvalidArtifactsError(f"cannot copy {str(source)!r}: missing required {model_type} files {missing}")
    _refuse_non_empty(target)
    names = model_files(source, model_type)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=TEMP_SUFFIX))
    try:
        for name in names:
            shutil.copy2(source / name, staging / name)
            with open(staging / name, "rb") as handle:
                os.fsync(handle.fileno())
        fsync_directory(staging)
        try:
            os.rename(staging, target)  # replaces an empty folder; fails on a non-empty one
        except OSError as exc:
            raise InvalidArgumentError(
                f"cannot copy to {str(target)!r}: it appeared and is not empty ({exc}); choose another destination"
            ) from exc
        fsync_directory(target.parent)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return True


def _refuse_non_empty(target: Path) -> None:
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise InvalidArgumentError(f"cannot copy to {str(target)!r}: it exists and is not a directory")
    if target.is_dir() and any(target.iterdir()):
        raise InvalidArgumentError(f"cannot copy to {str(target)!r}: the folder is not empty; choose a new destination")

"""Model artifact folders: validate, copy whole-or-nothing, and clean up old versions safely.

:func:`cleanup_old_artifacts` consults the registry that lives in the artifacts
folder (if any) and never deletes the folder of the current best, of a model in a
running A/B test, of a model linked to BERT embeddings, of an embeddings version,
or a folder inside another registered model's folder. Registered models whose
folder it deletes are archived first, in one transaction.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import audit
from ..artifacts import REQUIRED_MODEL_FILES, model_files, required_files, safe_delete_tree
from ..errors import InvalidArgumentError, InvalidArtifactsError, RegistryNotFoundError
from ..models import ABTest, BertEmbedding, EmbeddingLink, Model, Settings

logger = logging.getLogger(__name__)


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
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        for name in names:
            shutil.copy2(source / name, staging / name)
            with open(staging / name, "rb") as handle:
                os.fsync(handle.fileno())
        _fsync_directory(staging)
        try:
            os.rename(staging, target)  # replaces an empty folder; fails on a non-empty one
        except OSError as exc:
            raise InvalidArgumentError(
                f"cannot copy to {str(target)!r}: it appeared and is not empty ({exc}); choose another destination"
            ) from exc
        _fsync_directory(target.parent)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return True


def _refuse_non_empty(target: Path) -> None:
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise InvalidArgumentError(f"cannot copy to {str(target)!r}: it exists and is not a directory")
    if target.is_dir() and any(target.iterdir()):
        raise InvalidArgumentError(f"cannot copy to {str(target)!r}: the folder is not empty; choose a new destination")


def _fsync_directory(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


# --------------------------------------------------------------------------- cleanup


@dataclass
class _RegistryView:
    """What the registry says about folders: who uses them and which must stay."""

    models: list[tuple[str, Path, datetime, str]] = field(default_factory=list)  # id, real folder, created, status
    protected: dict[str, str] = field(default_factory=dict)  # model id -> why it must stay
    embeddings: list[tuple[str, Path]] = field(default_factory=list)

    def users(self, folder: Path) -> list[tuple[str, Path, datetime, str]]:
        """Models stored in ``folder`` (or below it): deleting it removes their files."""
        return [m for m in self.models if m[1] == folder or m[1].is_relative_to(folder)]

    def protection(self, folder: Path) -> str | None:
        """Why ``folder`` must not be deleted, or None."""
        for model_id, _, _, _ in self.users(folder):
            if model_id in self.protected:
                return f"used by {model_id} ({self.protected[model_id]})"
        for model_id, path, _, _ in self.models:
            if folder != path and folder.is_relative_to(path):
                return f"inside the folder of registered model {model_id}"
        for version, path in self.embeddings:
            if path == folder or path.is_relative_to(folder) or folder.is_relative_to(path):
                return f"overlaps BERT embeddings {version}"
        return None

    def newest(self, folder: Path) -> float | None:
        times = [created.timestamp() for _, _, created, _ in self.users(folder)]
        return max(times) if times else None


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _view_from_session(session: Session, resolve) -> _RegistryView:  # type: ignore[no-untyped-def]
    view = _RegistryView()
    settings = session.get(Settings, 1)
    if settings is not None and settings.current_model_id:
        view.protected[settings.current_model_id] = "current best"
    for test in session.scalars(select(ABTest).where(ABTest.status == "running")):
        view.protected.setdefault(test.control_model, f"running A/B test {test.test_id}")
        view.protected.setdefault(test.treatment_model, f"running A/B test {test.test_id}")
    for model_id in session.scalars(select(EmbeddingLink.model_id).distinct()):
        view.protected.setdefault(model_id, "linked to BERT embeddings")
    for model_id, path, created, status in session.execute(select(Model.model_id, Model.path, Model.created_at, Model.status)):
        view.models.append((model_id, _real(resolve(path)), created, status))
    for version, path in session.execute(select(BertEmbedding.version, BertEmbedding.path)):
        view.embeddings.append((version, _real(resolve(path))))
    return view


def _view_from_legacy_json(json_path: Path) -> _RegistryView:
    from .. import legacy

    parsed = legacy.parse_documents(legacy.read_json_strict(json_path), source=json_path.name)
    view = _RegistryView()
    if parsed.current_best:
        view.protected[parsed.current_best["model_id"]] = "current best"
    for test in parsed.ab_tests:
        if test["status"] == "running":
            view.protected.setdefault(test["control_model"], f"running A/B test {test['test_id']}")
            view.protected.setdefault(test["treatment_model"], f"running A/B test {test['test_id']}")
    for link in parsed.links:
        view.protected.setdefault(link["model_id"], "linked to BERT embeddings")
    # The original registry resolved relative paths against the working directory.
    view.models = [(m["model_id"], _real(Path(m["path"])), m["created_at"], m["status"]) for m in parsed.models]
    view.embeddings = [(e["version"], _real(Path(e["path"]))) for e in parsed.embeddings]
    return view


def _open_registry(artifacts_dir: Path, database_url: str | None):  # type: ignore[no-untyped-def]
    """The registry in ``artifacts_dir``: ``(context, None)``, ``(None, legacy_json)`` or ``(None, None)``."""
    from ..context import RegistryContext, json_locations
    from ..db import resolve_database_url, sqlite_file

    json_path, _ = json_locations(artifacts_dir)
    db_file = sqlite_file(resolve_database_url(json_path, database_url))
    if db_file is not None and not db_file.exists():
        return None, (json_path if json_path.is_file() else None)
    try:
        return RegistryContext.open(json_path, database_url=database_url, auto_create=False), None
    except RegistryNotFoundError:
        return None, None


def cleanup_old_artifacts(
    artifacts_dir: str | os.PathLike[str],
    keep_count: int = 5,
    keep_current_best: bool = True,
    dry_run: bool = True,
    *,
    database_url: str | None = None,
) -> list[str]:
    """Delete all but the newest ``keep_count`` version folders of each model type.

    Version folders are ``{artifacts_dir}/{model_type}/{version}/``, ranked by the
    newest registration using them (folder modification time for unregistered
    folders). When ``artifacts_dir`` holds a registry, folders it still needs are
    never deleted (current best, running A/B test, linked to embeddings, embeddings
    folders, folders inside another model's folder), and the active models of each
    deleted folder are archived (audit ``ARCHIVE reason=cleanup``) in one
    transaction before any file is removed. Deletion is confined to ``artifacts_dir``.

    Args:
        artifacts_dir: the artifacts root, e.g. ``artifacts/cf``.
        keep_count: folders to keep per model type (>= 0).
        keep_current_best: accepted for compatibility; the current best is always
            kept, because deleting the served model's files breaks serving.
        dry_run: only report what would be deleted (the default).
        database_url: the registry's database if not ``registry.db`` in the folder.

    Returns:
        The folders deleted (or that would be, with ``dry_run``), as strings.

    Raises:
        FileNotFoundError: ``artifacts_dir`` does not exist.
        InvalidArgumentError: ``keep_count`` is not a non-negative integer.
    """
    if isinstance(keep_count, bool) or not isinstance(keep_count, int) or keep_count < 0:
        raise InvalidArgumentError(f"keep_count must be an integer >= 0, got {keep_count!r}")
    root = Path(artifacts_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"artifacts directory {str(root)!r} does not exist")
    if not keep_current_best:
        logger.warning("keep_current_best=False: the current best is kept anyway (its files are being served)")
    context, legacy_json = _open_registry(root, database_url)
    if context is not None:
        view = context.read(lambda session: _view_from_session(session, context.resolve))
    elif legacy_json is not None:
        view = _view_from_legacy_json(legacy_json)
    else:
        view = _RegistryView()
    candidates = _candidates(root, keep_count, view)
    if dry_run or not candidates:
        return [str(folder) for folder in candidates]
    if context is not None:
        candidates = context.mutate(lambda session: _archive_users(session, context, candidates))
    elif legacy_json is not None:
        logger.warning("%s is a JSON-only registry: entries of deleted folders are not archived there", legacy_json)
    deleted = []
    real_root = _real(root)
    for folder in candidates:
        try:
            safe_delete_tree(_real(folder), real_root)
        except (OSError, InvalidArgumentError) as exc:
            logger.error("could not delete %s: %s", folder, exc)
            continue
        deleted.append(str(folder))
    return deleted


def _candidates(root: Path, keep_count: int, view: _RegistryView) -> list[Path]:
    chosen = []
    for type_dir in sorted(root.iterdir()):
        if type_dir.name not in REQUIRED_MODEL_FILES or type_dir.is_symlink() or not type_dir.is_dir():
            continue
        versions = [
            d for d in type_dir.iterdir() if d.is_dir() and not d.is_symlink() and not d.name.startswith(".")
        ]

        def age(folder: Path) -> tuple[float, str]:
            registered = view.newest(_real(folder))
            return (registered if registered is not None else folder.stat().st_mtime, folder.name)

        for folder in sorted(versions, key=age, reverse=True)[keep_count:]:
            reason = view.protection(_real(folder))
            if reason:
                logger.info("keeping %s: %s", folder, reason)
                continue
            chosen.append(folder)
    return chosen


def _archive_users(session: Session, context, candidates: list[Path]) -> list[Path]:  # type: ignore[no-untyped-def]
    """Re-check under the write lock, then archive the active models of the folders to delete."""
    view = _view_from_session(session, context.resolve)
    remaining = []
    for folder in candidates:
        real = _real(folder)
        reason = view.protection(real)
        if reason:
            logger.info("keeping %s: %s (changed since the scan)", folder, reason)
            continue
        remaining.append(folder)
        for model_id, _, _, status in view.users(real):
            if status != "active":
                continue
            model = session.get(Model, model_id)
            assert model is not None
            model.status = "archived"
            audit.record(session, "ARCHIVE", model_id, "reason=cleanup", {"folder": str(folder), "previous_status": status})
    return remaining

"""Cleaning up old model version folders without deleting what the registry still needs.

:func:`cleanup_old_artifacts` consults the registry that lives in the artifacts
folder (if any) and applies the rules of ``cfreg cleanup`` and ``delete_model``:
it never deletes the folder of a model :func:`registry.model_cleanup.cleanup_protection`
protects (current best, running A/B test, linked to BERT embeddings), nor a folder
another registration still uses (:func:`registry.usage.refuse_if_folder_shared`).
Registered models whose folder it deletes are archived first, in one transaction.
A folder holding only a ``registry.json`` (the original JSON registry) is loaded into
a private in-memory database, so the same rules apply to it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from . import audit, usage
from .artifacts import REQUIRED_MODEL_FILES
from .context import ENV_ROOT, RegistryContext
from .errors import InvalidArgumentError, InvalidArtifactsError, ModelInUseError, RegistryNotFoundError
from .fsio import read_json_strict
from .importer.parse import parse_documents
from .importer.store import insert_parsed
from .locations import locate
from .model_cleanup import cleanup_protection
from .models import Base, Model, Settings
from .opening import open_context
from .safe_delete import safe_delete_tree
from .transactions import Database

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Registered:
    """A registered model as the cleanup ranks it: id, real folder, registration time, status."""

    model_id: str
    folder: Path
    created_at: datetime
    status: str


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _registered(session: Session, context: RegistryContext) -> list[_Registered]:
    rows = session.execute(select(Model.model_id, Model.path, Model.created_at, Model.status))
    return [_Registered(model_id, _real(context.resolve(path)), created, status) for model_id, path, created, status in rows]


def _users(models: list[_Registered], folder: Path) -> list[_Registered]:
    """Models stored in ``folder`` (or below it): deleting it removes their files."""
    return [m for m in models if m.folder == folder or m.folder.is_relative_to(folder)]


def _protection(session: Session, context: RegistryContext, folder: Path, users: list[_Registered],
                protected: dict[str, str]) -> str | None:
    """Why ``folder`` (a real path) must not be deleted, or None.

    The rule of ``cfreg cleanup`` (:func:`registry.model_cleanup.cleanup_protection`) for
    its users, then the folder guard of ``delete_model(delete_files=True)``
    (:func:`registry.usage.refuse_if_folder_shared`): no other model or embeddings
    version may use a folder overlapping it (same folder, inside it, or around it).
    """
    for user in users:
        if user.model_id in protected:
            return f"used by {user.model_id} ({protected[user.model_id]})"
    skip = users[0].model_id if len(users) == 1 else None
    try:
        usage.refuse_if_folder_shared(session, context, folder, f"folder {str(folder)!r}", skip_model=skip)
    except ModelInUseError as exc:
        return str(exc)
    return None


def _open_registry(artifacts_dir: Path, database_url: str | None) -> tuple[RegistryContext | None, Path | None]:
    """The registry in ``artifacts_dir``: ``(context, None)``, ``(None, legacy_json)`` or ``(None, None)``."""
    location = locate(artifacts_dir, database_url)
    if location.database_missing:
        return None, (location.json_path if location.json_only else None)
    try:
        return open_context(location.json_path, database_url=database_url, auto_create=False), None
    except RegistryNotFoundError:
        return None, None


@contextmanager
def _legacy_registry(json_path: Path) -> Iterator[RegistryContext]:
    """A JSON-only registry loaded into a private in-memory database, so the same rules apply.

    Nothing is written to ``json_path``. Relative model paths resolve against the
    registry's root (:func:`_legacy_root`), never the caller's working directory.
    """
    parsed = parse_documents(read_json_strict(json_path), source=json_path.name)
    engine = create_engine("sqlite://", poolclass=StaticPool)
    database = Database(url="sqlite://", engine=engine)
    try:
        Base.metadata.create_all(engine)
        with Session(engine) as session:
            session.add(Settings(id=1))
            session.flush()
            insert_parsed(session, parsed)
            session.commit()
            root = _legacy_root(session, json_path)
        yield RegistryContext(
            database=database, json_path=json_path, bert_json_path=json_path.with_name("bert_registry.json"),
            root=root, artifacts_root=json_path.parent, audit_log_path=Path(os.devnull), export_json=False,
        )
    finally:
        database.dispose()


def _legacy_root(session: Session, json_path: Path) -> Path:
    """The folder a JSON-only registry's relative model paths are relative to.

    ``$CFREG_ROOT`` when set; otherwise the folder of ``registry.json`` or the nearest
    of its ancestors under which the most registered relative paths exist (the
    original registry stored them relative to the project folder, e.g.
    ``artifacts/cf/als/v2`` beside ``artifacts/cf/registry.json``). The working
    directory plays no part, so running from ``/`` changes nothing.
    """
    explicit = os.environ.get(ENV_ROOT)
    if explicit:
        return Path(explicit).expanduser().absolute()
    relative = [Path(p) for p in session.scalars(select(Model.path)) if not Path(p).is_absolute()]
    folder = json_path.absolute().parent
    candidates = [folder, *folder.parents]
    scores = [sum((candidate / path).is_dir() for path in relative) for candidate in candidates]
    return candidates[scores.index(max(scores))] if relative else folder


def _refuse_unresolved_protection(models: list[_Registered], protected: dict[str, str], root: Path) -> None:
    """Raise unless the folder of every protected model exists: otherwise it could not be recognised and spared."""
    missing = [m for m in models if m.model_id in protected and not m.folder.is_dir()]
    if missing:
        names = ", ".join(f"{m.model_id} ({protected[m.model_id]}) at {str(m.folder)!r}" for m in missing[:5])
        raise InvalidArtifactsError(
            f"refusing to clean up {str(root)!r}: the folder of {names} does not exist, so it could not be told "
            f"apart from the folders to delete; set the registry's root (root=, $CFREG_ROOT) to the folder its "
            f"relative paths start from, or fix the stored paths"
        )


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
    never deleted: the folder of a model ``cfreg cleanup`` never touches either
    (current best, running A/B test, linked to BERT embeddings:
    :func:`registry.model_cleanup.cleanup_protection`), and a folder that
    ``delete_model(delete_files=True)`` would refuse (used by more than one
    registered model, overlapping embeddings, inside another model's folder). Relative
    model paths resolve against the registry's root (a JSON-only registry: see
    :func:`_legacy_root`), never the working directory; if the folder of a protected
    model cannot be found there, nothing is deleted. The
    active models of each deleted folder are archived (audit ``ARCHIVE
    reason=cleanup``) in one transaction, after the same checks are repeated under
    the write lock and before any file is removed. Deletion is confined to
    ``artifacts_dir``.

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
        InvalidArtifactsError: the folder of a protected model does not exist where its
            stored path points (wrong root?): nothing is deleted, even with ``dry_run``.
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
        candidates = context.read(lambda session: _candidates(root, keep_count, session, context))
        if not dry_run and candidates:
            candidates = context.mutate(lambda session: _archive_users(session, context, candidates))
    elif legacy_json is not None:
        with _legacy_registry(legacy_json) as scratch:
            candidates = scratch.read(lambda session: _candidates(root, keep_count, session, scratch))
        if not dry_run and candidates:
            logger.warning("%s is a JSON-only registry: entries of deleted folders are not archived there", legacy_json)
    else:
        candidates = _candidates(root, keep_count, None, None)
    if dry_run or not candidates:
        return [str(folder) for folder in candidates]
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


def _candidates(root: Path, keep_count: int, session: Session | None, context: RegistryContext | None) -> list[Path]:
    """Version folders beyond the newest ``keep_count`` of each type that may go (all of them without a registry)."""
    models = _registered(session, context) if session is not None and context is not None else []
    protected = cleanup_protection(session) if session is not None else {}
    _refuse_unresolved_protection(models, protected, root)
    chosen = []
    for type_dir in sorted(root.iterdir()):
        if type_dir.name not in REQUIRED_MODEL_FILES or type_dir.is_symlink() or not type_dir.is_dir():
            continue
        versions = [
            d for d in type_dir.iterdir() if d.is_dir() and not d.is_symlink() and not d.name.startswith(".")
        ]

        def age(folder: Path) -> tuple[float, str]:
            times = [m.created_at.timestamp() for m in _users(models, _real(folder))]
            return (max(times) if times else folder.stat().st_mtime, folder.name)

        for folder in sorted(versions, key=age, reverse=True)[keep_count:]:
            if session is not None and context is not None:
                real = _real(folder)
                reason = _protection(session, context, real, _users(models, real), protected)
                if reason:
                    logger.info("keeping %s: %s", folder, reason)
                    continue
            chosen.append(folder)
    return chosen


def _archive_users(session: Session, context: RegistryContext, candidates: list[Path]) -> list[Path]:
    """Re-check under the write lock, then archive the active models of the folders to delete."""
    models = _registered(session, context)
    protected = cleanup_protection(session)
    _refuse_unresolved_protection(models, protected, context.artifacts_root)
    remaining = []
    for folder in candidates:
        real = _real(folder)
        users = _users(models, real)
        reason = _protection(session, context, real, users, protected)
        if reason:
            logger.info("keeping %s: %s (changed since the scan)", folder, reason)
            continue
        remaining.append(folder)
        for user in users:
            if user.status != "active":
                continue
            model = session.get(Model, user.model_id)
            assert model is not None
            model.status = "archived"
            audit.record(session, "ARCHIVE", user.model_id, "reason=cleanup",
                         {"folder": str(folder), "previous_status": user.status})
    return remaining

"""The transactions and file reads behind :class:`~registry.bert_registry.BERTEmbeddingsRegistry`.

* :func:`add_version`: the registration transaction (version allocation, the
  idempotent re-registration check, the audit rows, the first current version).
* :func:`remove_version`: the deletion transaction and what to remove once it committed.
* :func:`load_version`: a version's array, read from the local disk or through the
  host's artifact cache (store-backed versions), its sha256 checked.
* Row lookups and argument checks shared by the registry's methods.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import audit, embeddings_files, ids, tags, usage
from .artifacts import load_npy
from .context import RegistryContext
from .documents import embedding_info
from .embeddings_files import inspect_embeddings_folder, load_torch
from .errors import (
    EmbeddingsNotFoundError,
    InvalidArgumentError,
    InvalidArtifactsError,
    ModelExistsError,
    ModelInUseError,
    NoModelLoadedError,
)
from .models import BertEmbedding, EmbeddingLink
from .queries import links_by_embedding
from .safe_delete import DeletionTarget, check_deletable
from .selection import settings_row
from .storage.embeddings import StagedEmbeddings, embeddings_file, recorded_path, store_object
from .timestamps import format_timestamp as iso
from .utils.versioning import generate_version_id
from .validation import optional_text, validate_identifier

logger = logging.getLogger(__name__)

DEFAULT_TEXT_FIELDS = ("product_name", "description")
MAX_TEXT_FIELDS = 256


def add_version(ctx: RegistryContext, session: Session, version: str | None, stored: str, staged: StagedEmbeddings,
                fields: dict[str, Any]) -> str:
    """Record a staged embeddings file as a version (inside the caller's transaction); returns the version.

    ``fields`` are the row's descriptive columns (``model_name``, ``num_items``,
    ``embedding_dim``, ``data_version``, ``git_commit``, ``generation_config``,
    ``text_fields_used``). An explicit existing version with the same path and file
    returns itself; with another, ModelExistsError.
    """
    chosen = allocate_version(session) if version is None else version
    path = recorded_path(ctx, stored, staged, chosen)
    file_print = staged.file
    if version is not None:
        existing = session.get(BertEmbedding, version)
        if existing is not None:
            if existing.path == path and existing.sha256 == file_print.sha256 and existing.file_name == file_print.file_name:
                logger.info("embeddings %s are already registered with an identical file", version)
                return version
            raise ModelExistsError(
                f"Embeddings version {version!r} already exists with a different path or file "
                f"(registered {existing.path!r}, given {stored!r}); register another version"
            )
    session.add(BertEmbedding(version=chosen, path=path, file_name=file_print.file_name, size_bytes=file_print.size_bytes,
                              sha256=file_print.sha256, uri=staged.uri, **fields))
    session.flush()
    shape = f"{fields['num_items']}x{fields['embedding_dim']}"
    details = {"path": path, "file_name": file_print.file_name, "sha256": file_print.sha256,
               "model_name": fields["model_name"], "num_items": fields["num_items"], "embedding_dim": fields["embedding_dim"]}
    if staged.uri is not None:
        details["uri"] = staged.uri
    audit.record(session, "REGISTER_EMBEDDINGS", chosen, f"model_name={fields['model_name']} shape={shape}", details)
    settings = settings_row(session)
    if settings.current_embeddings_version is None:
        settings.current_embeddings_version = chosen
        audit.record(session, "SET_CURRENT_EMBEDDINGS", chosen, "from=none reason=first registered",
                     {"previous_version": None, "reason": "first registered"})
    return chosen


def load_version(ctx: RegistryContext, version: str | None, cache_dir: str | os.PathLike[str] | None = None,
                 cache_bytes: int | None = None) -> tuple[Any, dict[str, Any]]:
    """``(array, info)`` of a version (default: the current one), its sha256 checked.

    A store-backed version is read from the host's artifact cache (``cache_dir``,
    ``cache_bytes``: see :class:`~registry.storage.cache.ArtifactCache`).

    Raises:
        EmbeddingsNotFoundError: unknown version. NoModelLoadedError: no current version.
        ChecksumMismatchError: the file changed since registration.
        InvalidArtifactsError: the file is missing or unreadable.
        ArtifactStoreError: the store object cannot be downloaded.
    """
    if version is not None:
        validate_identifier(version, "version")

    def work(session: Session) -> tuple[dict[str, Any], tuple[str, str | None, str | None, str | None, int | None]]:
        chosen = version or settings_row(session).current_embeddings_version
        if chosen is None:
            raise NoModelLoadedError("No current best embeddings", hint="register embeddings or call set_current_best() first",
                                     cli_hint="register embeddings or run `cfreg bert set-current VERSION` first")
        row = require_embeddings(session, chosen)
        return embeddings_info_of(session, row), (row.path, row.file_name, row.uri, row.sha256, row.size_bytes)

    info, (stored, file_name, uri, sha256, size) = ctx.read(work)
    if file_name is None:
        # Imported from a legacy bert_registry.json: no checksum was ever recorded.
        file_path, _, problems = inspect_embeddings_folder(ctx.resolve(stored))
        if problems or file_path is None:
            raise InvalidArtifactsError(f"Embeddings {info['version']!r}: " + "; ".join(problems))
        file_name = file_path.name
    with embeddings_file(ctx, stored, file_name, uri, sha256, size, cache_dir, cache_bytes) as (path, folder):
        if not os.path.lexists(path):
            raise InvalidArtifactsError(
                f"Embeddings {info['version']!r}: file {str(path)!r} is missing (moved or deleted since registration)"
            )
        if file_name.endswith(".npy"):  # a cached object has no suffix: the recorded name tells the format
            array = load_npy(path, within=folder, expected_sha256=sha256 or None)
        else:
            if not embeddings_files.torch_available():
                raise InvalidArtifactsError(f"{file_name}: loading .pt embeddings needs torch, which is not installed")
            array = load_torch(path, folder, sha256 or None)
    if sha256 is None:
        logger.warning("embeddings %s have no recorded checksum; loaded %s unverified", info["version"], path)
    expected = (info["num_items"], info["embedding_dim"])
    if tuple(array.shape) != expected:
        raise InvalidArtifactsError(f"{path}: array shape {tuple(array.shape)} differs from the registered {expected}")
    return array, info


def remove_version(ctx: RegistryContext, session: Session, version: str,
                   delete_files: bool) -> tuple[list[DeletionTarget], list[tuple[str, str]]]:
    """Delete a version's row with its audit event (inside the caller's transaction).

    Returns:
        ``(local folders, (uri, sha256) store objects)`` to remove once the change committed
        (both empty without ``delete_files``).

    Raises:
        EmbeddingsNotFoundError: unknown version.
        ModelInUseError: the current version, linked to CF models, or a local folder others use.
        InvalidArgumentError: ``delete_files`` and the folder escapes the artifacts root.
    """
    row = require_embeddings(session, version)
    if settings_row(session).current_embeddings_version == version:
        raise ModelInUseError(
            f"Embeddings {version!r} are the current version and cannot be deleted",
            hint="set_current_best() another version first",
            cli_hint="make another version current first with `cfreg bert set-current VERSION`",
        )
    linked = list(session.scalars(
        select(EmbeddingLink.model_id).where(EmbeddingLink.embedding_version == version).order_by(EmbeddingLink.model_id)
    ))
    if linked:
        raise ModelInUseError(
            f"Embeddings {version!r} are linked to CF models {linked}",
            hint="unlink_model() them (or delete the models) first",
            cli_hint=f"unlink them first with `cfreg bert unlink {version} MODEL_ID` (or delete the models)",
        )
    folders: list[DeletionTarget] = []
    objects = store_object(row.uri, row.sha256) if delete_files else []
    if delete_files and row.uri is None:
        folder = ctx.resolve(row.path)
        folders.append(check_deletable(folder, ctx.artifacts_root))
        usage.refuse_if_folder_shared(session, ctx, folder, f"embeddings {version!r}", skip_embeddings=version)
    session.delete(row)
    audit.record(session, "DELETE_EMBEDDINGS", version, f"delete_files={bool(delete_files)}",
                 {"path": row.path, "delete_files": bool(delete_files)})
    return folders, objects


def list_rows(session: Session, include_linked_models: bool) -> list[dict[str, Any]]:
    """Every version's summary, newest first (see ``BERTEmbeddingsRegistry.list_embeddings``)."""
    current = settings_row(session).current_embeddings_version
    links = links_by_embedding(session) if include_linked_models else {}
    all_tags = tags.tags_of(session, "embeddings")
    rows = []
    statement = select(BertEmbedding).order_by(BertEmbedding.created_at.desc(), BertEmbedding.version.desc())
    for row in session.scalars(statement):
        item: dict[str, Any] = {
            "version": row.version,
            "model_name": row.model_name,
            "num_items": row.num_items,
            "embedding_dim": row.embedding_dim,
            "created_at": iso(row.created_at),
            "is_current": row.version == current,
        }
        if include_linked_models:
            item["linked_models"] = links.get(row.version, [])
        item["tags"] = all_tags.get(row.version, {})
        rows.append(item)
    return rows


def stats_of(session: Session) -> dict[str, Any]:
    """The counts of ``BERTEmbeddingsRegistry.get_stats``."""
    settings = settings_row(session)
    return {
        "total_embeddings": session.scalar(select(func.count()).select_from(BertEmbedding)) or 0,
        "current_best": settings.current_embeddings_version,
        "last_updated": iso(settings.last_updated),
        "total_linked_models": session.scalar(select(func.count(func.distinct(EmbeddingLink.model_id)))) or 0,
        "total_links": session.scalar(select(func.count()).select_from(EmbeddingLink)) or 0,
        "generation": settings.generation,
    }


# ---------------------------------------------------------------------- rows


def require_embeddings(session: Session, version: str) -> BertEmbedding:
    """The version's row, or EmbeddingsNotFoundError."""
    row = session.get(BertEmbedding, version)
    if row is None:
        raise EmbeddingsNotFoundError(
            f"Embeddings version {version!r} not found in registry",
            hint="list_embeddings() shows the registered versions",
            cli_hint="`cfreg bert list` shows the registered versions",
        )
    return row


def embeddings_info_of(session: Session, row: BertEmbedding) -> dict[str, Any]:
    """A version's ``bert_registry.json`` entry with its linked models and tags."""
    linked = list(session.scalars(
        select(EmbeddingLink.model_id).where(EmbeddingLink.embedding_version == row.version).order_by(EmbeddingLink.linked_at)
    ))
    return embedding_info(row, linked, tags.tags_of(session, "embeddings", [row.version]).get(row.version))


def allocate_version(session: Session) -> str:
    """``bert_YYYYMMDD_HHMMSS`` (UTC), suffixed ``_2``, ``_3``... when taken."""
    return ids.first_free(session, BertEmbedding.version, generate_version_id("bert"))[0]


# ---------------------------------------------------------------------- argument checks


def model_name_arg(value: object) -> str:
    """A checked encoder name such as ``vinai/phobert-base``."""
    text = optional_text(value, "model_name", 256)
    if not text or not text.strip():
        raise InvalidArgumentError(f"model_name must be a non-empty string such as 'vinai/phobert-base', got {value!r}")
    return text


def text_fields_arg(value: object) -> list[str]:
    """Checked ``text_fields_used`` (default ``['product_name', 'description']``)."""
    if value is None:
        return list(DEFAULT_TEXT_FIELDS)
    if not isinstance(value, (list, tuple)) or len(value) > MAX_TEXT_FIELDS:
        raise InvalidArgumentError(
            f"text_fields_used must be a list of at most {MAX_TEXT_FIELDS} field names, got {value!r}"
        )
    fields = []
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise InvalidArgumentError(f"text_fields_used must hold non-empty strings, got {item!r} in {value!r}")
        fields.append(optional_text(item, "text_fields_used entry"))
    return fields  # type: ignore[return-value]

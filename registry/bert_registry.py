"""``BERTEmbeddingsRegistry``: versions of BERT item embeddings, linked to the CF models built on them.

Usage::

    bert = BERTEmbeddingsRegistry("artifacts/cf/bert_registry.json")
    version = bert.register_embeddings("data/processed/content_based_embeddings", "vinai/phobert-base", 2244, 768)
    embeddings, info = load_bert_embeddings(version)

The embeddings live in the same database as the CF registry (``registry.db``
beside ``bert_registry.json``), so a link to a CF model is a real foreign key:
deleting the model removes its links. Every change runs through
``RegistryContext.mutate`` (one transaction with its audit row, then the
``bert_registry.json`` export).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from . import audit, documents, export, tags
from .context import RegistryContext
from .defaults import DEFAULT_BERT_REGISTRY_PATH
from .deletion import delete_then_remove_files
from .embeddings_files import (  # noqa: F401 - torch_available, inspect_embeddings_folder: documented here
    NPY_FILE_NAMES,
    TORCH_FILE_NAMES,
    inspect_embeddings_folder,
    torch_available,
)
from .embeddings_ops import (  # noqa: F401 - DEFAULT_TEXT_FIELDS, MAX_TEXT_FIELDS: documented here
    DEFAULT_TEXT_FIELDS,
    MAX_TEXT_FIELDS,
    add_version,
    embeddings_info_of,
    list_rows,
    load_version,
    model_name_arg,
    remove_version,
    require_embeddings,
    stats_of,
    text_fields_arg,
)
from .errors import ModelNotFoundError
from .instances import SharedInstances
from .models import BertEmbedding, EmbeddingLink, Model
from .opening import open_context
from .selection import settings_row
from .storage import is_uri
from .storage.embeddings import inspect_embeddings, stage_embeddings
from .utils.git import get_git_commit as _detect_git_commit
from .utils.versioning import generate_version_id as _generate_version_id
from .validation import (
    json_payload,
    optional_text,
    path_text,
    positive_int,
    validate_identifier,
)

logger = logging.getLogger(__name__)

# Kept from the original API for compatibility; the registry itself stores item embeddings only.
EMBEDDING_TYPES = {"product": "product_embeddings", "user": "user_embeddings", "merged": "merged_embeddings"}

__all__ = [
    "DEFAULT_BERT_REGISTRY_PATH",
    "EMBEDDING_TYPES",
    "BERTEmbeddingsRegistry",
    "get_bert_registry",
    "load_bert_embeddings",
    "reset_bert_registries",
]


class BERTEmbeddingsRegistry:
    """Registry of BERT item-embedding versions, on the CF registry's database.

    Usage::

        bert = BERTEmbeddingsRegistry("artifacts/cf/bert_registry.json")
        version = bert.register_embeddings("data/processed/content_based_embeddings", "vinai/phobert-base", 2244, 768)
        bert.link_to_model(version, "als_v2_20250116_141500")

    Args:
        registry_path: where ``bert_registry.json`` lives; ``registry.json`` and the
            SQLite database ``registry.db`` sit beside it (shared with
            :class:`~registry.ModelRegistry`).
        auto_create: create a missing registry; otherwise ``FileNotFoundError``.
        database_url: a SQLAlchemy URL (overrides ``$CFREG_DATABASE_URL``).
        root: base of relative embedding paths (default: stored at creation).
        export_json: rewrite ``bert_registry.json`` (and ``registry.json``) after every change.
        audit_log_path: text mirror of the audit trail (default ``logs/registry_audit.log`` under ``root``).
        artifacts_root: the only tree ``delete_files=True`` may touch (default: the
            folder of ``bert_registry.json``).
        artifact_cache_dir: where store-backed versions are cached when loaded (default
            ``$CFREG_ARTIFACT_CACHE`` or the user's cache directory; shared with the loaders).
        artifact_cache_bytes: that cache's byte budget (default 20 GiB or ``$CFREG_ARTIFACT_CACHE_MAX_BYTES``).
    """

    def __init__(
        self,
        registry_path: str | os.PathLike[str] = DEFAULT_BERT_REGISTRY_PATH,
        auto_create: bool = True,
        *,
        database_url: str | None = None,
        root: str | os.PathLike[str] | None = None,
        export_json: bool = True,
        audit_log_path: str | os.PathLike[str] | None = None,
        artifacts_root: str | os.PathLike[str] | None = None,
        artifact_cache_dir: str | os.PathLike[str] | None = None,
        artifact_cache_bytes: int | None = None,
    ) -> None:
        self._cache_dir, self._cache_bytes = artifact_cache_dir, artifact_cache_bytes
        self._ctx = open_context(
            registry_path,
            database_url=database_url,
            auto_create=auto_create,
            root=root,
            audit_log_path=audit_log_path,
            export_json=export_json,
            artifacts_root=artifacts_root,
        )
        self.registry_path = self._ctx.bert_json_path
        self.audit_log_path = self._ctx.audit_log_path
        if export_json and not self.registry_path.exists():
            _export_bert_file(self._ctx)

    def __repr__(self) -> str:
        return f"BERTEmbeddingsRegistry({str(self.registry_path)!r}, database={self._ctx.database.describe()!r})"

    # ------------------------------------------------------------------ properties

    @property
    def context(self) -> RegistryContext:
        """The opened registry (database, paths), shared with the CF registry code."""
        return self._ctx

    @property
    def root(self) -> Path:
        """Base directory of relative embedding paths."""
        return self._ctx.root

    def resolve_path(self, stored_path: str) -> Path:
        """Where a stored (possibly relative) embeddings path is on this machine (relative: under ``root``)."""
        return self._ctx.resolve(stored_path)

    @property
    def registry(self) -> dict[str, Any]:
        """The whole ``bert_registry.json`` document, read fresh from the database."""
        return self._ctx.read(documents.build_bert_document)[0]

    @staticmethod
    def generate_version_id(prefix: str = "bert") -> str:
        """``f"{prefix}_YYYYMMDD_HHMMSS"`` (UTC); registration makes it unique."""
        return _generate_version_id(prefix)

    # ------------------------------------------------------------------ validation

    def validate_embedding_files(self, embedding_path: str | os.PathLike[str]) -> tuple[bool, list[str]]:
        """Check an embeddings folder without registering it.

        The folder (local, or a store URI) must exist and hold ``product_embeddings.npy`` or
        ``item_embeddings.npy`` (``.pt`` too when torch is installed) with a valid
        numeric 2-D array header.

        Returns:
            ``(ok, problems)``: the problems are readable sentences, empty when ok.
        """
        _, _, problems = self.inspect_embedding_files(embedding_path)
        return not problems, problems

    def inspect_embedding_files(self, embedding_path: str | os.PathLike[str]) -> tuple[str | None, tuple[int, ...] | None, list[str]]:
        """``(file name, array shape, problems)`` of an embeddings folder (local or a store URI), as
        :meth:`validate_embedding_files` checks it."""
        return inspect_embeddings(self._ctx, path_text(embedding_path, "embedding_path"))

    # ------------------------------------------------------------------ registration

    def register_embeddings(
        self,
        embedding_path: str | os.PathLike[str],
        model_name: str,
        num_items: int,
        embedding_dim: int,
        generation_config: dict[str, Any] | None = None,
        text_fields_used: list[str] | None = None,
        data_version: str | None = None,
        git_commit: str | None = None,
        version: str | None = None,
    ) -> str:
        """Register the embeddings in ``embedding_path``; returns the version.

        The array (read by header only) must be 2-D with shape
        ``(num_items, embedding_dim)``; its file name, size and sha256 are recorded.
        Without ``version`` it is ``bert_YYYYMMDD_HHMMSS`` (UTC), suffixed ``_2``,
        ``_3``... when taken. An explicit existing version returns itself when the
        path and checksum are identical, and raises otherwise (its links are kept).
        The first version registered becomes the current one.

        On a registry with an artifact store the file is first uploaded as a
        content-addressed object (not sent again when the store has it) and the
        version's path becomes ``<store>/embeddings/<version>``; a folder already in a
        store (``s3://...``) is registered in place (see ``docs/fleet.md``).

        Args:
            embedding_path: folder holding ``product_embeddings.npy`` or ``item_embeddings.npy``;
                stored as given, relative paths resolved against ``root``; or a store folder URI.
            model_name: the encoder, e.g. ``"vinai/phobert-base"``.
            num_items: expected rows. embedding_dim: expected columns.
            generation_config: JSON-serialisable dict (batch size, max length...).
            text_fields_used: item text fields encoded (default ``['product_name', 'description']``).
            data_version: data hash (default ``"unknown"``). git_commit: detected under ``root`` when None.
            version: explicit version id.

        Raises:
            InvalidArgumentError: malformed arguments.
            InvalidArtifactsError: missing, unreadable, unsafe or mis-shaped file.
            ModelExistsError: ``version`` exists with another path or file content.
            ArtifactStoreError: the store cannot be read or written (nothing is recorded).
        """
        stored = path_text(embedding_path, "embedding_path")
        model_name = model_name_arg(model_name)
        num_items = positive_int(num_items, "num_items")
        embedding_dim = positive_int(embedding_dim, "embedding_dim")
        generation_config = json_payload(generation_config, "generation_config")
        fields_used = text_fields_arg(text_fields_used)
        data_version = optional_text(data_version, "data_version") or "unknown"
        if version is not None:
            validate_identifier(version, "version")
        git_commit = optional_text(git_commit, "git_commit", 64)
        staged = stage_embeddings(self._ctx, stored, (num_items, embedding_dim))
        fields = {"model_name": model_name, "num_items": num_items, "embedding_dim": embedding_dim,
                  "data_version": data_version, "git_commit": git_commit or _detect_git_commit(self._ctx.root),
                  "generation_config": generation_config, "text_fields_used": fields_used}
        return self._ctx.mutate(lambda session: add_version(self._ctx, session, version, stored, staged, fields))

    # ------------------------------------------------------------------ current version

    def set_current_best(self, version: str) -> bool:
        """Make ``version`` the current embeddings (a no-op when it already is).

        Raises:
            ModelNotFoundError: unknown version.
        """
        validate_identifier(version, "version")

        def work(session: Session) -> bool:
            require_embeddings(session, version)
            settings = settings_row(session)
            previous = settings.current_embeddings_version
            if previous != version:
                settings.current_embeddings_version = version
                audit.record(session, "SET_CURRENT_EMBEDDINGS", version, f"from={previous or 'none'}",
                             {"previous_version": previous})
            return True

        return self._ctx.mutate(work)

    def get_current_best(self) -> dict[str, Any] | None:
        """The current embeddings as ``{'version', 'info'}``, or None when none is registered."""
        def work(session: Session) -> dict[str, Any] | None:
            version = settings_row(session).current_embeddings_version
            if version is None:
                return None
            return {"version": version, "info": embeddings_info_of(session, require_embeddings(session, version))}

        return self._ctx.read(work)

    def get_embeddings(self, version: str) -> dict[str, Any] | None:
        """A version's ``bert_registry.json`` entry (a copy), or None when unknown."""
        validate_identifier(version, "version")

        def work(session: Session) -> dict[str, Any] | None:
            row = session.get(BertEmbedding, version)
            return None if row is None else embeddings_info_of(session, row)

        return self._ctx.read(work)

    def get_embedding_file(self, version: str) -> dict[str, Any]:
        """The file recorded at registration: ``path`` (resolved), ``file_name``, ``size_bytes``, ``sha256``,
        and ``uri`` (the store object, None for a local file).

        Raises:
            ModelNotFoundError: unknown version.
        """
        validate_identifier(version, "version")

        def work(session: Session) -> dict[str, Any]:
            row = require_embeddings(session, version)
            path = row.path if is_uri(row.path) else str(self._ctx.resolve(row.path))
            return {"path": path, "file_name": row.file_name, "size_bytes": row.size_bytes, "sha256": row.sha256,
                    "uri": row.uri}

        return self._ctx.read(work)

    # ------------------------------------------------------------------ links

    def link_to_model(self, embedding_version: str, model_id: str) -> bool:
        """Record that CF model ``model_id`` uses ``embedding_version``.

        Linking twice is a no-op (no second row, no second audit event).

        Raises:
            ModelNotFoundError: unknown embeddings version or CF model.
        """
        validate_identifier(embedding_version, "embedding_version")
        validate_identifier(model_id, "model_id")

        def work(session: Session) -> bool:
            require_embeddings(session, embedding_version)
            if session.get(Model, model_id) is None:
                raise ModelNotFoundError(
                    f"CF model {model_id!r} not found in registry",
                    hint="register it first (list_models() shows the registered ids)",
                    cli_hint="register it first (`cfreg list` shows the registered ids)",
                )
            if session.get(EmbeddingLink, (embedding_version, model_id)) is None:
                session.add(EmbeddingLink(embedding_version=embedding_version, model_id=model_id))
                audit.record(session, "LINK", embedding_version, f"model_id={model_id}", {"model_id": model_id})
            return True

        return self._ctx.mutate(work)

    def unlink_model(self, embedding_version: str, model_id: str) -> bool:
        """Remove the link between ``embedding_version`` and ``model_id``.

        Returns:
            True when a link was removed, False when there was none.

        Raises:
            ModelNotFoundError: unknown embeddings version.
        """
        validate_identifier(embedding_version, "embedding_version")
        validate_identifier(model_id, "model_id")

        def work(session: Session) -> bool:
            require_embeddings(session, embedding_version)
            link = session.get(EmbeddingLink, (embedding_version, model_id))
            if link is None:
                return False
            session.delete(link)
            audit.record(session, "UNLINK", embedding_version, f"model_id={model_id}", {"model_id": model_id})
            return True

        return self._ctx.mutate(work)

    # ------------------------------------------------------------------ queries

    def list_embeddings(self, include_linked_models: bool = True) -> list[dict[str, Any]]:
        """All versions, newest first.

        Returns:
            Dicts with ``version, model_name, num_items, embedding_dim, created_at,
            is_current`` (and ``linked_models`` when ``include_linked_models``), ``tags``.
        """
        return self._ctx.read(lambda session: list_rows(session, include_linked_models))

    def set_tag(self, version: str, key: str, value: str) -> bool:
        """Set tag ``key`` of an embeddings version; False when it already had that value.

        Raises:
            ModelNotFoundError: unknown version. InvalidArgumentError: bad key or value.
        """
        validate_identifier(version, "version")
        key, value = tags.validate_tag(key, value)

        def work(session: Session) -> bool:
            require_embeddings(session, version)
            return tags.set_tag(session, "embeddings", version, key, value)

        return self._ctx.mutate(work)

    def delete_tag(self, version: str, key: str) -> bool:
        """Remove a tag of an embeddings version; False when it was not set."""
        validate_identifier(version, "version")
        key, _ = tags.validate_tag(key)

        def work(session: Session) -> bool:
            require_embeddings(session, version)
            return tags.delete_tag(session, "embeddings", version, key)

        return self._ctx.mutate(work)

    def get_tags(self, version: str) -> dict[str, str]:
        """Tags of an embeddings version as ``{key: value}``."""
        validate_identifier(version, "version")

        def work(session: Session) -> dict[str, str]:
            require_embeddings(session, version)
            return tags.tags_of(session, "embeddings", [version]).get(version, {})

        return self._ctx.read(work)

    def set_description(self, version: str, description: str | None) -> bool:
        """Set (None or "" clears) the description of an embeddings version; False when unchanged."""
        validate_identifier(version, "version")
        text = tags.validate_description(description)

        def work(session: Session) -> bool:
            return tags.set_description(session, require_embeddings(session, version), version, text)

        return self._ctx.mutate(work)

    def get_stats(self) -> dict[str, Any]:
        """``total_embeddings, current_best, last_updated, total_linked_models`` (distinct CF
        models), plus ``total_links`` and the registry ``generation``."""
        return self._ctx.read(stats_of)

    # ------------------------------------------------------------------ deletion

    def delete_embeddings(self, version: str, delete_files: bool = False) -> bool:
        """Remove a version from the registry (and optionally its folder).

        Files are deleted only when the folder resolves inside the artifacts root,
        is not a symlink, and no other embeddings version or CF model uses it. A
        store-backed version's object is deleted only when no model or embeddings
        version records it any more. The database change commits first; the
        files are removed after.

        Raises:
            ModelNotFoundError: unknown version.
            ModelInUseError: the current version, linked to CF models, or shared files.
            InvalidArgumentError: ``delete_files=True`` and the folder escapes the artifacts root.
        """
        validate_identifier(version, "version")
        delete_then_remove_files(self._ctx, lambda session: remove_version(self._ctx, session, version, delete_files),
                                 leftover=f"embeddings {version} were deleted from the registry but their files remain")
        return True

    # ------------------------------------------------------------------ loading

    def load_embeddings(self, version: str | None = None) -> tuple[Any, dict[str, Any]]:
        """Load a version (default: the current one) as ``(ndarray, info)``, checking its sha256.

        A store-backed version is read through the host's artifact cache
        (``artifact_cache_dir``), downloaded once and verified like a served model's files.

        Raises:
            ModelNotFoundError: unknown version.
            NoModelLoadedError: no version given and no current embeddings.
            ChecksumMismatchError: the file changed since registration.
            InvalidArtifactsError: the file is missing or unreadable.
        """
        return load_version(self._ctx, version, self._cache_dir, self._cache_bytes)


# ---------------------------------------------------------------------- files


def _export_bert_file(ctx: RegistryContext) -> None:
    """Write ``bert_registry.json`` when it does not exist yet (the original created it on open)."""
    with export.export_lock(ctx.bert_json_path):
        document, generation = ctx.read(documents.build_bert_document)
        export.publish(ctx.bert_json_path, document, generation, "embeddings")


# ---------------------------------------------------------------------- module-level API


_shared = SharedInstances(BERTEmbeddingsRegistry)


def get_bert_registry(registry_path: str | os.PathLike[str] = DEFAULT_BERT_REGISTRY_PATH, **kwargs: Any) -> BERTEmbeddingsRegistry:
    """The shared :class:`BERTEmbeddingsRegistry` for a location (one instance per registry and process).

    Keyword arguments are used when the instance is first created.
    """
    return _shared.get(registry_path, **kwargs)


def reset_bert_registries() -> None:
    """Forget the shared BERT registry instances (tests)."""
    _shared.clear()


def load_bert_embeddings(
    version: str | None = None,
    registry_path: str | os.PathLike[str] = DEFAULT_BERT_REGISTRY_PATH,
    *,
    database_url: str | None = None,
    root: str | os.PathLike[str] | None = None,
    artifact_cache_dir: str | os.PathLike[str] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Load embeddings (default: the current version) as ``(ndarray, info)``.

    The registry is never created and no JSON is written; opening it may store
    the resolved root when none is stored yet and deletes orphan ``.*.cfreg-tmp`` files
    of killed exporters (see ``docs/bert.md``). The file's sha256 is checked
    against the one recorded at registration. ``.npy`` files never import torch. A
    store-backed version is read through the artifact cache (``artifact_cache_dir``).

    Raises:
        RegistryNotFoundError: no registry at ``registry_path``.
        ModelNotFoundError: unknown ``version``.
        NoModelLoadedError: no ``version`` given and no current embeddings.
        ChecksumMismatchError: the file changed since registration.
        InvalidArtifactsError: the file is missing or unreadable.
    """
    ctx = open_context(registry_path, database_url=database_url, auto_create=False, root=root, export_json=False)
    return load_version(ctx, version, artifact_cache_dir)


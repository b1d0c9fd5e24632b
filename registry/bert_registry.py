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

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import audit, export, tags, usage
from .artifacts import (
    DeletionTarget,
    check_deletable,
    fingerprint,
    load_npy,
    safe_delete_tree,
)
from .context import RegistryContext
from .defaults import DEFAULT_BERT_REGISTRY_PATH
from .embeddings_files import (  # noqa: F401 - torch_available, inspect_embeddings_folder: documented here
    NPY_FILE_NAMES,
    TORCH_FILE_NAMES,
    inspect_embeddings_folder,
    load_torch,
    torch_available,
)
from .errors import (
    EmbeddingsNotFoundError,
    InvalidArgumentError,
    InvalidArtifactsError,
    ModelExistsError,
    ModelInUseError,
    ModelNotFoundError,
    NoModelLoadedError,
    RegistryError,
)
from .export import embedding_info, iso
from .instances import SharedInstances
from .models import BertEmbedding, EmbeddingLink, Model
from .opening import open_context
from .selection import settings_row
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
DEFAULT_TEXT_FIELDS = ("product_name", "description")
MAX_TEXT_FIELDS = 256

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
    ) -> None:
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
        return self._ctx.read(export.build_bert_document)[0]

    @staticmethod
    def generate_version_id(prefix: str = "bert") -> str:
        """``f"{prefix}_YYYYMMDD_HHMMSS"`` (UTC); registration makes it unique."""
        return _generate_version_id(prefix)

    # ------------------------------------------------------------------ validation

    def validate_embedding_files(self, embedding_path: str | os.PathLike[str]) -> tuple[bool, list[str]]:
        """Check an embeddings folder without registering it.

        The folder must exist and hold ``product_embeddings.npy`` or
        ``item_embeddings.npy`` (``.pt`` too when torch is installed) with a valid
        numeric 2-D array header.

        Returns:
            ``(ok, problems)``: the problems are readable sentences, empty when ok.
        """
        stored = path_text(embedding_path, "embedding_path")
        _, _, problems = inspect_embeddings_folder(self._ctx.resolve(stored))
        return not problems, problems

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

        Args:
            embedding_path: folder holding ``product_embeddings.npy`` or ``item_embeddings.npy``;
                stored as given, relative paths resolved against ``root``.
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
        """
        stored = path_text(embedding_path, "embedding_path")
        model_name = _model_name(model_name)
        num_items = positive_int(num_items, "num_items")
        embedding_dim = positive_int(embedding_dim, "embedding_dim")
        generation_config = json_payload(generation_config, "generation_config")
        fields = _text_fields(text_fields_used)
        data_version = optional_text(data_version, "data_version") or "unknown"
        if version is not None:
            validate_identifier(version, "version")
        git_commit = optional_text(git_commit, "git_commit", 64)
        folder = self._ctx.resolve(stored)
        file_path, shape, problems = inspect_embeddings_folder(folder)
        if problems or file_path is None:
            raise InvalidArtifactsError(f"Invalid embeddings in {str(folder)!r}: " + "; ".join(problems))
        if shape != (num_items, embedding_dim):
            raise InvalidArtifactsError(
                f"{file_path}: array shape {shape} does not match num_items x embedding_dim = "
                f"({num_items}, {embedding_dim}); pass the real sizes or regenerate the file"
            )
        file_print = fingerprint(file_path, within=folder)
        git_commit = git_commit or _detect_git_commit(self._ctx.root)

        def work(session: Session) -> str:
            if version is None:
                chosen = _allocate_version(session)
            else:
                chosen = version
                existing = session.get(BertEmbedding, version)
                if existing is not None:
                    if existing.path == stored and existing.sha256 == file_print.sha256 and existing.file_name == file_print.file_name:
                        logger.info("embeddings %s are already registered with an identical file", version)
                        return version
                    raise ModelExistsError(
                        f"Embeddings version {version!r} already exists with a different path or file "
                        f"(registered {existing.path!r}, given {stored!r}); register another version"
                    )
            session.add(
                BertEmbedding(
                    version=chosen, path=stored, model_name=model_name, num_items=num_items,
                    embedding_dim=embedding_dim, data_version=data_version, git_commit=git_commit,
                    generation_config=generation_config, text_fields_used=fields,
                    file_name=file_print.file_name, size_bytes=file_print.size_bytes, sha256=file_print.sha256,
                )
            )
            session.flush()
            audit.record(
                session, "REGISTER_EMBEDDINGS", chosen, f"model_name={model_name} shape={num_items}x{embedding_dim}",
                {"path": stored, "file_name": file_print.file_name, "sha256": file_print.sha256, "model_name": model_name,
                 "num_items": num_items, "embedding_dim": embedding_dim},
            )
            settings = settings_row(session)
            if settings.current_embeddings_version is None:
                settings.current_embeddings_version = chosen
                audit.record(session, "SET_CURRENT_EMBEDDINGS", chosen, "from=none reason=first registered",
                             {"previous_version": None, "reason": "first registered"})
            return chosen

        return self._ctx.mutate(work)

    # ------------------------------------------------------------------ current version

    def set_current_best(self, version: str) -> bool:
        """Make ``version`` the current embeddings (a no-op when it already is).

        Raises:
            ModelNotFoundError: unknown version.
        """
        validate_identifier(version, "version")

        def work(session: Session) -> bool:
            _require_embeddings(session, version)
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
            return {"version": version, "info": _info(session, _require_embeddings(session, version))}

        return self._ctx.read(work)

    def get_embeddings(self, version: str) -> dict[str, Any] | None:
        """A version's ``bert_registry.json`` entry (a copy), or None when unknown."""
        validate_identifier(version, "version")

        def work(session: Session) -> dict[str, Any] | None:
            row = session.get(BertEmbedding, version)
            return None if row is None else _info(session, row)

        return self._ctx.read(work)

    def get_embedding_file(self, version: str) -> dict[str, Any]:
        """The file recorded at registration: ``path`` (resolved), ``file_name``, ``size_bytes``, ``sha256``.

        Raises:
            ModelNotFoundError: unknown version.
        """
        validate_identifier(version, "version")

        def work(session: Session) -> dict[str, Any]:
            row = _require_embeddings(session, version)
            return {"path": str(self._ctx.resolve(row.path)), "file_name": row.file_name,
                    "size_bytes": row.size_bytes, "sha256": row.sha256}

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
            _require_embeddings(session, embedding_version)
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
            _require_embeddings(session, embedding_version)
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
        def work(session: Session) -> list[dict[str, Any]]:
            current = settings_row(session).current_embeddings_version
            links = export.links_by_embedding(session) if include_linked_models else {}
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

        return self._ctx.read(work)

    def set_tag(self, version: str, key: str, value: str) -> bool:
        """Set tag ``key`` of an embeddings version; False when it already had that value.

        Raises:
            ModelNotFoundError: unknown version. InvalidArgumentError: bad key or value.
        """
        validate_identifier(version, "version")
        key, value = tags.validate_tag(key, value)

        def work(session: Session) -> bool:
            _require_embeddings(session, version)
            return tags.set_tag(session, "embeddings", version, key, value)

        return self._ctx.mutate(work)

    def delete_tag(self, version: str, key: str) -> bool:
        """Remove a tag of an embeddings version; False when it was not set."""
        validate_identifier(version, "version")
        key, _ = tags.validate_tag(key)

        def work(session: Session) -> bool:
            _require_embeddings(session, version)
            return tags.delete_tag(session, "embeddings", version, key)

        return self._ctx.mutate(work)

    def get_tags(self, version: str) -> dict[str, str]:
        """Tags of an embeddings version as ``{key: value}``."""
        validate_identifier(version, "version")

        def work(session: Session) -> dict[str, str]:
            _require_embeddings(session, version)
            return tags.tags_of(session, "embeddings", [version]).get(version, {})

        return self._ctx.read(work)

    def set_description(self, version: str, description: str | None) -> bool:
        """Set (None or "" clears) the description of an embeddings version; False when unchanged."""
        validate_identifier(version, "version")
        text = tags.validate_description(description)

        def work(session: Session) -> bool:
            return tags.set_description(session, _require_embeddings(session, version), version, text)

        return self._ctx.mutate(work)

    def get_stats(self) -> dict[str, Any]:
        """``total_embeddings, current_best, last_updated, total_linked_models`` (distinct CF
        models), plus ``total_links`` and the registry ``generation``."""
        def work(session: Session) -> dict[str, Any]:
            settings = settings_row(session)
            return {
                "total_embeddings": session.scalar(select(func.count()).select_from(BertEmbedding)) or 0,
                "current_best": settings.current_embeddings_version,
                "last_updated": iso(settings.last_updated),
                "total_linked_models": session.scalar(select(func.count(func.distinct(EmbeddingLink.model_id)))) or 0,
                "total_links": session.scalar(select(func.count()).select_from(EmbeddingLink)) or 0,
                "generation": settings.generation,
            }

        return self._ctx.read(work)

    # ------------------------------------------------------------------ deletion

    def delete_embeddings(self, version: str, delete_files: bool = False) -> bool:
        """Remove a version from the registry (and optionally its folder).

        Files are deleted only when the folder resolves inside the artifacts root,
        is not a symlink, and no other embeddings version or CF model uses it. The
        database change commits first; the folder is removed after.

        Raises:
            ModelNotFoundError: unknown version.
            ModelInUseError: the current version, linked to CF models, or shared files.
            InvalidArgumentError: ``delete_files=True`` and the folder escapes the artifacts root.
        """
        validate_identifier(version, "version")
        to_remove: list[DeletionTarget] = []

        def work(session: Session) -> bool:
            row = _require_embeddings(session, version)
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
            to_remove.clear()
            if delete_files:
                folder = self._ctx.resolve(row.path)
                to_remove.append(check_deletable(folder, self._ctx.artifacts_root))
                usage.refuse_if_folder_shared(session, self._ctx, folder, f"embeddings {version!r}", skip_embeddings=version)
            session.delete(row)
            audit.record(session, "DELETE_EMBEDDINGS", version, f"delete_files={bool(delete_files)}",
                         {"path": row.path, "delete_files": bool(delete_files)})
            return True

        result = self._ctx.mutate(work)
        for folder in to_remove:
            try:
                safe_delete_tree(folder, self._ctx.artifacts_root)
            except (OSError, InvalidArgumentError) as exc:
                raise RegistryError(f"embeddings {version} were deleted from the registry but their files remain in {folder}: {exc}") from exc
        return result

    # ------------------------------------------------------------------ loading

    def load_embeddings(self, version: str | None = None) -> tuple[Any, dict[str, Any]]:
        """Load a version (default: the current one) as ``(ndarray, info)``, checking its sha256.

        Raises:
            ModelNotFoundError: unknown version.
            NoModelLoadedError: no version given and no current embeddings.
            ChecksumMismatchError: the file changed since registration.
            InvalidArtifactsError: the file is missing or unreadable.
        """
        return _load(self._ctx, version)


# ---------------------------------------------------------------------- files


def _load(ctx: RegistryContext, version: str | None) -> tuple[Any, dict[str, Any]]:
    if version is not None:
        validate_identifier(version, "version")

    def work(session: Session) -> tuple[dict[str, Any], str, str | None, str | None]:
        chosen = version or settings_row(session).current_embeddings_version
        if chosen is None:
            raise NoModelLoadedError("No current best embeddings", hint="register embeddings or call set_current_best() first",
                                     cli_hint="register embeddings or run `cfreg bert set-current VERSION` first")
        row = _require_embeddings(session, chosen)
        return _info(session, row), row.path, row.file_name, row.sha256

    info, stored, file_name, sha256 = ctx.read(work)
    folder = ctx.resolve(stored)
    if file_name is None:
        # Imported from a legacy bert_registry.json: no checksum was ever recorded.
        file_path, _, problems = inspect_embeddings_folder(folder)
        if problems or file_path is None:
            raise InvalidArtifactsError(f"Embeddings {info['version']!r}: " + "; ".join(problems))
    else:
        file_path = folder / file_name
    if not os.path.lexists(file_path):
        raise InvalidArtifactsError(
            f"Embeddings {info['version']!r}: file {str(file_path)!r} is missing (moved or deleted since registration)"
        )
    if file_path.suffix == ".npy":
        array = load_npy(file_path, within=folder, expected_sha256=sha256 or None)
    else:
        if not torch_available():
            raise InvalidArtifactsError(f"{file_path}: loading .pt embeddings needs torch, which is not installed")
        array = load_torch(file_path, folder, sha256 or None)
    if sha256 is None:
        logger.warning("embeddings %s have no recorded checksum; loaded %s unverified", info["version"], file_path)
    expected = (info["num_items"], info["embedding_dim"])
    if tuple(array.shape) != expected:
        raise InvalidArtifactsError(f"{file_path}: array shape {tuple(array.shape)} differs from the registered {expected}")
    return array, info


def _export_bert_file(ctx: RegistryContext) -> None:
    """Write ``bert_registry.json`` when it does not exist yet (the original created it on open)."""
    with export.export_lock(ctx.bert_json_path):
        document, generation = ctx.read(export.build_bert_document)
        export.publish(ctx.bert_json_path, document, generation, "embeddings")


# ---------------------------------------------------------------------- transaction helpers


def _require_embeddings(session: Session, version: str) -> BertEmbedding:
    row = session.get(BertEmbedding, version)
    if row is None:
        raise EmbeddingsNotFoundError(
            f"Embeddings version {version!r} not found in registry",
            hint="list_embeddings() shows the registered versions",
            cli_hint="`cfreg bert list` shows the registered versions",
        )
    return row


def _info(session: Session, row: BertEmbedding) -> dict[str, Any]:
    linked = list(session.scalars(
        select(EmbeddingLink.model_id).where(EmbeddingLink.embedding_version == row.version).order_by(EmbeddingLink.linked_at)
    ))
    return embedding_info(row, linked, tags.tags_of(session, "embeddings", [row.version]).get(row.version))


def _allocate_version(session: Session) -> str:
    # Writers are serialised (the generation bump takes the write lock first), so the
    # first free version found here is still free at commit; the primary key is the backstop.
    base = _generate_version_id("bert")
    version, counter = base, 1
    while session.get(BertEmbedding, version) is not None:
        counter += 1
        version = f"{base}_{counter}"
    return version


# ---------------------------------------------------------------------- argument checks


def _model_name(value: object) -> str:
    text = optional_text(value, "model_name", 256)
    if not text or not text.strip():
        raise InvalidArgumentError(f"model_name must be a non-empty string such as 'vinai/phobert-base', got {value!r}")
    return text


def _text_fields(value: object) -> list[str]:
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
) -> tuple[Any, dict[str, Any]]:
    """Load embeddings (default: the current version) as ``(ndarray, info)``.

    The registry is never created and no JSON is written; opening it may store
    the resolved root when none is stored yet and deletes orphan ``.*.cfreg-tmp`` files
    of killed exporters (see ``docs/bert.md``). The file's sha256 is checked
    against the one recorded at registration. ``.npy`` files never import torch.

    Raises:
        RegistryNotFoundError: no registry at ``registry_path``.
        ModelNotFoundError: unknown ``version``.
        NoModelLoadedError: no ``version`` given and no current embeddings.
        ChecksumMismatchError: the file changed since registration.
        InvalidArtifactsError: the file is missing or unreadable.
    """
    ctx = open_context(registry_path, database_url=database_url, auto_create=False, root=root, export_json=False)
    return _load(ctx, version)


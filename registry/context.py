"""An opened registry: database, file locations, and the mutate -> audit log -> export cycle.

``ModelRegistry``, ``BERTEmbeddingsRegistry``, A/B tests and the loader all work
through one :class:`RegistryContext`, so every mutation follows the same path:
one transaction (generation bump, change, audit rows), then the audit-log mirror,
then the JSON export.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import audit, export
from .db import GENERATION_KEY, Database, HeldReader, open_database, record_database_url, resolve_database_url, sqlite_file
from .errors import ExportError, InvalidArgumentError, RegistryNotFoundError
from .models import Settings

logger = logging.getLogger(__name__)

ENV_ROOT = "CFREG_ROOT"
REGISTRY_JSON_NAME = "registry.json"
BERT_JSON_NAME = "bert_registry.json"
DEFAULT_AUDIT_LOG = Path("logs") / "registry_audit.log"

T = TypeVar("T")

GENERATION_QUERY = select(Settings.generation, Settings.current_model_id).where(Settings.id == 1)


def json_locations(registry_path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``(registry.json, bert_registry.json)`` for a registry path.

    A ``.json`` path names one of the two files (the other sits beside it); a
    ``.db`` path or a folder puts both files beside it / inside it.
    """
    path = Path(registry_path).expanduser().absolute()
    if path.suffix.lower() == ".json":
        folder = path.parent
        if path.name == BERT_JSON_NAME:
            return folder / REGISTRY_JSON_NAME, path
        return path, folder / BERT_JSON_NAME
    folder = path.parent if path.suffix else path
    return folder / REGISTRY_JSON_NAME, folder / BERT_JSON_NAME


@dataclass
class RegistryContext:
    """Everything one opened registry needs; shared by the registry classes of one location."""

    database: Database
    json_path: Path
    bert_json_path: Path
    root: Path
    artifacts_root: Path
    audit_log_path: Path
    export_json: bool = True
    created: bool = False
    artifact_store_uri: str | None = None

    @property
    def artifact_store(self):  # type: ignore[no-untyped-def]
        """The registry's :class:`~registry.storage.ArtifactStore`, or None (files on the local disk)."""
        if self.artifact_store_uri is None:
            return None
        from .storage import ArtifactStore

        return ArtifactStore(self.artifact_store_uri)

    @classmethod
    def open(
        cls,
        registry_path: str | os.PathLike[str],
        *,
        database_url: str | None = None,
        auto_create: bool = True,
        root: str | os.PathLike[str] | None = None,
        audit_log_path: str | os.PathLike[str] | None = None,
        export_json: bool = True,
        artifacts_root: str | os.PathLike[str] | None = None,
        import_legacy: bool = True,
        artifact_store: str | os.PathLike[str] | None = None,
    ) -> RegistryContext:
        """Open (creating if allowed) the registry whose JSON lives at ``registry_path``.

        A ``registry.json``/``bert_registry.json`` found beside a database that has never
        recorded a change is imported first (see :func:`registry.legacy.import_pending`);
        ``import_legacy=False`` skips that (a restore that replaces everything anyway).
        ``artifact_store`` records the registry's store URI when it has none yet (an
        audited change); a registry whose store is another URI refuses it.
        """
        json_path, bert_json_path = json_locations(registry_path)
        url = resolve_database_url(registry_path, database_url)
        db_file = sqlite_file(url)
        if db_file is not None and not db_file.exists() and not auto_create:
            raise RegistryNotFoundError(
                f"Registry not found: {db_file} does not exist",
                hint="create it with ModelRegistry(registry_path, auto_create=True)",
            )
        database = open_database(url, create=auto_create)
        if auto_create:
            record_database_url(registry_path, url)
        store_uri = None
        if artifact_store is not None:
            from .storage import normalize_store_uri

            store_uri = normalize_store_uri(artifact_store)
        stored_root, stored_store = database.read(
            lambda s: (s.get(Settings, 1).root, s.get(Settings, 1).artifact_store))  # type: ignore[union-attr]
        if store_uri is not None and stored_store is not None and store_uri != stored_store:
            raise InvalidArgumentError(
                f"the registry's artifact store is {stored_store}, not {store_uri}; a registry has one store "
                "(open it without artifact_store, or create another registry)"
            )
        resolved_root = Path(root or os.environ.get(ENV_ROOT) or stored_root or os.getcwd()).expanduser().absolute()
        context = cls(
            database=database,
            json_path=json_path,
            bert_json_path=bert_json_path,
            root=resolved_root,
            artifacts_root=Path(artifacts_root).expanduser().absolute() if artifacts_root else json_path.parent,
            audit_log_path=_audit_path(audit_log_path, resolved_root),
            export_json=export_json,
            created=database.newly_created,
            artifact_store_uri=stored_store,
        )
        database.newly_created = False
        if stored_root is None:
            context._store_root(resolved_root)
        if store_uri is not None and stored_store is None:
            context._set_artifact_store(store_uri)
        export.sweep_orphan_temp_files(json_path.parent)
        if import_legacy:
            from .legacy import import_legacy_if_present, import_pending

            # Not only when created: an import killed part-way left an empty database; retry it
            # before anything could export over the legacy file.
            if context.created or import_pending(context):
                import_legacy_if_present(context)
        if export_json and not json_path.exists():
            context.export(force=True)
        return context

    def _store_root(self, root: Path) -> None:
        def work(session: Session) -> None:
            settings = session.get(Settings, 1)
            assert settings is not None
            if settings.root is None:
                settings.root = str(root)
            else:
                Database.discard(session)

        self.database.run(work)

    def _set_artifact_store(self, uri: str) -> None:
        def work(session: Session) -> str:
            settings = session.get(Settings, 1)
            assert settings is not None
            if settings.artifact_store is None:
                settings.artifact_store = uri
                audit.record(session, "SET_ARTIFACT_STORE", "registry", uri, {"artifact_store": uri})
            elif settings.artifact_store != uri:
                raise InvalidArgumentError(f"the registry's artifact store is {settings.artifact_store}, not {uri}")
            return settings.artifact_store

        self.artifact_store_uri = self.mutate(work)

    # ------------------------------------------------------------------ transactions

    def read(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in a short read transaction."""
        return self.database.read(work)

    def mutate(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` as one write transaction, then mirror its audit lines and export.

        ``work`` records its audit events with :func:`registry.audit.record`; a
        transaction that records none is treated as "nothing changed" and rolled back.
        """
        lines: list[str] = []
        changes: list[export.Change] = []

        def transaction(session: Session) -> T:
            result = work(session)
            lines[:] = audit.pending_lines(session)
            if not lines:
                Database.discard(session)
            changes[:] = [export.Change(session.info[GENERATION_KEY], tuple(audit.pending_events(session)))]
            return result

        result = self.database.run(transaction)
        if lines:
            audit.append_lines(self.audit_log_path, lines)
            if self.export_json:
                try:
                    self.export(change=changes[0])
                except ExportError as exc:
                    # The change is committed and `result` is true; raising here would make a
                    # caller retry (a second auto-versioned model). The next export heals the file.
                    logger.error("%s; the change is committed, run `cfreg export-json` to rewrite the file", exc)
        return result

    def export(self, *, force: bool = False, change: export.Change | None = None) -> bool:
        """Write ``registry.json`` (and ``bert_registry.json``) from the database now.

        ``change``: what the transaction this process just committed changed (lets the
        export re-render only those models; see :mod:`registry.export_cache`).
        """
        return export.export_registry_files(self.database, self.json_path, self.bert_json_path, force=force,
                                            change=change)

    # ------------------------------------------------------------------ helpers

    def resolve(self, stored_path: str) -> Path:
        """Absolute location of a stored artifact path (relative paths are under ``root``)."""
        path = Path(stored_path)
        return path if path.is_absolute() else self.root / path

    def generation(self, reader: HeldReader | None = None) -> tuple[int, str | None]:
        """``(generation, current_model_id)`` in one indexed read: the loader's change check.

        Args:
            reader: run the read on this :meth:`held_reader` (~6x faster than a session).
        """
        if reader is not None:
            generation, current = reader.rows(GENERATION_QUERY)[0]
            return int(generation), current

        def work(session: Session) -> tuple[int, str | None]:
            row = session.execute(GENERATION_QUERY).one()
            return int(row[0]), row[1]

        return self.database.read(work)

    def held_reader(self) -> HeldReader:
        """A reader on a held connection for frequent small reads (the loader's reload check)."""
        return HeldReader(self.database.engine)


def _audit_path(audit_log_path: str | os.PathLike[str] | None, root: Path) -> Path:
    path = Path(audit_log_path) if audit_log_path else DEFAULT_AUDIT_LOG
    return path if path.is_absolute() else (root / path)


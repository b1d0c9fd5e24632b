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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import audit, export, export_cache
from .defaults import ENV_ROOT  # noqa: F401 - also importable from here, as before
from .errors import ExportError, InvalidArgumentError
from .held_reader import HeldReader
from .locations import BERT_JSON_NAME, REGISTRY_JSON_NAME, json_locations  # noqa: F401 - importable from here, as before
from .models import Settings
from .transactions import GENERATION_KEY, Database

logger = logging.getLogger(__name__)

DEFAULT_AUDIT_LOG = Path("logs") / "registry_audit.log"

T = TypeVar("T")

GENERATION_QUERY = select(Settings.generation, Settings.current_model_id).where(Settings.id == 1)


class Prefetched(NamedTuple):
    """A caller's first read, run by the opening with its own (see ``open_context(prefetch=...)``)."""

    stamp: tuple[int, int] | None  # SQLite: the held reader's data_version read just before the rows; else None
    rows: list[tuple[Any, ...]]


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
    # The reader that ran the opening read (open_context(hold_reader=True)), until held_reader() takes it.
    opening_reader: HeldReader | None = field(default=None, repr=False)
    # The read open_context(prefetch=...) ran with the opening read, until taken.
    prefetched: Prefetched | None = field(default=None, repr=False)

    @property
    def artifact_store(self):  # type: ignore[no-untyped-def]
        """The registry's :class:`~registry.storage.ArtifactStore`, or None (files on the local disk)."""
        if self.artifact_store_uri is None:
            return None
        from .storage import ArtifactStore

        return ArtifactStore(self.artifact_store_uri)

    def store_root(self, root: Path) -> None:
        """Record ``root`` as the registry's root when none is recorded yet."""
        def work(session: Session) -> None:
            settings = session.get(Settings, 1)
            assert settings is not None
            if settings.root is None:
                settings.root = str(root)
            else:
                Database.discard(session)

        self.database.run(work)

    def set_artifact_store(self, uri: str) -> None:
        """Record the registry's artifact store URI (an audited change); another recorded URI is refused."""
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
        return export_cache.export_registry_files(self.database, self.json_path, self.bert_json_path, force=force,
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

    def take_prefetched(self) -> Prefetched | None:
        """The read ``open_context(prefetch=...)`` ran with the opening read; None once taken or if none."""
        prefetched, self.prefetched = self.prefetched, None
        return prefetched

    def held_reader(self) -> HeldReader:
        """A reader on a held connection for frequent small reads (the loader's reload check).

        The first call on a context opened with ``hold_reader=True`` returns the reader
        that ran the opening read (its connection already checked out); later calls, new ones.
        """
        reader, self.opening_reader = self.opening_reader, None
        return reader if reader is not None else HeldReader(self.database.engine)


def audit_path(audit_log_path: str | os.PathLike[str] | None, root: Path) -> Path:
    """Where the audit trail's text mirror goes: ``audit_log_path`` (relative: under ``root``), else ``logs/registry_audit.log``."""
    path = Path(audit_log_path) if audit_log_path else DEFAULT_AUDIT_LOG
    return path if path.is_absolute() else (root / path)


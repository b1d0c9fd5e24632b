"""The operator side of :class:`~registry.cf_registry.ModelRegistry`: audit trail, read-only SQL,
legacy import, the database behind the registry.

A mixin, so the facade the CLI and the web app call stays one class while its source stays
in files of a readable size.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

from . import aliases, audit
from .database_urls import sqlite_file
from .facade_base import RegistryFacade
from .importer import entry as importer
from .pg_readonly import ReaderSetup, setup_reader
from .readonly_sql import DEFAULT_TIMEOUT_SECONDS, QueryResult, run_readonly_query


class RegistryAdmin(RegistryFacade):
    """Operator operations of a registry (mixed into ``ModelRegistry``)."""

    @property
    def created(self) -> bool:
        """True when opening this registry created its database."""
        return self._ctx.created

    @property
    def sqlite_file(self) -> Path | None:
        """The SQLite database file, or None on another database (PostgreSQL)."""
        return sqlite_file(self._ctx.database.url)

    def resolve_path(self, stored_path: str) -> Path:
        """Where a stored (possibly relative) artifact path is on this machine (relative: under ``root``)."""
        return self._ctx.resolve(stored_path)

    def audit_events(
        self,
        *,
        action: str | None = None,
        target: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Audit events, oldest first, filtered by action, target (model id, alias, test...) and time.

        With ``limit``: the newest ``limit`` matching events after skipping the newest ``offset``.
        """
        return self._ctx.read(lambda session: audit.query_events(
            session, action=action, target=target, since=since, until=until, limit=limit, offset=offset))

    def count_audit_events(self, *, action: str | None = None, target: str | None = None,
                           since: datetime | None = None, until: datetime | None = None) -> int:
        """How many audit events match the filters of :meth:`audit_events`."""
        return self._ctx.read(lambda session: audit.count_events(
            session, action=action, target=target, since=since, until=until))

    def aliases_of(self, model_id: str) -> list[str]:
        """The aliases pointing at ``model_id`` (``current_best`` first)."""
        return self._ctx.read(lambda session: aliases.aliases_of(session, model_id))

    def run_sql(self, query: str, *, limit: int | None = 1000,
                timeout_seconds: float | None = DEFAULT_TIMEOUT_SECONDS) -> QueryResult:
        """Run one read-only SQL statement (``cfreg sql``); the database refuses writes (see docs/cli.md)."""
        return run_readonly_query(self._ctx, query, limit=limit, timeout_seconds=timeout_seconds)

    def setup_sql_reader(self) -> ReaderSetup | None:
        """Create or refresh the PostgreSQL reader role behind :meth:`run_sql`; None on SQLite."""
        if self._ctx.database.dialect != "postgresql":
            return None
        return setup_reader(self._ctx.database)

    def import_registry_json(self, json_path: str | os.PathLike[str] | None,
                             bert_json_path: str | os.PathLike[str] | None = None, *,
                             replace: bool = False) -> dict[str, Any]:
        """Import a legacy ``registry.json`` (and ``bert_registry.json``); see :func:`registry.importer.entry.import_registry_json`."""
        return importer.import_registry_json(self._ctx, json_path, bert_json_path, replace=replace)

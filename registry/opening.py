"""Opening a registry: what happens before the first operation.

:func:`open_context` resolves the database (creating and migrating it when allowed),
records the registry's root and artifact store, sweeps temp files orphaned by killed
writers, imports a legacy ``registry.json`` found beside a new database, and writes the
first export. :class:`~registry.context.RegistryContext` itself only runs transactions.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.exc import DBAPIError

from . import fsio
from .context import ENV_ROOT, Prefetched, RegistryContext, audit_path
from .database_urls import record_database_url, resolve_database_url, sqlite_file
from .db import open_or_create_database
from .errors import InvalidArgumentError, RegistryNotFoundError
from .held_reader import HeldReader
from .importer.entry import ANY_AUDIT_EVENT, import_legacy_if_present, import_pending
from .locations import json_locations
from .models import Settings
from .transactions import Database

logger = logging.getLogger(__name__)

# The registry's stored root and artifact store, and whether it ever recorded a change (see
# import_pending): one statement (no ORM objects), which every opener pays. Openers that hold
# a reader anyway (a serving loader) run it there (see hold_reader); the others in a session
# (Database.read keeps the retries and typed errors; the process's shared reader would pin
# one more connection in every process).
_OPENING_COLUMNS = (Settings.root, Settings.artifact_store, ANY_AUDIT_EVENT.scalar_subquery())
_OPENING_QUERY = select(*_OPENING_COLUMNS).where(Settings.id == 1)
Prefetch = tuple[Select[Any], dict[str, object] | None]


def open_context(
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
    hold_reader: bool = False,
    prefetch: Prefetch | None = None,
) -> RegistryContext:
    """Open (creating if allowed) the registry whose JSON lives at ``registry_path``.

    A ``registry.json``/``bert_registry.json`` found beside a database that has never
    recorded a change is imported first (see :func:`registry.importer.entry.import_pending`);
    ``import_legacy=False`` skips that (a restore that replaces everything anyway).
    ``artifact_store`` records the registry's store URI when it has none yet (an
    audited change); a registry whose store is another URI refuses it.
    ``hold_reader=True`` runs the opening read on a new :class:`~registry.held_reader.HeldReader`,
    which the context's first :meth:`~registry.context.RegistryContext.held_reader` call hands
    over with its connection still held: a new serving worker checks out one connection, not
    two, and skips a session (on PostgreSQL: three round trips fewer).
    ``prefetch`` (with ``hold_reader``): ``(statement, parameters)`` of the caller's first read, a
    SELECT over the settings row (``Settings.id == 1``, outer joins only, so at least one row).
    The opening columns are added to it and the two reads are one statement; its rows, without
    those columns, wait in the context for :meth:`~registry.context.RegistryContext.take_prefetched`
    (on SQLite with the reader's ``data_version`` from just before, which tells the caller whether
    anything committed since).
    """
    if prefetch is not None and not hold_reader:
        raise InvalidArgumentError("open_context: prefetch= needs hold_reader=True (the read runs on that reader)")
    json_path, bert_json_path = json_locations(registry_path)
    url = resolve_database_url(registry_path, database_url)
    db_file = sqlite_file(url)
    if db_file is not None and not db_file.exists() and not auto_create:
        raise RegistryNotFoundError(
            f"Registry not found: {db_file} does not exist",
            hint="create it with ModelRegistry(registry_path, auto_create=True)",
        )
    database, created = open_or_create_database(url, create=auto_create)
    if auto_create:
        record_database_url(registry_path, url)
    store_uri = None
    if artifact_store is not None:
        from .storage import (
            normalize_store_uri,  # fsspec is imported only by registries that use a store
        )

        store_uri = normalize_store_uri(artifact_store)
    reader = HeldReader(database.engine) if hold_reader else None
    try:
        return _context_on(database, created, reader, prefetch, json_path=json_path, bert_json_path=bert_json_path,
                           store_uri=store_uri, root=root, audit_log_path=audit_log_path, export_json=export_json,
                           artifacts_root=artifacts_root, import_legacy=import_legacy)
    except BaseException:
        if reader is not None:
            reader.close()  # its connection would stay checked out until garbage collection
        raise


def _context_on(database: Database, created: bool, reader: HeldReader | None, prefetch: Prefetch | None, *,
                json_path: Path, bert_json_path: Path, store_uri: str | None, root: str | os.PathLike[str] | None,
                audit_log_path: str | os.PathLike[str] | None, export_json: bool,
                artifacts_root: str | os.PathLike[str] | None, import_legacy: bool) -> RegistryContext:
    """The rest of :func:`open_context` once the database is open: read, record, sweep, import, export."""
    (stored_root, stored_store, first_event), prefetched = _opening_values(database, reader, prefetch)
    if store_uri is not None and stored_store is not None and store_uri != stored_store:
        raise InvalidArgumentError(
            f"the registry's artifact store is {stored_store}, not {store_uri}; a registry has one store "
            "(open it without artifact_store, or create another registry)"
        )
    resolved_root = Path(root or os.environ.get(ENV_ROOT) or stored_root or os.getcwd()).expanduser().absolute()
    context = RegistryContext(
        database=database,
        json_path=json_path,
        bert_json_path=bert_json_path,
        root=resolved_root,
        artifacts_root=Path(artifacts_root).expanduser().absolute() if artifacts_root else json_path.parent,
        audit_log_path=audit_path(audit_log_path, resolved_root),
        export_json=export_json,
        created=created,
        artifact_store_uri=stored_store,
        opening_reader=reader,
        prefetched=prefetched,
    )
    wrote = stored_root is None
    if stored_root is None:
        context.store_root(resolved_root)
    # Whether the database holds an audit event now: setting the store just recorded one.
    audited = first_event is not None
    if store_uri is not None and stored_store is None:
        context.set_artifact_store(store_uri)
        audited = wrote = True
    fsio.sweep_orphan_temp_files(json_path.parent)
    if import_legacy:
        # Not only when created: an import killed part-way left an empty database; retry it
        # before anything could export over the legacy file.
        if context.created or import_pending(context, audited=audited):
            import_legacy_if_present(context)
            wrote = True
    if wrote:
        context.prefetched = None  # read before this opening's own writes: the caller reads again
    if export_json and not json_path.exists():
        context.export(force=True)
    return context


def _opening_values(database: Database, reader: HeldReader | None, prefetch: Prefetch | None,
                    ) -> tuple[tuple[str | None, str | None, object], Prefetched | None]:
    """``((stored root, stored artifact store, any audit event), prefetched read)``: on ``reader`` when given.

    A read the held reader cannot do (a busy SQLite file past its one retry, a server
    error) is done again in a session, which has the retries and the typed errors (and
    prefetches nothing: the caller then runs its own first read).
    """
    if reader is not None:
        try:
            if prefetch is None:
                root, store, first_event = reader.rows(_OPENING_QUERY)[0]
                return (root, store, first_event), None
            statement, parameters = prefetch
            width = len(_OPENING_COLUMNS)
            stamp = reader.data_version()  # before the rows: an unchanged stamp later vouches for them
            rows = reader.rows(_with_opening(statement), parameters)
            root, store, first_event = rows[0][-width:]
            return (root, store, first_event), Prefetched(stamp, [row[:-width] for row in rows])
        except DBAPIError as exc:
            logger.debug("opening read on the held reader failed, reading in a session: %s", exc)
    root, store, first_event = database.read(lambda session: session.execute(_OPENING_QUERY).one())
    return (root, store, first_event), None


@functools.cache
def _with_opening(statement: Select[Any]) -> Select[Any]:
    """``statement`` with the opening columns last (built once per statement: compiled once)."""
    return statement.add_columns(*_OPENING_COLUMNS)

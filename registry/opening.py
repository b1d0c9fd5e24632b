"""Opening a registry: what happens before the first operation.

:func:`open_context` resolves the database (creating and migrating it when allowed),
records the registry's root and artifact store, sweeps temp files orphaned by killed
writers, imports a legacy ``registry.json`` found beside a new database, and writes the
first export. :class:`~registry.context.RegistryContext` itself only runs transactions.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import select

from . import fsio
from .context import ENV_ROOT, RegistryContext, audit_path
from .database_urls import record_database_url, resolve_database_url, sqlite_file
from .db import open_or_create_database
from .errors import InvalidArgumentError, RegistryNotFoundError
from .importer.entry import ANY_AUDIT_EVENT, import_legacy_if_present, import_pending
from .locations import json_locations
from .models import Settings

# The registry's stored root and artifact store, and whether it ever recorded a change (see
# import_pending): one statement (no ORM objects), which every opener, a new serving worker
# included, pays. Not on the process's shared reader: that would pin one more connection in
# every process, and Database.read keeps the retries and typed errors.
_OPENING_QUERY = select(Settings.root, Settings.artifact_store,
                        ANY_AUDIT_EVENT.scalar_subquery()).where(Settings.id == 1)


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
) -> RegistryContext:
    """Open (creating if allowed) the registry whose JSON lives at ``registry_path``.

    A ``registry.json``/``bert_registry.json`` found beside a database that has never
    recorded a change is imported first (see :func:`registry.importer.entry.import_pending`);
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
    database, created = open_or_create_database(url, create=auto_create)
    if auto_create:
        record_database_url(registry_path, url)
    store_uri = None
    if artifact_store is not None:
        from .storage import (
            normalize_store_uri,  # fsspec is imported only by registries that use a store
        )

        store_uri = normalize_store_uri(artifact_store)
    stored_root, stored_store, first_event = database.read(lambda session: session.execute(_OPENING_QUERY).one())
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
    )
    if stored_root is None:
        context.store_root(resolved_root)
    # Whether the database holds an audit event now: setting the store just recorded one.
    audited = first_event is not None
    if store_uri is not None and stored_store is None:
        context.set_artifact_store(store_uri)
        audited = True
    fsio.sweep_orphan_temp_files(json_path.parent)
    if import_legacy:
        # Not only when created: an import killed part-way left an empty database; retry it
        # before anything could export over the legacy file.
        if context.created or import_pending(context, audited=audited):
            import_legacy_if_present(context)
    if export_json and not json_path.exists():
        context.export(force=True)
    return context

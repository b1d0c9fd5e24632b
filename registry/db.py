"""Opening a registry database: one cached :class:`Database` per URL and process, schema managed.

The database plumbing lives in the modules below; this one opens and caches, and
re-exports their names (``registry.db`` is where callers and tests find them):

* :mod:`registry.database_urls`: which database a registry uses (URL resolution, ``database_url.txt``).
* :mod:`registry.engines`: engines with the per-connection settings (SQLite WAL, ``BEGIN IMMEDIATE``).
* :mod:`registry.transactions`: :class:`Database`, the only place that commits, rolls back or retries.
* :mod:`registry.held_reader`: :class:`HeldReader`, cheap polling reads on a held connection.
* :mod:`registry.schema`: Alembic: a new database is created and migrated to head, an older
  one upgraded on open, a newer one raises :class:`SchemaVersionError`.
"""

from __future__ import annotations

import os
import threading

from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from .database_urls import (
    DATABASE_URL_FILE,
    DEFAULT_DATABASE_NAME,
    SQLITE_SUFFIXES,
    default_database_url,
    parse_url,
    record_database_url,
    recorded_database_url,
    redact,
    registry_folder,
    resolve_database_url,
    same_database,
    sqlite_file,
    without_password,
)
from .defaults import ENV_DATABASE_URL
from .engines import DEFAULT_BUSY_TIMEOUT_MS, ENV_BUSY_TIMEOUT_MS, configured_busy_timeout_ms, is_transient, make_engine
from .errors import (
    InvalidArgumentError,
    RegistryError,
    RegistryNotFoundError,
    SchemaVersionError,
)
from .held_reader import HeldReader
from .schema import (
    PG_MIGRATION_LOCK_KEY,
    SCHEMA_HEAD,
    alembic_config,
    downgrade,
    ensure_schema,
    migration_lock,
    migrations_dir,
    schema_state,
    stored_revisions,
    upgrade,
)
from .transactions import GENERATION_KEY, MAX_ATTEMPTS, SETTINGS_KEY, Database, bump_generation

__all__ = [
    "DATABASE_URL_FILE", "DEFAULT_BUSY_TIMEOUT_MS", "DEFAULT_DATABASE_NAME", "ENV_BUSY_TIMEOUT_MS", "ENV_DATABASE_URL",
    "GENERATION_KEY", "MAX_ATTEMPTS", "PG_MIGRATION_LOCK_KEY", "SCHEMA_HEAD", "SETTINGS_KEY", "SQLITE_SUFFIXES",
    "Database", "HeldReader", "InvalidArgumentError", "RegistryError", "RegistryNotFoundError", "SchemaVersionError",
    "alembic_config", "bump_generation", "configured_busy_timeout_ms", "default_database_url", "downgrade",
    "ensure_schema", "forget_databases", "is_transient", "make_engine", "migration_lock", "migrations_dir",
    "open_database", "open_or_create_database", "parse_url", "record_database_url", "recorded_database_url", "redact",
    "registry_folder", "resolve_database_url", "same_database", "schema_state", "sqlite_file", "stored_revisions",
    "upgrade", "without_password",
]

_databases: dict[tuple[str, int], Database] = {}
_databases_lock = threading.Lock()


def open_database(url: str, *, create: bool = True) -> Database:
    """Open (and cache per process) the database at ``url``, managing its schema.

    Args:
        url: SQLAlchemy URL.
        create: create and migrate a missing/empty database; when False a missing
            one raises :class:`RegistryNotFoundError`.

    Raises:
        RegistryNotFoundError: missing database and ``create=False``.
        SchemaVersionError: the schema is newer than this code.
    """
    return open_or_create_database(url, create=create)[0]


def open_or_create_database(url: str, *, create: bool = True) -> tuple[Database, bool]:
    """:func:`open_database`, and whether this call created the registry's schema in an empty database.

    Only the one call that created it gets True (``opening.open_context`` then imports a legacy
    ``registry.json`` found beside the new database); the cached :class:`Database` itself is
    never marked.
    """
    key = (url, os.getpid())
    with _databases_lock:
        database = _databases.get(key)
        if database is not None:
            return database, False
        try:
            db_file = sqlite_file(url)
            if db_file is not None and not db_file.exists():
                if not create:
                    raise RegistryNotFoundError(f"registry database {db_file} does not exist")
                db_file.parent.mkdir(parents=True, exist_ok=True)
            database = Database(url=url, engine=make_engine(url))
        except RegistryError:
            raise
        except (ArgumentError, NoSuchModuleError, ImportError, OSError) as exc:
            raise _open_error(url, exc) from exc
        try:
            created = ensure_schema(database, create=create)
        except DBAPIError as exc:
            database.dispose()
            raise _open_error(url, exc) from exc
        except BaseException:
            database.dispose()
            raise
        _databases[key] = database
        return database, created


def _open_error(url: str, exc: BaseException) -> RegistryError:
    """A typed, readable error for a database that cannot be opened."""
    if isinstance(exc, ArgumentError):
        return InvalidArgumentError(f"cannot use database URL {url!r}: {exc}")
    where = redact(url)
    if isinstance(exc, (NoSuchModuleError, ImportError)):
        return RegistryError(f"no driver for {where}: install it (PostgreSQL: pip install 'cf-model-registry[postgres]'): {exc}")
    if isinstance(exc, DBAPIError) and "not a database" in str(exc.orig):
        return SchemaVersionError(f"{where} is not a registry database (the file is not SQLite): {exc.orig}")
    if isinstance(exc, DBAPIError):
        return RegistryError(f"cannot open {where}: {exc.orig}")
    return InvalidArgumentError(f"cannot create the registry database for {where}: {exc}")


def forget_databases() -> None:
    """Dispose every cached engine of this process (tests, and after a fork)."""
    with _databases_lock:
        for database in _databases.values():
            database.dispose()
        _databases.clear()


def _after_fork_in_child() -> None:
    # Pooled connections must never be used across fork; drop them without closing.
    for database in list(_databases.values()):
        database.engine.dispose(close=False)
    _databases.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

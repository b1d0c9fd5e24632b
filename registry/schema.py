"""Schema management (Alembic): state, creation and upgrade under a cross-process lock.

A new database is created and migrated to head under a cross-process lock; an older
one is upgraded on open; a newer one raises :class:`SchemaVersionError` and is not
touched. This is the only module that runs Alembic.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from .database_urls import sqlite_file
from .engines import configured_busy_timeout_ms
from .errors import RegistryNotFoundError, SchemaVersionError
from .transactions import Database

logger = logging.getLogger(__name__)

# Arbitrary constant naming the registry's migration lock among PostgreSQL advisory locks.
PG_MIGRATION_LOCK_KEY = 0x6366_7265_67  # "cfreg"
# The newest Alembic revision in migrations/versions (a test keeps it equal to Alembic's head).
# Opening a registry already at this revision skips importing Alembic and parsing the scripts.
SCHEMA_HEAD = "0008"


def migrations_dir() -> Path:
    """Where the Alembic scripts live: packaged copy first, then the source checkout."""
    packaged = Path(__file__).resolve().parent / "_migrations"
    if (packaged / "env.py").exists():
        return packaged
    source = Path(__file__).resolve().parent.parent / "migrations"
    if (source / "env.py").exists():
        return source
    raise SchemaVersionError("the registry's migration scripts are not installed")


def alembic_config(url: str | None = None):  # type: ignore[no-untyped-def]
    """An Alembic ``Config`` built in code (no alembic.ini needed)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    if url:
        config.attributes["url"] = url
    return config


def schema_state(database: Database) -> tuple[str, set[str], set[str]]:
    """Return ``(state, current_revisions, head_revisions)``.

    ``state`` is ``"empty"``, ``"current"``, ``"older"`` or ``"newer"``.
    """
    if stored_revisions(database) == {SCHEMA_HEAD}:
        return "current", {SCHEMA_HEAD}, {SCHEMA_HEAD}
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    heads = set(script.get_heads())
    with database.engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
        connection.rollback()
    if not current:
        return "empty", current, heads
    known = {rev.revision for rev in script.walk_revisions()}
    if current - known:
        return "newer", current, heads
    if current == heads:
        return "current", current, heads
    return "older", current, heads


def stored_revisions(database: Database) -> set[str]:
    """The revisions in the database's ``alembic_version`` table (empty when it has none)."""
    with database.engine.connect() as connection:
        try:
            rows = connection.exec_driver_sql("SELECT version_num FROM alembic_version").all()
        except DBAPIError:  # no such table: an empty database
            rows = []
        connection.rollback()
    return {row[0] for row in rows}


def ensure_schema(database: Database, *, create: bool) -> bool:
    """Bring the schema to head if needed (see :func:`open_database`).

    Returns:
        True when this call created the schema in an empty database.
    """
    state, current, heads = schema_state(database)
    if state == "current":
        return False
    _raise_if_unusable(database, state, current, heads, create)
    with migration_lock(database):
        state, current, heads = schema_state(database)  # another process may have done it
        if state == "current":
            return False
        _raise_if_unusable(database, state, current, heads, create)
        logger.info("migrating %s from %s to %s", database.describe(), sorted(current) or "empty", sorted(heads))
        upgrade(database, "head")
        return state == "empty"


def _raise_if_unusable(database: Database, state: str, current: set[str], heads: set[str], create: bool) -> None:
    if state == "newer":
        raise SchemaVersionError(
            f"database {database.describe()} has schema revision {sorted(current)}, newer than this "
            f"code knows (heads {sorted(heads)}); upgrade cf-model-registry to open it"
        )
    if state == "empty" and not create:
        raise RegistryNotFoundError(f"Registry not found: database {database.describe()} holds no registry",
                                    hint="create it with ModelRegistry(registry_path, database_url=..., auto_create=True)")


def upgrade(database: Database, revision: str = "head") -> None:
    """Run Alembic ``upgrade`` on the database (in one transaction on both backends)."""
    from alembic import command

    config = alembic_config()
    with database.engine.execution_options(cfreg_write=True).connect() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        connection.commit()


def downgrade(database: Database, revision: str) -> None:
    """Run Alembic ``downgrade`` (tests and emergencies)."""
    from alembic import command

    config = alembic_config()
    with database.engine.execution_options(cfreg_write=True).connect() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)
        connection.commit()


@contextmanager
def migration_lock(database: Database) -> Iterator[None]:
    """Cross-process lock around first-time creation and upgrades."""
    db_file = sqlite_file(database.url)
    if db_file is not None:
        from filelock import FileLock

        with FileLock(str(db_file) + ".migrate.lock", timeout=configured_busy_timeout_ms() / 1000 * 4):
            yield
        return
    if database.dialect == "postgresql":
        with database.engine.connect() as connection:
            connection.execute(select(func.pg_advisory_lock(PG_MIGRATION_LOCK_KEY)))
            connection.commit()
            try:
                yield
            finally:
                connection.execute(select(func.pg_advisory_unlock(PG_MIGRATION_LOCK_KEY)))
                connection.commit()
        return
    yield

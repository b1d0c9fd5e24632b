"""Database plumbing: URL resolution, engines, transactions, schema management.

This is the only module that commits, rolls back, retries, or runs Alembic.

* SQLite: every connection gets ``busy_timeout``, ``foreign_keys=ON``,
  ``synchronous=FULL`` and WAL; write transactions start with ``BEGIN IMMEDIATE``
  (the pysqlite ``isolation_level=None`` + ``begin`` event recipe, needed on
  Python 3.11) so a read-then-write never fails with ``SQLITE_BUSY_SNAPSHOT``.
* PostgreSQL: plain READ COMMITTED; write transactions serialise on the
  ``settings`` row (see :meth:`Database.write`), which makes every
  read-decide-write sequence in the registry race-free on both backends.
* Schema: a new database is created and migrated to head under a cross-process
  lock; an older one is upgraded on open; a newer one raises
  :class:`SchemaVersionError` and is not touched.
"""

from __future__ import annotations

import logging
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, func, select, update
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    NoSuchModuleError,
    OperationalError,
)
from sqlalchemy.orm import Session, aliased, sessionmaker
from sqlalchemy.sql import Executable

from .defaults import ENV_DATABASE_URL
from .errors import (
    InvalidArgumentError,
    RegistryBusyError,
    RegistryError,
    RegistryNotFoundError,
    SchemaVersionError,
)
from .fsio import atomic_write_text

logger = logging.getLogger(__name__)

# In a registry folder: the URL of its database when that is not the default registry.db.
DATABASE_URL_FILE = "database_url.txt"
ENV_BUSY_TIMEOUT_MS = "CFREG_BUSY_TIMEOUT_MS"
DEFAULT_DATABASE_NAME = "registry.db"
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
DEFAULT_BUSY_TIMEOUT_MS = 30_000
MAX_ATTEMPTS = 6
# Arbitrary constant naming the registry's migration lock among PostgreSQL advisory locks.
PG_MIGRATION_LOCK_KEY = 0x6366_7265_67  # "cfreg"
# The newest Alembic revision in migrations/versions (a test keeps it equal to Alembic's head).
# Opening a registry already at this revision skips importing Alembic and parsing the scripts.
SCHEMA_HEAD = "0008"
# session.info key: the generation a write transaction commits (set by Database.run).
SETTINGS_KEY = "cfreg_settings"
GENERATION_KEY = "cfreg_generation"

T = TypeVar("T")


# --------------------------------------------------------------------------- URLs


def resolve_database_url(registry_path: str | os.PathLike[str] | None, database_url: str | None = None) -> str:
    """Return the database URL for a registry.

    Order: explicit ``database_url``, then ``$CFREG_DATABASE_URL``, then the URL
    recorded in the registry folder's ``database_url.txt`` (see
    :func:`record_database_url`), then a SQLite file: the path itself when it ends in
    ``.db``/``.sqlite``, ``registry.db`` beside a ``registry.json``/``bert_registry.json``
    path, or inside a registry folder.
    """
    url = database_url or os.environ.get(ENV_DATABASE_URL)
    if url:
        return url
    if registry_path is None:
        raise RegistryError("no registry path and no database URL given")
    recorded = recorded_database_url(registry_folder(registry_path))
    return recorded or default_database_url(registry_path)


def registry_folder(registry_path: str | os.PathLike[str]) -> Path:
    """The folder of a registry: beside a ``.json``/``.db`` path, or the folder path itself."""
    path = Path(registry_path).expanduser()
    return path.parent if path.suffix else path


def default_database_url(registry_path: str | os.PathLike[str]) -> str:
    """The SQLite URL a registry path names by itself (no URL given, none recorded)."""
    path = Path(registry_path).expanduser()
    db_file = path if path.suffix.lower() in SQLITE_SUFFIXES else registry_folder(path) / DEFAULT_DATABASE_NAME
    return f"sqlite:///{db_file.resolve()}"


def recorded_database_url(folder: Path) -> str | None:
    """The URL in ``folder/database_url.txt`` (first line that is not blank or a ``#`` comment), or None."""
    try:
        text = (folder / DATABASE_URL_FILE).read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise RegistryError(f"cannot read {folder / DATABASE_URL_FILE}: {exc}") from exc
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            parse_url(line)  # a clear error for a damaged file
            return line
    return None


def same_database(first: str, second: str) -> bool:
    """Whether two URLs name the same database (passwords ignored; SQLite paths resolved)."""
    first_file, second_file = sqlite_file(first), sqlite_file(second)
    if first_file is not None or second_file is not None:
        return first_file is not None and second_file is not None and first_file.resolve() == second_file.resolve()
    return without_password(first) == without_password(second)


def without_password(url: str) -> str:
    """The URL with its password removed (not masked): safe to write to a file."""
    parsed = parse_url(url)
    return URL.create(parsed.drivername, parsed.username, None, parsed.host, parsed.port, parsed.database,
                      parsed.query).render_as_string(hide_password=False)


def record_database_url(registry_path: str | os.PathLike[str], url: str) -> Path | None:
    """Remember in the registry folder which database it uses, when that is not the default.

    Writes ``database_url.txt`` (atomically, never with a password: it comes from
    ``PGPASSWORD``, ``~/.pgpass`` or the URL given at run time), so that opening the
    folder without a URL finds the database. An existing file naming another database
    is left alone (a warning is logged). Returns the file written, or None.
    """
    folder = registry_folder(registry_path)
    if same_database(url, default_database_url(registry_path)):
        return None
    recorded = recorded_database_url(folder)
    if recorded is not None:
        if not same_database(recorded, url):
            logger.warning("%s names %s, not %s; left unchanged (edit or delete it to change the registry's database)",
                           folder / DATABASE_URL_FILE, redact(recorded), redact(url))
        return None
    target = folder / DATABASE_URL_FILE
    atomic_write_text(target, (
        "# Database of the registry in this folder (written by cf-model-registry).\n"
        "# No password is stored: it comes from PGPASSWORD, ~/.pgpass or an explicit URL.\n"
        f"{without_password(url)}\n"
    ))
    return target


def parse_url(url: str) -> URL:
    """The parsed URL, or InvalidArgumentError for text that is not a database URL."""
    try:
        return make_url(url)
    except ArgumentError:
        raise InvalidArgumentError(
            f"{url!r} is not a database URL (e.g. sqlite:////path/registry.db or postgresql+psycopg://user@host/db)"
        ) from None


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL, or None for other backends and in-memory SQLite."""
    parsed = parse_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def redact(url: str) -> str:
    """The URL with any password hidden, for messages and logs."""
    return parse_url(url).render_as_string(hide_password=True)


# --------------------------------------------------------------------------- engines


def _busy_timeout_ms() -> int:
    return int(os.environ.get(ENV_BUSY_TIMEOUT_MS, DEFAULT_BUSY_TIMEOUT_MS))


def make_engine(url: str, *, busy_timeout_ms: int | None = None) -> Engine:
    """Create an engine with the registry's per-connection settings.

    Sessions bound to ``engine.execution_options(cfreg_write=True)`` start their
    SQLite transactions with ``BEGIN IMMEDIATE``; all others with ``BEGIN``.
    """
    if sqlite_file(url) is None and make_url(url).get_backend_name() == "sqlite":
        raise RegistryError("in-memory SQLite is not supported: give a file path or a server URL")
    if make_url(url).get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)

    timeout_ms = _busy_timeout_ms() if busy_timeout_ms is None else busy_timeout_ms
    engine = create_engine(url, connect_args={"timeout": timeout_ms / 1000}, pool_size=2, max_overflow=8)

    @event.listens_for(engine, "connect")
    def _configure_sqlite(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (see module doc)
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={int(timeout_ms)}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=FULL")
            _ensure_wal(cursor)
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection) -> None:  # type: ignore[no-untyped-def]
        options = connection.get_execution_options()
        if options.get("isolation_level") == "AUTOCOMMIT":
            return  # nothing would ever end an explicit BEGIN here: a stale, checkpoint-blocking snapshot
        connection.exec_driver_sql("BEGIN IMMEDIATE" if options.get("cfreg_write", False) else "BEGIN")

    return engine


def _ensure_wal(cursor) -> None:  # type: ignore[no-untyped-def]
    # journal_mode is persistent; converting a fresh file can race other
    # connections and return SQLITE_BUSY without calling the busy handler.
    for attempt in range(50):
        mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() == "wal":
            return
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc).lower() and "busy" not in str(exc).lower():
                raise
            logger.debug("journal_mode=WAL attempt %d failed: %s", attempt, exc)
            time.sleep(0.02 + random.random() * 0.05)
    raise RegistryBusyError("could not switch the SQLite database to WAL mode (it stayed locked)")


# --------------------------------------------------------------------------- errors


def _is_transient(exc: BaseException) -> bool:
    """Lock and serialization errors worth one more attempt."""
    if isinstance(exc, OperationalError) and exc.orig is not None:
        message = str(exc.orig).lower()
        if "locked" in message or "busy" in message:
            return True
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        if sqlstate in ("40001", "40P01", "55P03"):
            return True
    return False


# --------------------------------------------------------------------------- database


@dataclass
class Database:
    """An opened registry database: engine plus read and write session factories."""

    url: str
    engine: Engine

    def __post_init__(self) -> None:
        self._write_sessions = sessionmaker(bind=self.engine.execution_options(cfreg_write=True))
        self._read_sessions = sessionmaker(bind=self.engine)
        self._shared_reader: HeldReader | None = None
        self._shared_reader_lock = threading.Lock()

    def shared_reader(self) -> HeldReader:
        """One held-connection reader for the whole process (thread-safe): many registry objects on
        this database share it instead of each pinning a pooled connection."""
        with self._shared_reader_lock:
            if self._shared_reader is None:
                self._shared_reader = HeldReader(self.engine)
            return self._shared_reader

    @property
    def dialect(self) -> str:
        """The SQLAlchemy dialect name: ``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    def describe(self) -> str:
        """The URL without password, for messages."""
        return redact(self.url)

    @contextmanager
    def session_scope(self, *, write: bool = True) -> Iterator[Session]:
        """One transaction: commits on success, rolls back on any exception."""
        session = (self._write_sessions if write else self._read_sessions)()
        try:
            yield session
            if write and not session.info.get("cfreg_discard"):
                session.commit()
            else:
                session.rollback()  # end the read transaction; never hold a snapshot
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def run(self, work: Callable[[Session], T], *, write: bool = True) -> T:
        """Run ``work(session)`` in one transaction, retrying transient lock errors.

        Write transactions first bump ``settings.generation`` (which also takes the
        registry's write lock on PostgreSQL), so everything ``work`` reads is current
        and everything it writes commits atomically with the new generation.
        """
        delay = 0.05
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                with self.session_scope(write=write) as session:
                    if write:
                        session.info[GENERATION_KEY] = bump_generation(session)
                    return work(session)
            except DBAPIError as exc:
                if not _is_transient(exc):
                    raise RegistryError(f"database error in {self.describe()}: {exc.orig}") from exc
                if attempt == MAX_ATTEMPTS:
                    raise RegistryBusyError(
                        f"database {self.describe()} stayed busy after {attempt} attempts "
                        f"(busy_timeout {_busy_timeout_ms()} ms): {exc.orig}"
                    ) from exc
                logger.warning("transient database error (attempt %d): %s", attempt, exc.orig)
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 1.0)
        raise AssertionError("unreachable")

    @staticmethod
    def discard(session: Session) -> None:
        """Mark a write transaction as a no-op: it is rolled back instead of committed."""
        session.info["cfreg_discard"] = True

    def read(self, work: Callable[[Session], T]) -> T:
        """Run ``work(session)`` in a short read-only transaction."""
        return self.run(work, write=False)

    def dispose(self) -> None:
        """Close the engine's pooled connections."""
        self.engine.dispose()


def bump_generation(session: Session) -> int:
    """Increase the registry generation inside the current write transaction.

    The settings row comes back with the new generation and stays in the session (later
    ``session.get(Settings, 1)`` calls need no statement). On PostgreSQL the same statement
    queues ``NOTIFY`` with the new generation (see :mod:`registry.notify`), sent when the
    transaction commits: one round trip for both.
    """
    from .models import Settings, utcnow

    bump = update(Settings).where(Settings.id == 1).values(generation=Settings.generation + 1, last_updated=utcnow())
    if session.get_bind().dialect.name == "postgresql":
        from .notify import notify_expression

        bumped = bump.returning(*Settings.__table__.columns).cte("bumped")
        row = session.execute(select(aliased(Settings, bumped), notify_expression(bumped.c.generation))).first()
        settings = row[0] if row is not None else None
    else:
        settings = session.execute(bump.returning(Settings)).scalar_one_or_none()
    if settings is None:
        raise SchemaVersionError("the settings row is missing: this is not a cf-model-registry database")
    session.info[SETTINGS_KEY] = settings  # the identity map holds rows weakly: keep this one for the transaction
    return int(settings.generation)


class HeldReader:
    """Small read statements on a held connection, for cheap frequent polling.

    A :class:`Session` per read costs ~0.3 ms; a held connection runs an
    indexed read in ~0.05 ms (SQLite) / ~0.08 ms (PostgreSQL). Every read ends
    its transaction at once (SQLite: rollback; PostgreSQL: autocommit), so a
    reader never holds a snapshot (stale reads, blocked WAL checkpoints); one
    statement is one consistent snapshot. A broken connection is replaced
    once; a connection inherited over ``fork`` is abandoned, never used.
    Thread-safe (one read at a time).
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        # SQLite autocommit would leave our explicit BEGIN open: end reads with rollback there.
        self._autocommit = engine.dialect.name != "sqlite"
        self._connection: Connection | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._serial = 0  # counts the connections this reader opened (see data_version)

    def data_version(self) -> tuple[int, int] | None:
        """SQLite only: ``(connection serial, PRAGMA data_version)``; None on other databases.

        SQLite changes a connection's ``data_version`` whenever any other connection, in this
        process or another, commits a change to the file. This reader never writes, so an
        unchanged pair means nothing was committed since it was last read: a change check in
        microseconds, without compiling a statement or reading a table.
        """
        if self._autocommit:
            return None
        with self._lock:
            connection = self._held_connection()
            try:
                raw = connection.connection.dbapi_connection
                assert raw is not None
                version = raw.execute("PRAGMA data_version").fetchone()[0]
            except Exception:
                self._drop()
                raise
            return self._serial, int(version)

    def _held_connection(self) -> Connection:
        """The held connection, opened when there is none (lock held)."""
        if self._pid != os.getpid():
            self._connection, self._pid = None, os.getpid()
        connection = self._connection
        if connection is None:
            connection = self._engine.connect()
            if self._autocommit:
                connection = connection.execution_options(isolation_level="AUTOCOMMIT")
            self._connection = connection
            self._serial += 1
        return connection

    def rows(self, statement: Executable, parameters: dict[str, object] | None = None) -> list[tuple[Any, ...]]:
        """Run one read statement; returns its rows as tuples."""
        with self._lock:
            for attempt in (1, 2):
                connection = self._held_connection()
                try:
                    result = [tuple(row) for row in connection.execute(statement, parameters)]
                    if not self._autocommit:
                        connection.rollback()
                    return result
                except DBAPIError as exc:
                    self._drop()
                    if attempt == 2 or not (exc.connection_invalidated or _is_transient(exc)):
                        raise
                except BaseException:
                    self._drop()
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Return the held connection to the pool."""
        with self._lock:
            if self._pid == os.getpid():
                self._drop()
            self._connection = None

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception as exc:  # already broken: nothing left to release
                logger.debug("closing a held read connection failed: %s", exc)


# --------------------------------------------------------------------------- open + cache

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
            database.engine.dispose()
        _databases.clear()


def _after_fork_in_child() -> None:
    # Pooled connections must never be used across fork; drop them without closing.
    for database in list(_databases.values()):
        database.engine.dispose(close=False)
    _databases.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# --------------------------------------------------------------------------- schema


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

        with FileLock(str(db_file) + ".migrate.lock", timeout=_busy_timeout_ms() / 1000 * 4):
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

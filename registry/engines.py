"""Engines with the registry's per-connection settings, and which database errors are worth a retry.

* SQLite: every connection gets ``busy_timeout``, ``foreign_keys=ON``,
  ``synchronous=FULL`` and WAL; write transactions start with ``BEGIN IMMEDIATE``
  (the pysqlite ``isolation_level=None`` + ``begin`` event recipe, needed on
  Python 3.11) so a read-then-write never fails with ``SQLITE_BUSY_SNAPSHOT``.
* PostgreSQL: plain READ COMMITTED, ``pool_pre_ping``.
"""

from __future__ import annotations

import logging
import os
import random
import sqlite3
import time

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from .database_urls import sqlite_file
from .errors import RegistryBusyError, RegistryError

logger = logging.getLogger(__name__)

ENV_BUSY_TIMEOUT_MS = "CFREG_BUSY_TIMEOUT_MS"
DEFAULT_BUSY_TIMEOUT_MS = 30_000


def configured_busy_timeout_ms() -> int:
    """The SQLite busy timeout in milliseconds: ``$CFREG_BUSY_TIMEOUT_MS``, else the default."""
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

    timeout_ms = configured_busy_timeout_ms() if busy_timeout_ms is None else busy_timeout_ms
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


def is_transient(exc: BaseException) -> bool:
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

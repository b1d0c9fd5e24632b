"""``Database``: an opened registry database, its sessions and transactions.

This is the only place that commits, rolls back or retries. Write transactions first
bump ``settings.generation``: on PostgreSQL (plain READ COMMITTED) that serialises
writers on the ``settings`` row, which makes every read-decide-write sequence in the
registry race-free on both backends (SQLite writers start with ``BEGIN IMMEDIATE``,
see :mod:`registry.engines`).
"""

from __future__ import annotations

import functools
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TypeVar

from sqlalchemy import Engine, Executable, bindparam, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from .database_urls import redact
from .engines import configured_busy_timeout_ms, is_transient
from .errors import RegistryBusyError, RegistryError, SchemaVersionError
from .held_reader import HeldReader
from .pg_statistics import analyze_due, refresh_statistics

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 6
# session.info keys: the settings row the generation bump returned, and the generation a write
# transaction commits (both set by Database.run).
SETTINGS_KEY = "cfreg_settings"
GENERATION_KEY = "cfreg_generation"

T = TypeVar("T")


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
        and everything it writes commits atomically with the new generation. On PostgreSQL
        the commit of generation 64, 128, 256, ... refreshes the planner statistics
        (:mod:`registry.pg_statistics`).
        """
        delay = 0.05
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                with self.session_scope(write=write) as session:
                    if write:
                        session.info[GENERATION_KEY] = bump_generation(session)
                    result = work(session)
                    committed = session.info.get(GENERATION_KEY) if write and not session.info.get("cfreg_discard") else None
            except DBAPIError as exc:
                if not is_transient(exc):
                    raise RegistryError(f"database error in {self.describe()}: {exc.orig}") from exc
                if attempt == MAX_ATTEMPTS:
                    raise RegistryBusyError(
                        f"database {self.describe()} stayed busy after {attempt} attempts "
                        f"(busy_timeout {configured_busy_timeout_ms()} ms): {exc.orig}"
                    ) from exc
                logger.warning("transient database error (attempt %d): %s", attempt, exc.orig)
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 1.0)
            else:
                if committed is not None and analyze_due(committed):
                    refresh_statistics(self.engine)  # after the commit; PostgreSQL only (see registry.pg_statistics)
                return result
        raise AssertionError("unreachable")

    @staticmethod
    def discard(session: Session) -> None:
        """Mark a write transaction as a no-op: it is rolled back instead of committed."""
        session.info["cfreg_discard"] = True

    def read(self, work: Callable[[Session], T]) -> T:
        """Run ``work(session)`` in a short read-only transaction."""
        return self.run(work, write=False)

    def dispose(self) -> None:
        """Close the engine's pooled connections, the shared reader's held one included."""
        with self._shared_reader_lock:
            reader, self._shared_reader = self._shared_reader, None
        if reader is not None:
            reader.close()  # a checked-out connection: engine.dispose() alone would leave it open
        self.engine.dispose()


def bump_generation(session: Session) -> int:
    """Increase the registry generation inside the current write transaction.

    One Core ``UPDATE ... RETURNING`` (built once per dialect): the ORM ``Settings`` object
    is loaded by :func:`registry.settings_access.settings_row` only for writers that change
    it; the returned values (:func:`bumped_settings`) serve those that only read it. On
    PostgreSQL the same statement queues ``NOTIFY`` with the new generation (see
    :mod:`registry.notify`), sent when the transaction commits: one round trip for both.
    """
    from .models import utcnow

    row = session.connection().execute(_bump_statement(session.get_bind().dialect.name), {"now": utcnow()}).first()
    if row is None:
        raise SchemaVersionError("the settings row is missing: this is not a cf-model-registry database")
    values = SimpleNamespace(**{name: row._mapping[name] for name in _settings_columns()})
    session.info[SETTINGS_KEY] = values
    return int(values.generation)


def bumped_settings(session: Session) -> SimpleNamespace | None:
    """The ``settings`` values of this write transaction: what its generation bump returned, kept
    current by :func:`registry.settings_access.update_settings` (read them through
    :func:`registry.settings_access.settings_view`). None outside a write transaction."""
    values: SimpleNamespace | None = session.info.get(SETTINGS_KEY)
    return values


@functools.cache
def _settings_columns() -> tuple[str, ...]:
    from .models import Settings, table

    return tuple(column.name for column in table(Settings).columns)


@functools.cache
def _bump_statement(dialect: str) -> Executable:
    from .models import Settings, table

    settings = table(Settings)
    bump = (
        update(settings).where(settings.c.id == 1)
        .values(generation=settings.c.generation + 1, last_updated=bindparam("now"))
        .returning(*settings.columns)
    )
    if dialect != "postgresql":
        return bump
    from .notify import notify_expression

    bumped = bump.cte("bumped")
    return select(bumped, notify_expression(bumped.c.generation))

"""Push reload: learn of committed registry changes as they happen.

* PostgreSQL: every write transaction sends ``NOTIFY "cfreg_registry:<schema>", '<generation>'``
  inside the transaction (:func:`notify_expression`, in the statement where the generation is
  bumped), so the notification is delivered exactly when the change commits and never
  for a rolled-back one. :class:`GenerationWatcher` ``LISTEN``s on a dedicated
  connection and runs the loader's reload check on each notification. When that
  connection drops (server restart, ``pg_terminate_backend``, network) it falls back
  to polling every ``poll_seconds``, reconnects with exponential backoff, and runs one
  check after reconnecting to catch up on what it missed.
* SQLite: no server to push; the watcher polls the generation stamp every
  ``poll_seconds`` (default 50 ms; one indexed read on a held connection).

Each registry (a schema of a PostgreSQL database) has its own channel; a
notification only triggers the (cheap) generation check, which reads what changed.
The listening connection's ``application_name`` is ``cfreg-listen:<schema>``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import String, cast, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from .errors import RegistryError

if TYPE_CHECKING:
    from .transactions import Database

logger = logging.getLogger(__name__)

CHANNEL = "cfreg_registry"
APPLICATION_NAME = "cfreg-listen"
SQLITE_POLL_SECONDS = 0.05
POSTGRES_POLL_SECONDS = 1.0
RECONNECT_START_SECONDS = 0.1
RECONNECT_MAX_SECONDS = 5.0
STOP_TIMEOUT_SECONDS = 30.0
WAIT_SLICE_SECONDS = 0.5

ReloadCheck = Callable[[], tuple[str | None, str | None, bool]]
ChangeCallback = Callable[[str | None, str | None], Any]


def channel_name(schema: str) -> str:
    """The notification channel of the registry in ``schema`` (registries in other schemas stay apart)."""
    return f"{CHANNEL}:{schema}"[:63]


def notify_expression(generation: Any) -> Any:
    """``pg_notify(<the registry's channel>, generation)``: a SQL expression that queues the change
    notification in the current PostgreSQL transaction (sent at commit)."""
    channel = func.left(func.concat(CHANNEL + ":", func.current_schema()), 63)
    return func.pg_notify(channel, cast(generation, String))


def notify_change(session: Session, generation: int) -> None:
    """Queue the change notification in the current PostgreSQL transaction (sent at commit)."""
    session.execute(select(notify_expression(generation)))


def listen_conninfo(url: str) -> str:
    """A libpq connection URI for the registry database's URL (the SQLAlchemy driver name dropped)."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


class GenerationWatcher:
    """Runs ``check`` whenever the registry may have changed (see the module doc).

    Args:
        database: the registry database.
        check: the loader's reload check: returns ``(old id, new id, changed)``.
        callback: called as ``callback(old, new)`` after a change.
        poll_seconds: polling interval (SQLite; PostgreSQL while not listening, and the
            safety check while listening).
        name: the thread's name.
    """

    def __init__(self, database: Database, check: ReloadCheck, *, callback: ChangeCallback | None = None,
                 poll_seconds: float | None = None, name: str = "cfreg-watch") -> None:
        self._database = database
        self._check = check
        self._callback = callback
        self._postgres = database.dialect == "postgresql"
        default = POSTGRES_POLL_SECONDS if self._postgres else SQLITE_POLL_SECONDS
        self.poll_seconds = float(poll_seconds) if poll_seconds is not None else default
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._connection: Any = None
        self._last_error: str | None = None
        self.mode = "listen" if self._postgres else "poll"
        self.connects = 0  # LISTEN connections made (1 + reconnects)
        self.notifications = 0

    def start(self) -> None:
        """Start the watching thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop watching and close the listening connection."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(STOP_TIMEOUT_SECONDS)

    # ------------------------------------------------------------------ loop

    def _run(self) -> None:
        try:
            if self._postgres:
                self._listen_loop()
            else:
                while not self._stop.wait(self.poll_seconds):
                    self._run_check()
        finally:
            self._close()

    def _listen_loop(self) -> None:
        import psycopg

        delay = RECONNECT_START_SECONDS
        while not self._stop.is_set():
            try:
                self._connect(psycopg)
            except (psycopg.Error, OSError) as exc:
                self._fallback(f"cannot listen for registry changes ({exc}); polling every {self.poll_seconds:g} s")
                self._poll_for(delay)
                delay = min(delay * 2, RECONNECT_MAX_SECONDS)
                continue
            delay = RECONNECT_START_SECONDS
            if self.mode != "listen":
                logger.info("listening for registry changes again on %s", self._database.describe())
            self.mode = "listen"
            self._run_check()  # catch up on changes made while not listening
            try:
                self._receive()
            except (psycopg.Error, OSError) as exc:
                self._close()
                if self._stop.is_set():
                    return
                self._fallback(f"lost the registry change listener ({exc}); polling every {self.poll_seconds:g} s "
                               "and reconnecting")
                self._run_check()

    def _connect(self, psycopg: Any) -> None:
        self._close()
        from psycopg import sql

        connection = psycopg.connect(listen_conninfo(self._database.url), autocommit=True,
                                     application_name=APPLICATION_NAME, connect_timeout=5,
                                     keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=2)
        schema = connection.execute("SELECT current_schema()").fetchone()[0]
        connection.execute("SELECT set_config('application_name', %s, false)", (f"{APPLICATION_NAME}:{schema}"[:63],))
        connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel_name(schema))))
        self._connection = connection
        self.connects += 1

    def _receive(self) -> None:
        connection = self._connection
        last_check = time.monotonic()
        while not self._stop.is_set():
            got = False
            # Short waits so stop() returns quickly; the safety check still runs every poll_seconds.
            for _ in connection.notifies(timeout=min(self.poll_seconds, WAIT_SLICE_SECONDS), stop_after=1):
                got = True
                self.notifications += 1
            if self._stop.is_set():
                return
            if not got:
                connection.execute("SELECT 1")  # a dead connection shows here, not only at the next notification
                if time.monotonic() - last_check < self.poll_seconds:
                    continue
            self._run_check()
            last_check = time.monotonic()

    def _poll_for(self, seconds: float) -> None:
        """Poll while waiting ``seconds`` before the next reconnect attempt."""
        remaining = seconds
        while remaining > 0 and not self._stop.is_set():
            step = min(self.poll_seconds, remaining)
            if self._stop.wait(step):
                return
            remaining -= step
            self._run_check()

    def _fallback(self, message: str) -> None:
        if self.mode != "poll":
            logger.warning(message)
        self.mode = "poll"

    def _run_check(self) -> None:
        try:
            old, new, changed = self._check()
        except RegistryError as exc:
            text = f"{type(exc).__name__}: {exc}"
            if text != self._last_error:  # logged once per distinct error, not at every check
                logger.error("registry change check failed, still serving the previous model: %s", text)
            self._last_error = text
            return
        except Exception:
            logger.exception("registry change check failed")
            return
        self._last_error = None
        if changed and self._callback is not None:
            try:
                self._callback(old, new)
            except Exception:
                logger.exception("watch callback %r failed", self._callback)

    def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception as exc:  # already broken
                logger.debug("closing the listening connection failed: %s", exc)

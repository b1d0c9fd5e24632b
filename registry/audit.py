"""Audit trail: one ``audit_events`` row per mutation, in the mutation's transaction.

After the transaction commits, the same events are appended to the text log in
the doc's format ``YYYY-MM-DD HH:MM:SS | ACTION | target | details`` (UTC).
"""

from __future__ import annotations

import getpass
import logging
import os
import socket
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from .models import ID_LENGTH as TARGET_LENGTH
from .models import AuditEvent, table, utcnow

logger = logging.getLogger(__name__)

PENDING_KEY = "cfreg_audit_lines"
_INSERT_EVENT = insert(table(AuditEvent))
EVENTS_KEY = "cfreg_audit_events"
LINE_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
ACTOR_LENGTH = 128

_acting_identity: ContextVar[str | None] = ContextVar("cfreg_acting_identity", default=None)


@lru_cache(maxsize=1)
def _identity() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no user name in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def current_actor() -> str:
    """Who is acting: ``user@host:pid``, or ``<identity> via user@host:pid`` inside :func:`acting_as`."""
    process = f"{_identity()}:{os.getpid()}"
    identity = _acting_identity.get()
    return process if identity is None else f"{identity} via {process}"[:ACTOR_LENGTH]


@contextmanager
def acting_as(identity: str) -> Iterator[None]:
    """Record audit events written in this block (this thread / task) as done by ``identity``.

    Servers use it so the audit trail names the person behind a request, not only
    the server process, e.g. ``with acting_as("web:alice"): registry.promote_model(...)``.
    """
    token = _acting_identity.set(sanitize(identity)[:ACTOR_LENGTH] or "unknown")
    try:
        yield
    finally:
        _acting_identity.reset(token)


def sanitize(text: object) -> str:
    """One log field: no ``|`` (the separator), no line breaks, no raw control characters.

    Whitespace runs (newlines, tabs...) become one space; any other control or
    format character (ESC, NUL, bidi overrides...) is written as a visible escape
    such as ``\\x1b`` or ``\\u202e``, so a value cannot recolour a terminal or
    disguise a line. Only the log line is escaped: the database keeps the value as given.
    """
    joined = " ".join(str(text).replace("|", "/").split())
    if joined.isprintable():  # the common case: nothing to escape
        return joined
    return "".join(_escape(ch) if unicodedata.category(ch) in _ESCAPED_CATEGORIES else ch for ch in joined)


# Control (Cc), format (Cf: bidi overrides, zero-width...) and lone surrogate (Cs) characters.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs"})


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def format_line(at: datetime, action: str, target: str, summary: str) -> str:
    """The doc's audit line for one event."""
    return f"{at.strftime(LINE_TIME_FORMAT)} | {sanitize(action)} | {sanitize(target)} | {sanitize(summary)}"


def record(session: Session, action: str, target: str, summary: str = "", details: dict[str, Any] | None = None) -> None:
    """Add an audit row to the current transaction and queue its log line for after commit.

    ``target`` is cut to the column's width (file names of imports and restores can be long).
    """
    target = target[:TARGET_LENGTH]
    at = utcnow()
    # A Core insert, run now: cheaper than the ORM unit of work, and nothing reads the row back here.
    session.execute(_INSERT_EVENT, {"at": at, "action": action, "target": target, "summary": summary,
                                    "details": details or {}, "actor": current_actor()})
    session.info.setdefault(PENDING_KEY, []).append(format_line(at, action, target, summary))
    session.info.setdefault(EVENTS_KEY, []).append((action, target))


def pending_lines(session: Session) -> list[str]:
    """Log lines queued in this transaction."""
    return list(session.info.get(PENDING_KEY, []))


def pending_events(session: Session) -> list[tuple[str, str]]:
    """``(action, target)`` of the events recorded in this transaction, in order."""
    return list(session.info.get(EVENTS_KEY, []))


def append_lines(path: Path, lines: list[str]) -> None:
    """Append lines to the audit log (one ``O_APPEND`` write, so concurrent writers never interleave)."""
    if not lines:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = ("\n".join(lines) + "\n").encode("utf-8")
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    except OSError as exc:
        # The database row is the record; the text file is a mirror and must not fail a committed change.
        logger.error("could not append to audit log %s: %s", path, exc)


def event_to_dict(event: AuditEvent) -> dict[str, Any]:
    """An audit row as a plain dict (``at`` in ISO format with microseconds, UTC)."""
    return {
        "id": event.id,
        "at": event.at.strftime("%Y-%m-%dT%H:%M:%S.%f"),
        "action": event.action,
        "target": event.target,
        "summary": event.summary,
        "details": event.details,
        "actor": event.actor,
    }


def _filtered(statement: Any, action: str | None, target: str | None, since: datetime | None,
              until: datetime | None) -> Any:
    if action:
        statement = statement.where(AuditEvent.action == action)
    if target:
        statement = statement.where(AuditEvent.target == target)
    if since:
        statement = statement.where(AuditEvent.at >= since)
    if until:
        statement = statement.where(AuditEvent.at <= until)
    return statement


def query_events(
    session: Session,
    *,
    action: str | None = None,
    target: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Audit events, oldest first, filtered by action, target and time range.

    With ``limit``: the newest ``limit`` matching events after skipping the newest
    ``offset`` ones (one page of a newest-first listing), still oldest first.
    """
    statement = _filtered(select(AuditEvent).order_by(AuditEvent.id), action, target, since, until)
    if limit:
        statement = statement.order_by(None).order_by(AuditEvent.id.desc()).limit(limit).offset(offset or None)
        return [event_to_dict(e) for e in reversed(session.scalars(statement).all())]
    return [event_to_dict(e) for e in session.scalars(statement)]


def count_events(
    session: Session,
    *,
    action: str | None = None,
    target: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> int:
    """How many audit events match the filters of :func:`query_events`."""
    statement = _filtered(select(func.count()).select_from(AuditEvent), action, target, since, until)
    return int(session.scalar(statement) or 0)

"""Read-only SQL on the registry's database (``cfreg sql``).

:func:`run_readonly_query` runs one statement on a connection that cannot write:
on SQLite a ``mode=ro`` connection with ``PRAGMA query_only=ON`` and an authorizer
that only permits reads; on PostgreSQL a prepared statement in a
``SET TRANSACTION READ ONLY`` transaction on a private connection, rolled back.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .db import sqlite_file
from .errors import InvalidArgumentError, ReadOnlyQueryError

if TYPE_CHECKING:
    from .context import RegistryContext

__all__ = ["QueryResult", "run_readonly_query"]


@dataclass
class QueryResult:
    """Rows of a read-only query."""

    columns: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool = False

    def records(self) -> list[dict[str, Any]]:
        """The rows as ``{column: value}`` dicts."""
        return [dict(zip(self.columns, row)) for row in self.rows]


# Authorizer actions a read-only statement may need; everything else (writes, ATTACH,
# transactions, most pragmas) is denied before it runs.
_SQLITE_ALLOWED = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
_SQLITE_READ_PRAGMAS = {"table_info", "table_xinfo", "index_list", "index_info", "index_xinfo", "foreign_key_list"}


def run_readonly_query(context: RegistryContext, query: str, *, limit: int | None = 1000) -> QueryResult:
    """Run one SQL statement on a connection that cannot write.

    SQLite: the file is opened with ``mode=ro``, ``PRAGMA query_only=ON``, inside a
    transaction, with an authorizer that only permits reads. PostgreSQL: a
    ``SET TRANSACTION READ ONLY`` transaction and a prepared statement (so exactly one
    statement runs), rolled back at the end.

    Args:
        context: the opened registry.
        query: one SQL statement.
        limit: at most this many rows are returned (``truncated`` tells whether more existed).

    Raises:
        ReadOnlyQueryError: the statement tried to write.
        InvalidArgumentError: empty, several statements, or the database rejected it.
    """
    if not isinstance(query, str) or not query.strip():
        raise InvalidArgumentError("the SQL query is empty; give one SELECT statement")
    if limit is not None and limit < 1:
        raise InvalidArgumentError(f"limit must be >= 1, got {limit}")
    db_file = sqlite_file(context.database.url)
    if db_file is not None:
        return _sqlite_readonly(db_file, query, limit)
    if context.database.dialect == "postgresql":
        return _postgres_readonly(context, query, limit)
    raise InvalidArgumentError(f"read-only queries are supported on SQLite and PostgreSQL, not {context.database.dialect}")


def _fetch(cursor: Any, limit: int | None) -> QueryResult:
    columns = [str(d[0]) for d in (cursor.description or [])]
    if not columns:
        return QueryResult(columns, [])
    rows = cursor.fetchall() if limit is None else cursor.fetchmany(limit + 1)
    truncated = limit is not None and len(rows) > limit
    return QueryResult(columns, [tuple(r) for r in rows[:limit]], truncated)


def _sqlite_readonly(db_file: Path, query: str, limit: int | None) -> QueryResult:
    denied: list[str] = []

    def authorizer(action: int, arg1: str | None, arg2: str | None, _db: str | None, _trigger: str | None) -> int:
        if action in _SQLITE_ALLOWED:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_PRAGMA and (arg1 or "").lower() in _SQLITE_READ_PRAGMAS:
            return sqlite3.SQLITE_OK
        denied.append(" ".join(str(a) for a in (_SQLITE_ACTIONS.get(action, action), arg1, arg2) if a))
        return sqlite3.SQLITE_DENY

    uri = f"{db_file.resolve().as_uri()}?mode=ro"
    try:
        connection = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30)
    except sqlite3.Error as exc:
        raise InvalidArgumentError(f"cannot open {db_file} read-only: {exc}") from exc
    try:
        connection.execute("PRAGMA query_only=ON")
        connection.execute("BEGIN")
        connection.set_authorizer(authorizer)
        try:
            cursor = connection.execute(query)
            return _fetch(cursor, limit)
        except (sqlite3.Warning, sqlite3.ProgrammingError) as exc:  # several statements
            raise InvalidArgumentError(f"give exactly one SQL statement ({exc})") from exc
        except sqlite3.Error as exc:
            if denied or "readonly" in str(exc).lower():
                what = denied[0] if denied else str(exc)
                raise ReadOnlyQueryError(f"refused: the query tries to write or change the database ({what}); `cfreg sql` is read-only") from exc
            raise InvalidArgumentError(f"query failed: {exc}") from exc
    finally:
        connection.set_authorizer(None)
        connection.close()


_SQLITE_ACTIONS = {
    getattr(sqlite3, f"SQLITE_{name}"): name
    for name in (
        "ALTER_TABLE", "ANALYZE", "ATTACH", "CREATE_INDEX", "CREATE_TABLE", "CREATE_TEMP_INDEX", "CREATE_TEMP_TABLE",
        "CREATE_TEMP_TRIGGER", "CREATE_TEMP_VIEW", "CREATE_TRIGGER", "CREATE_VIEW", "CREATE_VTABLE", "DELETE",
        "DETACH", "DROP_INDEX", "DROP_TABLE", "DROP_TEMP_INDEX", "DROP_TEMP_TABLE", "DROP_TEMP_TRIGGER",
        "DROP_TEMP_VIEW", "DROP_TRIGGER", "DROP_VIEW", "DROP_VTABLE", "INSERT", "PRAGMA", "REINDEX", "SAVEPOINT",
        "TRANSACTION", "UPDATE",
    )
    if hasattr(sqlite3, f"SQLITE_{name}")
}


def _postgres_readonly(context: RegistryContext, query: str, limit: int | None) -> QueryResult:
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    # A private, unpooled connection: nothing the query does can leak into the registry's pool.
    engine = create_engine(context.database.url, poolclass=NullPool)
    if engine.dialect.driver != "psycopg":
        engine.dispose()
        raise InvalidArgumentError(f"`cfreg sql` on PostgreSQL needs the psycopg (3) driver, not {engine.dialect.driver}")
    try:
        with engine.connect() as connection:
            raw = connection.connection.driver_connection
            cursor = raw.cursor()  # type: ignore[union-attr]
            try:
                cursor.execute("SET TRANSACTION READ ONLY")
                cursor.execute(query, prepare=True)
                return _fetch(cursor, limit)
            except Exception as exc:
                sqlstate = getattr(exc, "sqlstate", None)
                if sqlstate is None:
                    raise
                if sqlstate == "25006":  # read_only_sql_transaction
                    raise ReadOnlyQueryError(f"refused: the query tries to write ({str(exc).strip()}); `cfreg sql` is read-only") from exc
                if sqlstate == "42601" and "multiple commands" in str(exc):
                    raise InvalidArgumentError("give exactly one SQL statement") from exc
                raise InvalidArgumentError(f"query failed: {str(exc).strip()}") from exc
            finally:
                raw.rollback()  # type: ignore[union-attr]
    finally:
        engine.dispose()

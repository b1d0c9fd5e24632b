"""Read-only SQL on the registry's database (``cfreg sql``).

:func:`run_readonly_query` runs one statement where the database itself prevents
writes and anything beyond reading the registry:

* SQLite: a ``mode=ro`` connection with ``PRAGMA query_only=ON``, inside a
  transaction, with an authorizer that only permits reads (and read-only pragma
  functions such as ``pragma_table_info``), and a progress-handler timeout.
* PostgreSQL: a ``READ ONLY`` transaction with a statement timeout, in which the
  statement runs inside the registry's ``SECURITY DEFINER`` query function, owned
  by a role that may only read the registry's tables and views
  (:mod:`registry.pg_readonly`); at most ``limit + 1`` rows are produced.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .database_urls import sqlite_file
from .errors import InvalidArgumentError, QueryTimeoutError, ReadOnlyQueryError

if TYPE_CHECKING:
    from .context import RegistryContext

__all__ = ["DEFAULT_TIMEOUT_SECONDS", "QueryResult", "run_readonly_query"]

DEFAULT_TIMEOUT_SECONDS = 30.0


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
# Table-valued pragma functions (``SELECT * FROM pragma_table_info('models')``) make SQLite
# report a read of its schema table as SQLITE_UPDATE on these names. Real writes to them stay
# impossible: SQLite refuses them without PRAGMA writable_schema (denied), and the connection
# is mode=ro and query_only.
_SQLITE_SCHEMA_TABLES = {"sqlite_master", "sqlite_schema", "sqlite_temp_master", "sqlite_temp_schema"}


def run_readonly_query(
    context: RegistryContext, query: str, *, limit: int | None = 1000, timeout_seconds: float | None = DEFAULT_TIMEOUT_SECONDS
) -> QueryResult:
    """Run one SQL statement where the database prevents writes.

    SQLite: the file is opened with ``mode=ro``, ``PRAGMA query_only=ON``, inside a
    transaction, with an authorizer that only permits reads. PostgreSQL: a ``READ ONLY``
    transaction with a statement timeout, the statement executed by the registry's
    query function as its reader role (``SELECT`` on the registry's tables and views,
    nothing else; set up by ``cfreg init``), rolled back at the end.

    Args:
        context: the opened registry.
        query: one SQL statement that returns rows.
        limit: at most this many rows are returned (``truncated`` tells whether more existed).
        timeout_seconds: cancel the statement after this long (None: no limit).

    Raises:
        ReadOnlyQueryError: the statement tried to write or to use a privilege the reader lacks.
        QueryTimeoutError: the statement ran past ``timeout_seconds``.
        ReadOnlySqlUnavailableError: PostgreSQL registry whose reader role was never set up
            (or was altered); the message says how to enable it.
        InvalidArgumentError: empty, several statements, or the database rejected it.
    """
    if not isinstance(query, str) or not query.strip():
        raise InvalidArgumentError("the SQL query is empty; give one SELECT statement")
    if "\x00" in query:
        raise InvalidArgumentError("the SQL query contains a NUL character")
    if limit is not None and limit < 1:
        raise InvalidArgumentError(f"limit must be >= 1, got {limit}")
    if timeout_seconds is not None and not timeout_seconds > 0:
        raise InvalidArgumentError(f"timeout_seconds must be > 0, got {timeout_seconds}")
    db_file = sqlite_file(context.database.url)
    if db_file is not None:
        return _sqlite_readonly(db_file, query, limit, timeout_seconds)
    if context.database.dialect == "postgresql":
        return _postgres_readonly(context, query, limit, timeout_seconds)
    raise InvalidArgumentError(f"read-only queries are supported on SQLite and PostgreSQL, not {context.database.dialect}")


def _fetch(cursor: Any, limit: int | None) -> QueryResult:
    columns = [str(d[0]) for d in (cursor.description or [])]
    if not columns:
        return QueryResult(columns, [])
    rows = cursor.fetchall() if limit is None else cursor.fetchmany(limit + 1)
    truncated = limit is not None and len(rows) > limit
    return QueryResult(columns, [tuple(r) for r in rows[:limit]], truncated)


def _sqlite_readonly(db_file: Path, query: str, limit: int | None, timeout_seconds: float | None) -> QueryResult:
    denied: list[str] = []
    deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds

    def authorizer(action: int, arg1: str | None, arg2: str | None, _db: str | None, _trigger: str | None) -> int:
        if action in _SQLITE_ALLOWED:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_PRAGMA and (arg1 or "").lower() in _SQLITE_READ_PRAGMAS:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_UPDATE and (arg1 or "").lower() in _SQLITE_SCHEMA_TABLES:
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
        if deadline is not None:
            connection.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
        try:
            cursor = connection.execute(query)
            return _fetch(cursor, limit)
        except (sqlite3.Warning, sqlite3.ProgrammingError) as exc:  # several statements
            raise InvalidArgumentError(f"give exactly one SQL statement ({exc})") from exc
        except sqlite3.Error as exc:
            if deadline is not None and "interrupted" in str(exc) and time.monotonic() > deadline:
                raise QueryTimeoutError(f"the query ran longer than {timeout_seconds:g} s and was cancelled") from exc
            if denied or "readonly" in str(exc).lower():
                what = denied[0] if denied else str(exc)
                raise ReadOnlyQueryError(f"refused: the query tries to write or change the database ({what}); `cfreg sql` is read-only") from exc
            raise InvalidArgumentError(f"query failed: {exc}") from exc
    finally:
        connection.set_authorizer(None)
        connection.set_progress_handler(None, 0)
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


# --------------------------------------------------------------------------- PostgreSQL


def _postgres_readonly(context: RegistryContext, query: str, limit: int | None, timeout_seconds: float | None) -> QueryResult:
    import psycopg
    from psycopg import sql
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    from .pg_readonly import query_function

    # A private, unpooled connection: nothing the query does can leak into the registry's pool.
    engine = create_engine(context.database.url, poolclass=NullPool)
    if engine.dialect.driver != "psycopg":
        engine.dispose()
        raise InvalidArgumentError(f"`cfreg sql` on PostgreSQL needs the psycopg (3) driver, not {engine.dialect.driver}")
    try:
        with engine.connect() as connection:
            raw: Any = connection.connection.driver_connection
            try:
                with raw.cursor() as cursor:
                    cursor.execute("SET TRANSACTION READ ONLY")
                    function = query_function(cursor)
                    columns, types = _describe(raw, query)
                    if timeout_seconds is not None:
                        timeout = str(max(1, round(timeout_seconds * 1000)))
                        cursor.execute("SELECT set_config('statement_timeout', %s, true)", (timeout,))
                    cursor.execute(sql.SQL("SELECT * FROM {}(%s, %s)").format(function),
                                   (query, None if limit is None else limit + 1))
                    rows = [_decode_record(text, types, raw) for (text,) in cursor.fetchall()]
            except psycopg.Error as exc:
                raise _postgres_error(exc, timeout_seconds) from exc
            finally:
                raw.rollback()
    finally:
        engine.dispose()
    truncated = limit is not None and len(rows) > limit
    return QueryResult(columns, rows[:limit] if limit is not None else rows, truncated)


def _describe(raw: Any, query: str) -> tuple[list[str], list[int]]:
    """Column names and type oids of ``query``: parsed (not run) as an unnamed prepared statement.

    Parsing also refuses several statements ("cannot insert multiple commands into a
    prepared statement"). Nothing is executed.
    """
    from psycopg import errors, pq

    encoding = raw.info.encoding
    pgconn = raw.pgconn
    result = pgconn.prepare(b"", query.encode(encoding))
    if result.status != pq.ExecStatus.COMMAND_OK:
        raise errors.error_from_result(result, encoding=encoding)
    description = pgconn.describe_prepared(b"")
    if description.status != pq.ExecStatus.COMMAND_OK:
        raise errors.error_from_result(description, encoding=encoding)
    names = [(description.fname(i) or b"?column?").decode(encoding) for i in range(description.nfields)]
    return names, [description.ftype(i) for i in range(description.nfields)]


def _decode_record(text: str, types: list[int], raw: Any) -> tuple[Any, ...]:
    """One row, from the text form of a record (``(1,"a b",,...)``), loaded with each column's type."""
    from psycopg import pq
    from psycopg.adapt import Transformer

    if not types:
        return ()
    fields = _split_record(text)
    if len(fields) != len(types):
        raise InvalidArgumentError(f"query failed: a row has {len(fields)} fields but the query describes {len(types)} columns")
    transformer = Transformer(raw)
    transformer.set_loader_types(types, pq.Format.TEXT)
    encoding = raw.info.encoding
    return transformer.load_sequence([None if f is None else f.encode(encoding) for f in fields])


def _split_record(text: str) -> list[str | None]:
    """The fields of PostgreSQL's record text output; an empty unquoted field is NULL."""
    body, index = text[1:-1], 0
    fields: list[str | None] = []
    while True:
        if index >= len(body) or body[index] == ",":
            fields.append(None)
        else:
            chars: list[str] = []
            while index < len(body) and body[index] != ",":
                char = body[index]
                if char == '"':
                    index += 1
                    while index < len(body):
                        char = body[index]
                        if char == '"' and body[index + 1:index + 2] == '"':
                            chars.append('"')
                            index += 2
                        elif char == '"':
                            index += 1
                            break
                        elif char == "\\":
                            chars.append(body[index + 1])
                            index += 2
                        else:
                            chars.append(char)
                            index += 1
                elif char == "\\":
                    chars.append(body[index + 1])
                    index += 2
                else:
                    chars.append(char)
                    index += 1
            fields.append("".join(chars))
        if index >= len(body):
            return fields
        index += 1  # the comma


_PG_REFUSED = {
    "25006": "it tries to write",  # read_only_sql_transaction
    "42501": "it needs a privilege the registry's reader role does not have",  # insufficient_privilege
    "42P11": "only one statement that returns rows can run (SELECT, WITH, VALUES, TABLE)",  # invalid_cursor_definition
    "0A000": "it uses a feature the read-only query cannot",  # feature_not_supported
}


def _postgres_error(exc: Exception, timeout_seconds: float | None) -> Exception:
    """A typed error for a database error of the read-only query."""
    sqlstate = getattr(exc, "sqlstate", None)
    diag = getattr(exc, "diag", None)
    message = " ".join(((diag.message_primary if diag else None) or str(exc)).split())
    if sqlstate == "57014":  # query_canceled: the statement timeout
        limit = f"{timeout_seconds:g} s" if timeout_seconds is not None else "the server's statement_timeout"
        return QueryTimeoutError(f"the query ran longer than {limit} and was cancelled")
    if sqlstate == "42601" and "multiple commands" in message:
        return InvalidArgumentError("give exactly one SQL statement")
    if sqlstate in _PG_REFUSED:
        return ReadOnlyQueryError(f"refused: {_PG_REFUSED[sqlstate]} ({message}); `cfreg sql` is read-only")
    return InvalidArgumentError(f"query failed: {message}")

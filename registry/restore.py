"""Restoring a registry from a backup (either kind :mod:`registry.backup` writes) or a plain ``registry.json``.

:func:`restore_registry` reads the file, checks it completely (every value as the
API would check it: a full backup holding ``NaN`` or a number too large for its
column is refused), then replaces the registry's tables in one transaction with an
audit ``RESTORE`` event appended after the restored audit trail. A plain
``registry.json`` (ours or the original registry's) goes through the importer's
parser and writers instead (:mod:`registry.importer`).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    Integer,
    String,
    Text,
    false,
    func,
    insert,
    select,
)
from sqlalchemy.exc import DatabaseError as SQLAlchemyDatabaseError
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session

from . import audit
from .backup import BACKUP_FORMAT_VERSION, backup_registry, dump_tables
from .backup_files import MAX_BACKUP_BYTES
from .context import RegistryContext
from .database_urls import SQLITE_SUFFIXES
from .engines import make_engine
from .errors import (
    ImportFormatError,
    InvalidArgumentError,
    NonFiniteNumberError,
    RegistryError,
    RegistryNotFoundError,
    SchemaVersionError,
    UnsafeFileError,
)
from .fsio import import_errors, open_regular_file, read_json_strict
from .importer.parse import BACKUP_FORMAT, ParsedRegistry, parse_documents, short_repr
from .importer.store import clear_registry, insert_parsed
from .locations import locate
from .models import Base, Settings, UTCDateTime
from .opening import open_context
from .pg_statistics import refresh_statistics
from .schema import ensure_schema
from .transactions import Database
from .validation import finite_real, to_jsonable, validate_identifier, validate_metric_name

logger = logging.getLogger(__name__)

# Settings columns a restore takes from the backup; generation and root stay those of the live database.
RESTORED_SETTINGS = (
    "current_model_id", "current_selection_id", "current_embeddings_version", "selection_criteria",
    "registry_version", "created_at", "extra",
)
# Value ranges of the integer column types (INTEGER is 32-bit on PostgreSQL).
_INTEGER_RANGE = (-(2**31), 2**31 - 1)
_BIGINTEGER_RANGE = (-(2**63), 2**63 - 1)
# JSON columns holding a list; every other JSON column holds an object.
_LIST_COLUMNS = {("bert_embeddings", "text_fields_used")}


def restore_registry(
    backup_path: str | os.PathLike[str],
    registry_path: str | os.PathLike[str],
    create_current_backup: bool = True,
    *,
    database_url: str | None = None,
) -> bool:
    """Replace the registry's content with a backup, in one transaction.

    Accepts a JSON backup, a SQLite ``.db`` backup, or a plain ``registry.json``
    (ours or the original registry's). Full backups bring back every table, the
    audit trail and selection history included; a plain ``registry.json`` brings
    back models, metrics, current best, A/B test and embeddings, and the live audit
    trail is kept. Either way an audit ``RESTORE`` event is appended and
    ``registry.json`` is exported again. The registry's generation keeps
    increasing, so loaders notice the change.

    Args:
        backup_path: the backup to restore.
        registry_path: the registry to overwrite (created if it does not exist).
        create_current_backup: first back up the registry as it is now.
        database_url: the registry's database (as for ``ModelRegistry``).

    Returns:
        True.

    Raises:
        FileNotFoundError: the backup does not exist.
        ImportFormatError: the backup is damaged or not a registry backup (nothing changes).
        SchemaVersionError: the backup comes from a newer version of this package.
    """
    source = Path(backup_path)
    if not source.exists():
        raise FileNotFoundError(f"backup {source} does not exist; list_backups() shows the available ones")
    with import_errors(source.name):
        tables, parsed = _read_backup(source)
    exists = not locate(registry_path, database_url).database_missing
    current_backup: str | None = None
    if create_current_backup and exists:
        try:
            current_backup = backup_registry(registry_path, database_url=database_url)
        except RegistryNotFoundError:
            pass  # an empty PostgreSQL schema: nothing to keep
    context = _open_for_restore(registry_path, database_url)

    def work(session: Session) -> bool:
        if tables is not None:
            _replace_tables(session, tables, source.name)
        else:
            assert parsed is not None
            clear_registry(session)
            insert_parsed(session, parsed)
        counts = {name: len(rows) for name, rows in (tables or {}).items()}
        audit.record(
            session, "RESTORE", source.name,
            f"from={source.name} kind={'full' if tables is not None else 'registry.json'}",
            {"backup": str(source.absolute()), "full": tables is not None, "rows": counts},
        )
        return True

    try:
        context.mutate(work)  # exports registry.json / bert_registry.json after the commit
    except ImportFormatError:
        if current_backup is not None:  # nothing changed: that backup is a copy of the current state
            Path(current_backup).unlink(missing_ok=True)
        raise
    refresh_statistics(context.database.engine)  # a bulk load: plan the next queries from its statistics
    return True


# --------------------------------------------------------------------------- reading backups


def _read_backup(source: Path) -> tuple[dict[str, list[dict[str, Any]]] | None, ParsedRegistry | None]:
    """``(tables, None)`` for a full backup, ``(None, parsed)`` for a plain registry.json."""
    if source.suffix.lower() in SQLITE_SUFFIXES:
        return _decode_tables(_read_sqlite_tables(source), source.name), None
    try:
        document = read_json_strict(source, max_bytes=MAX_BACKUP_BYTES, allow_non_finite=False)
    except ImportFormatError as exc:
        if not isinstance(exc.__cause__, NonFiniteNumberError):
            raise
        # Only the original registry's plain registry.json holds NaN/Infinity (its metrics); we never write them.
        document = read_json_strict(source, max_bytes=MAX_BACKUP_BYTES, allow_non_finite=True)
        if _is_full_backup(document):
            raise ImportFormatError(
                f"{source.name}: a full backup never contains NaN/Infinity ({exc.__cause__}); the file is damaged"
            ) from exc
    if _is_full_backup(document):
        backup = document["backup"]
        version = backup.get("format_version")
        if not isinstance(version, int) or version > BACKUP_FORMAT_VERSION:
            raise SchemaVersionError(
                f"{source.name}: backup format version {version!r} is newer than this package understands "
                f"({BACKUP_FORMAT_VERSION}); upgrade cf-model-registry to restore it"
            )
        if not isinstance(document.get("tables"), dict):
            raise ImportFormatError(f"{source.name}: the backup has no 'tables' object; it is damaged")
        return _decode_tables(document["tables"], source.name), None
    return None, parse_documents(document, source=source.name)


def _is_full_backup(document: Any) -> bool:
    backup = document.get("backup") if isinstance(document, dict) else None
    return isinstance(backup, dict) and backup.get("format") == BACKUP_FORMAT


def _read_sqlite_tables(source: Path) -> dict[str, list[dict[str, Any]]]:
    """Rows of a SQLite backup, read from a temporary copy migrated to the current schema."""
    with tempfile.TemporaryDirectory(prefix="cfreg-restore-") as scratch:
        copy = Path(scratch) / "backup.db"
        _copy_bounded(source, copy)
        url = f"sqlite:///{copy}"
        database: Database | None = None
        try:
            database = Database(url=url, engine=make_engine(url))
            ensure_schema(database, create=False)
            return database.read(dump_tables)
        except RegistryNotFoundError as exc:
            raise ImportFormatError(f"{source.name} holds no registry tables; it is not a registry backup") from exc
        except (SQLAlchemyDatabaseError, sqlite3.DatabaseError) as exc:
            raise ImportFormatError(f"{source.name} is not a readable SQLite registry backup ({exc})") from exc
        except RegistryError as exc:
            if isinstance(exc, SchemaVersionError):
                raise
            raise ImportFormatError(f"{source.name} could not be read as a registry backup ({exc})") from exc
        finally:
            if database is not None:
                database.dispose()


def _copy_bounded(source: Path, target: Path) -> None:
    """Copy a backup file that must be a regular file of at most ``MAX_BACKUP_BYTES``."""
    try:
        with open_regular_file(source, max_bytes=MAX_BACKUP_BYTES) as reader, open(target, "wb") as writer:
            # The size was checked on the open file; a file growing meanwhile is cut off and refused.
            remaining = MAX_BACKUP_BYTES + 1
            while remaining and (block := reader.read(min(1 << 20, remaining))):
                writer.write(block)
                remaining -= len(block)
            if not remaining:
                raise ImportFormatError(f"{source.name}: grew beyond the backup limit of {MAX_BACKUP_BYTES} bytes while read")
    except UnsafeFileError as exc:
        raise ImportFormatError(f"{exc}; give a registry backup file") from exc


def _decode_tables(raw: Any, source: str) -> dict[str, list[dict[str, Any]]]:
    """Check every row against the table definitions and convert ISO strings back to datetimes."""
    if not isinstance(raw, dict):
        raise ImportFormatError(f"{source}: 'tables' must be an object of table name -> rows")
    known = {table.name: table for table in Base.metadata.sorted_tables}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ImportFormatError(f"{source}: unknown tables {unknown}; the backup comes from another schema")
    decoded: dict[str, list[dict[str, Any]]] = {}
    for name, table in known.items():
        rows = raw.get(name, [])
        if not isinstance(rows, list):
            raise ImportFormatError(f"{source}: table {name} must be a list of rows")
        columns = {column.name: column for column in table.columns}
        decoded[name] = []
        for index, row in enumerate(rows):
            where = f"{source}: {name} row {index + 1}"
            if not isinstance(row, dict):
                raise ImportFormatError(f"{where} must be an object")
            extra = sorted(set(row) - set(columns))
            if extra:
                raise ImportFormatError(f"{where} has unknown columns {extra}")
            decoded[name].append({key: _decode_value(name, columns[key], value, where) for key, value in row.items()})
    settings = decoded.get(Settings.__tablename__, [])
    if len(settings) != 1:
        raise ImportFormatError(f"{source}: expected exactly one settings row, found {len(settings)}")
    _check_identifiers(decoded, source)
    return decoded


def _decode_value(table: str, column: Any, value: Any, where: str) -> Any:
    """``value`` as the column stores it, checked as the API checks it; ImportFormatError otherwise.

    Everything a restore inserts passes here before its transaction starts, so a
    value the database or the JSON export would refuse (NaN, a number too large for
    its column, text that is not valid Unicode) changes nothing.
    """
    if value is None:
        if not column.nullable and not column.primary_key and column.default is None:
            raise ImportFormatError(f"{where}: column {column.name} may not be null")
        return None
    kind = column.type
    problem = None
    if isinstance(kind, UTCDateTime):
        if not isinstance(value, str):
            problem = "an ISO timestamp string"
        else:
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                problem = "an ISO timestamp string"
            else:
                return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    elif isinstance(kind, (Integer, BigInteger)):
        low, high = _BIGINTEGER_RANGE if isinstance(kind, BigInteger) else _INTEGER_RANGE
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            problem = f"an integer from {low} to {high}"
    elif isinstance(kind, Float):
        number = finite_real(value)
        if number is None:
            problem = "a finite number"
        else:
            return number
    elif isinstance(kind, (String, Text)):
        length = getattr(kind, "length", None)
        if not isinstance(value, str) or (length is not None and len(value) > length) or "\x00" in value:
            # NUL: PostgreSQL cannot store it, and the API never accepts it.
            problem = (f"a string of at most {length} characters" if length is not None else "a string") + " without NUL"
        else:
            try:
                return to_jsonable(value, f"column {column.name}")  # lone surrogates would break the export
            except InvalidArgumentError as exc:
                raise ImportFormatError(f"{where}: {exc}") from exc
    elif isinstance(kind, JSON):
        shape = list if (table, column.name) in _LIST_COLUMNS else dict
        if not isinstance(value, shape):
            problem = "a JSON array" if shape is list else "a JSON object"
        else:
            try:
                return to_jsonable(value, f"column {column.name}")
            except InvalidArgumentError as exc:  # NaN/Infinity, text that is not valid Unicode, too deep
                raise ImportFormatError(f"{where}: {exc}") from exc
    if problem:
        raise ImportFormatError(f"{where}: column {column.name} must be {problem}, got {short_repr(value)}")
    return value


def _check_identifiers(tables: dict[str, list[dict[str, Any]]], source: str) -> None:
    try:
        for row in tables.get("models", []):
            validate_identifier(row.get("model_id"), "model_id")
            validate_identifier(row.get("model_type"), "model_type")
        for row in tables.get("bert_embeddings", []):
            validate_identifier(row.get("version"), "embeddings version")
        for row in tables.get("model_metrics", []):
            validate_metric_name(row.get("name"))
    except InvalidArgumentError as exc:
        raise ImportFormatError(f"{source}: {exc}") from exc


# --------------------------------------------------------------------------- restoring


def _open_for_restore(registry_path: str | os.PathLike[str], database_url: str | None) -> RegistryContext:
    try:
        return open_context(registry_path, database_url=database_url, auto_create=True)
    except ImportFormatError as exc:
        # A new database tried to import a damaged registry.json beside it; the restore replaces it anyway.
        logger.warning("ignoring the failed legacy import before the restore: %s", exc)
        return open_context(registry_path, database_url=database_url, auto_create=True, import_legacy=False)


def _replace_tables(session: Session, tables: dict[str, list[dict[str, Any]]], source: str) -> None:
    """Delete everything and insert the backup's rows (inside the caller's transaction)."""
    clear_registry(session, audit_events=True)
    settings_name = Settings.__tablename__
    for table in Base.metadata.sorted_tables:
        rows = tables.get(table.name) or []
        if table.name == settings_name or not rows:
            continue
        try:
            session.execute(insert(table), rows)
        except StatementError as exc:  # a DatabaseError, or a value the driver could not convert
            raise ImportFormatError(f"{source}: the backup's {table.name} rows do not fit the registry: {exc.orig}") from exc
    backup_settings = tables[settings_name][0]
    settings = session.get(Settings, 1)
    assert settings is not None
    for name in RESTORED_SETTINGS:
        if name in backup_settings:
            setattr(settings, name, backup_settings[name])
    try:
        session.flush()
    except StatementError as exc:
        raise ImportFormatError(f"{source}: the settings row does not fit the backup's own tables: {exc.orig}") from exc
    _reset_sequences(session)


def _reset_sequences(session: Session) -> None:
    """PostgreSQL: move id sequences past the restored ids (SQLite needs nothing)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    for table in Base.metadata.sorted_tables:
        column = table.autoincrement_column
        if column is None or table.name == Settings.__tablename__:
            continue
        # Built as an expression (identifiers quoted by SQLAlchemy), not as formatted text.
        highest = select(func.coalesce(func.max(column), 0)).scalar_subquery()
        session.execute(select(func.setval(func.pg_get_serial_sequence(table.name, column.name), highest + 1, false())))

"""Backups of a registry and restores from them.

Two kinds of backup, chosen by the path given:

* ``registry.json`` (any ``.json`` path): one JSON file in the ``registry.json``
  schema, plus ``bert_embeddings`` (the BERT entries), ``backup`` (what, when,
  which generation) and ``tables`` (every row of every table, audit events and
  selection history included). Works on SQLite and PostgreSQL. The snapshot is
  read in one transaction (REPEATABLE READ on PostgreSQL), so it is consistent.
* ``registry.db`` (a SQLite path): a copy made with SQLite's online backup API
  in one step, checked with ``PRAGMA integrity_check``.

Names are ``{stem}_backup_{YYYYMMDD_HHMMSS_ffffff}{suffix}`` (UTC) in the folder
of the registry's ``registry.json`` (whether the registry is named by its
``registry.json``, its ``registry.db`` or its folder) or in ``backup_dir``; a name
is never reused (``_2``, ``_3``... on a collision) and a backup appears whole or
not at all.

:func:`restore_registry` reads either kind (or a plain ``registry.json``), checks
it completely (every value as the API would check it: a full backup holding
``NaN`` or a number too large for its column is refused), then replaces the
registry's tables in one transaction with an audit ``RESTORE`` event appended after
the restored audit trail.
"""

from __future__ import annotations

import json
import logging
import os
import re
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
    text,
)
from sqlalchemy.exc import DatabaseError as SQLAlchemyDatabaseError
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session

from .. import audit, export, legacy
from ..backup_files import MAX_BACKUP_BYTES, copy_to_backup, link_unique, publish_unique
from ..context import RegistryContext
from ..db import (
    SQLITE_SUFFIXES,
    Database,
    ensure_schema,
    make_engine,
    resolve_database_url,
    sqlite_file,
)
from ..errors import (
    ExportError,
    ImportFormatError,
    InvalidArgumentError,
    RegistryError,
    RegistryNotFoundError,
    SchemaVersionError,
    UnsafeFileError,
)
from ..fsio import TEMP_SUFFIX, open_regular_file
from ..models import Base, Settings, UTCDateTime, utcnow
from ..opening import json_locations, open_context
from ..validation import (
    finite_real,
    to_jsonable,
    validate_identifier,
    validate_metric_name,
)

logger = logging.getLogger(__name__)

BACKUP_FORMAT = legacy.BACKUP_FORMAT
BACKUP_FORMAT_VERSION = 1
# Settings columns a restore takes from the backup; generation and root stay those of the live database.
RESTORED_SETTINGS = (
    "current_model_id", "current_selection_id", "current_embeddings_version", "selection_criteria",
    "registry_version", "created_at", "extra",
)
_NAME_PATTERN = r"^{stem}_backup_(\d{{8}}_\d{{6}})(?:_(\d{{6}}))?(?:_(\d+))?({suffixes})$"
# Value ranges of the integer column types (INTEGER is 32-bit on PostgreSQL).
_INTEGER_RANGE = (-(2**31), 2**31 - 1)
_BIGINTEGER_RANGE = (-(2**63), 2**63 - 1)
# JSON columns holding a list; every other JSON column holds an object.
_LIST_COLUMNS = {("bert_embeddings", "text_fields_used")}


# --------------------------------------------------------------------------- public API


def backup_registry(
    registry_path: str | os.PathLike[str],
    backup_dir: str | os.PathLike[str] | None = None,
    *,
    database_url: str | None = None,
) -> str:
    """Write a consistent full backup of the registry; returns the backup's path.

    Args:
        registry_path: the registry as ``ModelRegistry`` takes it. A ``.json`` path
            gives a JSON backup (any backend); a ``.db``/``.sqlite`` path gives a
            SQLite copy of that database file.
        backup_dir: where to write (created if missing); default: the folder of the
            registry's ``registry.json`` (:func:`default_backup_dir`).
        database_url: the registry's database (default ``$CFREG_DATABASE_URL``, else
            ``registry.db`` beside ``registry.json``).

    Returns:
        ``{backup_dir}/{stem}_backup_{YYYYMMDD_HHMMSS_ffffff}{suffix}`` (relative when
        the arguments were).

    Raises:
        RegistryNotFoundError: there is no registry at that location.
        InvalidArgumentError: a ``.db`` backup of a registry that is not on SQLite.
        ExportError: the backup could not be written (nothing is left behind).
    """
    path = Path(registry_path)
    folder = Path(backup_dir) if backup_dir is not None else default_backup_dir(path)
    if path.suffix.lower() in SQLITE_SUFFIXES:
        db_file = sqlite_file(resolve_database_url(path, database_url))
        if db_file is None:
            raise InvalidArgumentError(
                f"a .db backup copies a SQLite file, but the registry {path} uses {database_url or 'CFREG_DATABASE_URL'}; "
                "back it up to a .json path instead"
            )
        if not db_file.exists():
            raise RegistryNotFoundError(f"no registry database at {db_file}; nothing to back up")
        target = _sqlite_backup(db_file, folder, path.stem, path.suffix)
    else:
        json_path, _ = json_locations(path)
        stem = path.stem if path.suffix.lower() == ".json" else json_path.stem
        db_file = sqlite_file(resolve_database_url(json_path, database_url))
        if db_file is not None and not db_file.exists():
            if json_path.is_file():
                # A registry.json without a database: the original JSON registry. Copy it as it is.
                return copy_to_backup(path if path.suffix.lower() == ".json" else json_path, folder)
            raise RegistryNotFoundError(f"no registry at {json_path} (neither {db_file.name} nor registry.json exists)")
        context = open_context(json_path, database_url=database_url, auto_create=False, export_json=False)
        document = context.read(_snapshot)
        document["backup"]["database"] = context.database.describe()
        target = publish_unique(_render(document), folder, stem, ".json")
    logger.info("registry backup written to %s", target)
    return str(folder / target.name)


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
    with legacy.import_errors(source.name):
        tables, parsed = _read_backup(source)
    db_file = sqlite_file(resolve_database_url(registry_path, database_url))
    exists = db_file is None or db_file.exists()
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
            legacy.clear_registry(session)
            legacy.insert_parsed(session, parsed)
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
    return True


def list_backups(registry_path: str | os.PathLike[str], backup_dir: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """Backups of a registry, newest first.

    Returns:
        One dict per backup: ``path``, ``name``, ``size_bytes``, ``created_at``
        (ISO, UTC, from the name; the file time for renamed files) and ``kind``
        (``"json"`` or ``"sqlite"``).
    """
    path = Path(registry_path)
    folder = Path(backup_dir) if backup_dir is not None else default_backup_dir(path)
    stem = path.stem if path.suffix else "registry"
    suffixes = "|".join(re.escape(s) for s in (".json", *SQLITE_SUFFIXES))
    pattern = re.compile(_NAME_PATTERN.format(stem=re.escape(stem), suffixes=suffixes))
    entries: list[tuple[tuple[datetime, int], dict[str, Any]]] = []
    try:
        candidates = list(folder.glob(f"{stem}_backup_*"))
    except OSError:
        return []
    for candidate in candidates:
        match = pattern.match(candidate.name)
        if match is None or not candidate.is_file():
            continue
        stat = candidate.stat()
        try:
            moment = datetime.strptime(match.group(1) + (match.group(2) or "000000"), "%Y%m%d_%H%M%S%f")
        except ValueError:
            moment = datetime.fromtimestamp(stat.st_mtime, UTC).replace(tzinfo=None)
        counter = int(match.group(3) or 1)
        entries.append((
            (moment, counter),
            {
                "path": str(folder / candidate.name),
                "name": candidate.name,
                "size_bytes": stat.st_size,
                "created_at": moment.isoformat(),
                "kind": "json" if match.group(4) == ".json" else "sqlite",
            },
        ))
    entries.sort(key=lambda item: item[0], reverse=True)
    return [entry for _, entry in entries]


def default_backup_dir(registry_path: str | os.PathLike[str]) -> Path:
    """Where backups of a registry go by default: the folder of its ``registry.json``.

    The same for every way of naming the registry (``.../registry.json``,
    ``.../registry.db``, or the folder itself), as ``context.json_locations`` places
    the files; relative when ``registry_path`` is.
    """
    path = Path(registry_path).expanduser()
    folder = json_locations(path)[0].parent
    return folder if path.is_absolute() else Path(os.path.relpath(folder))


def _sqlite_backup(db_file: Path, folder: Path, stem: str, suffix: str) -> Path:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(dir=folder, prefix=f".{stem}_backup.", suffix=TEMP_SUFFIX)
        os.close(fd)
    except OSError as exc:
        raise ExportError(f"could not create a backup in {folder}: {exc}") from exc
    temp = Path(temp_name)
    try:
        source = sqlite3.connect(db_file, timeout=30)
        try:
            target = sqlite3.connect(temp)
            try:
                # One step: a stepped backup restarts whenever another process writes meanwhile.
                source.backup(target, pages=-1)
                target.execute("PRAGMA journal_mode=DELETE")  # a self-contained single file
                result = target.execute("PRAGMA integrity_check").fetchone()[0]
                if result != "ok":
                    raise ExportError(f"the backup copy of {db_file} failed integrity_check: {result}")
            finally:
                target.close()
        finally:
            source.close()
        with open(temp, "rb+") as handle:
            os.fsync(handle.fileno())
        return link_unique(temp, folder, stem, suffix)
    except (OSError, sqlite3.Error) as exc:
        raise ExportError(f"could not back up {db_file} to {folder}: {exc}") from exc
    finally:
        temp.unlink(missing_ok=True)
        for leftover in (Path(f"{temp}-journal"), Path(f"{temp}-wal"), Path(f"{temp}-shm")):
            leftover.unlink(missing_ok=True)


# --------------------------------------------------------------------------- snapshot


def _snapshot(session: Session) -> dict[str, Any]:
    """registry.json + BERT entries + every table, from one consistent read."""
    if session.get_bind().dialect.name == "postgresql":
        # READ COMMITTED would give each query its own snapshot.
        session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
    document, generation = export.build_registry_document(session)
    bert_document, _ = export.build_bert_document(session)
    if bert_document["embeddings"]:
        document["bert_embeddings"] = bert_document["embeddings"]
    document["backup"] = {
        "format": BACKUP_FORMAT,
        "format_version": BACKUP_FORMAT_VERSION,
        "created_at": utcnow().isoformat(),
        "generation": generation,
        "current_embeddings": bert_document["current_best"],
        "schema_revision": _schema_revision(session),
    }
    document["tables"] = dump_tables(session)
    return document


def _schema_revision(session: Session) -> list[str]:
    from alembic.runtime.migration import MigrationContext

    return sorted(MigrationContext.configure(session.connection()).get_current_heads())


def dump_tables(session: Session) -> dict[str, list[dict[str, Any]]]:
    """Every row of every registry table as JSON-ready dicts (times as ISO strings)."""
    tables: dict[str, list[dict[str, Any]]] = {}
    for table in Base.metadata.sorted_tables:
        statement = select(table).order_by(*table.primary_key.columns)
        tables[table.name] = [
            {key: value.isoformat() if isinstance(value, datetime) else value for key, value in row.items()}
            for row in session.execute(statement).mappings()
        ]
    return tables


def _render(document: dict[str, Any]) -> str:
    """The registry part as export renders it, then one table row per line (C encoder throughout)."""
    tables = document.pop("tables")
    head = export.render_document(document, "models").rstrip()
    assert head.endswith("}")
    encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode
    blocks = []
    for name, rows in tables.items():
        body = ",\n".join(f"      {encode(row)}" for row in rows)
        blocks.append(f"    {encode(name)}: [\n{body}\n    ]" if rows else f"    {encode(name)}: []")
    return head[:-1].rstrip() + ',\n  "tables": {\n' + ",\n".join(blocks) + "\n  }\n}\n"


# --------------------------------------------------------------------------- reading backups


def _read_backup(source: Path) -> tuple[dict[str, list[dict[str, Any]]] | None, legacy.ParsedRegistry | None]:
    """``(tables, None)`` for a full backup, ``(None, parsed)`` for a plain registry.json."""
    if source.suffix.lower() in SQLITE_SUFFIXES:
        return _decode_tables(_read_sqlite_tables(source), source.name), None
    try:
        document = legacy.read_json_strict(source, max_bytes=MAX_BACKUP_BYTES, allow_non_finite=False)
    except ImportFormatError as exc:
        if not isinstance(exc.__cause__, legacy.NonFiniteNumberError):
            raise
        # Only the original registry's plain registry.json holds NaN/Infinity (its metrics); we never write them.
        document = legacy.read_json_strict(source, max_bytes=MAX_BACKUP_BYTES, allow_non_finite=True)
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
    return None, legacy.parse_documents(document, source=source.name)


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
        raise ImportFormatError(f"{where}: column {column.name} must be {problem}, got {legacy.short_repr(value)}")
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
    legacy.clear_registry(session, audit_events=True)
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

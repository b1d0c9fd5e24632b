"""Backups of a registry: a consistent JSON snapshot of every table, or a SQLite copy.

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
not at all. :mod:`registry.restore` reads them back.
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

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from . import documents
from .backup_files import copy_to_backup, link_unique, publish_unique
from .database_urls import SQLITE_SUFFIXES, resolve_database_url, sqlite_file
from .errors import ExportError, InvalidArgumentError, RegistryNotFoundError
from .fsio import TEMP_SUFFIX
from .importer.parse import BACKUP_FORMAT
from .locations import json_locations, locate
from .models import Base, utcnow
from .opening import open_context

logger = logging.getLogger(__name__)

BACKUP_FORMAT_VERSION = 1
_NAME_PATTERN = r"^{stem}_backup_(\d{{8}}_\d{{6}})(?:_(\d{{6}}))?(?:_(\d+))?({suffixes})$"


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
        location = locate(path, database_url)
        json_path = location.json_path
        stem = path.stem if path.suffix.lower() == ".json" else json_path.stem
        if location.json_only:
            # A registry.json without a database: the original JSON registry. Copy it as it is.
            return copy_to_backup(path if path.suffix.lower() == ".json" else json_path, folder)
        db_file = location.sqlite_file
        if location.database_missing and db_file is not None:
            raise RegistryNotFoundError(f"no registry at {json_path} (neither {db_file.name} nor registry.json exists)")
        context = open_context(json_path, database_url=database_url, auto_create=False, export_json=False)
        document = context.read(_snapshot)
        document["backup"]["database"] = context.database.describe()
        target = publish_unique(_render(document), folder, stem, ".json")
    logger.info("registry backup written to %s", target)
    return str(folder / target.name)


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
    document, generation = documents.build_registry_document(session)
    bert_document, _ = documents.build_bert_document(session)
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
    head = documents.render_document(document, "models").rstrip()
    assert head.endswith("}")
    encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode
    blocks = []
    for name, rows in tables.items():
        body = ",\n".join(f"      {encode(row)}" for row in rows)
        blocks.append(f"    {encode(name)}: [\n{body}\n    ]" if rows else f"    {encode(name)}: []")
    return head[:-1].rstrip() + ',\n  "tables": {\n' + ",\n".join(blocks) + "\n  }\n}\n"

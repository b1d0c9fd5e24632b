"""Snapshots for "bad input leaves the database and files unchanged" assertions.

``snapshot(registry, root)`` captures every table's rows (ordered by primary key),
their counts, ``settings.generation``, and the content hash of every file under
``root`` (SQLite database files and lock files excepted: their bytes are the
database's business, the table dump is what matters). Two snapshots compare equal
only if nothing a user could observe changed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from sqlalchemy import select

from registry.models import Base

SKIPPED_SUFFIXES = (".db", ".db-wal", ".db-shm", ".lock")


def table_rows(registry: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Every table of the registry's database as a list of row tuples, ordered by primary key."""
    def work(session: Any) -> dict[str, list[tuple[Any, ...]]]:
        return {
            table.name: [tuple(row) for row in session.execute(select(table).order_by(*table.primary_key.columns))]
            for table in Base.metadata.sorted_tables
        }

    return registry.context.read(work)


def file_hashes(root: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``root`` (database and lock files excepted)."""
    hashes = {}
    for path in sorted(Path(root).rglob("*")):
        if path.is_file() and not path.name.endswith(SKIPPED_SUFFIXES):
            hashes[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


def snapshot(registry: Any, root: Path | None = None) -> dict[str, Any]:
    """Row counts, generation, full table dump and (when ``root`` is given) file hashes."""
    rows = table_rows(registry)
    settings = rows["settings"]
    state: dict[str, Any] = {
        "counts": {name: len(table) for name, table in rows.items()},
        "generation": registry.context.generation()[0] if settings else None,
        "tables": rows,
    }
    if root is not None:
        state["files"] = file_hashes(root)
    return state

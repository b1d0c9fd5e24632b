"""Where a registry lives: its two JSON files, its database URL, and whether that database exists.

One lookup for everything that must find a registry before opening it (backups, restores,
cleanups, the shared instances): a registry path may name ``registry.json``,
``bert_registry.json``, a SQLite file (``.db``/``.sqlite``) or the registry's folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .database_urls import resolve_database_url, sqlite_file

REGISTRY_JSON_NAME = "registry.json"
BERT_JSON_NAME = "bert_registry.json"


def json_locations(registry_path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``(registry.json, bert_registry.json)`` for a registry path.

    A ``.json`` path names one of the two files (the other sits beside it); a
    ``.db`` path or a folder puts both files beside it / inside it.
    """
    path = Path(registry_path).expanduser().absolute()
    if path.suffix.lower() == ".json":
        folder = path.parent
        if path.name == BERT_JSON_NAME:
            return folder / REGISTRY_JSON_NAME, path
        return path, folder / BERT_JSON_NAME
    folder = path.parent if path.suffix else path
    return folder / REGISTRY_JSON_NAME, folder / BERT_JSON_NAME


@dataclass(frozen=True)
class RegistryLocation:
    """A registry's files and database, found without opening anything."""

    json_path: Path
    bert_json_path: Path
    database_url: str

    @property
    def sqlite_file(self) -> Path | None:
        """The SQLite database file (None on a database server)."""
        return sqlite_file(self.database_url)

    @property
    def database_missing(self) -> bool:
        """True when the database is a SQLite file that does not exist (a server database is assumed to)."""
        db_file = self.sqlite_file
        return db_file is not None and not db_file.exists()

    @property
    def json_only(self) -> bool:
        """A ``registry.json`` with no database: the original JSON registry, not yet imported."""
        return self.database_missing and self.json_path.is_file()


def locate(registry_path: str | os.PathLike[str], database_url: str | None = None) -> RegistryLocation:
    """The location of the registry at ``registry_path`` (see :func:`registry.db.resolve_database_url`)."""
    json_path, bert_json_path = json_locations(registry_path)
    return RegistryLocation(json_path, bert_json_path, resolve_database_url(registry_path, database_url))

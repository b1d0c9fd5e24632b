"""Which database a registry uses: URL resolution, the recorded ``database_url.txt``, URL helpers.

Order of resolution: an explicit URL, ``$CFREG_DATABASE_URL``, the URL recorded in the
registry folder's ``database_url.txt``, then the SQLite file the registry path names.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from .defaults import ENV_DATABASE_URL
from .errors import InvalidArgumentError, RegistryError
from .fsio import atomic_write_text

logger = logging.getLogger(__name__)

# In a registry folder: the URL of its database when that is not the default registry.db.
DATABASE_URL_FILE = "database_url.txt"
DEFAULT_DATABASE_NAME = "registry.db"
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def resolve_database_url(registry_path: str | os.PathLike[str] | None, database_url: str | None = None) -> str:
    """Return the database URL for a registry.

    Order: explicit ``database_url``, then ``$CFREG_DATABASE_URL``, then the URL
    recorded in the registry folder's ``database_url.txt`` (see
    :func:`record_database_url`), then a SQLite file: the path itself when it ends in
    ``.db``/``.sqlite``, ``registry.db`` beside a ``registry.json``/``bert_registry.json``
    path, or inside a registry folder.
    """
    url = database_url or os.environ.get(ENV_DATABASE_URL)
    if url:
        return url
    if registry_path is None:
        raise RegistryError("no registry path and no database URL given")
    recorded = recorded_database_url(registry_folder(registry_path))
    return recorded or default_database_url(registry_path)


def registry_folder(registry_path: str | os.PathLike[str]) -> Path:
    """The folder of a registry: beside a ``.json``/``.db`` path, or the folder path itself."""
    path = Path(registry_path).expanduser()
    return path.parent if path.suffix else path


def default_database_url(registry_path: str | os.PathLike[str]) -> str:
    """The SQLite URL a registry path names by itself (no URL given, none recorded)."""
    path = Path(registry_path).expanduser()
    db_file = path if path.suffix.lower() in SQLITE_SUFFIXES else registry_folder(path) / DEFAULT_DATABASE_NAME
    return f"sqlite:///{db_file.resolve()}"


def recorded_database_url(folder: Path) -> str | None:
    """The URL in ``folder/database_url.txt`` (first line that is not blank or a ``#`` comment), or None."""
    try:
        text = (folder / DATABASE_URL_FILE).read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise RegistryError(f"cannot read {folder / DATABASE_URL_FILE}: {exc}") from exc
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            parse_url(line)  # a clear error for a damaged file
            return line
    return None


def same_database(first: str, second: str) -> bool:
    """Whether two URLs name the same database (passwords ignored; SQLite paths resolved)."""
    first_file, second_file = sqlite_file(first), sqlite_file(second)
    if first_file is not None or second_file is not None:
        return first_file is not None and second_file is not None and first_file.resolve() == second_file.resolve()
    return without_password(first) == without_password(second)


def without_password(url: str) -> str:
    """The URL with its password removed (not masked): safe to write to a file."""
    parsed = parse_url(url)
    return URL.create(parsed.drivername, parsed.username, None, parsed.host, parsed.port, parsed.database,
                      parsed.query).render_as_string(hide_password=False)


def record_database_url(registry_path: str | os.PathLike[str], url: str) -> Path | None:
    """Remember in the registry folder which database it uses, when that is not the default.

    Writes ``database_url.txt`` (atomically, never with a password: it comes from
    ``PGPASSWORD``, ``~/.pgpass`` or the URL given at run time), so that opening the
    folder without a URL finds the database. An existing file naming another database
    is left alone (a warning is logged). Returns the file written, or None.
    """
    folder = registry_folder(registry_path)
    if same_database(url, default_database_url(registry_path)):
        return None
    recorded = recorded_database_url(folder)
    if recorded is not None:
        if not same_database(recorded, url):
            logger.warning("%s names %s, not %s; left unchanged (edit or delete it to change the registry's database)",
                           folder / DATABASE_URL_FILE, redact(recorded), redact(url))
        return None
    target = folder / DATABASE_URL_FILE
    atomic_write_text(target, (
        "# Database of the registry in this folder (written by cf-model-registry).\n"
        "# No password is stored: it comes from PGPASSWORD, ~/.pgpass or an explicit URL.\n"
        f"{without_password(url)}\n"
    ))
    return target


def parse_url(url: str) -> URL:
    """The parsed URL, or InvalidArgumentError for text that is not a database URL."""
    try:
        return make_url(url)
    except ArgumentError:
        raise InvalidArgumentError(
            f"{url!r} is not a database URL (e.g. sqlite:////path/registry.db or postgresql+psycopg://user@host/db)"
        ) from None


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL, or None for other backends and in-memory SQLite."""
    parsed = parse_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def redact(url: str) -> str:
    """The URL with any password hidden, for messages and logs."""
    return parse_url(url).render_as_string(hide_password=True)

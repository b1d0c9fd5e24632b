"""Backup copies of files: ``{stem}_backup_{YYYYMMDD_HHMMSS_ffffff}{suffix}``, whole or not at all.

A name is never reused (``_2``, ``_3``... on a collision): the finished temp file gets its
name by a hard link, which fails instead of overwriting. Used by registry backups
(:mod:`registry.backup`) and by the legacy import, which keeps a copy of every file it
replaces.
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from .errors import ExportError, UnsafeFileError
from .fsio import TEMP_SUFFIX, fsync_directory, read_regular_file

NAME_TIME_FORMAT = "%Y%m%d_%H%M%S_%f"
MAX_BACKUP_BYTES = 1 << 30


def copy_to_backup(path: str | os.PathLike[str], backup_dir: str | os.PathLike[str] | None = None) -> str:
    """Copy a file to a new ``{stem}_backup_{timestamp}{suffix}`` beside it (or in ``backup_dir``).

    Raises:
        ExportError: the copy could not be written, or ``path`` is not a regular file
            of at most ``MAX_BACKUP_BYTES`` (a FIFO, a device).
        FileNotFoundError: ``path`` does not exist.
    """
    source = Path(path)
    folder = Path(backup_dir) if backup_dir is not None else source.parent
    try:
        data = read_regular_file(source, max_bytes=MAX_BACKUP_BYTES)
    except UnsafeFileError as exc:
        raise ExportError(f"cannot back up {source}: {exc}") from exc
    target = publish_unique(data, folder, source.stem, source.suffix)
    return str(folder / target.name)


def publish_unique(data: str | bytes, folder: Path, stem: str, suffix: str) -> Path:
    """Write ``data`` durably under a backup name nobody has used; returns the final path."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(dir=folder, prefix=f".{stem}_backup.", suffix=TEMP_SUFFIX)
    except OSError as exc:
        raise ExportError(f"could not create a backup in {folder}: {exc}") from exc
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        return link_unique(temp, folder, stem, suffix)
    except OSError as exc:
        raise ExportError(f"could not write a backup of {stem} in {folder}: {exc}") from exc
    finally:
        temp.unlink(missing_ok=True)


def link_unique(temp: Path, folder: Path, stem: str, suffix: str) -> Path:
    """Give the finished ``temp`` file a fresh backup name (hard link: never overwrites)."""
    base = f"{stem}_backup_{clock().strftime(NAME_TIME_FORMAT)}"
    for counter in range(1, 10_000):
        target = folder / (f"{base}{suffix}" if counter == 1 else f"{base}_{counter}{suffix}")
        try:
            os.link(temp, target)
        except FileExistsError:
            continue
        fsync_directory(folder)
        return target
    raise ExportError(f"could not find a free backup name for {base}{suffix} in {folder}")


def clock() -> datetime:
    """Now, in UTC: the time a backup name carries."""
    return datetime.now(UTC)

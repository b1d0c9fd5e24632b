"""Files, safely: bounded reads of regular files, strict JSON, atomic durable writes, temp files.

Every file the registry reads (artifacts, id maps, interactions, legacy JSON, backups, the
export's generation stamp) goes through :func:`open_regular_file`, so a FIFO, a device, a
symlink out of a model folder or an oversized file is refused before a byte is read. Every
file it writes goes through :func:`atomic_write_bytes`: a reader sees the old file or the
new one, never a mix, and a crash leaves the old one.

JSON files the registry did not write itself (a legacy ``registry.json``, a backup) are
parsed by :func:`read_json_strict`: size limit before reading, duplicate keys refused,
every parser error an :class:`ImportFormatError`; :func:`import_errors` turns what a
hostile value still provokes while such a file is checked into one as well.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from .errors import ImportFormatError, NonFiniteNumberError, RegistryError, UnsafeFileError

logger = logging.getLogger(__name__)

# The registry's own temp files end with this suffix (and start with "."): the sweep on open
# removes only these, never a user's ".notes.tmp" that happens to sit in the folder.
TEMP_SUFFIX = ".cfreg-tmp"
ORPHAN_TEMP_AGE_SECONDS = 3600
# The largest registry.json / bert_registry.json an import reads.
MAX_IMPORT_BYTES = 16 << 20

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def open_regular_file(path: str | os.PathLike[str], *, max_bytes: int, within: str | os.PathLike[str] | None = None) -> io.BufferedReader:
    """Open a file for reading, only if it is safe to read.

    The file is opened with ``O_NONBLOCK`` (a FIFO without a writer cannot hang
    the caller) and checked on the open descriptor: it must be a regular file
    (not a FIFO, device, socket or folder) of at most ``max_bytes`` bytes.

    Args:
        path: the file.
        max_bytes: the largest size accepted.
        within: the folder the file belongs to (a model's folder). The file's real
            path (symlinks followed) must lie inside the folder's real path, and the
            resolved path is opened with ``O_NOFOLLOW``, so a symlink swapped in
            after the check is refused rather than followed. Without it, symlinks
            are followed (a file named by the user, such as a backup).

    Returns:
        A binary file object positioned at the start; the caller closes it.

    Raises:
        UnsafeFileError: not a regular file, larger than ``max_bytes``, or outside ``within``.
        OSError: the file cannot be opened (missing, no permission...).
    """
    target = os.fspath(path)
    flags = _OPEN_FLAGS
    if within is not None:
        real, folder = _real_paths(target, os.fspath(within))
        if real == folder or not Path(real).is_relative_to(folder):
            raise UnsafeFileError(
                f"{path}: resolves to {real!r}, outside its folder {folder!r}; "
                "copy the file into the folder instead of linking to it"
            )
        target, flags = real, flags | _NOFOLLOW
    try:
        fd = os.open(target, flags)
    except OSError as exc:
        if within is not None and exc.errno == errno.ELOOP:
            raise UnsafeFileError(f"{path}: was replaced by a symlink while being opened; refusing to follow it") from exc
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFileError(f"{path}: is {_file_kind(info.st_mode)}, not a regular file; refusing to read it")
        if info.st_size > max_bytes:
            raise UnsafeFileError(f"{path}: {info.st_size} bytes exceeds the limit of {max_bytes}")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


_resolved = threading.local()  # .folders: {folder: real path} while a folders_resolved_once block runs


@contextmanager
def folders_resolved_once() -> Iterator[None]:
    """Within the block, each ``within`` folder's real path is resolved once (per thread).

    A model load opens four or more files of one folder; each :func:`open_regular_file`
    would walk the folder's path again (~15 µs each). The checks on each file stay as they
    are (its name not a symlink, the open with ``O_NOFOLLOW``). Blocks nest.
    """
    outer = getattr(_resolved, "folders", None)
    _resolved.folders = {} if outer is None else outer
    try:
        yield
    finally:
        if outer is None:
            _resolved.folders = None


def _real_folder(within: str) -> str:
    folders: dict[str, str] | None = getattr(_resolved, "folders", None)
    if folders is None:
        return os.path.realpath(within)
    real = folders.get(within)
    if real is None:
        real = folders[within] = os.path.realpath(within)
    return real


def _real_paths(target: str, within: str) -> tuple[str, str]:
    """``(realpath(target), realpath(within))``, resolving the folder once for a file directly in it.

    ``target`` = ``within/name`` (how a model's files are named): the folder's real path
    plus ``name`` is the file's real path unless ``name`` itself is a symlink (then it is
    resolved in full), so the folder's components are walked once, not twice (and once per
    block of :func:`folders_resolved_once`).
    """
    folder = _real_folder(within)
    parent, name = os.path.split(target)
    if parent == within and name not in ("", ".", ".."):
        candidate = os.path.join(folder, name)
        if not os.path.islink(candidate):
            return candidate, folder
    return os.path.realpath(target), folder


def read_regular_file(path: str | os.PathLike[str], *, max_bytes: int, within: str | os.PathLike[str] | None = None) -> bytes:
    """The whole content of a file opened by :func:`open_regular_file`, never more than ``max_bytes``.

    Raises:
        UnsafeFileError: as for :func:`open_regular_file`, or the file grew past the limit while read.
        OSError: the file cannot be opened or read.
    """
    with open_regular_file(path, max_bytes=max_bytes, within=within) as handle:
        # Ask for the file's size (+1 to see growth), not the limit: read(n) allocates n bytes
        # first, so asking for a 16 MiB limit cost ~0.2 ms per small file. A file that grew
        # meanwhile is read on, up to the limit + 1, as one read of the limit would have.
        size = min(os.fstat(handle.fileno()).st_size, max_bytes)
        data = handle.read(size + 1)
        if len(data) > size:
            data += handle.read(max_bytes + 1 - len(data))
    if len(data) > max_bytes:
        raise UnsafeFileError(f"{path}: grew beyond the limit of {max_bytes} bytes while being read")
    return data


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "a special file")


# --------------------------------------------------------------------------- strict JSON (files the registry did not write)


def read_json_strict(
    path: str | os.PathLike[str], *, max_bytes: int = MAX_IMPORT_BYTES, allow_non_finite: bool = True
) -> Any:
    """Parse a JSON file the registry did not write itself, refusing anything odd.

    Args:
        path: the file.
        max_bytes: files larger than this are refused before being read.
        allow_non_finite: accept bare ``NaN``/``Infinity`` tokens (the original
            registry wrote them); the schema checks then drop those values.

    Raises:
        FileNotFoundError: the file does not exist.
        ImportFormatError: too large, not UTF-8, not JSON, nested too deeply,
            duplicate keys, numbers too long to convert, a non-finite number when
            ``allow_non_finite`` is False (its ``__cause__`` is then a
            :class:`NonFiniteNumberError`), or not a readable regular file (a
            directory, a FIFO or device, no permission); symlinks are followed.
    """
    file_path = Path(path)
    try:
        data = read_regular_file(file_path, max_bytes=max_bytes)
    except FileNotFoundError:
        raise
    except UnsafeFileError as exc:  # a directory, FIFO or device; too large
        raise ImportFormatError(f"{exc}; give a registry.json file (the import limit is {max_bytes} bytes)") from exc
    except (OSError, UnicodeError, ValueError) as exc:  # a path with a lone surrogate or NUL, no permission...
        raise ImportFormatError(f"{file_path!r}: cannot read the file ({exc}); give a registry.json file") from exc
    try:
        return json.loads(
            data.decode("utf-8"),
            object_pairs_hook=_refuse_duplicate_keys,
            parse_constant=_non_finite if allow_non_finite else _refuse_non_finite,
        )
    except ImportFormatError:
        raise
    except (ValueError, RecursionError, UnicodeDecodeError) as exc:
        # RecursionError is not a ValueError: deep nesting must not escape as a crash.
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise ImportFormatError(
            f"{file_path}: not a valid JSON registry file ({reason}); fix the file or restore a backup"
        ) from exc


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r} (which one is meant is ambiguous)")
        result[key] = value
    return result


def _non_finite(token: str) -> float:
    return float(token)  # 'NaN', 'Infinity', '-Infinity'


def _refuse_non_finite(token: str) -> float:
    raise NonFiniteNumberError(f"non-finite number {token} is not allowed")


@contextmanager
def import_errors(source: str) -> Iterator[None]:
    """Last line of defence while reading and checking a file (never while writing the database).

    The field checks raise :class:`ImportFormatError` themselves; a builtin error
    that a hostile value still provokes (``TypeError``, ``ValueError``,
    ``OverflowError``, ``UnicodeError``, ``RecursionError``, ``OSError``) becomes an
    ``ImportFormatError`` naming ``source``. Registry errors and
    ``FileNotFoundError`` pass through unchanged.
    """
    try:
        yield
    except (RegistryError, FileNotFoundError):
        raise
    except (TypeError, ValueError, OverflowError, UnicodeError, RecursionError, OSError) as exc:
        raise ImportFormatError(
            f"{source}: cannot be imported ({type(exc).__name__}: {exc}); fix the file or restore a backup"
        ) from exc


# --------------------------------------------------------------------------- writing


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically and durably; the old file survives any failure.

    The new file keeps the old one's permissions (new files: ``0o666`` minus the umask,
    as ``open()`` would give), so readers under other accounts keep their access.
    """
    data = text.encode("utf-8")
    atomic_write_bytes(path, lambda handle: handle.write(data))


def atomic_write_bytes(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write a file atomically and durably through ``write(handle)`` (a binary file object).

    A temp file beside ``path`` is written, fsynced and renamed over it, then the
    folder is fsynced; on any failure the temp file is removed and the old file
    survives. Permissions as :func:`atomic_write_text`.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        os.fchmod(fd, _file_mode(path))
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
        fsync_directory(path.parent)
    except BaseException:
        try:
            os.unlink(temp_name)
        except FileNotFoundError:
            pass
        raise


def fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX: fsync the directory itself)."""
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _file_mode(path: Path) -> int:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return 0o666 & ~_UMASK


def _current_umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it; done once, at import
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def _is_own_temp_name(name: str) -> bool:
    """``.`` + anything + :data:`TEMP_SUFFIX` (the glob ``.*.cfreg-tmp``): how the registry names its temp files."""
    return name.startswith(".") and name.endswith(TEMP_SUFFIX) and len(name) > len(TEMP_SUFFIX)


def sweep_orphan_temp_files(directory: Path, max_age_seconds: float = ORPHAN_TEMP_AGE_SECONDS) -> int:
    """Remove the registry's own temp files left by writers killed mid-write; returns how many.

    Only regular files named ``.*`` + :data:`TEMP_SUFFIX` (what :func:`atomic_write_text`
    and the backups create) older than ``max_age_seconds`` are removed; other files,
    folders and symlinks are left alone.
    """
    removed = 0
    cutoff = time.time() - max_age_seconds
    try:
        # scandir, not Path.glob: every opener pays this (a new serving worker too), and glob
        # builds a Path per entry of the folder.
        with os.scandir(directory) as entries:
            candidates = [entry.path for entry in entries if _is_own_temp_name(entry.name)]
    except OSError:
        return 0
    for candidate in candidates:
        try:
            info = os.lstat(candidate)
            if stat.S_ISREG(info.st_mode) and info.st_mtime <= cutoff:
                os.unlink(candidate)
                removed += 1
        except OSError:
            continue
    if removed:
        logger.info("removed %d orphan temp file(s) of killed writers in %s", removed, directory)
    return removed

"""Safe file reading: bounded reads of regular files, confined to a folder when asked.

Every file the registry reads (artifacts, id maps, interactions, legacy JSON, backups, the
export's generation stamp) goes through :func:`open_regular_file`, so a FIFO, a device, a
symlink out of a model folder or an oversized file is refused before a byte is read.
"""

from __future__ import annotations

import errno
import io
import os
import stat
from pathlib import Path

from .errors import UnsafeFileError

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
        real, folder = os.path.realpath(target), os.path.realpath(within)
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


def read_regular_file(path: str | os.PathLike[str], *, max_bytes: int, within: str | os.PathLike[str] | None = None) -> bytes:
    """The whole content of a file opened by :func:`open_regular_file`, never more than ``max_bytes``.

    Raises:
        UnsafeFileError: as for :func:`open_regular_file`, or the file grew past the limit while read.
        OSError: the file cannot be opened or read.
    """
    with open_regular_file(path, max_bytes=max_bytes, within=within) as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UnsafeFileError(f"{path}: grew beyond the limit of {max_bytes} bytes while being read")
    return data


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "a special file")

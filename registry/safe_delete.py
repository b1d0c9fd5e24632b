"""Deleting a model's folder safely: only inside the artifacts root, never through a symlink.

:func:`check_deletable` pins what was checked (:class:`DeletionTarget`: the real root, the
path components, the inode identities); :func:`safe_delete_tree` removes exactly that folder,
walking from the root by file descriptors opened with ``O_NOFOLLOW``, so a parent swapped for a
symlink between the check and the removal is refused instead of followed.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidArgumentError


@dataclass(frozen=True)
class DeletionTarget:
    """A directory that passed :func:`check_deletable`, pinned to what was checked.

    ``root`` is the real artifacts root, ``parts`` the path components from it to the
    directory, and ``identity`` the ``(st_dev, st_ino)`` of the root and of the directory
    at check time (``None`` for a directory that did not exist then).
    """

    path: Path
    root: Path
    parts: tuple[str, ...]
    root_identity: tuple[int, int]
    identity: tuple[int, int] | None

    @property
    def name(self) -> str:
        """The directory's name, as ``Path.name``."""
        return self.path.name

    def __str__(self) -> str:
        return str(self.path)

    def __fspath__(self) -> str:
        return str(self.path)


def _identity(info: os.stat_result) -> tuple[int, int]:
    return info.st_dev, info.st_ino


def check_deletable(target: Path, root: Path) -> DeletionTarget:
    """The real directory to delete, or InvalidArgumentError when it escapes ``root``.

    The parent is resolved (symlinks followed) and must lie inside the root; the
    final component must be a real directory, not a symlink, and not the root. The
    result records the inodes checked, so :func:`safe_delete_tree` can refuse a
    directory swapped in between the check and the deletion.
    """
    text = str(target)
    if not text or "\x00" in text:
        raise InvalidArgumentError(f"refusing to delete artifact path {text!r}")
    real_root = Path(os.path.realpath(root))
    parent = Path(os.path.realpath(target.parent))
    final = parent / target.name
    if target.name in ("", ".", "..") or not parent.is_relative_to(real_root) or final == real_root:
        raise InvalidArgumentError(
            f"refusing to delete {text!r}: it does not resolve inside the artifacts root {str(real_root)!r}"
        )
    try:
        root_identity = _identity(os.stat(real_root))
    except OSError as exc:
        raise InvalidArgumentError(f"refusing to delete {text!r}: the artifacts root {str(real_root)!r} is unreadable ({exc})") from exc
    parts = final.relative_to(real_root).parts
    try:
        info = os.lstat(final)
    except FileNotFoundError:
        return DeletionTarget(final, real_root, parts, root_identity, None)
    if stat.S_ISLNK(info.st_mode):
        raise InvalidArgumentError(f"refusing to delete {text!r}: it is a symlink")
    if not stat.S_ISDIR(info.st_mode):
        raise InvalidArgumentError(f"refusing to delete {text!r}: it is not a directory")
    return DeletionTarget(final, real_root, parts, root_identity, _identity(info))


_DIRECTORY_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def safe_delete_tree(target: Path | DeletionTarget, root: Path) -> bool:
    """Delete a model directory confined to ``root``; False when it was already gone.

    The deletion walks from the artifacts root to the directory through directory
    file descriptors opened with ``O_NOFOLLOW`` and removes it with ``shutil.rmtree``
    relative to its parent's descriptor (symlink-attack resistant), after checking
    that the root and the directory are the very inodes :func:`check_deletable` saw:
    a folder on the way replaced by a symlink, or the directory replaced by another
    one, is refused and nothing outside the root is touched.

    Args:
        target: a path (checked now) or the result of an earlier :func:`check_deletable`.
        root: the artifacts root.

    Raises:
        InvalidArgumentError: the path escapes the root, or changed since it was checked.
    """
    checked = target if isinstance(target, DeletionTarget) else check_deletable(target, root)
    if Path(os.path.realpath(root)) != checked.root:
        raise InvalidArgumentError(f"refusing to delete {str(checked.path)!r}: it was checked against another artifacts root")
    if not shutil.rmtree.avoids_symlink_attacks:
        raise InvalidArgumentError("this platform's rmtree is not symlink-safe; delete the files by hand")
    if checked.identity is None:
        return False  # absent when checked: anything there now was never checked
    changed = f"refusing to delete {str(checked.path)!r}: it changed after it was checked"
    fd = os.open(checked.root, _DIRECTORY_FLAGS)
    try:
        if _identity(os.fstat(fd)) != checked.root_identity:
            raise InvalidArgumentError(f"{changed} (the artifacts root {str(checked.root)!r} was replaced)")
        for part in checked.parts[:-1]:
            try:
                next_fd = os.open(part, _DIRECTORY_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                return False
            except OSError as exc:  # ELOOP: now a symlink; ENOTDIR: now a file
                raise InvalidArgumentError(f"{changed} ({part!r} is no longer a real directory: {exc.strerror})") from exc
            os.close(fd)
            fd = next_fd
        name = checked.parts[-1]
        try:
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if not stat.S_ISDIR(info.st_mode) or _identity(info) != checked.identity:
            raise InvalidArgumentError(f"{changed} (another file or directory now has its name)")
        shutil.rmtree(name, dir_fd=fd)
    finally:
        os.close(fd)
    return True

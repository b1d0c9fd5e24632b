"""Content hashes of files, folders and training data sets (for ``data_version``).

Hashes depend on content only, never on where the data lives: the same data set
copied to another folder (or machine) gets the same version. Missing inputs are
errors, not silently skipped, so a typo cannot produce a plausible-looking version.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import InvalidArgumentError

ALGORITHMS = ("md5", "sha1", "sha256")


def _new_hash(algorithm: str) -> Any:
    if algorithm not in ALGORITHMS:
        raise InvalidArgumentError(f"Unsupported hash algorithm {algorithm!r}: use one of {list(ALGORITHMS)}")
    # md5/sha1 identify data here; they are not used for security (and FIPS builds allow them so).
    return hashlib.new(algorithm, usedforsecurity=False)


def compute_file_hash(file_path: str | os.PathLike[str], algorithm: str = "md5") -> str:
    """Hex digest of a file's content, read in chunks.

    Args:
        file_path: the file.
        algorithm: ``"md5"`` (default, as the original), ``"sha1"`` or ``"sha256"``.

    Raises:
        InvalidArgumentError: unknown algorithm (a ValueError).
        FileNotFoundError: the file does not exist.
        IsADirectoryError: the path is a folder (use :func:`compute_directory_hash`).
    """
    digest = _new_hash(algorithm)
    with open(file_path, "rb") as handle:
        return hashlib.file_digest(handle, lambda: digest).hexdigest()


def compute_directory_hash(
    dir_path: str | os.PathLike[str], extensions: Iterable[str] | None = None, algorithm: str = "md5"
) -> str:
    """Hash of a folder tree: every file's path relative to the folder plus its content.

    Renaming or moving a file inside the folder changes the hash; moving the whole
    folder elsewhere does not. Symlinked sub-folders are not followed.

    Args:
        dir_path: the folder.
        extensions: only files with these suffixes, e.g. ``['.parquet', '.json']``
            (case-insensitive; the leading dot is optional).
        algorithm: as for :func:`compute_file_hash`.

    Raises:
        FileNotFoundError: the folder does not exist.
        NotADirectoryError: the path is a file.
        InvalidArgumentError: unknown algorithm, or ``extensions`` given as one string.
    """
    folder = Path(dir_path)
    if not folder.exists():
        raise FileNotFoundError(f"directory {str(folder)!r} does not exist")
    if not folder.is_dir():
        raise NotADirectoryError(f"{str(folder)!r} is not a directory (use compute_file_hash for a file)")
    wanted = _normalise_extensions(extensions)
    digest = _new_hash(algorithm)
    for relative in _relative_files(folder):
        if wanted is not None and Path(relative).suffix.lower() not in wanted:
            continue
        digest.update(relative.encode("utf-8", "surrogateescape") + b"\0")
        digest.update(compute_file_hash(folder / relative, algorithm).encode("ascii") + b"\n")
    return digest.hexdigest()


def compute_data_version(data_files: Iterable[str | os.PathLike[str]] | str | os.PathLike[str], algorithm: str = "md5") -> str:
    """A version id of a training data set: the hash of its files' contents.

    The order of ``data_files`` and their location do not matter, only the bytes:
    the same files under another folder give the same version. A folder in the
    list counts by its :func:`compute_directory_hash`.

    Args:
        data_files: paths of the data files (a single path is accepted too).
        algorithm: as for :func:`compute_file_hash`.

    Raises:
        FileNotFoundError: a listed file does not exist (never skipped silently).
        InvalidArgumentError: the list is empty, or unknown algorithm.
    """
    paths = [data_files] if isinstance(data_files, (str, os.PathLike)) else list(data_files)
    if not paths:
        raise InvalidArgumentError("compute_data_version needs at least one data file")
    missing = [str(p) for p in paths if not Path(p).exists()]
    if missing:
        raise FileNotFoundError(f"data file(s) not found: {missing}; a data version must cover every input")
    parts = sorted(
        compute_directory_hash(p, algorithm=algorithm) if Path(p).is_dir() else compute_file_hash(p, algorithm)
        for p in paths
    )
    digest = _new_hash(algorithm)
    for part in parts:
        digest.update(part.encode("ascii") + b"\n")
    return digest.hexdigest()


def _normalise_extensions(extensions: Iterable[str] | None) -> set[str] | None:
    if extensions is None:
        return None
    if isinstance(extensions, str):
        raise InvalidArgumentError(f"extensions must be a list such as ['.parquet', '.json'], got the string {extensions!r}")
    return {ext.lower() if ext.startswith(".") else f".{ext.lower()}" for ext in extensions}


def _relative_files(folder: Path) -> list[str]:
    """Every file below ``folder`` as a sorted POSIX-style relative path."""
    found: list[str] = []
    for current, _dirs, files in os.walk(folder):
        base = Path(current).relative_to(folder)
        found.extend((base / name).as_posix() for name in files if (Path(current) / name).is_file())
    return sorted(found)

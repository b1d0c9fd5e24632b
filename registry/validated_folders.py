"""Model folders that passed validation, remembered by what their listing looks like.

Registering a folder reads every file's header and JSON (``check_model_folder``): about a
millisecond. A retraining job that registers the same folder again (a new version on the same
artifacts, an ``overwrite``, an idempotent re-run) would pay that each time for files that did not
change. This process remembers each folder that passed, keyed by its real path and model type (and that type's required files),
with a signature of its top-level entries (name, inode, size, mtime, mode) and of the folder
itself; a later check whose signature is identical reuses the result.

The signature is taken before validating, so a file changed meanwhile gives another signature next
time. Nothing is remembered for a folder holding a symlink (its target could change without the
listing changing) or an entry modified within the filesystem's timestamp granularity
(``RACY_WINDOW_NS``: a rewrite then could keep its size and mtime).
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections import OrderedDict
from pathlib import Path

from .artifacts import RACY_WINDOW_NS, NpyHeader, check_model_folder, required_files

MAX_REMEMBERED = 256

Signature = tuple[int, int, int, tuple[tuple[str, int, int, int, int], ...]]

_remembered: OrderedDict[tuple[str, str, tuple[str, ...]], tuple[Signature, dict[str, NpyHeader]]] = OrderedDict()
_lock = threading.Lock()


def folder_signature(path: Path) -> Signature | None:
    """The folder's identity and its top-level entries; None when it must not be remembered."""
    cutoff = time.time_ns() - RACY_WINDOW_NS
    try:
        folder = os.stat(path)
        entries = []
        with os.scandir(path) as listing:
            for entry in listing:
                info = entry.stat(follow_symlinks=False)
                if stat.S_ISLNK(info.st_mode) or info.st_mtime_ns >= cutoff:
                    return None
                entries.append((entry.name, info.st_ino, info.st_size, info.st_mtime_ns, info.st_mode))
    except OSError:
        return None
    if folder.st_mtime_ns >= cutoff:
        return None
    return folder.st_dev, folder.st_ino, folder.st_mtime_ns, tuple(sorted(entries))


def check_model_folder_remembered(path: Path, model_type: str) -> tuple[dict[str, NpyHeader], list[str]]:
    """:func:`registry.artifacts.check_model_folder`, reusing an earlier pass on an unchanged folder."""
    signature = folder_signature(path)
    key = (os.path.realpath(path), model_type, tuple(required_files(model_type)))
    if signature is not None:
        with _lock:
            kept = _remembered.get(key)
            if kept is not None and kept[0] == signature:
                _remembered.move_to_end(key)
                return dict(kept[1]), []
    headers, problems = check_model_folder(path, model_type)
    if signature is not None and not problems:
        with _lock:
            _remembered[key] = (signature, dict(headers))
            while len(_remembered) > MAX_REMEMBERED:
                _remembered.popitem(last=False)
    return headers, problems


def forget_all() -> None:
    """Forget every remembered folder (tests)."""
    with _lock:
        _remembered.clear()

"""Finding registries under a folder (for "registry not found" messages and tools).

A registry folder holds ``registry.db`` (the SQLite default) or ``database_url.txt``
(the database is elsewhere, e.g. PostgreSQL). The search is bounded in depth and
skips hidden folders and virtual environments, so it stays fast in a large checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

from .database_urls import DATABASE_URL_FILE, DEFAULT_DATABASE_NAME

DEFAULT_MAX_DEPTH = 4
DEFAULT_LIMIT = 10
SKIPPED_FOLDERS = frozenset({"node_modules", "__pycache__", "site-packages", "venv"})
REGISTRY_JSON = "registry.json"


def find_registries(base: str | os.PathLike[str], *, max_depth: int = DEFAULT_MAX_DEPTH,
                    limit: int = DEFAULT_LIMIT) -> list[Path]:
    """``registry.json`` paths of the registries under ``base``, at most ``max_depth`` folders down.

    Returned relative to ``base`` (``Path("registry.json")`` for ``base`` itself), in
    breadth-first, then alphabetical order, at most ``limit`` of them.
    """
    base = Path(base)
    found: list[Path] = []
    level = [base]
    for _depth in range(max_depth + 1):
        next_level: list[Path] = []
        for folder in level:
            try:
                entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
            except OSError:
                continue
            names = {entry.name for entry in entries}
            if DEFAULT_DATABASE_NAME in names or DATABASE_URL_FILE in names:
                found.append((folder / REGISTRY_JSON).relative_to(base))
                if len(found) >= limit:
                    return found
            next_level.extend(
                Path(entry.path) for entry in entries
                if entry.is_dir(follow_symlinks=False) and not entry.name.startswith(".")
                and entry.name not in SKIPPED_FOLDERS
            )
        level = next_level
    return found

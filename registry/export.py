"""Publishing ``registry.json`` / ``bert_registry.json``: the documented JSON view of the database.

The files are derived data: written after each committed change (when
``export_json=True``) or on demand, atomically (temp file, fsync, ``os.replace``,
directory fsync), under a file lock, and never replacing a newer export with an
older one (each file's registry generation is kept in a small sidecar). The documents
themselves are built by :mod:`registry.documents`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .documents import (  # noqa: F401 - also importable from here, as before
    REGISTRY_VERSION,
    ab_test_info,
    assemble_registry_document,
    build_bert_document,
    build_registry_document,
    create_empty_registry,
    current_best_info,
    embedding_info,
    model_info,
    render_document,
    render_entry,
    validate_registry_schema,
)
from .errors import ExportError
from .fsio import (  # noqa: F401 - also re-exported: the file writers lived here before fsio
    ORPHAN_TEMP_AGE_SECONDS,
    TEMP_SUFFIX,
    atomic_write_bytes,
    atomic_write_text,
    fsync_directory,
    read_regular_file,
    sweep_orphan_temp_files,
)
from .queries import links_by_embedding, metrics_by_model  # noqa: F401 - also importable from here, as before
from .timestamps import format_timestamp as iso  # noqa: F401 - also importable from here, as before

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Change:
    """What one committed write transaction changed: its generation and its audit ``(action, target)`` pairs."""

    generation: int
    events: tuple[tuple[str, str], ...]


# --------------------------------------------------------------------------- files


def _generation_file(path: Path) -> Path:
    return path.with_name(f".{path.name}.generation")


def file_generation(path: Path) -> int:
    """The registry generation the file at ``path`` was exported from (-1 if unknown)."""
    if not path.exists():
        return -1
    try:
        return int(read_regular_file(_generation_file(path), max_bytes=64).decode("ascii").strip())
    except (OSError, ValueError):  # UnsafeFileError (a FIFO, a device, oversize) is a ValueError
        return -1


def forget_generation(path: Path) -> None:
    """Drop the generation recorded for ``path`` (it came from another database, e.g. before a re-creation)."""
    try:
        _generation_file(path).unlink()
    except FileNotFoundError:
        pass


def publish(path: Path, document: dict[str, Any], generation: int, mapping_key: str, *, force: bool = False,
            entries: Mapping[str, str] | None = None) -> bool:
    """Write ``document`` unless the file already holds this generation or a newer one.

    The caller holds the file lock (see :func:`export_lock`). Returns True if written.
    ``entries``: pre-rendered ``mapping_key`` lines (see :func:`render_document`).
    """
    if not force and file_generation(path) >= generation:
        return False
    try:
        atomic_write_text(path, render_document(document, mapping_key, entries))
        atomic_write_text(_generation_file(path), f"{generation}\n")
    except (OSError, ValueError, TypeError) as exc:
        raise ExportError(f"could not write {path}: {exc}") from exc
    return True


def export_lock(path: Path):  # type: ignore[no-untyped-def]
    """The inter-process lock that serialises exports of one file."""
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path.with_name(f".{path.name}.lock")), timeout=120)

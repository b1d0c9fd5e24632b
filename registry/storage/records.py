"""A registered model whose files live in an artifact store, made local through the cache."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import InvalidArtifactsError
from ..serving.model_files import ModelRecord, model_file_names
from ..serving.model_state import FileStamp
from .cache import ArtifactCache

MAX_PARALLEL_DOWNLOADS = 8


def cached_model_files(record: ModelRecord, cache: ArtifactCache) -> tuple[Path, dict[str, Path], tuple[FileStamp, ...]]:
    """Fetch every recorded file of a store-backed model into ``cache``.

    Returns:
        ``(folder, paths by file name, stamps)`` as :func:`registry.serving.model_files.stat_files`
        gives them for a local model: ``folder`` is the cache's object folder and each
        stamp names its object relative to it, so reload checks stat the cached objects.

    Raises:
        InvalidArtifactsError: a recorded file has no store object.
        ArtifactStoreError / ChecksumMismatchError: a download failed or did not match the record.
    """
    folder = cache.folder / "objects"
    found: dict[str, Path] = {}
    stamps: list[FileStamp] = []
    wanted = []
    for name in model_file_names(record):
        if name not in record.files:
            continue  # an unrecorded optional file: store-backed models record all their files
        uri = record.uris.get(name)
        if uri is None:
            raise InvalidArtifactsError(
                f"model {record.model_id!r}: file {name} has no artifact store object recorded (path {record.path!r})"
            )
        size, sha256 = record.files[name]
        wanted.append((name, uri, sha256, size))
    # The files download concurrently (each under its own per-object lock); the first failure is raised.
    with ThreadPoolExecutor(max_workers=max(1, min(MAX_PARALLEL_DOWNLOADS, len(wanted)))) as pool:
        paths = list(pool.map(lambda item: cache.fetch(item[1], item[2], item[3]), wanted))
    for (name, _, sha256, _), path in zip(wanted, paths):
        info = os.stat(path)
        found[name] = path
        stamps.append((f"{sha256[:2]}/{sha256}", info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino))
    for required in model_file_names(record)[:2]:
        if required not in found:
            raise InvalidArtifactsError(f"model {record.model_id!r}: {required} is not recorded")
    return folder, found, tuple(stamps)

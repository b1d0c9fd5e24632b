"""A registered model whose files live in an artifact store, made local through the cache.

* :func:`cached_model_files`: the loader's path (its own cache, pins kept while it serves).
* :func:`local_model_files`: one-off readers (model diffs): the local folder, or the
  host's cache while the block runs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InvalidArtifactsError
from ..serving.model_files import ModelRecord, model_file_names, stat_files
from ..serving.model_state import FileStamp
from .cache import ArtifactCache, fetch_all

if TYPE_CHECKING:
    from ..context import RegistryContext


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
    by_uri = fetch_all(cache, [(uri, sha256, size) for _, uri, sha256, size in wanted])
    paths = [by_uri[uri] for _, uri, _, _ in wanted]
    for (name, _, sha256, _), path in zip(wanted, paths):
        info = os.stat(path)
        found[name] = path
        stamps.append((f"{sha256[:2]}/{sha256}", info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino))
    for required in model_file_names(record)[:2]:
        if required not in found:
            raise InvalidArtifactsError(f"model {record.model_id!r}: {required} is not recorded")
    return folder, found, tuple(stamps)


@contextmanager
def local_model_files(ctx: RegistryContext, record: ModelRecord, verify: str,
                      cache_dir: str | os.PathLike[str] | None = None) -> Iterator[tuple[Path, dict[str, Path], tuple[FileStamp, ...]]]:
    """``(folder, paths by file name, stamps)`` of a model's files while the block runs.

    A local model's folder is stat-ed (:func:`~registry.serving.model_files.stat_files`);
    a store-backed model's files come from the host's artifact cache (``cache_dir``,
    default :func:`~registry.storage.cache.default_cache_dir`), pinned until the block ends.

    Raises:
        InvalidArtifactsError / ChecksumMismatchError / ArtifactStoreError: a missing,
            changed or undownloadable file.
    """
    if not record.remote:
        folder = ctx.resolve(record.path)
        found, stamps = stat_files(record, folder, verify)
        yield folder, found, stamps
        return
    cache = ArtifactCache(cache_dir)
    try:
        yield cached_model_files(record, cache)
    finally:
        cache.close()

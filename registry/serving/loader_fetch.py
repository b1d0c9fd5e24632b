"""How :class:`~registry.serving.loader.ModelLoader` reads a model's files: from the local disk,
or from an artifact store through the host's artifact cache, with a backoff after failed
downloads and no second hashing of files that already failed their checksums.

A mixin of ``ModelLoader`` (see :mod:`registry.serving.loader_base`).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from ..errors import ChecksumMismatchError, RegistryError
from ..storage.cache import ArtifactCache
from ..storage.records import cached_model_files
from .loader_base import LoaderBase
from .model_files import ModelRecord, read_model, stat_files
from .model_state import CacheKey, FileStamp, ModelState

# The documented logger name (docs/loader.md), shared with registry.serving.loader.
logger = logging.getLogger("registry.loader")

FETCH_BACKOFF_START_SECONDS = 0.5
FETCH_BACKOFF_MAX_SECONDS = 30.0


class LoaderFetching(LoaderBase):
    """Reading model files for a loader (mixed into ``ModelLoader``)."""

    verify: str
    mmap: bool
    _failure: tuple[CacheKey, tuple[FileStamp, ...], ChecksumMismatchError] | None
    _fetch_failures: dict[CacheKey, tuple[float, float, RegistryError]]
    """Model key -> (monotonic time of the next attempt, current delay, error): download backoff."""
    _artifact_cache: ArtifactCache | None
    _artifact_cache_dir: str | os.PathLike[str] | None
    _artifact_cache_bytes: int | None

    @property
    def artifact_cache(self) -> ArtifactCache:
        """The local cache of store objects this loader reads (created on first use)."""
        with self._lock:
            if self._artifact_cache is None:
                self._artifact_cache = ArtifactCache(self._artifact_cache_dir, self._artifact_cache_bytes)
            return self._artifact_cache

    def _read_from_disk(self, record: ModelRecord) -> ModelState:
        if record.remote:
            folder, found, stamps = self._fetch(record)
        else:
            folder = self._ctx.resolve(record.path)
            found, stamps = stat_files(record, folder, self.verify)
        failure = self._failure
        if failure is not None and failure[0] == record.key and failure[1] == stamps:
            # Same files as the last checksum failure: do not read and hash them again.
            raise type(failure[2])(f"{failure[2]} (files unchanged since the last failed attempt)")
        try:
            state = read_model(record, folder, found, stamps, verify=self.verify, mmap=self.mmap)
        except ChecksumMismatchError as exc:
            self._failure = (record.key, stamps, exc)
            raise
        self._failure = None
        return state

    def _fetch(self, record: ModelRecord) -> tuple[Path, dict[str, Path], tuple[FileStamp, ...]]:
        """A store-backed model's files through the artifact cache, with backoff after failures.

        A failed or corrupt download raises (the served model keeps serving); it is
        logged once per model and error, and not retried before its backoff delay.
        """
        failure = self._fetch_failures.get(record.key)
        now = time.monotonic()
        if failure is not None and now < failure[0]:
            raise type(failure[2])(f"{failure[2]} (next download attempt in {failure[0] - now:.1f} s)")
        try:
            result = cached_model_files(record, self.artifact_cache)
        except RegistryError as exc:
            delay = min(FETCH_BACKOFF_MAX_SECONDS, failure[1] * 2) if failure else FETCH_BACKOFF_START_SECONDS
            if failure is None or str(failure[2]) != str(exc):
                logger.error("model %s: download from the artifact store failed, not swapped in (retry in %.1f s): %s",
                             record.model_id, delay, exc)
            self._fetch_failures[record.key] = (time.monotonic() + delay, delay, exc)
            raise
        self._fetch_failures.pop(record.key, None)
        return result

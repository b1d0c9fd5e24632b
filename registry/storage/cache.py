"""The loader's local cache of store objects: verified, shared by the processes of a host, LRU in bytes.

Layout under the cache folder::

    objects/{sha[:2]}/{sha256}   the verified bytes (never modified once renamed in)
    locks/{sha256}.pin           held shared (flock) by every process serving the object;
                                 its mtime is the object's last use (the LRU order)
    locks/{sha256}.download      one downloader per object across processes (filelock)
    tmp/                         downloads in progress

A download goes to ``tmp/``, hashed while its bytes arrive (one pass), and is renamed
into ``objects/`` only when its sha256 matches the registry's record; anything else is deleted and raised, so a
half-written or corrupt object is never visible. Eviction removes least recently used
objects until the cache fits its byte budget, skipping those a process pins (serves).
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock

from ..errors import ArtifactStoreError, ChecksumMismatchError, InvalidArgumentError
from . import store

logger = logging.getLogger(__name__)

ENV_CACHE_DIR = "CFREG_ARTIFACT_CACHE"
ENV_CACHE_MAX_BYTES = "CFREG_ARTIFACT_CACHE_MAX_BYTES"
DEFAULT_CACHE_MAX_BYTES = 20 << 30
DOWNLOAD_LOCK_TIMEOUT_SECONDS = 600.0
TEMP_MAX_AGE_SECONDS = 3600.0
MAX_PARALLEL_DOWNLOADS = 8


def default_cache_dir() -> Path:
    """``$CFREG_ARTIFACT_CACHE``, else ``cf-model-registry/artifacts`` in the user's cache directory."""
    configured = os.environ.get(ENV_CACHE_DIR)
    if configured:
        return Path(configured).expanduser()
    try:
        from platformdirs import user_cache_dir

        base = Path(user_cache_dir("cf-model-registry"))
    except ImportError:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cf-model-registry"
    return base / "artifacts"


def default_max_bytes() -> int:
    """``$CFREG_ARTIFACT_CACHE_MAX_BYTES``, else 20 GiB."""
    raw = os.environ.get(ENV_CACHE_MAX_BYTES)
    return int(raw) if raw else DEFAULT_CACHE_MAX_BYTES


def _sha_text(sha256: str) -> str:
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise InvalidArgumentError(f"not a sha256 hex digest: {sha256!r}")
    return sha256


class ArtifactCache:
    """A host-local cache of store objects keyed by sha256 (see the module doc).

    Args:
        folder: the cache folder (default :func:`default_cache_dir`).
        max_bytes: the byte budget (default :func:`default_max_bytes`); pinned objects may exceed it.

    Thread-safe; any number of processes may share one folder.
    """

    def __init__(self, folder: str | os.PathLike[str] | None = None, max_bytes: int | None = None) -> None:
        self.folder = Path(folder).expanduser().absolute() if folder is not None else default_cache_dir()
        self.max_bytes = default_max_bytes() if max_bytes is None else int(max_bytes)
        if self.max_bytes <= 0:
            raise InvalidArgumentError(f"cache max_bytes must be positive, got {max_bytes!r}")
        for sub in ("objects", "locks", "tmp"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        self.downloads = 0  # objects this instance downloaded (tests, stats)
        self.downloaded_bytes = 0
        self._pins: dict[str, int] = {}  # sha256 -> open fd holding a shared flock
        self._lock = threading.RLock()
        self._sweep_temp()

    def __repr__(self) -> str:
        return f"ArtifactCache({str(self.folder)!r}, max_bytes={self.max_bytes})"

    def object_path(self, sha256: str) -> Path:
        """Where a verified object lives in the cache (it may not be there)."""
        sha = _sha_text(sha256)
        return self.folder / "objects" / sha[:2] / sha

    def fetch(self, uri: str, sha256: str, size: int) -> Path:
        """The local path of ``uri``'s verified bytes, downloading them once per host.

        The object is pinned for this process (not evictable) until :meth:`retain`
        leaves it out. Concurrent callers, in this process or others, wait for one
        download.

        Raises:
            ArtifactStoreError: the download failed (nothing is left in the cache).
            ChecksumMismatchError: the downloaded bytes do not have the recorded sha256/size.
        """
        path = self.cached(sha256, size)
        if path is not None:
            return path
        path = self.object_path(sha256)
        with FileLock(str(self.folder / "locks" / f"{sha256}.download"), timeout=DOWNLOAD_LOCK_TIMEOUT_SECONDS):
            if self._present(path, size):  # another process downloaded it meanwhile
                self._touch(sha256)
                return path
            self._download(uri, sha256, size, path)
        self._touch(sha256)
        self.evict()
        return path

    def cached(self, sha256: str, size: int) -> Path | None:
        """The object's path when it is already in the cache (pinned and marked used), else None.

        The warm path of :meth:`fetch`: no lock file, no hashing (an object is only
        ever renamed into the cache after its sha256 was checked), one ``stat`` for
        the size.
        """
        path = self.object_path(sha256)
        self._pin(sha256)
        if not self._present(path, size):
            return None
        self._touch(sha256)
        return path

    def _present(self, path: Path, size: int) -> bool:
        try:
            return path.stat().st_size == size
        except FileNotFoundError:
            return False

    def _download(self, uri: str, sha256: str, size: int, path: Path) -> None:
        temp = self.folder / "tmp" / f"{sha256}.{uuid.uuid4().hex}"
        started = time.perf_counter()
        try:
            digest, got = store.download_hashed(uri, temp)  # hashed while the bytes arrive: one pass
            if got != size or digest != sha256:
                raise ChecksumMismatchError(
                    f"{uri}: the store holds {got} bytes with sha256 {digest}, but the registry recorded "
                    f"{size} bytes with sha256 {sha256} (changed behind the registry's back); not used"
                )
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(temp, path)
        finally:
            temp.unlink(missing_ok=True)
        with self._lock:
            self.downloads += 1
            self.downloaded_bytes += size
        logger.info("downloaded %s into the cache (%d bytes, %.1f ms)", uri, size, (time.perf_counter() - started) * 1000)

    # ------------------------------------------------------------------ pins and LRU

    def _pin(self, sha256: str) -> None:
        with self._lock:
            if sha256 in self._pins:
                return
            fd = os.open(self.folder / "locks" / f"{sha256}.pin", os.O_RDWR | os.O_CREAT, 0o666)
            fcntl.flock(fd, fcntl.LOCK_SH)  # waits only while an evictor deletes this object
            self._pins[sha256] = fd

    def retain(self, shas: Iterable[str]) -> None:
        """Keep exactly ``shas`` pinned for this process; the others become evictable."""
        keep = set(shas)
        with self._lock:
            for sha in [sha for sha in self._pins if sha not in keep]:
                os.close(self._pins.pop(sha))

    def pinned(self) -> set[str]:
        """The objects this process pins."""
        with self._lock:
            return set(self._pins)

    def _touch(self, sha256: str) -> None:
        try:
            os.utime(self.folder / "locks" / f"{sha256}.pin")
        except OSError as exc:
            logger.debug("could not mark %s as used: %s", sha256, exc)

    def entries(self) -> list[tuple[str, int, float]]:
        """``(sha256, size, last use)`` of every cached object, least recently used first."""
        found = []
        for path in (self.folder / "objects").glob("*/*"):
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            try:
                used = (self.folder / "locks" / f"{path.name}.pin").stat().st_mtime
            except FileNotFoundError:
                used = 0.0
            found.append((path.name, size, used))
        return sorted(found, key=lambda entry: entry[2])

    def size(self) -> int:
        """Bytes of the cached objects."""
        return sum(size for _, size, _ in self.entries())

    def evict(self) -> int:
        """Remove least recently used objects no process pins until the cache fits; returns how many."""
        entries = self.entries()
        total = sum(size for _, size, _ in entries)
        removed = 0
        for sha, size, _ in entries:
            if total <= self.max_bytes:
                break
            if self._remove_unpinned(sha):
                total -= size
                removed += 1
        return removed

    def _remove_unpinned(self, sha256: str) -> bool:
        with self._lock:
            if sha256 in self._pins:
                return False
        fd = os.open(self.folder / "locks" / f"{sha256}.pin", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # another process serves it
            self.object_path(sha256).unlink(missing_ok=True)
            logger.info("evicted %s from the artifact cache", sha256)
            return True
        finally:
            os.close(fd)

    def close(self) -> None:
        """Release every pin of this instance."""
        self.retain(())

    def _sweep_temp(self) -> None:
        cutoff = time.time() - TEMP_MAX_AGE_SECONDS
        for temp in (self.folder / "tmp").iterdir():
            try:
                if temp.stat().st_mtime < cutoff:
                    temp.unlink()
            except OSError:
                continue


def fetch_all(cache: ArtifactCache, files: Iterable[tuple[str, str, int]]) -> dict[str, Path]:
    """Fetch several ``(uri, sha256, size)`` objects; returns ``{uri: local path}``.

    Objects already cached cost a ``stat`` each (no lock, no hash, no thread); the missing
    ones download concurrently, each under its own per-object lock.

    Raises:
        ArtifactStoreError / ChecksumMismatchError: the first failure (objects fetched meanwhile stay cached).
    """
    wanted = list(files)
    result: dict[str, Path] = {}
    missing = []
    for uri, sha256, size in wanted:
        path = cache.cached(sha256, size)
        if path is None:
            missing.append((uri, sha256, size))
        else:
            result[uri] = path
    if len(missing) == 1:
        result[missing[0][0]] = _fetch(cache, *missing[0])
    elif missing:
        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_DOWNLOADS, len(missing))) as pool:
            result.update(zip([uri for uri, _, _ in missing], pool.map(lambda item: _fetch(cache, *item), missing)))
    return result


def _fetch(cache: ArtifactCache, uri: str, sha256: str, size: int) -> Path:
    try:
        return cache.fetch(uri, sha256, size)
    except (ArtifactStoreError, ChecksumMismatchError):
        raise
    except OSError as exc:
        raise ArtifactStoreError(f"{uri}: cannot be cached in {cache.folder}: {exc}") from exc


@contextmanager
def cached_object(uri: str, sha256: str, size: int, folder: str | os.PathLike[str] | None = None,
                  max_bytes: int | None = None) -> Iterator[Path]:
    """One object's verified local copy, pinned while the block runs (a one-off read outside a loader).

    Args:
        uri, sha256, size: the object as the registry recorded it.
        folder, max_bytes: the cache (see :class:`ArtifactCache`; default: the host's cache).

    Raises:
        ArtifactStoreError / ChecksumMismatchError: as :func:`fetch_all`.
    """
    cache = ArtifactCache(folder, max_bytes)
    try:
        yield fetch_all(cache, [(uri, sha256, size)])[uri]
    finally:
        cache.close()

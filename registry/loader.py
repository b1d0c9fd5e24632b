"""Serving loader: a registry's current best (or any model) as in-memory embeddings.

Usage::

    loader = get_loader()                      # one loader per registry
    U, V, metadata = loader.load_current_best()
    if loader.reload_model():                  # cheap check; loads only on change
        logger.info("now serving %s", loader.get_model_info()["model_id"])

How it stays consistent and fast:

* The served model is one immutable :class:`ModelState`, replaced by a single
  reference assignment. Readers take that reference once, so the ``U``, ``V``
  and metadata they get always belong to one model.
* Disk reads, registry reads and reload checks run one at a time under the
  load lock; readers never take it, so they never wait for a disk read.
* The cache is an LRU bounded in bytes and keyed by ``(model_id, recorded
  checksums)``: re-registering an id with new files makes a new entry.
* :meth:`ModelLoader.reload_model` reads ``(generation, current best)`` on a
  held connection and stats the served files; only a change loads anything.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import bindparam, select

from . import abtest, artifacts
from .cf_registry import DEFAULT_REGISTRY_PATH
from .context import RegistryContext
from .db import ENV_DATABASE_URL
from .errors import (
    ChecksumMismatchError,
    InvalidArgumentError,
    InvalidArtifactsError,
    ModelNotFoundError,
    NoModelLoadedError,
    RegistryError,
)
from .export import TIME_FORMAT, iso
from .models import ArtifactFile, Model, Settings, utcnow
from .validation import validate_identifier

logger = logging.getLogger(__name__)

ENV_MAX_CACHE_BYTES = "CFREG_LOADER_MAX_CACHE_BYTES"
DEFAULT_MAX_CACHE_BYTES = 2 << 30
VERIFY_MODES = ("none", "size", "full")
STOP_TIMEOUT_SECONDS = 30.0

# (model_id, ((file_name, sha256), ...)): a model's identity including its file contents.
CacheKey = tuple[str, tuple[tuple[str, str], ...]]
# (file_name, size, mtime_ns, ctime_ns, inode): what a reload check compares on disk.
FileStamp = tuple[str, int, int, int, int]

__all__ = [
    "DEFAULT_MAX_CACHE_BYTES",
    "LoaderStats",
    "ModelLoader",
    "ModelState",
    "get_loader",
    "load_model_from_registry",
    "reset_loader",
]


# --------------------------------------------------------------------------- data classes


@dataclass(frozen=True, eq=False)
class ModelState:
    """One loaded model. Immutable; ``U`` and ``V`` are read-only arrays (copy before editing).

    The first nine fields are the original documentation's; ``metadata`` is the
    artifact's ``{type}_metadata.json`` plus ``model_id``, ``model_type``,
    ``version`` and ``path``. ``user_ids``/``item_ids`` come from
    ``{type}_user_ids.json``/``{type}_item_ids.json`` when the folder has them.
    """

    model_id: str
    model_type: str
    version: str
    U: np.ndarray = field(repr=False)
    V: np.ndarray = field(repr=False)
    params: dict[str, Any] = field(repr=False)
    metadata: dict[str, Any] = field(repr=False)
    loaded_at: str
    path: str
    user_ids: list[Any] | None = field(default=None, repr=False)
    item_ids: list[Any] | None = field(default=None, repr=False)
    folder: str = ""
    checksums: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    file_stamps: tuple[FileStamp, ...] = field(default=(), repr=False)
    _user_lookup: dict[Any, int] | None = field(default=None, init=False, repr=False)
    _item_lookup: dict[Any, int] | None = field(default=None, init=False, repr=False)

    @property
    def key(self) -> CacheKey:
        """``(model_id, recorded checksums)``: the cache identity of this model's content."""
        return (self.model_id, self.checksums)

    @property
    def nbytes(self) -> int:
        """Bytes held by ``U`` and ``V`` (what the cache budget counts)."""
        return int(self.U.nbytes + self.V.nbytes)

    @property
    def num_users(self) -> int:
        return int(self.U.shape[0])

    @property
    def num_items(self) -> int:
        return int(self.V.shape[0])

    @property
    def factors(self) -> int:
        return int(self.U.shape[1])

    def recommend(self, user_index: int, k: int = 10, exclude: Iterable[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items for a user row: scores ``U[user_index] @ V.T``, best first.

        Args:
            user_index: row of ``U`` (0-based).
            k: how many items; fewer come back when fewer items are eligible.
            exclude: item indices never to return (e.g. already purchased).

        Returns:
            ``(item_indices, scores)`` as arrays of the same length.

        Raises:
            InvalidArgumentError: ``user_index``, ``k`` or an excluded index is not a
                valid non-negative integer in range.
        """
        row = _index_argument(user_index, self.num_users, "user_index")
        count = _positive_int(k, "k")
        scores = self.V @ self.U[row]
        if scores.dtype.kind != "f":
            scores = scores.astype(np.float64)
        eligible = self.num_items
        if exclude is not None:
            excluded = _item_indices(exclude, self.num_items)
            if excluded.size:
                scores[excluded] = -np.inf
                eligible -= int(np.unique(excluded).size)
        count = min(count, eligible)
        if count <= 0:
            return np.empty(0, dtype=np.int64), scores[:0]
        if count < scores.shape[0]:
            top = np.argpartition(-scores, count - 1)[:count]
        else:
            top = np.arange(scores.shape[0])
        top = top[np.argsort(-scores[top], kind="stable")]
        return top.astype(np.int64, copy=False), scores[top]

    def recommend_for_user(self, user_id: Any, k: int = 10, exclude: Iterable[Any] | None = None) -> tuple[list[Any], np.ndarray]:
        """Top-``k`` item ids for an external user id, through the model's id maps.

        Args:
            user_id: an id from ``{type}_user_ids.json``.
            k: how many items.
            exclude: item ids never to return; ids the model does not know are ignored.

        Returns:
            ``(item_ids, scores)``.

        Raises:
            ModelNotFoundError: the user id is not in the model's user ids.
            InvalidArgumentError: the model has no id maps, or ``k`` is invalid.
        """
        if self.user_ids is None or self.item_ids is None:
            raise InvalidArgumentError(
                f"model {self.model_id!r} has no id maps ({self.model_type}_user_ids.json and "
                f"{self.model_type}_item_ids.json); use recommend(user_index) instead"
            )
        users = self._lookup("_user_lookup", self.user_ids)
        try:
            row = users.get(user_id)
        except TypeError:
            row = None
        if row is None:
            raise ModelNotFoundError(f"user {user_id!r} is not among the {self.num_users} users of model {self.model_id!r}")
        excluded = None
        if exclude is not None:
            items = self._lookup("_item_lookup", self.item_ids)
            excluded = [items[item] for item in exclude if _hashable(item) and item in items]
        indices, scores = self.recommend(row, k, excluded)
        return [self.item_ids[i] for i in indices], scores

    def _lookup(self, name: str, ids: list[Any]) -> dict[Any, int]:
        lookup = getattr(self, name)
        if lookup is None:  # built on first use; two threads building it at once is harmless
            lookup = {value: index for index, value in enumerate(ids)}
            object.__setattr__(self, name, lookup)
        return lookup


@dataclass
class LoaderStats:
    """Loader counters. The first six fields are the original documentation's.

    ``total_loads`` counts models handed out or prepared (loads, reload swaps,
    preloads); each is a ``cache_hit`` (from memory) or a ``cache_miss`` (read
    from disk). ``reload_count`` counts :meth:`ModelLoader.reload_model` calls,
    ``swap_count`` the times the served model was replaced.
    """

    total_loads: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    reload_count: int = 0
    last_load_time_ms: float = 0
    last_reload_at: str | None = None
    swap_count: int = 0
    evictions: int = 0
    reload_failures: int = 0
    last_reload_error: str | None = None


@dataclass(frozen=True)
class _Record:
    """What the registry says about one model: where it lives and its recorded files."""

    model_id: str
    model_type: str
    version: str
    path: str
    files: Mapping[str, tuple[int, str]]  # file name -> (size_bytes, sha256)
    key: CacheKey


@dataclass(frozen=True)
class _Routing:
    """The running A/B test as last read (``config`` None: no test) and its loaded arms."""

    config: dict[str, Any] | None
    states: Mapping[str, ModelState]


# --------------------------------------------------------------------------- loader


class ModelLoader:
    """Loads registry models for serving: cached, verified, hot-reloadable and thread-safe.

    Usage::

        loader = ModelLoader("artifacts/cf/registry.json")
        U, V, metadata = loader.load_current_best()
        changed = loader.reload_model()

    Args:
        registry_path: where the registry's ``registry.json`` lives (its database
            ``registry.db`` beside it unless ``database_url`` says otherwise).
        cache_enabled: keep loaded models in the LRU cache.
        auto_load: load the current best now (no current best is not an error).
        database_url: SQLAlchemy URL of the registry database (else
            ``$CFREG_DATABASE_URL``, else the SQLite file beside ``registry_path``).
        max_cache_bytes: cache budget for ``U``+``V`` bytes (default 2 GiB, or
            ``$CFREG_LOADER_MAX_CACHE_BYTES``). A model larger than the budget is
            served but not cached.
        mmap: map the ``.npy`` files read-only instead of reading them into memory.
        verify: ``'none'``; ``'size'`` (file sizes equal the recorded ones, ``.npy``
            headers valid); ``'full'`` (also sha256, checked while reading).
        root: base of relative artifact paths (default: the registry's stored root).

    Raises:
        RegistryNotFoundError: the registry does not exist (nothing is created).
        InvalidArgumentError: bad ``verify`` / ``max_cache_bytes``.
        InvalidArtifactsError: with ``auto_load``, the current best cannot be loaded.
    """

    def __init__(
        self,
        registry_path: str | os.PathLike[str] = DEFAULT_REGISTRY_PATH,
        cache_enabled: bool = True,
        auto_load: bool = True,
        *,
        database_url: str | None = None,
        max_cache_bytes: int | None = None,
        mmap: bool = False,
        verify: str = "size",
        root: str | os.PathLike[str] | None = None,
    ) -> None:
        if verify not in VERIFY_MODES:
            raise InvalidArgumentError(f"verify must be one of {VERIFY_MODES}, got {verify!r}")
        self.cache_enabled = bool(cache_enabled)
        self.max_cache_bytes = _cache_budget(max_cache_bytes)
        self.mmap = bool(mmap)
        self.verify = verify
        self._ctx = RegistryContext.open(
            registry_path, database_url=database_url, auto_create=False, export_json=False, root=root
        )
        self.registry_path = self._ctx.json_path
        self._reader = self._ctx.held_reader()
        self._lock = threading.RLock()  # served state, cache, index, stats: short sections, no I/O
        self._load_lock = threading.RLock()  # registry/disk reads and reload checks, one at a time
        self._auto_lock = threading.Lock()
        self._state: ModelState | None = None
        self._known: tuple[int, str | None] | None = None  # (generation, current best) of the last check
        self._entries: OrderedDict[CacheKey, ModelState] = OrderedDict()
        self._cache_bytes = 0
        self._index: dict[str, CacheKey] = {}  # model id -> key, valid until the generation changes
        self._routing: _Routing | None = None  # None until load_for_user is first used
        self._failure: tuple[CacheKey, tuple[FileStamp, ...], ChecksumMismatchError] | None = None
        self._stats = LoaderStats()
        self._last_reload_at: float | None = None
        self._auto: tuple[threading.Thread, threading.Event] | None = None
        if auto_load:
            try:
                with self._load_lock:
                    self._check()
            except BaseException:
                self.close()
                raise

    def __repr__(self) -> str:
        state = self._state
        return f"ModelLoader({str(self.registry_path)!r}, serving={state.model_id if state else None!r})"

    def __enter__(self) -> ModelLoader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def context(self) -> RegistryContext:
        """The opened registry this loader reads."""
        return self._ctx

    # ------------------------------------------------------------------ loading

    def load_current_best(self) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """``(U, V, metadata)`` of the registry's current best, made the served model.

        Returns the served model when it is the current best as of the last check
        (no registry or disk read); a new best selected elsewhere is picked up by
        :meth:`reload_model` (or :meth:`start_auto_reload`).

        Raises:
            NoModelLoadedError: the registry has no current best.
            InvalidArtifactsError / ChecksumMismatchError: its files fail verification.
        """
        state, known = self._state, self._known
        if state is not None and known is not None and state.model_id == known[1]:
            with self._lock:
                self._count(from_disk=False)
            return state.U, state.V, dict(state.metadata)
        with self._load_lock:
            changed = self._check()
            state, known = self._state, self._known
        if known is None or known[1] is None or state is None or state.model_id != known[1]:
            raise NoModelLoadedError(
                f"No current best model in registry {self._ctx.database.describe()}: select one with "
                "ModelRegistry.select_best_model() or promote_model(), or serve a given model with load_model(model_id)"
            )
        if not changed:
            with self._lock:
                self._count(from_disk=False)
        return state.U, state.V, dict(state.metadata)

    def load_model(self, model_id: str) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """``(U, V, metadata)`` of ``model_id``, which becomes the served model (from cache or disk).

        Raises:
            ModelNotFoundError: no such model in the registry.
            InvalidArgumentError: ``model_id`` is not a valid id.
            InvalidArtifactsError / ChecksumMismatchError: its files fail verification.
        """
        state = None
        if isinstance(model_id, str):
            with self._lock:
                state = self._in_memory(model_id)
                if state is not None:
                    self._count(from_disk=False)
                    self._install(state, serve=True)
        if state is None:
            validate_identifier(model_id, "model_id")
            with self._load_lock:
                state, from_disk, elapsed = self._obtain(self._require_record(model_id), check_files=False)
                with self._lock:
                    self._count(from_disk, elapsed)
                    self._install(state, serve=True)
        return state.U, state.V, dict(state.metadata)

    def preload_models(self, model_ids: Iterable[str]) -> int:
        """Warm the cache with ``model_ids`` without changing the served model.

        Failures (unknown ids, bad files) are logged and skipped.

        Returns:
            How many of the models are now in memory.
        """
        if isinstance(model_ids, str):
            model_ids = [model_ids]
        if not self.cache_enabled:
            logger.warning("preload_models: the cache is disabled (cache_enabled=False); nothing preloaded")
            return 0
        loaded = 0
        for model_id in model_ids:
            try:
                validate_identifier(model_id, "model_id")
                with self._load_lock:
                    state, from_disk, elapsed = self._obtain(self._require_record(model_id), check_files=False)
                    with self._lock:
                        self._count(from_disk, elapsed)
                        self._install(state, serve=False)
                        kept = state.key in self._entries or state is self._state
            except (RegistryError, OSError) as exc:
                logger.warning("preload of model %r failed: %s", model_id, exc)
                continue
            if kept:
                loaded += 1
            else:
                logger.warning("model %r (%d bytes) was loaded but does not fit the cache budget of %d bytes",
                               model_id, state.nbytes, self.max_cache_bytes)
        return loaded

    def reload_model(self) -> bool:
        """Serve the registry's current best if it (or its files) changed since the last check.

        A cheap check: one indexed read of the registry's ``(generation, current
        best)`` and a ``stat`` of the served files. Only when the current best,
        its recorded files or the files on disk changed is a model loaded; it is
        loaded and verified completely before it replaces the served one (one
        reference swap). On failure the previous model keeps serving and the
        error is raised. A model served through :meth:`load_model` is replaced by
        the current best.

        Returns:
            True when the served model changed: another id, or the same id with
            changed files. False when the current best was already served.
        """
        with self._load_lock:
            try:
                return self._check()
            except Exception as exc:
                with self._lock:
                    self._stats.reload_failures += 1
                    self._stats.last_reload_error = f"{type(exc).__name__}: {exc}"
                raise
            finally:
                with self._lock:
                    self._stats.reload_count += 1
                    self._last_reload_at = time.time()

    # ------------------------------------------------------------------ A/B routing

    def state_for_user(self, user_id: Any) -> ModelState:
        """The model that serves ``user_id``: its A/B arm while a test runs, else the current best.

        The running test is read once and then refreshed by :meth:`reload_model`
        when the registry changes; both arms stay in memory, so routing never reads
        the disk per request. An arm that cannot be loaded falls back to the
        current best (logged when the test is read).
        """
        routing = self._routing
        if routing is None:
            with self._load_lock:
                if self._routing is None:
                    self._refresh_routing()
                routing = self._routing
        assert routing is not None
        if routing.config is not None:
            state = routing.states.get(abtest.get_model_for_user(user_id, routing.config))
            if state is not None:
                return state
        state = self._state
        if state is None:
            self.load_current_best()
            state = self._state
        assert state is not None
        return state

    def load_for_user(self, user_id: Any) -> tuple[str, np.ndarray, np.ndarray]:
        """``(model_id, U, V)`` of the model serving ``user_id`` (see :meth:`state_for_user`)."""
        state = self.state_for_user(user_id)
        return state.model_id, state.U, state.V

    # ------------------------------------------------------------------ accessors

    def get_current_model(self) -> ModelState | None:
        """The served :class:`ModelState`, or None before anything was loaded."""
        return self._state

    def get_embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """``(U, V)`` of the served model (one model, even during a reload).

        Raises:
            NoModelLoadedError: nothing is loaded yet.
        """
        state = self._state
        if state is None:
            raise NoModelLoadedError("No model loaded: call load_current_best() or load_model(model_id) first")
        return state.U, state.V

    def get_model_info(self) -> dict[str, Any]:
        """Id, type, version, shapes, ``loaded_at`` and ``path`` of the served model (``{}`` if none)."""
        state = self._state
        if state is None:
            return {}
        return {
            "model_id": state.model_id,
            "model_type": state.model_type,
            "version": state.version,
            "num_users": state.num_users,
            "num_items": state.num_items,
            "factors": state.factors,
            "loaded_at": state.loaded_at,
            "path": state.path,
        }

    def get_stats(self) -> dict[str, Any]:
        """The documented counters plus ``cache_bytes``, ``max_cache_bytes``, ``evictions``,
        ``swap_count``, ``reload_failures`` and ``last_reload_error``."""
        with self._lock:
            stats = self._stats
            lookups = stats.cache_hits + stats.cache_misses
            reloaded = self._last_reload_at
            return {
                "total_loads": stats.total_loads,
                "cache_hits": stats.cache_hits,
                "cache_misses": stats.cache_misses,
                "cache_hit_rate": stats.cache_hits / max(1, lookups),
                "reload_count": stats.reload_count,
                "last_load_time_ms": stats.last_load_time_ms,
                "last_reload_at": None if reloaded is None else datetime.fromtimestamp(reloaded, timezone.utc).strftime(TIME_FORMAT),
                "cached_models": [key[0] for key in self._entries],
                "cache_bytes": self._cache_bytes,
                "max_cache_bytes": self.max_cache_bytes,
                "evictions": stats.evictions,
                "swap_count": stats.swap_count,
                "reload_failures": stats.reload_failures,
                "last_reload_error": stats.last_reload_error,
            }

    def clear_cache(self) -> None:
        """Drop every cached model (the served model keeps serving)."""
        with self._lock:
            self._entries.clear()
            self._cache_bytes = 0

    # ------------------------------------------------------------------ auto reload

    def start_auto_reload(self, interval_seconds: float, callback: Callable[[str | None, str | None], Any] | None = None) -> None:
        """Run :meth:`reload_model` every ``interval_seconds`` in a daemon thread.

        Args:
            interval_seconds: pause between checks (> 0).
            callback: called as ``callback(old_model_id, new_model_id)`` after each change.

        Errors of a check or of the callback are logged; the thread keeps going.
        Starting again replaces the running thread.
        """
        if isinstance(interval_seconds, bool) or not isinstance(interval_seconds, (int, float)) \
                or not math.isfinite(interval_seconds) or interval_seconds <= 0:
            raise InvalidArgumentError(f"interval_seconds must be a positive number, got {interval_seconds!r}")
        if callback is not None and not callable(callback):
            raise InvalidArgumentError(f"callback must be callable, got {callback!r}")
        with self._auto_lock:
            self._stop_auto_reload_locked()
            stop = threading.Event()
            thread = threading.Thread(
                target=self._auto_reload_loop, args=(float(interval_seconds), callback, stop),
                name=f"cfreg-auto-reload-{self.registry_path.parent.name}", daemon=True,
            )
            self._auto = (thread, stop)
            thread.start()

    def stop_auto_reload(self) -> bool:
        """Stop the auto-reload thread; False when none was running."""
        with self._auto_lock:
            return self._stop_auto_reload_locked()

    def close(self) -> None:
        """Stop auto-reload and release the loader's database connection (the cache stays usable)."""
        self.stop_auto_reload()
        self._reader.close()

    def _stop_auto_reload_locked(self) -> bool:
        auto, self._auto = self._auto, None
        if auto is None:
            return False
        thread, stop = auto
        stop.set()
        if thread is not threading.current_thread():
            thread.join(STOP_TIMEOUT_SECONDS)
            if thread.is_alive():
                logger.warning("auto-reload thread still busy after %.0f s; it stops after its current check", STOP_TIMEOUT_SECONDS)
        return True

    def _auto_reload_loop(self, interval: float, callback: Callable[[str | None, str | None], Any] | None,
                          stop: threading.Event) -> None:
        while not stop.wait(interval):
            old = self._state
            try:
                changed = self.reload_model()
            except RegistryError as exc:
                logger.error("auto-reload check failed, still serving %s: %s", old.model_id if old else None, exc)
                continue
            except Exception:
                logger.exception("auto-reload check failed, still serving %s", old.model_id if old else None)
                continue
            if changed and callback is not None:
                new = self._state
                try:
                    callback(old.model_id if old else None, new.model_id if new else None)
                except Exception:
                    logger.exception("auto-reload callback %r failed", callback)

    # ------------------------------------------------------------------ internals (load lock held)

    def _check(self) -> bool:
        """The reload check; True when a newly loaded model now serves."""
        generation, current_id = self._ctx.generation(self._reader)
        known, served = self._known, self._state
        if known is not None and generation == known[0]:
            if current_id is None:
                return False
            if served is not None and served.model_id == current_id and _files_unchanged(served):
                return False
        else:
            with self._lock:
                self._index.clear()  # ids may now name other files
        rows = self._reader.rows(CURRENT_QUERY)
        generation, current_id = int(rows[0][0]), rows[0][1]
        record = _record_from_rows([row[2:] for row in rows])
        if record is None:
            if served is not None and (known is None or known[1] is not None):
                logger.warning("registry %s has no current best; still serving %s",
                               self._ctx.database.describe(), served.model_id)
            changed = False
        elif served is not None and served.key == record.key and _files_unchanged(served):
            changed = False
        else:
            state, from_disk, elapsed = self._obtain(record, check_files=True)
            with self._lock:
                self._count(from_disk, elapsed)
                self._install(state, serve=True)
            if served is not None:
                logger.info("now serving %s (was %s)", state.model_id, served.model_id)
            changed = True
        if self._routing is not None and (known is None or generation != known[0]):
            self._refresh_routing()
        self._known = (generation, current_id)
        return changed

    def _require_record(self, model_id: str) -> _Record:
        record = _record_from_rows(self._reader.rows(RECORD_QUERY, {"model_id": model_id}))
        if record is None:
            raise ModelNotFoundError(
                f"Model {model_id!r} not found in registry {self._ctx.database.describe()}; "
                "list the registered ids with ModelRegistry.list_models()"
            )
        return record

    def _obtain(self, record: _Record, *, check_files: bool) -> tuple[ModelState, bool, float]:
        """``(state, from_disk, elapsed_ms)`` for a record: from memory when possible."""
        with self._lock:
            state = self._by_key(record.key)
        if state is not None and (not check_files or _files_unchanged(state)):
            return state, False, 0.0
        started = time.perf_counter()
        state = self._read_from_disk(record)
        return state, True, (time.perf_counter() - started) * 1000.0

    def _read_from_disk(self, record: _Record) -> ModelState:
        folder = self._ctx.resolve(record.path)
        prefix = record.model_type
        found, stamps = self._stat_files(record, folder)
        failure = self._failure
        if failure is not None and failure[0] == record.key and failure[1] == stamps:
            # Same files as the last checksum failure: do not read and hash them again.
            raise type(failure[2])(f"{failure[2]} (files unchanged since the last failed attempt)")
        try:
            U = self._load_array(found[f"{prefix}_U.npy"], record)
            V = self._load_array(found[f"{prefix}_V.npy"], record)
            params = self._load_json(found.get(f"{prefix}_params.json"), record, dict, {})
            metadata = self._load_json(found.get(f"{prefix}_metadata.json"), record, dict, {})
            user_ids = self._load_json(found.get(f"{prefix}_user_ids.json"), record, list, None)
            item_ids = self._load_json(found.get(f"{prefix}_item_ids.json"), record, list, None)
            _check_shapes(record, U, V, user_ids, item_ids)
        except ChecksumMismatchError as exc:
            self._failure = (record.key, stamps, exc)
            raise
        self._failure = None
        metadata = {**metadata, "model_id": record.model_id, "model_type": record.model_type,
                    "version": record.version, "path": record.path}
        logger.info("loaded model %s from %s (%d bytes, verify=%s, mmap=%s)",
                    record.model_id, folder, U.nbytes + V.nbytes, self.verify, self.mmap)
        return ModelState(
            model_id=record.model_id, model_type=record.model_type, version=record.version, U=U, V=V,
            params=params, metadata=metadata, loaded_at=iso(utcnow()) or "", path=record.path,
            user_ids=user_ids, item_ids=item_ids, folder=str(folder), checksums=record.key[1],
            file_stamps=stamps,
        )

    def _stat_files(self, record: _Record, folder: Path) -> tuple[dict[str, Path], tuple[FileStamp, ...]]:
        """Existing model files and their stamps; size checks for ``verify != 'none'``."""
        prefix = record.model_type
        names = [f"{prefix}_U.npy", f"{prefix}_V.npy", f"{prefix}_params.json", f"{prefix}_metadata.json",
                 *artifacts.id_map_files(prefix).values()]
        found: dict[str, Path] = {}
        stamps: list[FileStamp] = []
        for position, name in enumerate(names):
            path = folder / name
            try:
                info = os.stat(path)
            except FileNotFoundError:
                if position < 2 or name in record.files:
                    raise InvalidArtifactsError(
                        f"{path}: file of model {record.model_id!r} is missing (registered path "
                        f"{record.path!r}); restore it or re-register the model"
                    ) from None
                continue
            except OSError as exc:
                raise InvalidArtifactsError(f"{path}: cannot be read ({exc})") from exc
            recorded = record.files.get(name)
            if self.verify != "none" and recorded is not None and recorded[0] != info.st_size:
                raise ChecksumMismatchError(
                    f"{path}: {info.st_size} bytes but {recorded[0]} were recorded at registration; "
                    "restore the file or re-register the model with overwrite=True"
                )
            found[name] = path
            stamps.append((name, info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino))
        return found, tuple(stamps)

    def _expected_sha256(self, path: Path, record: _Record) -> str | None:
        if self.verify != "full":
            return None
        recorded = record.files.get(path.name)
        if recorded is None:
            logger.warning("%s has no recorded checksum (model %s); loaded without verification", path, record.model_id)
            return None
        return recorded[1]

    def _load_array(self, path: Path, record: _Record) -> np.ndarray:
        sha256 = self._expected_sha256(path, record)
        if sha256 is not None and not self.mmap:
            array = artifacts.load_npy_verified(path, sha256)
        else:
            if sha256 is not None:
                # A mapping is read lazily: hash the file first, then map it.
                try:
                    digest = artifacts.sha256_file(path)
                except OSError as exc:
                    raise InvalidArtifactsError(f"{path}: could not be read ({exc})") from exc
                if digest != sha256:
                    raise ChecksumMismatchError(
                        f"{path}: sha256 {digest} differs from the {sha256} recorded at registration"
                    )
            array = artifacts.load_npy(path, mmap=self.mmap)
        array.flags.writeable = False
        return array

    def _load_json(self, path: Path | None, record: _Record, kind: type, default: Any) -> Any:
        if path is None:
            return default
        sha256 = self._expected_sha256(path, record)
        value = artifacts.read_json_verified(path, sha256) if sha256 else artifacts.read_json_file(path)
        if not isinstance(value, kind):
            raise InvalidArtifactsError(f"{path}: must hold a JSON {'object' if kind is dict else 'list'}")
        return value

    def _refresh_routing(self) -> None:
        """Re-read the running A/B test and load its arms into memory (never serves them)."""
        config = abtest.routing_config(self._ctx)
        states: dict[str, ModelState] = {}
        if config is not None:
            for arm in dict.fromkeys((config["control_model"], config["treatment_model"])):
                try:
                    state, from_disk, elapsed = self._obtain(self._require_record(arm), check_files=True)
                except RegistryError as exc:
                    logger.error("A/B test %s: model %s cannot be loaded (%s); its users get the current best",
                                 config.get("test_id"), arm, exc)
                    continue
                states[arm] = state
                with self._lock:
                    self._count(from_disk, elapsed)
                    self._install(state, serve=False, pinned=[s.key for s in states.values()])
        self._routing = _Routing(config, states)

    # ------------------------------------------------------------------ internals (self._lock held)

    def _in_memory(self, model_id: str) -> ModelState | None:
        key = self._index.get(model_id)
        return None if key is None else self._by_key(key)

    def _by_key(self, key: CacheKey) -> ModelState | None:
        state = self._entries.get(key)
        if state is not None:
            self._entries.move_to_end(key)
            return state
        served = self._state
        if served is not None and served.key == key:
            return served
        routing = self._routing
        if routing is not None:
            for state in routing.states.values():
                if state.key == key:
                    return state
        return None

    def _count(self, from_disk: bool, elapsed_ms: float = 0.0) -> None:
        stats = self._stats
        stats.total_loads += 1
        if from_disk:
            stats.cache_misses += 1
            stats.last_load_time_ms = elapsed_ms
        else:
            stats.cache_hits += 1

    def _install(self, state: ModelState, *, serve: bool, pinned: Iterable[CacheKey] = ()) -> None:
        self._index[state.model_id] = state.key
        if serve and self._state is not state:
            if self._state is not None:
                self._stats.swap_count += 1
            self._state = state
        if self.cache_enabled:
            previous = self._entries.get(state.key)
            if previous is not state:
                if previous is not None:  # same key, files reloaded after an on-disk change
                    del self._entries[state.key]
                    self._cache_bytes -= previous.nbytes
                # Older contents of this id (before an overwrite) can never be asked for again.
                for key in [k for k in self._entries if k[0] == state.model_id and k != state.key]:
                    self._cache_bytes -= self._entries.pop(key).nbytes
                if state.nbytes <= self.max_cache_bytes:
                    self._entries[state.key] = state
                    self._cache_bytes += state.nbytes
                else:
                    logger.info("model %s (%d bytes) exceeds max_cache_bytes=%d: served or held, not cached",
                                state.model_id, state.nbytes, self.max_cache_bytes)
        self._evict(pinned)

    def _evict(self, pinned: Iterable[CacheKey] = ()) -> None:
        """Evict least recently used entries until the cache fits its budget.

        The served model is never evicted; A/B arms (and ``pinned``) only when
        nothing else is left (they stay in memory through the routing table).
        """
        if self._cache_bytes <= self.max_cache_bytes:
            return
        served = self._state.key if self._state is not None else None
        routing = self._routing
        keep = {served, *pinned, *(s.key for s in routing.states.values())} if routing else {served, *pinned}
        for protect in (keep, {served}):
            for key in [k for k in self._entries if k not in protect]:
                if self._cache_bytes <= self.max_cache_bytes:
                    return
                evicted = self._entries.pop(key)
                self._cache_bytes -= evicted.nbytes
                self._stats.evictions += 1
                logger.debug("evicted %s from the loader cache", key[0])


# --------------------------------------------------------------------------- registry reads


# One statement each, so every read is one consistent snapshot on both backends.
_FILE_COLUMNS = (Model.model_id, Model.model_type, Model.version, Model.path,
                 ArtifactFile.file_name, ArtifactFile.size_bytes, ArtifactFile.sha256)
RECORD_QUERY = (
    select(*_FILE_COLUMNS)
    .outerjoin(ArtifactFile, ArtifactFile.model_id == Model.model_id)
    .where(Model.model_id == bindparam("model_id"))
)
CURRENT_QUERY = (
    select(Settings.generation, Settings.current_model_id, *_FILE_COLUMNS)
    .select_from(Settings)
    .outerjoin(Model, Model.model_id == Settings.current_model_id)
    .outerjoin(ArtifactFile, ArtifactFile.model_id == Model.model_id)
    .where(Settings.id == 1)
)


def _record_from_rows(rows: list[tuple[Any, ...]]) -> _Record | None:
    """A record from ``(model_id, model_type, version, path, file_name, size, sha256)`` rows."""
    if not rows or rows[0][0] is None:
        return None
    model_id, model_type, version, path = rows[0][:4]
    files = {name: (int(size), sha256) for *_, name, size, sha256 in rows if name is not None}
    key: CacheKey = (model_id, tuple(sorted((name, sha) for name, (_, sha) in files.items())))
    return _Record(model_id, model_type, version, path, files, key)


# --------------------------------------------------------------------------- helpers


def _cache_budget(value: int | None) -> int:
    if value is None:
        raw = os.environ.get(ENV_MAX_CACHE_BYTES)
        if raw is None:
            return DEFAULT_MAX_CACHE_BYTES
        try:
            value = int(raw)
        except ValueError:
            raise InvalidArgumentError(f"${ENV_MAX_CACHE_BYTES} must be an integer number of bytes, got {raw!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise InvalidArgumentError(f"max_cache_bytes must be an integer >= 0, got {value!r}")
    return int(value)


def _files_unchanged(state: ModelState) -> bool:
    """True when every file the state was loaded from still has the same size, times and inode."""
    for name, size, mtime_ns, ctime_ns, inode in state.file_stamps:
        try:
            info = os.stat(os.path.join(state.folder, name))
        except OSError:
            return False
        if info.st_size != size or info.st_mtime_ns != mtime_ns or info.st_ctime_ns != ctime_ns or info.st_ino != inode:
            return False
    return True


def _check_shapes(record: _Record, U: np.ndarray, V: np.ndarray, user_ids: list[Any] | None, item_ids: list[Any] | None) -> None:
    where = f"model {record.model_id!r} at {record.path!r}"
    if U.ndim != 2 or V.ndim != 2:
        raise InvalidArtifactsError(f"{where}: U and V must be 2-D, got shapes {U.shape} and {V.shape}")
    if U.shape[1] != V.shape[1]:
        raise InvalidArtifactsError(f"{where}: factor counts differ (U has {U.shape[1]}, V has {V.shape[1]})")
    for name, ids, rows in (("user_ids", user_ids, U.shape[0]), ("item_ids", item_ids, V.shape[0])):
        if ids is not None and len(ids) != rows:
            raise InvalidArtifactsError(f"{where}: {record.model_type}_{name}.json has {len(ids)} ids for {rows} rows")


def _index_argument(value: Any, size: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidArgumentError(f"{name} must be an integer, got {value!r}")
    if not 0 <= value < size:
        raise InvalidArgumentError(f"{name} {value} is out of range: the model has {size} rows (0..{size - 1})")
    return int(value)


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidArgumentError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _item_indices(exclude: Iterable[int], num_items: int) -> np.ndarray:
    values = np.asarray(exclude if isinstance(exclude, np.ndarray) else list(exclude))
    if values.size == 0:
        return np.empty(0, dtype=np.int64)
    if values.dtype.kind not in "iu" or values.ndim != 1:
        raise InvalidArgumentError(f"exclude must be a flat collection of integer item indices, got {values!r}")
    if values.min() < 0 or values.max() >= num_items:
        raise InvalidArgumentError(f"exclude holds item indices outside 0..{num_items - 1}")
    return values.astype(np.int64, copy=False)


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


# --------------------------------------------------------------------------- shared loaders

_loaders: dict[tuple[str, str | None, int], ModelLoader] = {}
_loaders_lock = threading.Lock()


def get_loader(registry_path: str | os.PathLike[str] | None = None, **kwargs: Any) -> ModelLoader:
    """The shared :class:`ModelLoader` of a registry (one per registry location and database).

    Args:
        registry_path: the registry (default ``artifacts/cf/registry.json``).
        **kwargs: :class:`ModelLoader` options, used when the loader is first created.
    """
    path = DEFAULT_REGISTRY_PATH if registry_path is None else registry_path
    key = (str(Path(path).expanduser().absolute()), kwargs.get("database_url") or os.environ.get(ENV_DATABASE_URL), os.getpid())
    with _loaders_lock:
        loader = _loaders.get(key)
        if loader is None:
            loader = ModelLoader(path, **kwargs)
            _loaders[key] = loader
        return loader


def reset_loader() -> None:
    """Stop and forget every shared loader (their auto-reload threads and connections too)."""
    with _loaders_lock:
        loaders = list(_loaders.values())
        _loaders.clear()
    for loader in loaders:
        loader.close()


def load_model_from_registry(
    model_id: str | None = None, registry_path: str | os.PathLike[str] = DEFAULT_REGISTRY_PATH
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``(U, V, metadata)`` of ``model_id`` (default: the current best) via the registry's shared loader."""
    loader = get_loader(registry_path)
    return loader.load_current_best() if model_id is None else loader.load_model(model_id)

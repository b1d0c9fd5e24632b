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

This module coordinates; the parts live beside it in :mod:`registry.serving`:
``model_state`` (the served model and its recommendations), ``model_files`` (the
registry's record of a model's files and reading them), ``model_cache`` (the LRU),
``routing`` (the A/B routing table) and ``auto_reload`` (the reload thread). The class is
assembled from mixins: ``loader_views`` (what is served to whom, the counters),
``loader_watch`` (auto reload, watching, load listeners) and ``loader_fetch`` (reading
files from disk or an artifact store) on ``loader_base``.
The documented import path stays ``registry.loader`` (a thin module re-exporting this one).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from typing import Any

import numpy as np

from .. import abtest
from ..context import RegistryContext
from ..defaults import DEFAULT_REGISTRY_PATH
from ..errors import (
    ChecksumMismatchError,
    InvalidArgumentError,
    NoModelLoadedError,
    RegistryError,
)
from ..instances import SharedInstances
from ..models import CURRENT_BEST_ALIAS
from ..notify import GenerationWatcher
from ..opening import open_context
from ..storage.cache import ArtifactCache
from ..timestamps import SecondStamp
from ..validation import validate_identifier
from .loader_fetch import LoaderFetching
from .loader_views import LoaderStats, LoaderViews
from .loader_watch import LoaderWatching, LoadListener
from .model_cache import DEFAULT_MAX_CACHE_BYTES, ModelCache, cache_budget
from .model_files import (
    VERIFY_MODES,
    ModelRecord,
    files_unchanged,
    pointer_queries,
    record_from_rows,
)
from .model_state import CacheKey, FileStamp, ModelState
from .record_lookup import RecordLookup
from .routing import ABRouting, load_routing

# The documented logger name (docs/loader.md): model swaps are logged at INFO here.
logger = logging.getLogger("registry.loader")

__all__ = [
    "DEFAULT_MAX_CACHE_BYTES",
    "LoaderStats",
    "ModelLoader",
    "ModelState",
    "get_loader",
    "load_model_from_registry",
    "reset_loader",
]


# --------------------------------------------------------------------------- loader


class ModelLoader(LoaderViews, LoaderWatching, LoaderFetching):
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
        alias: follow this alias instead of the current best.
        watch: reload as soon as the registry changes: PostgreSQL ``LISTEN``
            (falling back to polling while the connection is down), or a fast poll of
            the generation stamp on SQLite (see :mod:`registry.notify`).
        artifact_cache_dir: where files of store-backed models are cached (default
            ``$CFREG_ARTIFACT_CACHE`` or the user's cache directory); shared by the
            loaders of a host.
        artifact_cache_bytes: the artifact cache's byte budget (default 20 GiB or
            ``$CFREG_ARTIFACT_CACHE_MAX_BYTES``).

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
        alias: str | None = None,
        watch: bool = False,
        artifact_cache_dir: str | os.PathLike[str] | None = None,
        artifact_cache_bytes: int | None = None,
    ) -> None:
        if verify not in VERIFY_MODES:
            raise InvalidArgumentError(f"verify must be one of {VERIFY_MODES}, got {verify!r}")
        self.alias = CURRENT_BEST_ALIAS if alias is None else validate_identifier(alias, "alias")
        self._check_query, self._current_query, self._pointer_params = pointer_queries(self.alias)
        self.cache_enabled = bool(cache_enabled)
        self._cache = ModelCache(cache_budget(max_cache_bytes))
        self.mmap = bool(mmap)
        self.verify = verify
        # The first check's read rides on the opening read (see _prefetched_rows).
        self._ctx = open_context(
            registry_path, database_url=database_url, auto_create=False, export_json=False, root=root, hold_reader=True,
            prefetch=(self._current_query, self._pointer_params),
        )
        if not auto_load and self._ctx.prefetched is not None and self._ctx.prefetched.stamp is None:
            self._ctx.take_prefetched()  # no stamp (PostgreSQL): only a check made right now may use the rows
        self.registry_path = self._ctx.json_path
        self._reader = self._ctx.held_reader()
        self._records = RecordLookup(self._reader, self._ctx.database.describe())
        self._lock = threading.RLock()  # served state, cache, index, stats: short sections, no I/O
        self._load_lock = threading.RLock()  # registry/disk reads and reload checks, one at a time
        self._state: ModelState | None = None
        self._known: tuple[int, str | None] | None = None  # (generation, current best) of the last check
        # SQLite: the reader's (serial, data_version) when _known was read; unchanged = nothing committed since.
        self._known_version: tuple[int, int] | None = None
        self._index: dict[str, CacheKey] = {}  # model id -> key, valid until the generation changes
        self._routing: ABRouting | None = None  # None until A/B routing is first used
        self._failure: tuple[CacheKey, tuple[FileStamp, ...], ChecksumMismatchError] | None = None
        self._stats = LoaderStats()
        self._reload_stamp = SecondStamp()
        self._listeners: tuple[LoadListener, ...] = ()
        self._auto = None  # created by start_auto_reload (no reference cycle before)
        self._artifact_cache_dir = artifact_cache_dir
        self._artifact_cache_bytes = artifact_cache_bytes
        self._artifact_cache: ArtifactCache | None = None
        # model key -> (monotonic time of the next attempt, current delay, error): download backoff
        self._fetch_failures: dict[CacheKey, tuple[float, float, RegistryError]] = {}
        self._watcher: GenerationWatcher | None = None
        if auto_load:
            try:
                with self._load_lock:
                    self._check()
            except BaseException:
                self.close()
                raise
        if watch:
            self.start_watching()

    def __repr__(self) -> str:
        return f"ModelLoader({str(self.registry_path)!r}, alias={self.alias!r}, serving={self._served_id()!r})"

    def _pointer_name(self) -> str:
        return "current best" if self.alias == CURRENT_BEST_ALIAS else f"alias {self.alias!r}"

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
            if self.alias != CURRENT_BEST_ALIAS:
                raise NoModelLoadedError(
                    f"Alias {self.alias!r} is not set in registry {self._ctx.database.describe()}: point it at a model "
                    "with ModelRegistry.set_alias() (`cfreg alias set`)"
                )
            raise NoModelLoadedError(
                f"No current best model in registry {self._ctx.database.describe()}",
                hint="select one with ModelRegistry.select_best_model() or promote_model(), "
                     "or serve a given model with load_model(model_id)",
                cli_hint="select one with `cfreg select-best` or `cfreg promote MODEL_ID`",
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
                previous = self._state
                if state is not None:
                    self._count(from_disk=False)
                    if state is not previous:  # the served model: already installed, and the lookup made it most recent
                        self._install(state, serve=True)
            if state is not None and previous is not state:
                _log_swap(previous, state, None)
        if state is None:
            validate_identifier(model_id, "model_id")
            with self._load_lock:
                state = self._take(self._records.require(model_id), check_files=False, serve=True)
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
                    state = self._take(self._records.require(model_id), check_files=False, serve=False)
                    with self._lock:
                        kept = state.key in self._cache or state is self._state
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
                    self._stats.last_reload_at = self._reload_stamp.now()

    def close(self) -> None:
        """Stop auto-reload and watching and release the loader's database connection (the cache stays usable)."""
        self.stop_watching()
        self.stop_auto_reload()
        self._reader.close()

    # ------------------------------------------------------------------ internals (load lock held)

    def _check(self) -> bool:
        """The reload check; True when a newly loaded model now serves."""
        known, served = self._known, self._state
        version = self._reader.data_version_or_none()
        if known is not None and version is not None and version == self._known_version:
            # SQLite and no commit anywhere since the last check: only the served files can have changed.
            if known[1] is None or (served is not None and served.model_id == known[1] and files_unchanged(served)):
                return False
        # The first check reads the record at once: a change check could only say "read it".
        checked = None if known is None else self._reader.rows(self._check_query, self._pointer_params)[0]
        if known is not None and checked is not None and int(checked[0]) == known[0]:
            self._known_version = version  # a commit that left the generation alone (nothing to reload)
            if checked[1] is None:
                return False
            if served is not None and served.model_id == checked[1] and files_unchanged(served):
                return False
        else:
            with self._lock:
                self._index.clear()  # ids may now name other files
        rows = self._prefetched_rows(version) if known is None else None
        if rows is None:
            rows = self._reader.rows(self._current_query, self._pointer_params)
        generation, current_id = int(rows[0][0]), rows[0][1]
        record = record_from_rows([row[2:] for row in rows])
        try:
            if record is None:
                if served is not None and (known is None or known[1] is not None):
                    logger.warning("registry %s has no %s; still serving %s",
                                   self._ctx.database.describe(), self._pointer_name(), served.model_id)
                changed = False
            elif served is not None and served.key == record.key and files_unchanged(served):
                changed = False
            else:
                self._take(record, check_files=True, serve=True)
                changed = True
        finally:  # a stopped test must stop routing even when the new best fails to load
            if self._routing is not None and (known is None or generation != known[0]):
                self._refresh_routing()
        self._known, self._known_version = (generation, current_id), version
        return changed

    def _prefetched_rows(self, version: tuple[int, int] | None) -> list[tuple[Any, ...]] | None:
        """The opening read's rows for the first check, if they are still the registry's state.

        On SQLite while ``PRAGMA data_version`` (taken just before they were read) has not
        moved; on PostgreSQL, which has no such stamp, only in the constructor's own check (a
        loader made with ``auto_load=False`` drops them at once).
        """
        prefetched = self._ctx.take_prefetched()
        if prefetched is None or (prefetched.stamp is not None and prefetched.stamp != version):
            return None
        return prefetched.rows

    def _take(self, record: ModelRecord, *, check_files: bool, serve: bool,
              pinned: Iterable[CacheKey] = ()) -> ModelState:
        """Obtain ``record``'s model, count the load and install it (as the served model if ``serve``)."""
        state, from_disk, elapsed = self._obtain(record, check_files=check_files)
        with self._lock:
            self._count(from_disk, elapsed)
            previous = self._state
            self._install(state, serve=serve, pinned=pinned)
        if from_disk:
            self._notify_load(state.model_id, elapsed / 1000.0)
        if serve and previous is not state:
            _log_swap(previous, state, elapsed if from_disk else None)
        return state

    def _obtain(self, record: ModelRecord, *, check_files: bool) -> tuple[ModelState, bool, float]:
        """``(state, from_disk, elapsed_ms)`` for a record: from memory when possible."""
        with self._lock:
            state = self._by_key(record.key)
        if state is not None and (not check_files or files_unchanged(state)):
            return state, False, 0.0
        started = time.perf_counter()
        state = self._read_from_disk(record)
        return state, True, (time.perf_counter() - started) * 1000.0

    def _refresh_routing(self) -> None:
        """Re-read the running A/B test and load its arms into memory (never serves them).

        A/B tests split the current best's traffic: a loader following another alias
        serves that alias's model to every user and routes no test.
        """
        def load_arm(model_id: str, pinned: list[CacheKey]) -> ModelState:
            record = self._records.require(model_id)
            return self._take(record, check_files=True, serve=False, pinned=[*pinned, record.key])

        config = abtest.get_ab_test(self._ctx) if self.alias == CURRENT_BEST_ALIAS else None
        self._routing = load_routing(config, load_arm)

    # ------------------------------------------------------------------ internals (self._lock held)

    def _in_memory(self, model_id: str) -> ModelState | None:
        key = self._index.get(model_id)
        return None if key is None else self._by_key(key)

    def _by_key(self, key: CacheKey) -> ModelState | None:
        state = self._cache.get(key)
        if state is not None:
            return state
        served = self._state
        if served is not None and served.key == key:
            return served
        routing = self._routing
        return None if routing is None else routing.find(key)

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
            self._cache.put(state)
        self._evict(pinned)
        if self._artifact_cache is not None:
            # Objects of models held in memory stay pinned in the host's artifact cache.
            routing = self._routing
            live = [self._state, *self._cache.states(), *(routing.states.values() if routing else ())]
            self._artifact_cache.retain(sha for state in live if state is not None for _, sha in state.checksums)

    def _evict(self, pinned: Iterable[CacheKey] = ()) -> None:
        routing = self._routing
        held = {*pinned, *routing.keys()} if routing else set(pinned)
        # The served model is never evicted; A/B arms (and ``pinned``) only when nothing else is left.
        self._stats.evictions += self._cache.evict(self._state.key if self._state is not None else None, held)


def _log_swap(previous: ModelState | None, state: ModelState, load_ms: float | None) -> None:
    """One INFO line per change of the served model: from, to, and how it was obtained."""
    how = f"read from disk in {load_ms:.1f} ms" if load_ms is not None else "from memory"
    logger.info("model swap: now serving %s (was %s); %s", state.model_id,
                previous.model_id if previous is not None else "nothing", how)


# --------------------------------------------------------------------------- shared loaders

_shared = SharedInstances(ModelLoader)


def get_loader(registry_path: str | os.PathLike[str] | None = None, **kwargs: Any) -> ModelLoader:
    """The shared :class:`ModelLoader` of a registry (one per registry location and database).

    Args:
        registry_path: the registry (default ``artifacts/cf/registry.json``).
        **kwargs: :class:`ModelLoader` options, used when the loader is first created;
            ``alias="challenger"`` gives the shared loader that follows that alias.
    """
    path = DEFAULT_REGISTRY_PATH if registry_path is None else registry_path
    return _shared.get(path, variant=kwargs.get("alias") or CURRENT_BEST_ALIAS, **kwargs)


def reset_loader() -> None:
    """Stop and forget every shared loader (their auto-reload threads and connections too)."""
    for loader in _shared.clear():
        loader.close()


def load_model_from_registry(
    model_id: str | None = None, registry_path: str | os.PathLike[str] = DEFAULT_REGISTRY_PATH
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``(U, V, metadata)`` of ``model_id`` (default: the current best) via the registry's shared loader."""
    loader = get_loader(registry_path)
    return loader.load_current_best() if model_id is None else loader.load_model(model_id)

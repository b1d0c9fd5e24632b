"""What :class:`~registry.serving.loader.ModelLoader` serves, to whom, and how it has been doing:
A/B routing of users to arms, the served model's embeddings and info, the counters
(:class:`LoaderStats`), the cache budget.

A mixin of ``ModelLoader`` (see :mod:`registry.serving.loader_base`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import NoModelLoadedError
from .loader_base import LoaderBase
from .model_cache import ModelCache
from .model_state import ModelState
from .routing import ABRouting


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


class LoaderViews(LoaderBase):
    """What a loader serves, to whom, and its counters (mixed into ``ModelLoader``)."""

    _cache: ModelCache
    _stats: LoaderStats

    @property
    def max_cache_bytes(self) -> int:
        """The cache budget: bytes of ``U``+``V`` the cached models may hold."""
        return self._cache.max_bytes

    @max_cache_bytes.setter
    def max_cache_bytes(self, value: int) -> None:
        with self._lock:
            self._cache.max_bytes = value
            self._evict()  # a lower budget frees memory now, not at the next load

    def state_for_user(self, user_id: Any) -> ModelState:
        """The model that serves ``user_id``: its A/B arm while a test runs, else the current best."""
        return self.route_for_user(user_id)[0]

    def route_for_user(self, user_id: Any) -> tuple[ModelState, Mapping[str, Any] | None]:
        """``(model serving user_id, the read-only A/B test it was routed with or None)``, one snapshot.

        The running test is read once and then refreshed by :meth:`reload_model`
        when the registry changes; both arms stay in memory, so routing never reads
        the disk. An arm that cannot be loaded falls back to the current best.
        """
        routing = self._routing_table()
        state = routing.route(user_id, self._state)
        if state is None:
            self.load_current_best()
            state = self._state
        assert state is not None
        return state, routing.config

    def routing_config(self) -> dict[str, Any] | None:
        """The running A/B test the loader routes with (the doc's ``ab_test`` dict), or None.

        The loader's own copy: read with the routing table on first use, then
        refreshed by the reload check when the registry generation changes.
        """
        config = self._routing_table().config
        return None if config is None else dict(config)

    def _routing_table(self) -> ABRouting:
        if self._routing is None:
            with self._load_lock:
                if self._routing is None:
                    self._refresh_routing()
        routing = self._routing  # once set, only ever replaced by a newer table
        assert routing is not None
        return routing

    def load_for_user(self, user_id: Any) -> tuple[str, np.ndarray, np.ndarray]:
        """``(model_id, U, V)`` of the model serving ``user_id`` (see :meth:`state_for_user`)."""
        state = self.state_for_user(user_id)
        return state.model_id, state.U, state.V

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
            return {
                "total_loads": stats.total_loads,
                "cache_hits": stats.cache_hits,
                "cache_misses": stats.cache_misses,
                "cache_hit_rate": stats.cache_hits / max(1, lookups),
                "reload_count": stats.reload_count,
                "last_load_time_ms": stats.last_load_time_ms,
                "last_reload_at": stats.last_reload_at,
                "cached_models": self._cache.model_ids(),
                "cache_bytes": self._cache.nbytes,
                "max_cache_bytes": self.max_cache_bytes,
                "evictions": stats.evictions,
                "swap_count": stats.swap_count,
                "reload_failures": stats.reload_failures,
                "last_reload_error": stats.last_reload_error,
            }

    def clear_cache(self) -> None:
        """Drop every cached model (the served model keeps serving)."""
        with self._lock:
            self._cache.clear()

"""What the parts of :class:`~registry.serving.loader.ModelLoader` share: the opened registry,
the locks and the served model.

``ModelLoader`` is one class assembled from mixins (``loader_views``, ``loader_watch``,
``loader_fetch``); each derives from :class:`LoaderBase`, so a type checker knows the attributes
``ModelLoader.__init__`` sets. Each mixin also declares the attributes only it uses.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable

    import numpy as np

    from ..context import RegistryContext
    from .model_state import CacheKey, ModelState
    from .routing import ABRouting


class LoaderBase:
    """The attributes and methods every ``ModelLoader`` mixin may use (set by ``ModelLoader.__init__``)."""

    _ctx: RegistryContext
    registry_path: Path
    _lock: threading.RLock
    """Served state, cache, index, stats: short sections, no I/O."""
    _load_lock: threading.RLock
    """Registry/disk reads and reload checks, one at a time."""
    _state: ModelState | None
    """The served model: replaced by one reference assignment, read without a lock."""
    _routing: ABRouting | None
    """The A/B routing table; None until routing is first used."""

    def _served_id(self) -> str | None:
        state = self._state
        return state.model_id if state else None

    def reload_model(self) -> bool:
        """Serve the registry's current best if it changed (implemented by ``ModelLoader``)."""
        raise NotImplementedError

    def load_current_best(self) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """``(U, V, metadata)`` of the current best, made the served model (implemented by ``ModelLoader``)."""
        raise NotImplementedError

    def _evict(self, pinned: Iterable[CacheKey] = ()) -> None:
        """Evict cached models until the cache fits its budget (implemented by ``ModelLoader``; lock held)."""
        raise NotImplementedError

    def _refresh_routing(self) -> None:
        """Re-read the running A/B test and load its arms (implemented by ``ModelLoader``; load lock held)."""
        raise NotImplementedError

"""The loader's model cache: an LRU of :class:`ModelState` bounded by the bytes of ``U`` and ``V``.

Entries are keyed by ``(model_id, recorded checksums)``, so re-registering an id
with new files makes a new entry and the old contents are dropped.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Collection

import numpy as np

from ..errors import InvalidArgumentError
from .model_state import CacheKey, ModelState

logger = logging.getLogger(__name__)

ENV_MAX_CACHE_BYTES = "CFREG_LOADER_MAX_CACHE_BYTES"
DEFAULT_MAX_CACHE_BYTES = 2 << 30


def cache_budget(value: int | None) -> int:
    """The cache budget in bytes: ``value``, else ``$CFREG_LOADER_MAX_CACHE_BYTES``, else 2 GiB.

    Raises:
        InvalidArgumentError: the value (or the variable) is not an integer >= 0.
    """
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


class ModelCache:
    """Loaded models, least recently used first, within ``max_bytes`` of ``U``+``V``.

    Not thread-safe on its own: the loader calls it under its lock.

    Args:
        max_bytes: the budget; a model larger than it is never cached.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[CacheKey, ModelState] = OrderedDict()
        self._nbytes = 0

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    @property
    def nbytes(self) -> int:
        """Bytes of ``U``+``V`` held by the cached models."""
        return self._nbytes

    def model_ids(self) -> list[str]:
        """Ids of the cached models, least recently used first."""
        return [key[0] for key in self._entries]

    def states(self) -> list[ModelState]:
        """The cached models, least recently used first."""
        return list(self._entries.values())

    def get(self, key: CacheKey) -> ModelState | None:
        """The cached model with this key (now the most recently used), or None."""
        state = self._entries.get(key)
        if state is not None:
            self._entries.move_to_end(key)
        return state

    def put(self, state: ModelState) -> None:
        """Cache ``state``, replacing its key's entry and older contents of its id.

        A model larger than ``max_bytes`` is only logged. The budget is enforced
        by :meth:`evict`, which the caller runs next.
        """
        previous = self._entries.get(state.key)
        if previous is state:
            return
        if previous is not None:  # same key, files reloaded after an on-disk change
            self._drop(state.key)
        # Older contents of this id (before an overwrite) can never be asked for again.
        for key in [k for k in self._entries if k[0] == state.model_id]:
            self._drop(key)
        if state.nbytes <= self.max_bytes:
            self._entries[state.key] = state
            self._nbytes += state.nbytes
        else:
            logger.info("model %s (%d bytes) exceeds max_cache_bytes=%d: served or held, not cached",
                        state.model_id, state.nbytes, self.max_bytes)

    def evict(self, served: CacheKey | None, held: Collection[CacheKey] = ()) -> int:
        """Evict least recently used entries until the cache fits its budget.

        Args:
            served: never evicted.
            held: evicted only when nothing else is left (the loader keeps them
                in memory anyway, e.g. A/B arms).

        Returns:
            How many entries were evicted.
        """
        evicted = 0
        for protect in ({served, *held}, {served}):
            for key in [k for k in self._entries if k not in protect]:
                if self._nbytes <= self.max_bytes:
                    return evicted
                self._drop(key)
                evicted += 1
                logger.debug("evicted %s from the loader cache", key[0])
        return evicted

    def clear(self) -> None:
        """Drop every entry."""
        self._entries.clear()
        self._nbytes = 0

    def _drop(self, key: CacheKey) -> None:
        self._nbytes -= self._entries.pop(key).nbytes

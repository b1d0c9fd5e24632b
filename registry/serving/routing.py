"""The loader's A/B routing table: the running test as last read, and its arms in memory.

:class:`registry.serving.loader.ModelLoader` builds one :class:`ABRouting` when routing is
first used and a new one whenever a reload check sees the registry generation
change. A table is immutable, so a reader that took it gets one consistent test
and its arms however many reloads happen meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ..abtest import serving_model_id
from ..errors import RegistryError
from .model_state import CacheKey, ModelState

logger = logging.getLogger(__name__)

# Loads (or finds in memory) one arm's model, keeping the given cache keys pinned.
LoadArm = Callable[[str, list[CacheKey]], ModelState]


@dataclass(frozen=True)
class ABRouting:
    """The running A/B test as last read (read-only ``config``; None: no test) and its loaded arms by model id."""

    config: Mapping[str, Any] | None
    states: Mapping[str, ModelState]

    def route(self, user_id: Any, served: ModelState | None) -> ModelState | None:
        """The model serving ``user_id`` (:func:`registry.abtest.serving_model_id` on this table):
        the user's arm while the test runs, else ``served``; an arm that failed to load falls
        back to ``served`` too."""
        model_id = serving_model_id(user_id, self.config, None if served is None else served.model_id)
        return served if model_id is None else self.states.get(model_id, served)

    def keys(self) -> set[CacheKey]:
        """Cache keys of the loaded arms (kept in memory while the test runs)."""
        return {state.key for state in self.states.values()}

    def find(self, key: CacheKey) -> ModelState | None:
        """The loaded arm with cache key ``key``, if any."""
        return next((state for state in self.states.values() if state.key == key), None)


def load_routing(config: dict[str, Any] | None, load_arm: LoadArm) -> ABRouting:
    """A routing table for ``config`` (the running test, or None) with both arms loaded.

    An arm that cannot be loaded is logged and left out: its users get the current best.
    """
    states: dict[str, ModelState] = {}
    if config is not None:
        for model_id in dict.fromkeys((config["control_model"], config["treatment_model"])):
            try:
                states[model_id] = load_arm(model_id, [state.key for state in states.values()])
            except RegistryError as exc:
                logger.error("A/B test %s: model %s cannot be loaded (%s); its users get the current best",
                             config.get("test_id"), model_id, exc)
    return ABRouting(None if config is None else MappingProxyType(dict(config)), states)

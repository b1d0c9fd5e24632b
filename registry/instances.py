"""Shared instances behind ``get_registry``, ``get_bert_registry`` and ``get_loader``.

One instance per registry location, database URL and process: two registries in
one process get two instances (the original's ``get_loader`` ignored a second
path), and a forked child builds its own instead of reusing the parent's.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from .database_urls import resolve_database_url
from .locations import json_locations

T = TypeVar("T")


class SharedInstances(Generic[T]):
    """A process-local cache of instances built by ``factory(registry_path, **kwargs)``."""

    def __init__(self, factory: Callable[..., T]) -> None:
        self._factory = factory
        self._instances: dict[tuple[str, str, int, str], T] = {}
        self._lock = threading.Lock()

    def get(self, registry_path: str | os.PathLike[str], *, variant: str = "", **kwargs: Any) -> T:
        """The instance for ``registry_path`` (and ``variant``, e.g. the alias a loader follows);
        ``kwargs`` are used only when it is first built."""
        # Every spelling of one registry (folder, registry.json, registry.db) is one key.
        key = (
            str(json_locations(registry_path)[0]),
            resolve_database_url(registry_path, kwargs.get("database_url")),
            os.getpid(),
            variant,
        )
        with self._lock:
            instance = self._instances.get(key)
            if instance is None:
                instance = self._factory(registry_path, **kwargs)
                self._instances[key] = instance
            return instance

    def clear(self) -> list[T]:
        """Forget every instance; returns them (so callers can close them)."""
        with self._lock:
            instances = list(self._instances.values())
            self._instances.clear()
        return instances

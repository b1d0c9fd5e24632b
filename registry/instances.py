"""Shared instances behind ``get_registry``, ``get_bert_registry`` and ``get_loader``.

One instance per registry location, database URL and process: two registries in
one process get two instances (the original's ``get_loader`` ignored a second
path), and a forked child builds its own instead of reusing the parent's.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from .db import ENV_DATABASE_URL

T = TypeVar("T")


class SharedInstances(Generic[T]):
    """A process-local cache of instances built by ``factory(registry_path, **kwargs)``."""

    def __init__(self, factory: Callable[..., T]) -> None:
        self._factory = factory
        self._instances: dict[tuple[str, str | None, int], T] = {}
        self._lock = threading.Lock()

    def get(self, registry_path: str | os.PathLike[str], **kwargs: Any) -> T:
        """The instance for ``registry_path``; ``kwargs`` are used only when it is first built."""
        key = (
            str(Path(registry_path).expanduser().absolute()),
            kwargs.get("database_url") or os.environ.get(ENV_DATABASE_URL),
            os.getpid(),
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

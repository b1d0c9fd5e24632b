"""Keeping :class:`~registry.serving.loader.ModelLoader` current and observed: the auto-reload
thread, watching the registry for changes (``watch=True``), load listeners.

A mixin of ``ModelLoader`` (see :mod:`registry.serving.loader_base`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..notify import GenerationWatcher
from .auto_reload import AutoReloader, ReloadCallback
from .loader_base import LoaderBase

# The documented logger name (docs/loader.md), shared with registry.serving.loader.
logger = logging.getLogger("registry.loader")

LoadListener = Callable[[str, float], Any]


class LoaderWatching(LoaderBase):
    """Reload threads, registry watching and load listeners (mixed into ``ModelLoader``)."""

    _auto: AutoReloader | None
    """Created by the first :meth:`start_auto_reload`: until then a loader holds no reference
    to itself, so one that is dropped (closed or not) frees its models at once, not at the
    next garbage collection."""
    _watcher: GenerationWatcher | None
    _listeners: tuple[LoadListener, ...]

    def start_auto_reload(self, interval_seconds: float, callback: ReloadCallback | None = None) -> None:
        """Run :meth:`reload_model` every ``interval_seconds`` in a daemon thread.

        Args:
            interval_seconds: pause between checks (> 0).
            callback: called as ``callback(old_model_id, new_model_id)`` after each change.

        Errors of a check or of the callback are logged; the thread keeps going.
        Starting again replaces the running thread.
        """
        with self._lock:
            if self._auto is None:
                self._auto = AutoReloader(self.reload_model, self._served_id,
                                          f"cfreg-auto-reload-{self.registry_path.parent.name}")
            auto = self._auto
        auto.start(interval_seconds, callback)

    def stop_auto_reload(self) -> bool:
        """Stop the auto-reload thread; False when none was running."""
        auto = self._auto
        return auto.stop() if auto is not None else False

    def start_watching(self, callback: ReloadCallback | None = None, *,
                       poll_seconds: float | None = None) -> None:
        """Reload as soon as the registry changes (what ``watch=True`` starts).

        On PostgreSQL a dedicated connection ``LISTEN``s for the notification every
        committed change sends; while that connection is down the loader polls every
        ``poll_seconds`` and reconnects with backoff. On SQLite the generation stamp is
        polled every ``poll_seconds`` (default 0.05 s; a cheap indexed read).

        Args:
            callback: called as ``callback(old_model_id, new_model_id)`` after each change.
            poll_seconds: the polling interval (PostgreSQL: also the safety check while listening).
        """
        self.stop_watching()
        self._watcher = GenerationWatcher(self._ctx.database, self._watched_reload, callback=callback,
                                          poll_seconds=poll_seconds,
                                          name=f"cfreg-watch-{self.registry_path.parent.name}")
        self._watcher.start()

    def stop_watching(self) -> bool:
        """Stop watching the registry; False when it was not watched."""
        watcher, self._watcher = self._watcher, None
        if watcher is None:
            return False
        watcher.stop()
        return True

    @property
    def watching(self) -> GenerationWatcher | None:
        """The running watcher (its ``mode`` is ``listen`` or ``poll``), or None."""
        return self._watcher

    def _watched_reload(self) -> tuple[str | None, str | None, bool]:
        old = self._served_id()
        changed = self.reload_model()
        return old, self._served_id(), changed

    def add_load_listener(self, listener: LoadListener) -> Callable[[], None]:
        """Call ``listener(model_id, seconds)`` after every model read from disk (e.g. for metrics).

        Listeners run in the loading thread, after the model is installed; their
        errors are logged and never fail a load.

        Returns:
            A function that removes the listener again.
        """
        with self._lock:
            self._listeners = (*self._listeners, listener)

        def remove() -> None:
            with self._lock:
                self._listeners = tuple(item for item in self._listeners if item is not listener)

        return remove

    def _notify_load(self, model_id: str, seconds: float) -> None:
        for listener in self._listeners:
            try:
                listener(model_id, seconds)
            except Exception:  # a metrics hook must never fail a load
                logger.exception("load listener %r failed", listener)

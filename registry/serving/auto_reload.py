"""Auto-reload: one daemon thread that runs a loader's reload check at a fixed interval."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from typing import Any

from ..errors import InvalidArgumentError, RegistryError

logger = logging.getLogger(__name__)

STOP_TIMEOUT_SECONDS = 30.0

ReloadCallback = Callable[[str | None, str | None], Any]


class AutoReloader:
    """Runs ``check`` every ``interval_seconds`` in a daemon thread; start and stop are thread-safe.

    Errors of a check or of the callback are logged; the thread keeps going.

    Args:
        check: the reload check; True when the served model changed.
        served_id: the served model's id (None when nothing is served), read
            before and after each check for the callback.
        name: the thread's name.
    """

    def __init__(self, check: Callable[[], bool], served_id: Callable[[], str | None], name: str) -> None:
        self._check = check
        self._served_id = served_id
        self._name = name
        self._lock = threading.Lock()
        self._running: tuple[threading.Thread, threading.Event] | None = None

    def start(self, interval_seconds: float, callback: ReloadCallback | None = None) -> None:
        """Check every ``interval_seconds``, calling ``callback(old_id, new_id)`` after each change.

        A running thread is stopped and replaced.

        Raises:
            InvalidArgumentError: the interval is not a positive number or the callback is not callable.
        """
        if isinstance(interval_seconds, bool) or not isinstance(interval_seconds, (int, float)) \
                or not math.isfinite(interval_seconds) or interval_seconds <= 0:
            raise InvalidArgumentError(f"interval_seconds must be a positive number, got {interval_seconds!r}")
        if callback is not None and not callable(callback):
            raise InvalidArgumentError(f"callback must be callable, got {callback!r}")
        with self._lock:
            self._stop_locked()
            stop = threading.Event()
            thread = threading.Thread(target=self._loop, args=(float(interval_seconds), callback, stop),
                                      name=self._name, daemon=True)
            self._running = (thread, stop)
            thread.start()

    def stop(self) -> bool:
        """Stop the thread (waiting up to ``STOP_TIMEOUT_SECONDS``); False when none was running."""
        with self._lock:
            return self._stop_locked()

    def _stop_locked(self) -> bool:
        running, self._running = self._running, None
        if running is None:
            return False
        thread, stop = running
        stop.set()
        if thread is not threading.current_thread():
            thread.join(STOP_TIMEOUT_SECONDS)
            if thread.is_alive():
                logger.warning("auto-reload thread still busy after %.0f s; it stops after its current check", STOP_TIMEOUT_SECONDS)
        return True

    def _loop(self, interval: float, callback: ReloadCallback | None, stop: threading.Event) -> None:
        while not stop.wait(interval):
            old = self._served_id()
            try:
                changed = self._check()
            except RegistryError as exc:
                logger.error("auto-reload check failed, still serving %s: %s", old, exc)
                continue
            except Exception:
                logger.exception("auto-reload check failed, still serving %s", old)
                continue
            if changed and callback is not None:
                try:
                    callback(old, self._served_id())
                except Exception:
                    logger.exception("auto-reload callback %r failed", callback)

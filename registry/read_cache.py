"""Repeated reads served from memory while the registry does not change.

``list_models``, ``search_models``, ``get_registry_stats``, ``get_current_best``,
``get_model``, ``get_alias``, ``list_aliases`` and ``get_tags`` are often called again and again with nothing changed in between (dashboards, serving
health checks, notebooks). Each result is kept with the registry's change stamp
(``settings.generation`` and ``last_updated``); a later call first reads that stamp on
a held connection (SQLite: the connection's ``data_version``, ~2 µs; PostgreSQL: one indexed
row) and returns a copy of the kept result when it has not moved. Every committed change bumps the generation in the same
transaction, whatever process makes it, so a caller never sees a result older than the
last commit. The stamp is read before the result is computed, so a result computed
while another change commits is kept under the older stamp and simply recomputed next
time.
"""

from __future__ import annotations

import copy
import functools
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import select

from .models import Settings

if TYPE_CHECKING:
    from .context import RegistryContext

T = TypeVar("T")
STAMP_QUERY = select(Settings.generation, Settings.last_updated).where(Settings.id == 1)


class ReadCache:
    """Results keyed by call, each valid for one registry stamp (thread-safe, bounded)."""

    def __init__(self, context: RegistryContext, max_entries: int = 16) -> None:
        self._context = context
        self._max_entries = max_entries
        self._entries: OrderedDict[Hashable, tuple[tuple[Any, ...], Any]] = OrderedDict()
        self._lock = threading.Lock()

    def stamp(self) -> tuple[Any, ...]:
        """The registry's current change stamp.

        On SQLite the held connection's ``(serial, data_version)``, which moves on every commit by
        any other connection (~2 µs); elsewhere ``(generation, last_updated)`` read from the
        settings row (one indexed read).
        """
        reader = self._context.database.shared_reader()
        version = reader.data_version_or_none()
        if version is not None:
            return ("data_version", *version)
        return reader.rows(STAMP_QUERY)[0]

    def get(self, key: Hashable, compute: Callable[[], T], copy: Callable[[T], T]) -> T:
        """``copy`` of the kept result for ``key`` if the stamp has not moved, else of a fresh ``compute()``."""
        stamp = self.stamp()
        with self._lock:
            kept = self._entries.get(key)
            if kept is not None and kept[0] == stamp:
                self._entries.move_to_end(key)
                return copy(kept[1])
        value = compute()
        with self._lock:
            self._entries[key] = (stamp, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        return copy(value)

    def clear(self) -> None:
        """Forget every kept result."""
        with self._lock:
            self._entries.clear()


def _frozen(value: Any) -> Any:
    """``value`` as a key part: lists made tuples (``order_by=[...]`` keys like its tuple), each value
    with its type, so ``offset=0.0`` (refused) never hits the entry of ``offset=0``."""
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(item) for item in value)
    return (type(value).__qualname__, value)


_IMMUTABLE = (str, int, float, bool, type(None))


def copy_plain(value: Any) -> Any:
    """A deep copy of a JSON-like result (dicts and lists of scalars), ~5x faster than ``copy.deepcopy``.

    Cached entries, stats and alias records are such values; anything else in them is
    handed to ``copy.deepcopy`` so a caller never shares a mutable object with the cache.
    """
    if isinstance(value, _IMMUTABLE):
        return value
    if type(value) is dict:
        return {key: copy_plain(item) for key, item in value.items()}
    if type(value) is list:
        return [copy_plain(item) for item in value]
    return copy.deepcopy(value)


def copy_frame(frame: Any) -> Any:
    """A DataFrame's copy whose ``tags`` dicts are the caller's own too (``frame.copy()`` shares them)."""
    copied = frame.copy()
    if "tags" in copied:
        copied["tags"] = [dict(tags) for tags in copied["tags"]]
    return copied


def generation_cached(copy: Callable[[Any], Any]) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Serve a read-only method of an object with a ``_reads`` :class:`ReadCache` from it.

    The key is the method name and its arguments; calls with unhashable arguments are
    not cached. ``copy`` gives each caller its own result (editing it changes nothing).
    """

    def decorate(method: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(method)
        def cached(self: Any, *args: Any, **kwargs: Any) -> T:
            key = (method.__name__, _frozen(args), tuple((name, _frozen(value)) for name, value in sorted(kwargs.items())))
            try:
                hash(key)
            except TypeError:
                return method(self, *args, **kwargs)
            return self._reads.get(key, lambda: method(self, *args, **kwargs), copy)

        return cached

    return decorate

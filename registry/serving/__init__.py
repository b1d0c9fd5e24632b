"""Serving a registry: the loader and the HTTP service, and the parts they are made of.

* :mod:`~registry.serving.loader`: :class:`ModelLoader`, the served model, hot reload, A/B routing
  (documented import path: ``registry.loader``).
* :mod:`~registry.serving.model_files`, :mod:`~registry.serving.model_state`,
  :mod:`~registry.serving.model_cache`: what a model recorded, one loaded model, the LRU.
* :mod:`~registry.serving.routing`, :mod:`~registry.serving.auto_reload`: the loader's A/B
  routing table; the reload thread.
* :mod:`~registry.serving.app`, :mod:`~registry.serving.auth`, :mod:`~registry.serving.metrics`:
  the FastAPI service (the ``serve`` extra), its bearer token, its Prometheus metrics.

``from registry.serving import create_app, serve`` (the documented names of the service) is
resolved lazily, so importing the loader never imports FastAPI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

__all__ = ["DEFAULT_K", "MAX_EXCLUDE", "MAX_ITEM_ID_LENGTH", "MAX_K", "MAX_USER_ID_LENGTH", "create_app", "serve"]

_EXPORTS: dict[str, str] = dict.fromkeys(__all__, "app")

__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .app import DEFAULT_K, MAX_EXCLUDE, MAX_ITEM_ID_LENGTH, MAX_K, MAX_USER_ID_LENGTH, create_app, serve

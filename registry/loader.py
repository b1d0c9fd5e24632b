"""``registry.loader``, the documented import path of the serving loader.

The loader lives in :mod:`registry.serving.loader`; this module re-exports its public names
so that ``from registry.loader import ModelLoader`` keeps working.
"""

from __future__ import annotations

from .serving.loader import (
    DEFAULT_MAX_CACHE_BYTES,
    LoaderStats,
    ModelLoader,
    ModelState,
    get_loader,
    load_model_from_registry,
    reset_loader,
)

__all__ = [
    "DEFAULT_MAX_CACHE_BYTES",
    "LoaderStats",
    "ModelLoader",
    "ModelState",
    "get_loader",
    "load_model_from_registry",
    "reset_loader",
]

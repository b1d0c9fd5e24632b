"""What the mixins of :class:`~registry.cf_registry.ModelRegistry` share: the opened registry
and its read cache.

Each mixin (``cf_register``, ``cf_selection``, ``cf_queries``, ``cf_lifecycle``, ``cf_abtests``,
``admin_facade``, ``dashboard_facade``) derives from :class:`RegistryFacade`, so a type checker
knows the attributes ``ModelRegistry.__init__`` sets; the mixins never call each other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .context import RegistryContext
    from .read_cache import ReadCache


class RegistryFacade:
    """The attributes every ``ModelRegistry`` mixin uses (set by ``ModelRegistry.__init__``)."""

    _ctx: RegistryContext
    """The opened registry: database, paths, the mutate -> audit -> export cycle."""
    _reads: ReadCache
    """Results of repeated reads, served while the registry does not change (``generation_cached``)."""

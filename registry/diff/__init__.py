"""Recommender-aware diff of two registered models: "what changes if I promote this?".

``report``: the typed :class:`DiffReport`; ``metrics``: the vectorised numbers (numpy only);
``matching``: users/items matched by id maps or index; ``compute``: reading both models'
verified files and building the report; ``store``: the stored reports; ``policy``: the
``max_churn`` bound of promotion rules. Entry point: :meth:`registry.ModelRegistry.diff_models`.
"""

from __future__ import annotations

from .report import DiffReport

__all__ = ["DiffReport"]

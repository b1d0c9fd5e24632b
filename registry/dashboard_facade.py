"""The dashboard side of :class:`~registry.cf_registry.ModelRegistry`: leaderboard pages,
the metric names and model types present, and the series the charts plot.

A mixin, like :mod:`registry.admin_facade`: the web dashboards (``cfreg ui``) call these
methods instead of handing the registry's context to :mod:`registry.leaderboard`.
"""

from __future__ import annotations

from typing import Any

from . import leaderboard
from .facade_base import RegistryFacade
from .leaderboard import DEFAULT_PER_PAGE, LeaderboardPage


class RegistryDashboards(RegistryFacade):
    """Read-only views for dashboards (mixed into ``ModelRegistry``)."""

    def leaderboard_page(
        self,
        *,
        model_type: str | None = None,
        status: str | None = None,
        search: str | None = None,
        sort: str = "created_at",
        ascending: bool = False,
        page: int = 1,
        per_page: int = DEFAULT_PER_PAGE,
    ) -> LeaderboardPage:
        """One page of models, filtered and sorted (see :func:`registry.leaderboard.leaderboard_page`).

        Raises:
            InvalidArgumentError: a malformed filter, an unknown sort key or a page size out of range.
        """
        return leaderboard.leaderboard_page(self._ctx, model_type=model_type, status=status, search=search,
                                            sort=sort, ascending=ascending, page=page, per_page=per_page)

    def metric_names(self) -> list[str]:
        """Every metric name recorded for any model, alphabetical."""
        return leaderboard.metric_names(self._ctx)

    def model_types(self) -> list[str]:
        """Every model type with at least one registered model, alphabetical."""
        return leaderboard.model_types(self._ctx)

    def metric_series(self, metric: str, model_type: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """``metric`` over registration time for the newest ``limit`` models that have it, oldest first
        (see :func:`registry.leaderboard.metric_series`)."""
        return leaderboard.metric_series(self._ctx, metric, model_type, limit)

    def metric_pairs(self, x_metric: str, y_metric: str, model_type: str | None = None,
                     limit: int = 1000) -> list[dict[str, Any]]:
        """Two metrics per model (the newest ``limit`` models having both), for a scatter plot
        (see :func:`registry.leaderboard.metric_pairs`)."""
        return leaderboard.metric_pairs(self._ctx, x_metric, y_metric, model_type, limit)

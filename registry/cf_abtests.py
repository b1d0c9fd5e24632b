"""A/B tests on :class:`~registry.cf_registry.ModelRegistry`: start, watch, stop, roll back,
record outcomes, route users.

A mixin of thin delegations; the behaviour and its documentation live in
:mod:`registry.abtest` and :mod:`registry.ab_results`.
"""

from __future__ import annotations

from typing import Any

from . import abtest
from .facade_base import RegistryFacade


class RegistryABTests(RegistryFacade):
    """A/B tests between two models (mixed into ``ModelRegistry``)."""

    def start_ab_test(self, control_model: str, treatment_model: str, traffic_split: float,
                      test_id: str | None = None, *, minimum_detectable_effect: float | None = None) -> dict[str, Any]:
        """Start an A/B test (see :func:`registry.abtest.start_ab_test`); returns the ``ab_test`` dict."""

        return abtest.start_ab_test(self._ctx, control_model, treatment_model, traffic_split, test_id,
                                    minimum_detectable_effect=minimum_detectable_effect)

    def get_ab_test(self, test_id: str | None = None) -> dict[str, Any] | None:
        """The running test (or ``test_id``) as the ``ab_test`` dict; None when none runs."""

        return abtest.get_ab_test(self._ctx, test_id)

    def list_ab_tests(self) -> list[dict[str, Any]]:
        """Every A/B test, newest first."""

        return abtest.list_ab_tests(self._ctx)

    def update_traffic_split(self, test_id: str | None, traffic_split: float) -> dict[str, Any]:
        """Change a running test's treatment share (see :func:`registry.abtest.update_traffic_split`)."""

        return abtest.update_traffic_split(self._ctx, test_id, traffic_split)

    def stop_ab_test(self, test_id: str | None = None, promote: str | None = None, *,
                     promote_winner: bool = False) -> dict[str, Any]:
        """Stop a test, optionally promoting ``'control'`` or ``'treatment'``, or the winner by
        :meth:`ab_test_results` (``promote_winner=True``; see :func:`registry.abtest.stop_ab_test`)."""

        return abtest.stop_ab_test(self._ctx, test_id, promote, promote_winner=promote_winner)  # type: ignore[arg-type]

    def record_ab_outcomes(self, test_id: str, arm: str, exposures: int, conversions: int | None = None, *,
                           batch_id: str, value_sum: float | None = None,
                           value_sum_squares: float | None = None) -> dict[str, Any]:
        """Add one batch of an arm's outcomes; a retried ``batch_id`` counts once
        (see :func:`registry.ab_results.record_ab_outcomes`)."""
        from . import ab_results

        return ab_results.record_ab_outcomes(self._ctx, test_id, arm, exposures, conversions, batch_id=batch_id,
                                             value_sum=value_sum, value_sum_squares=value_sum_squares)

    def ab_test_results(self, test_id: str | None = None, *, metric: str | None = "conversion",
                        method: str = "fixed_horizon", confidence: float = 0.95) -> dict[str, Any]:
        """Per arm exposures and rate, lift with interval, p-value, exposures still needed, verdict
        (see :func:`registry.ab_results.ab_test_results`; ``metric=None`` picks conversion when
        any batch carries conversions, else value)."""
        from . import ab_results

        return ab_results.ab_test_results(self._ctx, test_id, metric=metric, method=method, confidence=confidence)

    def rollback_ab_test(self, test_id: str | None = None) -> dict[str, Any]:
        """Split to 0, stop, current best back to control, in one transaction."""

        return abtest.rollback_ab_test(self._ctx, test_id)

    def route_user(self, user_id: Any) -> str:
        """The model id serving ``user_id``: the running test's arm, else the current best."""

        return abtest.route_user(self._ctx, user_id)

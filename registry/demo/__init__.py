"""The end-to-end demo (``cfreg demo``): synthetic data, implicit ALS/BPR, register, select, A/B test, serve.

- :mod:`registry.demo.run`: :func:`run_demo`, the registry workflow;
- :mod:`registry.demo.config`: the data size and model grids (``FULL_CONFIG``, ``QUICK_CONFIG``);
- :mod:`registry.demo.training`: the data generator, training with the ``implicit``
  library (the ``demo`` extra) and the holdout metrics.

Usage::

    from registry.demo import QUICK_CONFIG, run_demo
    result = run_demo("demo-run", quick=True)
"""

from __future__ import annotations

from .config import (
    FULL_CONFIG,
    LEADERBOARD_METRICS,
    MIN_IMPROVEMENT,
    QUICK_CONFIG,
    SELECTION_METRIC,
    SHOWN_METRICS,
    TOP_K,
    TRAFFIC_SPLIT,
    DemoConfig,
)
from .run import DemoResult, TrainedModel, run_demo

__all__ = [
    "FULL_CONFIG",
    "LEADERBOARD_METRICS",
    "MIN_IMPROVEMENT",
    "QUICK_CONFIG",
    "SELECTION_METRIC",
    "SHOWN_METRICS",
    "TOP_K",
    "TRAFFIC_SPLIT",
    "DemoConfig",
    "DemoResult",
    "TrainedModel",
    "run_demo",
]

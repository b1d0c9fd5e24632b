"""What a demo run trains: the data size and model grid (full and ``--quick``), and its fixed settings."""

from __future__ import annotations

from dataclasses import dataclass

from .training import ALSParams, BPRParams

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
]

SELECTION_METRIC = "ndcg@10"
MIN_IMPROVEMENT = 0.05
TRAFFIC_SPLIT = 0.1
TOP_K = 10
LEADERBOARD_METRICS = ("ndcg@10", "ndcg@20", "recall@10", "recall@20", "coverage")
# What the printed leaderboard shows (registry.cli.run prints it; it must fit 80 columns);
# the DataFrame has all of LEADERBOARD_METRICS.
SHOWN_METRICS = {"ndcg@10": "ndcg@10", "recall@10": "rec@10", "recall@20": "rec@20", "coverage": "cov"}


@dataclass(frozen=True)
class DemoConfig:
    """Data size and model grid of a demo run.

    Attributes:
        num_users: users in the synthetic data set.
        num_items: items in the synthetic data set.
        mean_interactions: mean distinct items per user.
        seed: data seed (the whole run is a function of it).
        als: ALS settings to train.
        bpr: BPR settings to train.
        sample_users: users shown with their top-10 recommendations.
    """

    num_users: int
    num_items: int
    mean_interactions: float
    seed: int
    als: tuple[ALSParams, ...]
    bpr: tuple[BPRParams, ...]
    sample_users: int = 3


FULL_CONFIG = DemoConfig(
    num_users=3000,
    num_items=1500,
    mean_interactions=30.0,
    seed=42,
    als=(
        ALSParams(factors=16, regularization=0.05, alpha=5.0, iterations=8, seed=1),
        ALSParams(factors=32, regularization=0.1, alpha=5.0, iterations=8, seed=2),
        ALSParams(factors=48, regularization=0.1, alpha=10.0, iterations=6, seed=3),
    ),
    bpr=(
        BPRParams(factors=32, learning_rate=0.01, regularization=0.005, iterations=80, seed=4),
        BPRParams(factors=16, learning_rate=0.01, regularization=0.01, iterations=100, seed=5),
    ),
)

QUICK_CONFIG = DemoConfig(
    num_users=400,
    num_items=200,
    mean_interactions=20.0,
    seed=7,
    als=(
        ALSParams(factors=8, regularization=0.05, alpha=5.0, iterations=5, seed=1),
        ALSParams(factors=16, regularization=0.1, alpha=10.0, iterations=5, seed=2),
    ),
    bpr=(
        BPRParams(factors=16, learning_rate=0.01, regularization=0.01, iterations=100, seed=4),
    ),
)

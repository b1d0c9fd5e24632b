"""Selection thresholds at exact equality: the docs say "at least", so equal passes.

Every value here is exact in binary floating point (0.25, 0.375, 0.5, 50.0), so
"equal" really is equal: a ``>=`` turned into ``>`` (or ``<`` into ``<=``) fails these tests.
On SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import pytest

from registry import ModelRegistry
from registry_snapshot import snapshot


def add(registry: ModelRegistry, model_dir, version: str, ndcg: float,  # type: ignore[no-untyped-def]
        baseline: dict[str, Any] | None = None) -> str:
    path = model_dir(f"als/{version}")
    return registry.register_model(path, "als", version=version, metrics={"ndcg@10": ndcg},
                                   baseline_comparison=baseline)


@pytest.mark.parametrize("baseline", [
    {"improvement_ndcg@10": 0.5},          # fraction
    {"improvement_ndcg10": 0.5},           # fraction, metric without @
    {"improvement_ndcg10_pct": 50.0},      # percent
    {"baseline_ndcg@10": 0.25},            # (0.375 - 0.25) / 0.25 = 0.5 exactly
])
def test_min_improvement_equal_to_the_improvement_is_eligible(registry: ModelRegistry, model_dir,
                                                              baseline: dict[str, Any]) -> None:
    model_id = add(registry, model_dir, "v1", 0.375, baseline)
    best = registry.select_best_model("ndcg@10", min_improvement=0.5)
    assert best is not None and best["model_id"] == model_id
    assert registry.get_current_best()["model_id"] == model_id


def test_min_improvement_just_above_the_improvement_is_not_eligible(registry: ModelRegistry, model_dir) -> None:
    add(registry, model_dir, "v1", 0.375, {"baseline_ndcg@10": 0.25})
    assert registry.select_best_model("ndcg@10", min_improvement=0.5 + 2**-20) is None
    assert registry.get_current_best() is None


def test_min_gain_over_current_equal_to_the_gain_replaces_the_current_best(registry: ModelRegistry, model_dir) -> None:
    current = add(registry, model_dir, "v1", 0.25)
    registry.select_best_model("ndcg@10")
    better = add(registry, model_dir, "v2", 0.375)  # (0.375 - 0.25) / 0.25 = 0.5: exactly the gain asked for
    best = registry.select_best_model("ndcg@10", min_gain_over_current=0.5)
    assert best is not None and best["model_id"] == better
    assert registry.get_current_best()["model_id"] == better != current


def test_min_gain_over_current_just_above_the_gain_keeps_the_current_best(registry: ModelRegistry, model_dir) -> None:
    current = add(registry, model_dir, "v1", 0.25)
    registry.select_best_model("ndcg@10")
    add(registry, model_dir, "v2", 0.375)
    before = snapshot(registry)
    assert registry.select_best_model("ndcg@10", min_gain_over_current=0.5 + 2**-20) is None
    assert snapshot(registry) == before
    assert registry.get_current_best()["model_id"] == current


def test_min_gain_zero_means_strictly_better(registry: ModelRegistry, model_dir) -> None:
    # A tie never replaces the serving model: 0.0 asks for "strictly better" (docs/registry.md).
    current = add(registry, model_dir, "v1", 0.25)
    registry.select_best_model("ndcg@10")
    registry.update_model_status(current, "active")
    add(registry, model_dir, "v2", 0.25)
    registry.promote_model("als_v2", reason="make the later twin current")
    before = snapshot(registry)
    # The winner by ndcg@10 is v1 (ties go to the earliest); it only equals the current v2.
    assert registry.select_best_model("ndcg@10", min_gain_over_current=0.0) is None
    assert snapshot(registry) == before
    assert registry.get_current_best()["model_id"] == "als_v2"

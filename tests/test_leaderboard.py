"""Paged leaderboard queries and chart series (registry.leaderboard, through the ModelRegistry facade) on both backends."""

from __future__ import annotations

import pytest

from registry import InvalidArgumentError, ModelRegistry
from registry.leaderboard import MAX_PER_PAGE


@pytest.fixture
def filled(registry: ModelRegistry, model_dir) -> ModelRegistry:  # type: ignore[no-untyped-def]
    als, bpr = model_dir("als/v1"), model_dir("bpr/v1", "bpr")
    for index in range(7):
        metrics = {"ndcg@10": 0.1 + index / 100, "recall@10": 0.3 - index / 100}
        if index == 3:
            metrics = {"recall@10": 0.5}  # no ndcg@10: sorts last both ways
        registry.register_model(als, "als", {"factors": 8}, metrics, {"training_time_seconds": 10 + index},
                                version=f"v{index}")
    registry.register_model(bpr, "bpr", {"factors": 8}, {"ndcg@10": 0.5, "coverage": 0.2}, {}, version="v0")
    registry.select_best_model("ndcg@10")
    registry.archive_model("als_v1")
    return registry


def test_sort_by_metric_pages_and_marks_current(filled: ModelRegistry) -> None:
    first = filled.leaderboard_page(sort="ndcg@10", per_page=3)
    assert first.total == 8 and first.pages == 3 and first.current_best == "bpr_v0"
    assert [r.model_id for r in first.rows] == ["bpr_v0", "als_v6", "als_v5"]
    assert first.rows[0].is_current and not first.rows[1].is_current
    assert first.rows[1].metrics == pytest.approx({"ndcg@10": 0.16, "recall@10": 0.24})
    assert first.rows[1].training_time == 16
    assert first.metric_names == ["coverage", "ndcg@10", "recall@10"]
    last = filled.leaderboard_page(sort="ndcg@10", per_page=3, page=3)
    assert [r.model_id for r in last.rows] == ["als_v0", "als_v3"]  # missing metric last
    ascending = filled.leaderboard_page(sort="ndcg@10", ascending=True, per_page=10)
    assert [r.model_id for r in ascending.rows][:2] == ["als_v0", "als_v1"]
    assert ascending.rows[-1].model_id == "als_v3"  # missing metric last in both directions


def test_filters_search_and_columns(filled: ModelRegistry) -> None:
    page = filled.leaderboard_page(model_type="als", status="active", sort="model_id", ascending=True)
    assert [r.model_id for r in page.rows] == ["als_v0", "als_v2", "als_v3", "als_v4", "als_v5", "als_v6"]
    assert filled.leaderboard_page(status="archived").total == 1
    assert [r.model_id for r in filled.leaderboard_page(search="BPR").rows] == ["bpr_v0"]
    assert filled.leaderboard_page(search="100%_").total == 0  # LIKE wildcards are literal
    by_time = filled.leaderboard_page(sort="training_time", per_page=2)
    assert [r.model_id for r in by_time.rows] == ["als_v6", "als_v5"]


def test_past_the_last_page_keeps_total(filled: ModelRegistry) -> None:
    page = filled.leaderboard_page(page=99, per_page=5)
    assert page.rows == [] and page.total == 8 and page.current_best == "bpr_v0"


@pytest.mark.parametrize("kwargs", [
    {"per_page": 0}, {"per_page": MAX_PER_PAGE + 1}, {"page": 0}, {"page": "2"}, {"sort": "no such"},
    {"sort": "unknown_metric"}, {"status": "gone"}, {"model_type": "bad type"}, {"search": "x" * 500},
    {"ascending": "yes"},
])
def test_bad_arguments_are_typed_errors(filled: ModelRegistry, kwargs: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(InvalidArgumentError):
        filled.leaderboard_page(**kwargs)


def test_series_pairs_and_names(filled: ModelRegistry) -> None:
    series = filled.metric_series("ndcg@10", "als")
    assert [p["model_id"] for p in series] == ["als_v0", "als_v1", "als_v2", "als_v4", "als_v5", "als_v6"]
    assert [p["model_id"] for p in filled.metric_series("ndcg@10", limit=2)] == ["als_v6", "bpr_v0"]
    assert filled.metric_series("ndcg@10")[-1]["is_current"]
    pairs = filled.metric_pairs("ndcg@10", "recall@10")
    assert {p["model_id"] for p in pairs} == {"als_v0", "als_v1", "als_v2", "als_v4", "als_v5", "als_v6"}
    assert filled.metric_names() == ["coverage", "ndcg@10", "recall@10"]
    assert filled.model_types() == ["als", "bpr"]
    with pytest.raises(InvalidArgumentError):
        filled.metric_series("ndcg@10", limit=10**9)


def test_metric_pages_follow_the_documented_order_across_the_models_lacking_the_metric(
        registry: ModelRegistry, model_dir) -> None:  # type: ignore[no-untyped-def]
    """Every page of a metric sort, both directions, with a filter: the value (ties: newest first), then
    the models without the metric (newest first), as a sort of all matching models in Python gives it."""
    import random

    from sqlalchemy import select

    from registry.models import Model

    rng = random.Random(5)
    folders = {"als": model_dir("als/r"), "bpr": model_dir("bpr/r", "bpr")}
    for index in range(23):
        model_type = "als" if index % 3 else "bpr"
        metrics = {"recall@10": rng.random()}
        if index % 4:
            metrics["ndcg@10"] = rng.choice([0.1, 0.2, 0.3, rng.random()])  # ties on purpose
        registry.register_model(folders[model_type], model_type, {}, metrics, {}, version=f"r{index:02d}")
    created = dict(registry.context.read(lambda s: s.execute(select(Model.model_id, Model.created_at)).all()))
    values = {m: registry.get_model(m)["metrics"].get("ndcg@10") for m in created}

    for model_type in (None, "als"):
        for ascending in (False, True):
            matching = [m for m in created if model_type is None or m.startswith(model_type)]
            newest_first = sorted(matching, key=lambda m: (created[m], m), reverse=True)
            with_value = sorted((m for m in newest_first if values[m] is not None),
                                key=lambda m: values[m], reverse=not ascending)  # stable: ties stay newest first
            expected = with_value + [m for m in newest_first if values[m] is None]
            for per_page in (4, 5):
                got: list[str] = []
                for page in range(1, len(expected) // per_page + 3):
                    result = registry.leaderboard_page(sort="ndcg@10", ascending=ascending, per_page=per_page,
                                                       page=page, model_type=model_type)
                    assert result.total == len(expected)
                    got += [row.model_id for row in result.rows]
                assert got == expected, (model_type, ascending, per_page)

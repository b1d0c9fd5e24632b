"""Every SQL query in docs/reporting.md runs on both backends and answers correctly."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import text

DOC = Path(__file__).resolve().parent.parent / "docs" / "reporting.md"
QUERIES = re.findall(r"```sql\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.fixture
def populated(registry, model_dir):  # type: ignore[no-untyped-def]
    ids = {
        "als_a": registry.register_model(model_dir("als/a", seed=1), "als", {"factors": 8}, {"ndcg@10": 0.20, "recall@20": 0.3}, {}, version="a"),
        "als_b": registry.register_model(model_dir("als/b", seed=2), "als", {"factors": 8}, {"ndcg@10": 0.25}, {}, version="b"),
        "bpr_c": registry.register_model(model_dir("bpr/c", "bpr", seed=3), "bpr", {"factors": 8}, {"ndcg@10": 0.22}, {}, version="c"),
    }
    registry.select_best_model("ndcg@10")
    registry.promote_model("bpr_c", reason="manual check")
    registry.start_ab_test("bpr_c", "als_b", 0.5, test_id="t1")
    registry.record_ab_outcomes("t1", "control", 1000, 100, batch_id="d1")
    registry.record_ab_outcomes("t1", "treatment", 1000, 120, batch_id="d1")
    registry.record_ab_outcomes("t1", "treatment", 500, 50, batch_id="d2")
    return registry, ids


def run(registry, sql: str) -> list[tuple]:  # type: ignore[no-untyped-def]
    return registry.context.read(lambda session: [tuple(row) for row in session.execute(text(sql))])


def test_doc_has_the_queries() -> None:
    assert len(QUERIES) >= 8


@pytest.mark.parametrize("index", range(len(QUERIES)))
def test_every_documented_query_runs(populated, index: int) -> None:  # type: ignore[no-untyped-def]
    registry, _ = populated
    rows = run(registry, QUERIES[index])
    assert rows, f"query {index} returned nothing:\n{QUERIES[index]}"


def test_leaderboard_current_best_and_history_answer_correctly(populated) -> None:  # type: ignore[no-untyped-def]
    registry, _ = populated
    leaderboard = run(registry, QUERIES[0])
    assert [row[0] for row in leaderboard] == ["als_b", "bpr_c", "als_a"]
    (current,) = run(registry, QUERIES[1])
    assert current[0] == "bpr_c" and current[4] == "manual"
    history = run(registry, QUERIES[2])
    assert [(row[1], row[5]) for row in history] == [("bpr_c", "manual"), ("als_b", "auto")]
    best_per_type = run(registry, QUERIES[3])
    assert [(row[0], row[1]) for row in best_per_type] == [("als", "als_b"), ("bpr", "bpr_c")]
    missing = run(registry, QUERIES[5])
    assert [row[0] for row in missing] == ["als_b", "bpr_c"]
    arms = run(registry, QUERIES[8])
    assert [row[2:7] for row in arms] == [("control", "bpr_c", 1, 1000, 100), ("treatment", "als_b", 2, 1500, 170)]
    assert arms[1][7] == pytest.approx(170 / 1500)

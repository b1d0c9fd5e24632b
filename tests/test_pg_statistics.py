"""A registry filled faster than autovacuum runs keeps planner statistics: ANALYZE at generations 64, 128, ..."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from registry import ModelRegistry
from registry.pg_statistics import analyze_due


def test_statistics_are_refreshed_at_doubling_generations_then_every_65536th() -> None:
    due = [generation for generation in range(200_000) if analyze_due(generation)]
    assert due == [2 ** power for power in range(6, 18)] + [3 * 65_536]


def _last_analyze(registry: ModelRegistry) -> Any:
    with registry.context.database.engine.connect() as connection:
        return connection.execute(text(
            "SELECT last_analyze FROM pg_stat_user_tables WHERE schemaname = current_schema() AND relname = 'models'"
        )).scalar_one()


def test_the_write_that_commits_generation_64_analyzes_the_registry_tables(
        registry: ModelRegistry, model_dir: Any, backend: str) -> None:
    if backend != "postgres":
        pytest.skip("PostgreSQL plans from statistics; SQLite has none to refresh")
    first = registry.register_model(model_dir("als/a", seed=1), "als", {}, {"ndcg@10": 0.1}, {}, version="a")
    second = registry.register_model(model_dir("als/b", seed=2), "als", {}, {"ndcg@10": 0.2}, {}, version="b")
    generation = registry.context.generation()[0]
    assert generation < 63 and _last_analyze(registry) is None
    while generation < 63:
        registry.set_alias("champion", (first, second)[generation % 2])
        generation = registry.context.generation()[0]
    assert _last_analyze(registry) is None
    registry.set_alias("champion", first if registry.get_alias("champion")["model_id"] == second else second)
    assert registry.context.generation()[0] == 64
    assert _last_analyze(registry) is not None


def test_an_import_analyzes_the_tables_it_filled(registry: ModelRegistry, backend: str, tmp_path: Path) -> None:
    if backend != "postgres":
        pytest.skip("PostgreSQL plans from statistics; SQLite has none to refresh")
    legacy = tmp_path / "legacy.json"
    legacy.write_text((Path(__file__).parent / "data" / "legacy_registry.json").read_text())
    assert _last_analyze(registry) is None
    assert registry.import_registry_json(legacy)["models"] > 0
    assert _last_analyze(registry) is not None

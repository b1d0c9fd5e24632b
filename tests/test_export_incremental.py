"""The incremental ``registry.json`` export writes exactly what a full rebuild writes."""

from __future__ import annotations

import random
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from registry import ModelRegistry, export_cache
from registry.errors import RegistryError
from registry.export import build_registry_document, file_generation, render_document

METRICS = ("ndcg@10", "recall@10")


def full_rebuild(registry: ModelRegistry) -> str:
    document, _ = registry.context.database.read(build_registry_document)
    return render_document(document, "models")


@pytest.fixture
def incremental_writes(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Records, per export, whether the incremental path wrote the file."""
    seen: list[bool] = []
    real = export_cache.publish_change

    def spy(*args: Any, **kwargs: Any) -> bool | None:
        result = real(*args, **kwargs)
        seen.append(result is not None)
        return result

    monkeypatch.setattr(export_cache, "publish_change", spy)
    return seen


def test_random_operations_leave_the_file_equal_to_a_full_rebuild(
    registry: ModelRegistry, registry_path: Path, database_url: str, model_dir: Any, tmp_path: Path,
    incremental_writes: list[bool],
) -> None:
    rng = random.Random(20261202)
    folder = model_dir("als/base")
    # Another writer that never exports: its changes must force a full rebuild of the next export.
    other = ModelRegistry(registry_path, database_url=database_url, root=tmp_path, export_json=False)
    registered: list[str] = []

    def register() -> None:
        metrics = {name: round(rng.random(), 4) for name in METRICS if rng.random() < 0.9}
        registered.append(registry.register_model(folder, "als", {"factors": 8}, metrics, {"training_time_seconds": 1.0}))

    def reregister() -> None:
        model_id = rng.choice(registered)
        registry.register_model(folder, "als", {"factors": 8}, {"ndcg@10": round(rng.random(), 4)}, {},
                                version=model_id.removeprefix("als_"), overwrite=True)

    def some_model() -> str:
        active = [m for m in registered if registry.get_model(m) and registry.get_model(m)["status"] == "active"]
        return rng.choice(active or registered)

    operations = {
        "register": register,
        "reregister": reregister,
        "select": lambda: registry.select_best_model(metric=rng.choice(METRICS), min_improvement=0.0),
        "promote": lambda: registry.promote_model(some_model(), reason="test"),
        "rollback": lambda: registry.rollback(),
        "tag": lambda: registry.set_tag(some_model(), rng.choice(["team", "stage"]), rng.choice(["a", "b", "ü"])),
        "untag": lambda: registry.delete_tag(some_model(), "team"),
        "describe": lambda: registry.set_description(some_model(), rng.choice([None, "a \"quoted\" note"])),
        "archive": lambda: registry.archive_model(some_model()),
        "status": lambda: registry.update_model_status(some_model(), rng.choice(["active", "failed"])),
        "delete": lambda: registry.delete_model(some_model()),
        "alias": lambda: registry.set_alias(rng.choice(["champion", "challenger"]), some_model()),
        "unalias": lambda: registry.delete_alias("challenger"),
        "select_alias": lambda: registry.select_best_model(metric=rng.choice(METRICS), min_improvement=0.0,
                                                            alias="champion"),
        "ab": lambda: registry.start_ab_test(some_model(), some_model(), 0.1),
        "ab_alias": lambda: registry.start_ab_test("@champion", some_model(), 0.1),
        "ab_stop": lambda: registry.stop_ab_test(),
        "other_writer": lambda: other.set_tag(some_model(), "other", str(rng.random())),
    }
    for _ in range(4):
        register()
    names = list(operations)
    weights = [6 if name == "register" else 2 if name == "reregister" else 1 for name in names]
    compared = 0
    for step in range(120):
        name = rng.choices(names, weights)[0]
        try:
            operations[name]()
        except (RegistryError, ValueError):
            pass  # refused (e.g. deleting the current best): nothing changed
        # The other writer never exports (nor does a no-op after it): the file catches up at the next change here.
        if file_generation(registry_path) == registry.get_registry_stats()["generation"]:
            compared += 1
            assert registry_path.read_text(encoding="utf-8") == full_rebuild(registry), f"step {step}: {name}"
    assert compared >= 90
    assert incremental_writes.count(True) >= 60, incremental_writes  # the incremental path did the work
    assert False in incremental_writes  # and the other writer forced full rebuilds


def test_a_new_model_that_does_not_sort_last_rebuilds_the_whole_file(
    registry: ModelRegistry, registry_path: Path, model_dir: Any, incremental_writes: list[bool],
) -> None:
    folder = model_dir("als/base")
    first = registry.register_model(folder, "als", {}, {"ndcg@10": 0.1}, {}, version="a")
    registry.register_model(folder, "als", {}, {"ndcg@10": 0.2}, {}, version="b")
    assert incremental_writes == [True, True]  # the registry fixture exported the empty registry first
    # The earlier models now sort after any new one (as with a writer whose clock is ahead).
    with registry.context.database.engine.begin() as connection:  # no generation bump: the cache stays valid
        connection.execute(text("UPDATE models SET created_at = :t"), {"t": datetime(2100, 1, 1)})
    registry.register_model(folder, "als", {}, {"ndcg@10": 0.3}, {}, version="c")
    assert incremental_writes[-1] is False
    assert registry_path.read_text(encoding="utf-8") == full_rebuild(registry)
    assert list(registry.models)[-1] != "als_c" and first in registry.models

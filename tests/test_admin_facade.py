"""The operator side of ``ModelRegistry`` (what ``cfreg info/audit/sql/import-json`` call)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from registry import ModelRegistry
from registry.errors import RegistryError

DATA = Path(__file__).parent / "data"


def test_audit_events_filters_pages_and_counts(registry: ModelRegistry, model_dir: Any) -> None:
    ids = [registry.register_model(model_dir(f"als/v{i}", seed=i), "als", {}, {"ndcg@10": 0.1 * i}, {}, version=f"v{i}")
           for i in range(1, 4)]
    registry.select_best_model(metric="ndcg@10")
    assert [e["target"] for e in registry.audit_events(action="REGISTER")] == ids
    assert registry.count_audit_events(action="REGISTER") == 3 and registry.count_audit_events() == 4
    assert [e["target"] for e in registry.audit_events(action="REGISTER", limit=2, offset=1)] == ids[:2]
    assert [e["action"] for e in registry.audit_events(target=ids[2])] == ["REGISTER", "SELECT_BEST"]
    assert registry.aliases_of(ids[2]) == ["current_best"] and registry.aliases_of(ids[0]) == []


def test_run_sql_reads_and_refuses_writes(registry: ModelRegistry, model_dir: Any, backend: str) -> None:
    if backend == "postgres":
        registry.setup_sql_reader()
    else:
        assert registry.setup_sql_reader() is None
    model_id = registry.register_model(model_dir("als/v1"), "als", {}, {"ndcg@10": 0.5}, {}, version="v1")
    result = registry.run_sql("SELECT model_id FROM models")
    assert result.records() == [{"model_id": model_id}]
    with pytest.raises(RegistryError):
        registry.run_sql("DELETE FROM models")
    assert registry.get_model(model_id) is not None


def test_created_sqlite_file_and_import(registry: ModelRegistry, registry_path: Path, database_url: str,
                                       backend: str, tmp_path: Path) -> None:
    assert registry.created is True  # the fixture's open created the database
    assert ModelRegistry(registry_path, database_url=database_url, root=tmp_path).created is False
    assert (registry.sqlite_file is None) == (backend == "postgres")
    legacy = tmp_path / "legacy.json"
    legacy.write_text((DATA / "legacy_registry.json").read_text())
    result = registry.import_registry_json(legacy)
    assert result["models"] == len(json.loads(legacy.read_text())["models"]) == len(registry.models)

"""Import of registry.json / bert_registry.json files written by the original JSON registry."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from registry import ImportFormatError, ModelExistsError, ModelRegistry
from registry.legacy import import_registry_json, read_json_strict
from registry.utils import list_backups
from registry_snapshot import snapshot

DATA = Path(__file__).parent / "data"
LEGACY_JSON = DATA / "legacy_registry.json"
LEGACY_BERT_JSON = DATA / "legacy_bert_registry.json"


def finite_metrics(entry: dict) -> dict:
    return {name: value for name, value in entry["metrics"].items() if math.isfinite(value)}


def audit_actions(registry: ModelRegistry) -> list[str]:
    from registry.audit import query_events

    return [event["action"] for event in registry.context.read(query_events)]


def test_original_format_gives_same_models_metrics_and_current_best(registry, tmp_path):
    original = json.loads(LEGACY_JSON.read_text())  # Python's json accepts the NaN tokens, as the original did

    counts = import_registry_json(registry.context, LEGACY_JSON, LEGACY_BERT_JSON)

    assert counts["models"] == 4 and counts["current_best"] == "als_v2_20250116_141500"
    models = registry.models
    assert set(models) == set(original["models"])
    for model_id, entry in original["models"].items():
        imported = models[model_id]
        assert imported["metrics"] == finite_metrics(entry), model_id
        for key in ("model_type", "version", "path", "status", "data_version", "git_commit", "training_info"):
            assert imported[key] == entry[key], (model_id, key)
        assert imported["created_at"] == entry["created_at"][:19] + "+00:00"  # seconds, UTC offset, as exported
    best = registry.get_current_best()
    assert best["model_id"] == "als_v2_20250116_141500"
    assert (best["selection_metric"], best["selection_value"], best["selected_by"]) == ("ndcg@10", 0.195, "auto")
    assert best["selected_at"] == "2025-01-16T14:30:00+00:00"
    assert registry.get_model("als_v1_20250115_103000")["status"] == "archived"


def test_quirks_nan_tokens_unknown_fields_and_pct_baselines(registry):
    counts = import_registry_json(registry.context, LEGACY_JSON, LEGACY_BERT_JSON)

    bpr = registry.get_model("bpr_v1_20250115_120000")
    assert bpr["metrics"] == {"recall@10": 0.201}  # NaN and Infinity skipped, never stored
    assert "lambda_reg" not in bpr["hyperparameters"]
    assert bpr["notes"] == "trained on the January snapshot"  # unknown entry field kept
    assert counts["skipped_values"] == 4 and len(counts["warnings"]) >= 4
    # The original's percent baseline key works for min_improvement (91.2% >= 50%).
    assert registry.select_best_model(metric="ndcg@10", min_improvement=0.5)["model_id"] == "als_v2_20250116_141500"
    exported = json.loads(registry.registry_path.read_text())
    assert exported["normalization_ranges"] == {"als": {"min": -1.2, "max": 1.5}, "bpr": {"min": -3.0, "max": 3.0}}
    assert exported["reranking_config"]["weights"] == [0.5, 0.3, 0.2]
    assert exported["evaluation_results"] == {"test_users": 5000}
    assert exported["models"]["bpr_v1_20250115_120000"]["notes"] == "trained on the January snapshot"
    assert exported["metadata"]["selection_criteria"] == "ndcg@10"


def test_bert_registry_current_best_and_links(registry):
    from registry import BERTEmbeddingsRegistry

    counts = import_registry_json(registry.context, LEGACY_JSON, LEGACY_BERT_JSON)

    assert counts["embeddings"] == 2 and counts["links"] == 1
    assert any("als_v0_deleted_long_ago" in warning for warning in counts["warnings"])
    bert = BERTEmbeddingsRegistry(registry.context.bert_json_path, database_url=registry.context.database.url,
                                  root=registry.root)
    assert bert.get_current_best()["version"] == "bert_20250115_103000"
    listed = {e["version"]: e for e in bert.list_embeddings(include_linked_models=True)}
    assert listed["bert_20250115_103000"]["linked_models"] == ["bert_als_20251125_061805"]
    assert listed["bert_20241201_090000"]["linked_models"] == []
    exported = json.loads(registry.context.bert_json_path.read_text())
    assert exported["current_best"] == "bert_20250115_103000"
    assert exported["embeddings"]["bert_20250115_103000"]["pooling"] == "mean"


def test_one_import_audit_event(registry):
    import_registry_json(registry.context, LEGACY_JSON, LEGACY_BERT_JSON)

    assert audit_actions(registry).count("IMPORT") == 1


def test_bare_string_current_best_and_naive_or_aware_times(registry, tmp_path):
    document = {
        "current_best": "als_a",
        "models": {
            "als_a": {"model_type": "als", "version": "a", "path": "artifacts/cf/als/a", "created_at": "2025-01-15T10:30:00",
                      "metrics": {"ndcg@10": 0.2}, "status": "active"},
            "als_b": {"model_type": "als", "version": "b", "path": "artifacts/cf/als/b",
                      "created_at": "2025-01-15T12:30:00.5+02:00", "metrics": {"ndcg@10": 0.1}},
        },
        "metadata": {"registry_version": "1.0"},
    }
    path = tmp_path / "old.json"
    path.write_text(json.dumps(document))

    import_registry_json(registry.context, path)

    best = registry.get_current_best()
    assert best["model_id"] == "als_a" and best["selected_by"] == "import"
    assert registry.get_model("als_a")["created_at"] == "2025-01-15T10:30:00+00:00"  # naive: taken as UTC
    assert registry.get_model("als_b")["created_at"] == "2025-01-15T10:30:00+00:00"  # +02:00 converted to UTC
    assert registry.get_model("als_b")["status"] == "active"  # missing status: active


def test_artifact_files_fingerprinted_only_when_the_folder_exists(registry, model_dir):
    model_dir("als/v2_20250116_141500")

    import_registry_json(registry.context, LEGACY_JSON)

    files = registry.get_model_files("als_v2_20250116_141500")
    assert sorted(f["file_name"] for f in files) == ["als_U.npy", "als_V.npy", "als_metadata.json", "als_params.json"]
    assert all(len(f["sha256"]) == 64 for f in files)
    assert registry.get_model_files("als_v1_20250115_103000") == []


HOSTILE = {
    "deep_nesting": "[" * 100_000 + "]" * 100_000,
    "deep_nesting_in_entry": '{"current_best": null, "metadata": {}, "models": {"als_a": {"model_type": "als", '
    '"version": "a", "path": "p", "hyperparameters": ' + '{"x": ' * 200 + "1" + "}" * 200 + "}}}",
    "nan_only_metrics": '{"current_best": null, "metadata": {}, "models": {"als_a": {"model_type": "als", '
    '"version": "a", "path": "p", "metrics": NaN}}}',
    "duplicate_keys": '{"current_best": null, "metadata": {}, "models": {"als_a": {"model_type": "als", "version": "a", '
    '"path": "p"}, "als_a": {"model_type": "als", "version": "a", "path": "q"}}}',
    "top_level_list": "[]",
    "top_level_nan": "NaN",
    "top_level_string": '"registry"',
    "missing_models": '{"current_best": null, "metadata": {}}',
    "models_is_a_list": '{"current_best": null, "metadata": {}, "models": []}',
    "huge_integer": '{"current_best": null, "metadata": {}, "models": {}, "x": ' + "9" * 5000 + "}",
    "invalid_metric_name": '{"current_best": null, "metadata": {}, "models": {"als_a": {"model_type": "als", '
    '"version": "a", "path": "p", "metrics": {"ndcg 10": 0.2}}}}',
    "string_metric": '{"current_best": null, "metadata": {}, "models": {"als_a": {"model_type": "als", '
    '"version": "a", "path": "p", "metrics": {"ndcg@10": "0.2"}}}}',
    "bad_model_id": '{"current_best": null, "metadata": {}, "models": {"als|a\\nx": {"model_type": "als", '
    '"version": "a", "path": "p"}}}',
    "dangling_current_best": '{"current_best": "als_zzz", "metadata": {}, "models": {}}',
    "bad_created_at": '{"current_best": null, "metadata": {}, "models": {"als_a": {"model_type": "als", '
    '"version": "a", "path": "p", "created_at": "yesterday"}}}',
    "bad_status": '{"current_best": null, "metadata": {}, "models": {"als_a": {"model_type": "als", '
    '"version": "a", "path": "p", "status": "deleted"}}}',
    # Values that used to escape as builtin errors (TypeError, OverflowError, UnicodeEncodeError).
    "status_is_a_list": '{"current_best": null, "metadata": {}, "models": {"als_a": {"model_type": "als", '
    '"version": "a", "path": "p", "status": ["a"]}}}',
    "control_model_is_a_list": '{"current_best": null, "metadata": {}, "models": {"als_a": {"model_type": "als", '
    '"version": "a", "path": "p"}}, "ab_test": {"test_id": "t", "control_model": ["als_a"], '
    '"treatment_model": "als_a", "traffic_split": 0.1}}',
    "huge_traffic_split": '{"current_best": null, "metadata": {}, "models": {"als_a": {"model_type": "als", '
    '"version": "a", "path": "p"}}, "ab_test": {"test_id": "t", "control_model": "als_a", '
    '"treatment_model": "als_a", "traffic_split": ' + "9" * 401 + "}}",
    "ab_test_status_is_a_list": '{"current_best": null, "metadata": {}, "models": {"als_a": {"model_type": "als", '
    '"version": "a", "path": "p"}}, "ab_test": {"test_id": "t", "control_model": "als_a", '
    '"treatment_model": "als_a", "traffic_split": 0.1, "status": ["running"]}}',
    "lone_surrogate_path": '{"current_best": null, "metadata": {}, "models": {"als_a": {"model_type": "als", '
    '"version": "a", "path": "artifacts/\\ud800"}}}',
    "created_at_before_year_1_in_utc": '{"current_best": null, "metadata": {}, "models": {"als_a": {"model_type": '
    '"als", "version": "a", "path": "p", "created_at": "0001-01-01T00:00:00+01:00"}}}',
    "linked_model_is_a_list": '{"current_best": null, "metadata": {}, "models": {}, "bert_embeddings": {"e1": '
    '{"path": "p", "model_name": "m", "num_items": 2, "embedding_dim": 2, "linked_models": [["als_a"]]}}}',
    "zero_num_items": '{"current_best": null, "metadata": {}, "models": {}, "bert_embeddings": {"e1": '
    '{"path": "p", "model_name": "m", "num_items": 0, "embedding_dim": 2}}}',
    "num_items_beyond_the_column": '{"current_best": null, "metadata": {}, "models": {}, "bert_embeddings": {"e1": '
    '{"path": "p", "model_name": "m", "num_items": 4294967296, "embedding_dim": 2}}}',
    "lone_surrogate_text_field": '{"current_best": null, "metadata": {}, "models": {}, "bert_embeddings": {"e1": '
    '{"path": "p", "model_name": "m", "num_items": 2, "embedding_dim": 2, "text_fields_used": ["\\udc80"]}}}',
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_json_is_refused_and_changes_nothing(case, registry, model_dir, tmp_path):
    registry.register_model(model_dir("als/keep"), "als", {"factors": 8}, {"ndcg@10": 0.3}, {}, version="keep")
    before = snapshot(registry, tmp_path / "artifacts")
    path = tmp_path / "hostile.json"
    path.write_text(HOSTILE[case])

    with pytest.raises(ImportFormatError) as raised:
        import_registry_json(registry.context, path, replace=True)

    assert "hostile.json" in str(raised.value)
    assert snapshot(registry, tmp_path / "artifacts") == before


def test_huge_integer_metric_is_skipped_like_infinity(registry, tmp_path):
    path = tmp_path / "huge_metric.json"
    path.write_text('{"current_best": null, "metadata": {}, "models": {"als_a": {"model_type": "als", "version": "a", '
                    '"path": "p", "metrics": {"ndcg@10": ' + "9" * 401 + ', "recall@10": 0.3}}}}')

    counts = import_registry_json(registry.context, path)  # used to raise OverflowError from math.isfinite

    assert counts["skipped_values"] == 1
    assert registry.get_model("als_a")["metrics"] == {"recall@10": 0.3}


def test_a_directory_or_unreadable_path_is_an_import_format_error(registry, tmp_path):
    folder = tmp_path / "registry.json"
    folder.mkdir()

    with pytest.raises(ImportFormatError, match="registry.json"):  # was IsADirectoryError
        import_registry_json(registry.context, folder)
    with pytest.raises(FileNotFoundError):  # a missing file stays FileNotFoundError, as documented
        import_registry_json(registry.context, tmp_path / "missing.json")


def test_builtin_errors_while_parsing_become_import_format_errors(registry, tmp_path, monkeypatch):
    from registry.importer import parse

    def crash(*args, **kwargs):
        raise TypeError("unhashable type: 'list'")

    monkeypatch.setattr(parse, "_parse_ab_test", crash)  # stands for any check a hostile value might still trip
    path = tmp_path / "tripping.json"
    path.write_text(json.dumps({"current_best": None, "metadata": {}, "models": {}, "ab_test": {"test_id": "t"}}))
    before = snapshot(registry)

    with pytest.raises(ImportFormatError, match="tripping.json.*TypeError"):
        import_registry_json(registry.context, path)
    assert snapshot(registry) == before


def test_automatic_import_of_a_hostile_file_raises_import_format_error(tmp_path, database_url, registry_path):
    registry_path.parent.mkdir(parents=True)
    registry_path.write_text(HOSTILE["status_is_a_list"])

    with pytest.raises(ImportFormatError, match="registry_backup_"):  # was TypeError out of ModelRegistry()
        ModelRegistry(registry_path, database_url=database_url, root=tmp_path)

    assert len(list_backups(registry_path)) == 1


def test_non_utf8_and_oversized_files_are_refused(registry, tmp_path):
    before = snapshot(registry)
    latin = tmp_path / "latin1.json"
    latin.write_bytes('{"current_best": null, "models": {}, "metadata": {"x": "caf\xe9"}}'.encode("latin-1"))
    huge = tmp_path / "huge.json"
    with open(huge, "wb") as handle:
        handle.truncate((16 << 20) + 1)  # sparse: the size check must refuse it before reading

    for path in (latin, huge):
        with pytest.raises(ImportFormatError, match=path.name):
            import_registry_json(registry.context, path)
    assert snapshot(registry) == before


def test_read_json_strict_rejects_duplicates_at_any_depth(tmp_path):
    path = tmp_path / "dup.json"
    path.write_text('{"a": {"b": 1, "b": 2}}')

    with pytest.raises(ImportFormatError, match="duplicate key 'b'"):
        read_json_strict(path)


def test_import_adds_to_a_registry_and_refuses_existing_ids(registry, model_dir, tmp_path):
    own = registry.register_model(model_dir("als/own"), "als", {"factors": 8}, {"ndcg@10": 0.5}, {}, version="own")
    registry.select_best_model()

    counts = import_registry_json(registry.context, LEGACY_JSON)

    assert counts["current_best"] is None  # the registry keeps its own current best
    assert registry.get_current_best()["model_id"] == own
    assert len(registry.models) == 5
    with pytest.raises(ModelExistsError, match="als_v2_20250116_141500"):
        import_registry_json(registry.context, LEGACY_JSON)
    assert len(registry.models) == 5


def test_replace_swaps_content_but_keeps_the_audit_trail(registry, model_dir):
    registry.register_model(model_dir("als/own"), "als", {"factors": 8}, {"ndcg@10": 0.5}, {}, version="own")

    import_registry_json(registry.context, LEGACY_JSON, replace=True)

    assert "als_own" not in registry.models
    assert registry.get_current_best()["model_id"] == "als_v2_20250116_141500"
    assert audit_actions(registry) == ["REGISTER", "IMPORT"]


def test_new_database_beside_legacy_file_imports_it_once(tmp_path, database_url, registry_path):
    registry_path.parent.mkdir(parents=True)
    shutil.copy(LEGACY_JSON, registry_path)
    shutil.copy(LEGACY_BERT_JSON, registry_path.with_name("bert_registry.json"))
    # A generation sidecar left by an older database must not block the new exports.
    registry_path.with_name(".registry.json.generation").write_text("999999\n")

    registry = ModelRegistry(registry_path, database_url=database_url, root=tmp_path)

    assert len(registry.models) == 4
    assert registry.get_current_best()["model_id"] == "als_v2_20250116_141500"
    preserved = {entry["name"]: entry for entry in list_backups(registry_path)}
    assert len(preserved) == 1
    assert Path(next(iter(preserved.values()))["path"]).read_bytes() == LEGACY_JSON.read_bytes()
    assert list_backups(registry_path.with_name("bert_registry.json"))
    exported = json.loads(registry_path.read_text())  # now written by the registry (strict JSON)
    assert exported["metadata"]["num_models"] == 4 and "generation" in exported["metadata"]
    again = ModelRegistry(registry_path, database_url=database_url, root=tmp_path)
    assert audit_actions(again).count("IMPORT") == 1


def test_broken_legacy_file_beside_new_database_is_kept_and_reported(tmp_path, database_url, registry_path):
    registry_path.parent.mkdir(parents=True)
    broken = '{"current_best": "als_missing", "models": {}, "metadata": {}}'
    registry_path.write_text(broken)

    with pytest.raises(ImportFormatError, match="registry_backup_") as raised:
        ModelRegistry(registry_path, database_url=database_url, root=tmp_path)

    kept = list_backups(registry_path)
    assert len(kept) == 1 and kept[0]["path"] in str(raised.value)
    assert Path(kept[0]["path"]).read_text() == broken
    # Every open retries: an empty registry would otherwise export over the unimported file.
    with pytest.raises(ImportFormatError, match="fix the file in place.*or move it away") as again:
        ModelRegistry(registry_path, database_url=database_url, root=tmp_path)
    assert kept[0]["path"] in str(again.value) and len(list_backups(registry_path)) == 1  # the same copy
    assert registry_path.read_text() == broken
    registry_path.rename(registry_path.with_name("broken.json"))
    registry = ModelRegistry(registry_path, database_url=database_url, root=tmp_path)  # moved away: opens empty
    assert registry.models == {}


def test_an_interrupted_first_open_import_is_retried_by_the_next_open(tmp_path, database_url, registry_path, monkeypatch,
                                                                      model_dir):
    """The process dies inside the import transaction (rolled back, as after SIGKILL): the next open imports,
    and the first change after it exports every model, never a 1-model file over the legacy one."""
    from registry.importer import entry

    registry_path.parent.mkdir(parents=True)
    shutil.copy(LEGACY_JSON, registry_path)
    original = registry_path.read_bytes()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed mid-import")

    monkeypatch.setattr(entry, "insert_parsed", killed)
    with pytest.raises(KeyboardInterrupt):
        ModelRegistry(registry_path, database_url=database_url, root=tmp_path)
    monkeypatch.undo()
    assert registry_path.read_bytes() == original
    from registry import db

    db.forget_databases()  # a new process

    registry = ModelRegistry(registry_path, database_url=database_url, root=tmp_path)

    legacy_ids = set(json.loads(LEGACY_JSON.read_text())["models"])
    assert set(registry.models) == legacy_ids
    assert audit_actions(registry) == ["IMPORT"]
    new_id = registry.register_model(model_dir("als/new"), "als", {}, {"ndcg@10": 0.1}, {}, version="new")
    assert set(json.loads(registry_path.read_text())["models"]) == legacy_ids | {new_id}
    assert len(list_backups(registry_path)) == 1  # the copy of the killed attempt was reused
    assert "IMPORT" not in audit_actions(ModelRegistry(registry_path, database_url=database_url, root=tmp_path))[1:]


def test_our_own_empty_export_is_not_imported(tmp_path, database_url, registry_path):
    ModelRegistry(registry_path, database_url=f"sqlite:///{tmp_path / 'first.db'}", root=tmp_path)
    assert registry_path.exists()

    registry = ModelRegistry(registry_path, database_url=database_url, root=tmp_path)

    assert "IMPORT" not in audit_actions(registry)
    assert list_backups(registry_path) == []


def test_legacy_file_without_models_but_with_other_keys_is_kept_and_imported(tmp_path, database_url, registry_path,
                                                                          model_dir):
    registry_path.parent.mkdir(parents=True)
    original = json.dumps({
        "current_best": None, "models": {}, "metadata": {"registry_version": "1.0", "num_models": 0},
        "reranking_config": {"weights": [0.5, 0.3, 0.2]}, "normalization_ranges": {"als": {"min": -1.2, "max": 1.5}},
    })
    registry_path.write_text(original)
    bert_path = registry_path.with_name("bert_registry.json")
    bert_original = '{"current_best": null, "embeddings": {}, "metadata": {}, "notes": "keep me"}'
    bert_path.write_text(bert_original)

    registry = ModelRegistry(registry_path, database_url=database_url, root=tmp_path)
    registry.register_model(model_dir("als/a"), "als", {"factors": 8}, {"ndcg@10": 0.2}, {}, version="a")

    preserved = list_backups(registry_path)
    assert len(preserved) == 1 and Path(preserved[0]["path"]).read_text() == original
    # The BERT file's unknown key has no place in the registry (a warning says so), but its bytes are kept.
    assert [Path(b["path"]).read_text() for b in list_backups(bert_path)] == [bert_original]
    exported = json.loads(registry_path.read_text())
    assert exported["reranking_config"] == {"weights": [0.5, 0.3, 0.2]}
    assert exported["normalization_ranges"] == {"als": {"min": -1.2, "max": 1.5}}
    assert "als_a" in exported["models"] and audit_actions(registry).count("IMPORT") == 1


@pytest.mark.parametrize("document", [
    {"current_best": None, "models": {}, "metadata": {}},
    {"current_best": None, "models": {}, "metadata": {"registry_version": "1.0", "last_updated": "2025-01-16T14:30:00",
                                                      "num_models": 0, "selection_criteria": "ndcg@10"}},
    {"current_best": "", "models": {}, "metadata": {}, "bert_embeddings": {}},
])
def test_empty_registry_shapes_are_neither_imported_nor_kept(document, tmp_path, database_url, registry_path):
    registry_path.parent.mkdir(parents=True)
    registry_path.write_text(json.dumps(document))

    registry = ModelRegistry(registry_path, database_url=database_url, root=tmp_path)

    assert "IMPORT" not in audit_actions(registry) and list_backups(registry_path) == []


@pytest.mark.parametrize("document", [
    {"current_best": None, "models": {}, "metadata": {"selection_criteria": "recall@20"}},
    {"current_best": None, "models": {}, "metadata": {"owner": "team-reco"}},
    {"current_best": None, "models": {}, "metadata": {}, "evaluation_results": {"test_users": 5000}},
])
def test_anything_beyond_the_empty_shape_is_kept(document, tmp_path, database_url, registry_path):
    registry_path.parent.mkdir(parents=True)
    registry_path.write_text(json.dumps(document))

    ModelRegistry(registry_path, database_url=database_url, root=tmp_path)

    kept = list_backups(registry_path)
    assert len(kept) == 1 and json.loads(Path(kept[0]["path"]).read_text()) == document

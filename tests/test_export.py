"""registry.json / bert_registry.json: documented schema, atomic publishing, round trip through import."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import re
import time
import traceback
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from registry import ModelRegistry, export
from registry.export import build_registry_document, publish
from registry.legacy import BACKUP_KEYS, MODEL_FIELDS, REGISTRY_KEYS, import_registry_json

TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+00:00$")
DOC_CURRENT_BEST_KEYS = {"model_id", "model_type", "version", "path", "selection_metric", "selection_value",
                         "selected_at", "selected_by"}
DOC_MODEL_KEYS = {"model_type", "version", "path", "created_at", "data_version", "git_commit", "hyperparameters",
                  "metrics", "baseline_comparison", "training_info", "status"}
DOC_METADATA_KEYS = {"registry_version", "last_updated", "num_models", "selection_criteria"}
DOC_AB_TEST_KEYS = {"test_id", "start_time", "control_model", "treatment_model", "traffic_split", "status"}

# The doc's "Registry Schema" example, verbatim.
DOC_REGISTRY_JSON = """
{
  "current_best": {
    "model_id": "als_v2_20250116_141500",
    "model_type": "als",
    "version": "v2_20250116_141500",
    "path": "artifacts/cf/als/v2_20250116_141500",
    "selection_metric": "ndcg@10",
    "selection_value": 0.195,
    "selected_at": "2025-01-16T14:30:00",
    "selected_by": "auto"
  },

  "models": {
    "als_v2_20250116_141500": {
      "model_type": "als",
      "version": "v2_20250116_141500",
      "path": "artifacts/cf/als/v2_20250116_141500",
      "created_at": "2025-01-16T14:15:00",
      "data_version": "abc123...",
      "git_commit": "ghi789...",

      "hyperparameters": {
        "factors": 128,
        "regularization": 0.01,
        "iterations": 20,
        "alpha": 60
      },

      "metrics": {
        "recall@10": 0.245,
        "recall@20": 0.325,
        "ndcg@10": 0.195,
        "ndcg@20": 0.229,
        "coverage": 0.310
      },

      "baseline_comparison": {
        "baseline_type": "popularity",
        "improvement_recall@10": 0.690,
        "improvement_ndcg@10": 0.912
      },

      "training_info": {
        "training_time_seconds": 102.8,
        "num_users": 26000,
        "num_items": 2200,
        "num_train_interactions": 320000
      },

      "status": "active"
    }
  },

  "metadata": {
    "registry_version": "1.0",
    "last_updated": "2025-01-16T14:30:00",
    "num_models": 3,
    "selection_criteria": "ndcg@10"
  }
}
"""


def strict_load(path: Path) -> Any:
    """Parse as a strict JSON reader would (no NaN/Infinity)."""
    def refuse(token: str) -> Any:
        raise ValueError(f"non-standard token {token}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def comparable(document: dict[str, Any]) -> dict[str, Any]:
    """The document without the fields that change with every write."""
    copy = json.loads(json.dumps(document))
    for key in ("last_updated", "generation"):
        copy["metadata"].pop(key, None)
    return copy


def register_doc_model(registry: ModelRegistry, model_dir: Any, relative: str, version: str, ndcg: float) -> str:
    return registry.register_model(
        model_dir(relative),
        "als",
        hyperparameters={"factors": 128, "regularization": 0.01, "iterations": 20, "alpha": 60},
        metrics={"recall@10": 0.245, "recall@20": 0.325, "ndcg@10": ndcg, "ndcg@20": 0.229, "coverage": 0.310},
        training_info={"training_time_seconds": 102.8, "num_users": 40, "num_items": 25, "num_train_interactions": 320},
        data_version="abc123",
        git_commit="ghi789",
        baseline_comparison={"baseline_type": "popularity", "improvement_ndcg@10": 0.912},
        version=version,
    )


# --------------------------------------------------------------------------- schema


def test_registry_json_has_the_documented_schema(registry, model_dir):
    first = register_doc_model(registry, model_dir, "als/v1", "v1_20250115_103000", 0.189)
    best = register_doc_model(registry, model_dir, "als/v2", "v2_20250116_141500", 0.195)
    registry.select_best_model(metric="ndcg@10")
    registry.start_ab_test(first, best, 0.1)

    document = strict_load(registry.registry_path)

    assert set(document) == {"current_best", "models", "metadata", "ab_test"}
    assert set(document["current_best"]) == DOC_CURRENT_BEST_KEYS
    assert document["current_best"]["model_id"] == best and document["current_best"]["selection_value"] == 0.195
    assert document["current_best"]["selected_by"] == "auto"
    assert TIME.match(document["current_best"]["selected_at"])
    assert set(document["models"]) == {first, best}
    for entry in document["models"].values():
        assert set(entry) == DOC_MODEL_KEYS
        assert TIME.match(entry["created_at"]) and entry["status"] == "active"
    assert document["models"][best]["path"] == "artifacts/cf/als/v2"  # stored as given
    assert DOC_METADATA_KEYS <= set(document["metadata"])
    assert document["metadata"]["num_models"] == 2 and document["metadata"]["selection_criteria"] == "ndcg@10"
    assert set(document["ab_test"]) == DOC_AB_TEST_KEYS
    assert document["ab_test"]["traffic_split"] == 0.1 and document["ab_test"]["status"] == "running"


def test_doc_registry_schema_example_imports_and_exports_as_documented(workdir):
    Path("artifacts/cf").mkdir(parents=True)
    Path("artifacts/cf/registry.json").write_text(DOC_REGISTRY_JSON)
    example = json.loads(DOC_REGISTRY_JSON)

    registry = ModelRegistry(registry_path="artifacts/cf/registry.json", auto_create=True)  # imports it

    exported = strict_load(Path("artifacts/cf/registry.json"))
    # The example's naive times are read as UTC and exported with the offset: 2025-01-16T14:15:00+00:00.
    example["current_best"]["selected_at"] += "+00:00"
    for entry in example["models"].values():
        entry["created_at"] += "+00:00"
    assert exported["current_best"] == example["current_best"]
    assert exported["models"] == example["models"]
    assert exported["metadata"]["registry_version"] == "1.0"
    assert exported["metadata"]["selection_criteria"] == "ndcg@10"
    assert exported["metadata"]["num_models"] == 1  # recomputed: the example lists one model
    # min_improvement reads the doc's improvement_ndcg@10 key (0.912 >= 0.5).
    assert registry.select_best_model(metric="ndcg@10", min_improvement=0.5)["model_id"] == "als_v2_20250116_141500"


@pytest.mark.parametrize("status", ["active", "archived", "failed"])
def test_model_status_values_appear_in_the_export(status, registry, model_dir):
    registry.register_model(model_dir("als/a"), "als", {"factors": 8}, {"ndcg@10": 0.2}, {}, version="a")

    registry.update_model_status("als_a", status)

    assert strict_load(registry.registry_path)["models"]["als_a"]["status"] == status


def test_bert_registry_json_follows_the_original_schema(registry, model_dir, embeddings_dir):
    from registry import BERTEmbeddingsRegistry

    model_id = registry.register_model(model_dir("als/a"), "als", {"factors": 8}, {"ndcg@10": 0.2}, {}, version="a")
    bert = BERTEmbeddingsRegistry(registry.context.bert_json_path, database_url=registry.context.database.url,
                                  root=registry.root)
    version = bert.register_embeddings(embeddings_dir("bert/v1"), "vinai/phobert-base", 25, 16, version="bert_v1")
    bert.link_to_model(version, model_id)

    document = strict_load(registry.context.bert_json_path)

    assert document["current_best"] == "bert_v1"
    assert set(document["embeddings"]["bert_v1"]) >= {
        "version", "path", "created_at", "model_name", "num_items", "embedding_dim", "data_version", "git_commit",
        "generation_config", "text_fields_used", "linked_models"}
    assert document["embeddings"]["bert_v1"]["linked_models"] == ["als_a"]
    assert document["metadata"]["num_embeddings"] == 1


# --------------------------------------------------------------------------- publishing


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp") or p.name.endswith(export.TEMP_SUFFIX))


def test_opening_sweeps_only_the_registrys_own_stale_temp_files(registry_path: Path, database_url: str, tmp_path: Path) -> None:
    """Stale temp files of killed exporters go; a user's ``.notes.tmp`` and fresh temp files stay."""
    folder = registry_path.parent
    folder.mkdir(parents=True, exist_ok=True)
    hour_ago = time.time() - 2 * export.ORPHAN_TEMP_AGE_SECONDS
    stale = [folder / f".registry.json.k1j2h3{export.TEMP_SUFFIX}", folder / f".registry_backup.x9y8{export.TEMP_SUFFIX}"]
    fresh = folder / f".registry.json.f4e5d6{export.TEMP_SUFFIX}"
    users = [folder / ".my_notes.tmp", folder / ".registry.json.old.tmp", folder / f"notes{export.TEMP_SUFFIX}"]
    for path in [*stale, fresh, *users]:
        path.write_text("partial")
    for path in [*stale, *users]:
        os.utime(path, (hour_ago, hour_ago))
    stale_dir = folder / f".staging{export.TEMP_SUFFIX}"
    stale_dir.mkdir()
    os.utime(stale_dir, (hour_ago, hour_ago))

    ModelRegistry(registry_path, database_url=database_url, root=tmp_path)

    assert [p.exists() for p in stale] == [False, False]
    assert fresh.exists() and stale_dir.is_dir()
    assert [p.read_text() for p in users] == ["partial"] * 3


@pytest.mark.parametrize("fault", ["os.replace", "os.fsync", "render"])
def test_failed_export_keeps_the_previous_file_and_leaves_no_temp(fault, registry, model_dir, monkeypatch, caplog):
    import registry.export as export_module

    registry.register_model(model_dir("als/a"), "als", {"factors": 8}, {"ndcg@10": 0.2}, {}, version="a")
    before = registry.registry_path.read_bytes()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise (TypeError("not serialisable") if fault == "render" else OSError(5, "I/O error"))

    if fault == "render":
        monkeypatch.setattr(export_module, "render_document", broken)
    else:
        monkeypatch.setattr(os, fault.split(".")[1], broken)
    with caplog.at_level(logging.ERROR, logger="registry.context"):
        # The change is committed, so the call reports it; the failed export is logged, not raised.
        assert registry.register_model(model_dir("als/b"), "als", {"factors": 8}, {"ndcg@10": 0.3}, {}, version="b") == "als_b"
    monkeypatch.undo()
    assert any("registry.json" in r.getMessage() and "cfreg export-json" in r.getMessage() for r in caplog.records)

    assert registry.registry_path.read_bytes() == before
    assert temp_files(registry.registry_path.parent) == []
    assert registry.get_model("als_b") is not None  # the export runs after the commit: the change is kept
    registry.export_registry_json()  # what `cfreg export-json` does: heals the file
    assert "als_b" in strict_load(registry.registry_path)["models"]


def test_an_older_generation_never_replaces_a_newer_file(registry, model_dir):
    registry.register_model(model_dir("als/a"), "als", {"factors": 8}, {"ndcg@10": 0.2}, {}, version="a")
    old_document, old_generation = registry.context.read(build_registry_document)
    registry.register_model(model_dir("als/b"), "als", {"factors": 8}, {"ndcg@10": 0.3}, {}, version="b")
    newer = registry.registry_path.read_bytes()

    assert publish(registry.registry_path, old_document, old_generation, "models") is False

    assert registry.registry_path.read_bytes() == newer


def test_export_json_false_writes_only_on_demand(tmp_path, model_dir, database_url, registry_path):
    registry = ModelRegistry(registry_path, database_url=database_url, root=tmp_path, export_json=False)
    registry.register_model(model_dir("als/a"), "als", {"factors": 8}, {"ndcg@10": 0.2}, {}, version="a")
    assert not registry_path.exists() or "als_a" not in strict_load(registry_path)["models"]

    registry.export_registry_json()

    assert "als_a" in strict_load(registry_path)["models"]


# --------------------------------------------------------------------------- round trip


def test_round_trip_of_a_real_registry(registry, model_dir, embeddings_dir, tmp_path):
    from registry import BERTEmbeddingsRegistry

    a = register_doc_model(registry, model_dir, "als/a", "a", 0.2)
    b = registry.register_model(model_dir("bpr/b", model_type="bpr"), "bpr", {"factors": 8}, {"ndcg@10": 0.25}, {},
                                version="b", bert_integration={"projection_method": "svd"})
    registry.select_best_model()
    registry.promote_model(a, reason="manual")
    registry.start_ab_test(a, b, 0.25)
    bert = BERTEmbeddingsRegistry(registry.context.bert_json_path, database_url=registry.context.database.url,
                                  root=registry.root)
    bert.register_embeddings(embeddings_dir("bert/v1"), "vinai/phobert-base", 25, 16, version="bert_v1")
    bert.link_to_model("bert_v1", b)
    first = strict_load(registry.registry_path)
    first_bert = strict_load(registry.context.bert_json_path)

    copy = ModelRegistry(tmp_path / "copy" / "registry.json", root=tmp_path)
    import_registry_json(copy.context, registry.registry_path, registry.context.bert_json_path)

    assert comparable(strict_load(copy.registry_path)) == comparable(first)
    assert comparable(strict_load(copy.context.bert_json_path)) == comparable(first_bert)
    assert copy.get_model_files(a) == registry.get_model_files(a)  # files fingerprinted again


identifiers = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,15}", fullmatch=True)
metric_names = st.from_regex(r"[A-Za-z0-9@._:/-]{1,12}", fullmatch=True)
finite = st.floats(min_value=-1e300, max_value=1e300, allow_nan=False, allow_infinity=False)
plain_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | finite | plain_text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(plain_text, children, max_size=3),
    max_leaves=6,
)
json_objects = st.dictionaries(plain_text, json_values, max_size=4)
timestamps = st.datetimes(min_value=__import__("datetime").datetime(2000, 1, 1),
                          max_value=__import__("datetime").datetime(2099, 12, 31)).map(
    lambda d: d.replace(microsecond=0, tzinfo=__import__("datetime").timezone.utc))  # ISO text with +00:00, as we export


@st.composite
def legacy_documents(draw: Any) -> dict[str, Any]:
    """registry.json documents as the original registry (or ours) writes them."""
    models: dict[str, Any] = {}
    for _ in range(draw(st.integers(0, 4))):
        model_type = draw(st.sampled_from(["als", "bpr", "bert_als"]))
        version = draw(identifiers)
        entry: dict[str, Any] = {
            "model_type": model_type,
            "version": version,
            "path": f"artifacts/cf/{model_type}/{version}",
            "created_at": draw(timestamps).isoformat(),
            "data_version": draw(st.none() | identifiers),
            "git_commit": draw(st.none() | st.from_regex(r"[0-9a-f]{7,40}", fullmatch=True)),
            "hyperparameters": draw(json_objects),
            "metrics": draw(st.dictionaries(metric_names, finite | st.integers(-1000, 1000), max_size=4)),
            "training_info": draw(json_objects),
            "status": draw(st.sampled_from(["active", "archived", "failed"])),
        }
        if draw(st.booleans()):
            entry["baseline_comparison"] = draw(json_objects.filter(bool))
        extra_key = draw(st.none() | identifiers.filter(lambda k: k not in MODEL_FIELDS))
        if extra_key:
            entry[extra_key] = draw(json_values)
        models[f"{model_type}_{version}"] = entry
    ids = sorted(models)
    current: Any = None
    if ids and draw(st.booleans()):
        chosen = draw(st.sampled_from(ids))
        current = chosen if draw(st.booleans()) else {
            "model_id": chosen, "selection_metric": draw(st.none() | metric_names),
            "selection_value": draw(st.none() | finite), "selected_at": draw(timestamps).isoformat(),
            "selected_by": draw(st.sampled_from(["auto", "manual", "rollback"])),
        }
    document: dict[str, Any] = {
        "current_best": current,
        "models": models,
        "metadata": {"registry_version": "1.0", "selection_criteria": draw(metric_names)},
    }
    if len(ids) >= 2 and draw(st.booleans()):
        control, treatment = draw(st.permutations(ids))[:2]
        document["ab_test"] = {"test_id": draw(identifiers), "start_time": draw(timestamps).isoformat(),
                               "control_model": control, "treatment_model": treatment,
                               "traffic_split": draw(st.floats(0, 1)), "status": draw(st.sampled_from(["running", "stopped"]))}
    extra_top = draw(st.none() | identifiers.filter(lambda k: k not in REGISTRY_KEYS + BACKUP_KEYS))
    if extra_top:
        document[extra_top] = draw(json_values)
    return document


@pytest.mark.slow
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=legacy_documents())
def test_export_import_export_is_stable(document, registry, tmp_path):
    source = tmp_path / "generated.json"
    source.write_text(json.dumps(document))
    import_registry_json(registry.context, source, replace=True)
    first = strict_load(registry.registry_path)
    exported = tmp_path / "first.json"
    exported.write_text(json.dumps(first))

    import_registry_json(registry.context, exported, replace=True)

    assert comparable(strict_load(registry.registry_path)) == comparable(first)
    # ... and the first export holds what the generated file said.
    assert first["models"] == {model_id: expected_entry(entry) for model_id, entry in document["models"].items()}
    current = document["current_best"]
    current_id = current if isinstance(current, str) else (current or {}).get("model_id")
    assert (first["current_best"] or {}).get("model_id") == current_id
    assert {k: v for k, v in first.items() if k not in REGISTRY_KEYS} == {
        k: v for k, v in document.items() if k not in REGISTRY_KEYS}
    assert first.get("ab_test") == document.get("ab_test")
    assert first["metadata"]["selection_criteria"] == document["metadata"]["selection_criteria"]


def expected_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """How a generated entry must look once exported."""
    expected = dict(entry)
    expected["data_version"] = entry["data_version"] or "unknown"
    expected["metrics"] = {name: float(value) for name, value in entry["metrics"].items()}
    return expected


# --------------------------------------------------------------------------- concurrent readers


def register_worker(registry_path: str, database_url: str, root: str, model_path: str, worker: int, count: int,
                    start: Any, errors: Any) -> None:
    """Register ``count`` models with export on (each commit rewrites registry.json)."""
    try:
        registry = ModelRegistry(registry_path, database_url=database_url, root=root)
        start.wait(60)
        for index in range(count):
            registry.register_model(model_path, "als", {"factors": 8}, {"ndcg@10": index / 100}, {},
                                    version=f"w{worker}_{index}")
    except BaseException:
        errors.put(traceback.format_exc())


@pytest.mark.slow
def test_reader_never_sees_invalid_json_while_four_processes_register(tmp_path, model_dir, database_url, registry_path):
    ModelRegistry(registry_path, database_url=database_url, root=tmp_path)
    path = model_dir("als/shared")
    ctx = multiprocessing.get_context("spawn")
    start, errors = ctx.Event(), ctx.Queue()
    workers = [ctx.Process(target=register_worker,
                           args=(str(registry_path), database_url, str(tmp_path), path, worker, 6, start, errors))
               for worker in range(4)]
    for process in workers:
        process.start()
    reads, invalid, generations = 0, [], []
    time.sleep(0.5)
    start.set()
    deadline = time.monotonic() + 90
    while any(p.is_alive() for p in workers) and time.monotonic() < deadline:
        data = registry_path.read_bytes()
        try:
            document = json.loads(data)
            generations.append(document["metadata"]["generation"])
        except ValueError as exc:
            invalid.append((exc, data[:200]))
        reads += 1
    for process in workers:
        process.join(30)

    assert errors.empty(), errors.get()
    assert invalid == []
    assert reads > 0
    assert generations == sorted(generations)  # never an older export over a newer one
    final = strict_load(registry_path)
    assert len(final["models"]) == 24 and final["metadata"]["num_models"] == 24

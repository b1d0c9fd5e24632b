"""backup_registry / restore_registry / list_backups."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import sqlite3
import time
import traceback
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from registry import ExportError, ImportFormatError, ModelRegistry
from registry.utils import backup_registry, list_backups, restore_registry
from registry_snapshot import snapshot

DATA = Path(__file__).parent / "data"
NAME = re.compile(r"^registry_backup_\d{8}_\d{6}_\d{6}(_\d+)?\.(json|db)$")
RESTORED_TABLES = ("models", "model_metrics", "artifact_files", "selections", "bert_embeddings", "embedding_links",
                   "ab_tests")


def build_history(registry: ModelRegistry, model_dir: Any, embeddings_dir: Any) -> None:
    """Models, selections (auto, manual), an archive, embeddings with a link and a stopped A/B test."""
    from registry import BERTEmbeddingsRegistry

    a = registry.register_model(model_dir("als/a", seed=1), "als", {"factors": 8}, {"ndcg@10": 0.20, "recall@10": 0.3},
                                {"training_time_seconds": 3.5}, version="a",
                                baseline_comparison={"baseline_type": "popularity", "improvement_ndcg@10": 0.4})
    b = registry.register_model(model_dir("bpr/b", model_type="bpr", seed=2), "bpr", {"factors": 8}, {"ndcg@10": 0.25},
                                {}, version="b")
    c = registry.register_model(model_dir("als/c", seed=3), "als", {"factors": 8}, {"ndcg@10": 0.1}, {}, version="c")
    registry.select_best_model()
    registry.promote_model(a, reason="manual check")
    registry.archive_model(c)
    registry.start_ab_test(a, b, 0.1)
    registry.stop_ab_test()
    bert = BERTEmbeddingsRegistry(registry.context.bert_json_path, database_url=registry.context.database.url,
                                  root=registry.root)
    version = bert.register_embeddings(embeddings_dir("bert/v1"), "vinai/phobert-base", 25, 16, version="bert_v1")
    bert.link_to_model(version, b)


def rows_by_table(registry: ModelRegistry) -> dict[str, list[dict[str, Any]]]:
    """Every table as a list of row dicts, ordered by primary key."""
    from sqlalchemy import select

    from registry.models import Base

    def work(session: Any) -> dict[str, list[dict[str, Any]]]:
        return {
            table.name: [dict(row) for row in session.execute(select(table).order_by(*table.primary_key.columns)).mappings()]
            for table in Base.metadata.sorted_tables
        }

    return registry.context.read(work)


def restorable(registry: ModelRegistry) -> dict[str, Any]:
    rows = rows_by_table(registry)
    settings = rows["settings"][0]
    return {
        **{name: rows[name] for name in RESTORED_TABLES},
        "audit_events": rows["audit_events"],
        "pointers": {key: settings[key] for key in ("current_model_id", "current_selection_id",
                                                    "current_embeddings_version", "selection_criteria", "extra")},
    }


@pytest.mark.parametrize("kind", ["json", "db"])
def test_restore_brings_back_exactly_the_backed_up_state(kind, registry, model_dir, embeddings_dir, database_url, tmp_path,
                                                          backend):
    if kind == "db" and backend != "sqlite":
        pytest.skip("a .db backup copies a SQLite file (PostgreSQL restores a .db backup in the next test)")
    build_history(registry, model_dir, embeddings_dir)
    before = restorable(registry)
    source = registry.registry_path if kind == "json" else registry.registry_path.with_name("registry.db")

    backup = backup_registry(source, database_url=database_url)

    assert NAME.match(Path(backup).name)
    d = registry.register_model(model_dir("als/d", seed=4), "als", {"factors": 8}, {"ndcg@10": 0.9}, {}, version="d")
    registry.select_best_model()
    registry.delete_model("als_c")
    generation = registry.context.generation()[0]

    assert restore_registry(backup, registry.registry_path, database_url=database_url) is True

    after = restorable(registry)
    for name in RESTORED_TABLES:
        assert after[name] == before[name], name
    assert after["pointers"] == before["pointers"]
    assert after["audit_events"][:-1] == before["audit_events"]
    assert after["audit_events"][-1]["action"] == "RESTORE"
    assert registry.context.generation()[0] > generation
    exported = json.loads(registry.registry_path.read_text())
    assert d not in exported["models"] and exported["current_best"]["model_id"] == "als_a"
    # Ids continue after the restored ones (PostgreSQL sequences were moved).
    registry.register_model(model_dir("als/d"), "als", {"factors": 8}, {"ndcg@10": 0.9}, {}, version="d")
    registry.select_best_model()
    history = registry.get_selection_history()
    assert history[0]["model_id"] == d and history[0]["id"] > max(s["id"] for s in before["selections"])


def test_sqlite_backup_restores_into_any_backend(tmp_path, model_dir, embeddings_dir, registry, database_url):
    source = ModelRegistry(tmp_path / "source" / "registry.json", root=tmp_path)
    build_history(source, model_dir, embeddings_dir)
    expected = restorable(source)

    backup = backup_registry(tmp_path / "source" / "registry.db")

    with sqlite3.connect(backup) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one self-contained file
    restore_registry(backup, registry.registry_path, database_url=database_url)
    after = restorable(registry)
    for name in RESTORED_TABLES:
        assert after[name] == expected[name], name
    assert [e["action"] for e in after["audit_events"]] == [e["action"] for e in expected["audit_events"]] + ["RESTORE"]


def test_restore_first_backs_up_the_current_state(registry, model_dir, database_url):
    registry.register_model(model_dir("als/a"), "als", {"factors": 8}, {"ndcg@10": 0.2}, {}, version="a")
    first = backup_registry(registry.registry_path, database_url=database_url)
    registry.register_model(model_dir("als/b"), "als", {"factors": 8}, {"ndcg@10": 0.3}, {}, version="b")

    restore_registry(first, registry.registry_path, database_url=database_url)

    backups = list_backups(registry.registry_path)
    assert len(backups) == 2 and backups[1]["path"] == first
    current = json.loads(Path(backups[0]["path"]).read_text())
    assert set(current["models"]) == {"als_a", "als_b"}
    assert set(registry.models) == {"als_a"}


def test_restore_from_a_plain_registry_json_keeps_the_audit_trail(registry, model_dir, database_url):
    registry.register_model(model_dir("als/own"), "als", {"factors": 8}, {"ndcg@10": 0.5}, {}, version="own")

    restore_registry(DATA / "legacy_registry.json", registry.registry_path, create_current_backup=False,
                     database_url=database_url)

    assert "als_own" not in registry.models and len(registry.models) == 4
    assert registry.get_current_best()["model_id"] == "als_v2_20250116_141500"
    actions = [e["action"] for e in rows_by_table(registry)["audit_events"]]
    assert actions == ["REGISTER", "RESTORE"]


def test_restore_into_a_registry_that_does_not_exist_yet(tmp_path, workdir, model_dir, embeddings_dir):
    # A registry created by the restore takes the working directory as its root until the
    # backup's settings arrive (its RESTORE audit line goes to ./logs): run in the test folder.
    source = ModelRegistry(tmp_path / "old" / "registry.json", root=tmp_path)
    build_history(source, model_dir, embeddings_dir)
    backup = backup_registry(source.registry_path)

    restore_registry(backup, tmp_path / "new" / "registry.json")

    restored = ModelRegistry(tmp_path / "new" / "registry.json", auto_create=False, root=tmp_path)
    assert restored.models == source.models
    assert restored.get_current_best()["model_id"] == "als_a"


def damaged_backups(tmp_path: Path, good: Path) -> dict[str, Path]:
    document = json.loads(good.read_text())
    cases: dict[str, Path] = {}
    truncated = tmp_path / "truncated.json"
    truncated.write_text(good.read_text()[: len(good.read_text()) // 2])
    cases["truncated"] = truncated
    bad_id = json.loads(json.dumps(document))
    bad_id["tables"]["models"][0]["model_id"] = "als|x"
    cases["bad_model_id"] = tmp_path / "bad_id.json"
    cases["bad_model_id"].write_text(json.dumps(bad_id))
    bad_type = json.loads(json.dumps(document))
    bad_type["tables"]["model_metrics"][0]["value"] = "high"
    cases["bad_value_type"] = tmp_path / "bad_type.json"
    cases["bad_value_type"].write_text(json.dumps(bad_type))
    dangling = json.loads(json.dumps(document))
    dangling["tables"]["settings"][0]["current_model_id"] = "als_nowhere"
    cases["dangling_pointer"] = tmp_path / "dangling.json"
    cases["dangling_pointer"].write_text(json.dumps(dangling))
    unknown = json.loads(json.dumps(document))
    unknown["tables"]["models"][0]["colour"] = "red"
    cases["unknown_column"] = tmp_path / "unknown.json"
    cases["unknown_column"].write_text(json.dumps(unknown))
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    cases["not_sqlite"] = garbage
    return cases


def test_damaged_backups_are_refused_and_change_nothing(registry, model_dir, database_url, tmp_path):
    registry.register_model(model_dir("als/a"), "als", {"factors": 8}, {"ndcg@10": 0.2}, {}, version="a")
    registry.select_best_model()
    good = Path(backup_registry(registry.registry_path, backup_dir=tmp_path / "b", database_url=database_url))
    before = snapshot(registry, tmp_path / "artifacts")

    for case, path in damaged_backups(tmp_path, good).items():
        with pytest.raises(ImportFormatError, match=re.escape(path.name)):
            restore_registry(path, registry.registry_path, database_url=database_url)
        assert snapshot(registry, tmp_path / "artifacts") == before, case


def test_backup_names_are_unique_even_in_the_same_microsecond(registry, monkeypatch, tmp_path):
    import registry.backup_files as backup_files

    monkeypatch.setattr(backup_files, "clock", lambda: datetime(2025, 1, 16, 12, 0, 0, 123456))

    names = [Path(backup_registry(registry.registry_path, backup_dir=tmp_path / "b")).name for _ in range(3)]

    assert names == ["registry_backup_20250116_120000_123456.json", "registry_backup_20250116_120000_123456_2.json",
                     "registry_backup_20250116_120000_123456_3.json"]
    listed = [entry["name"] for entry in list_backups(registry.registry_path, backup_dir=tmp_path / "b")]
    assert listed == list(reversed(names))


def test_list_backups_newest_first_with_details(tmp_path):
    registry = ModelRegistry(tmp_path / "artifacts" / "cf" / "registry.json", root=tmp_path)  # files only: SQLite
    folder = registry.registry_path.parent
    (folder / "registry_backup_20250116_120000.json").write_text("{}")  # the original's name format
    first = backup_registry(registry.registry_path)
    second = backup_registry(registry.registry_path.with_name("registry.db"))
    (folder / "registry_backup_notes.txt").write_text("not a backup")

    backups = list_backups(registry.registry_path)

    assert [b["path"] for b in backups] == [second, first, str(folder / "registry_backup_20250116_120000.json")]
    assert backups[2]["created_at"] == "2025-01-16T12:00:00"
    assert [b["kind"] for b in backups] == ["sqlite", "json", "json"]
    assert all(b["size_bytes"] == Path(b["path"]).stat().st_size for b in backups)
    assert list_backups(tmp_path / "elsewhere" / "registry.json") == []


def test_failed_backup_write_leaves_nothing(registry, monkeypatch):
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "link", refuse)
    folder = registry.registry_path.parent
    before = sorted(p.name for p in folder.iterdir())

    with pytest.raises(ExportError, match="No space left"):
        backup_registry(registry.registry_path)

    assert sorted(p.name for p in folder.iterdir()) == before


def test_backup_of_a_json_only_legacy_registry_copies_the_file(tmp_path):
    legacy = tmp_path / "old" / "registry.json"
    legacy.parent.mkdir()
    legacy.write_bytes((DATA / "legacy_registry.json").read_bytes())

    backup = backup_registry(legacy)

    assert Path(backup).read_bytes() == legacy.read_bytes()
    assert not (tmp_path / "old" / "registry.db").exists()


def test_backup_of_a_missing_registry_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        backup_registry(tmp_path / "nothing" / "registry.json")
    with pytest.raises(FileNotFoundError):
        backup_registry(tmp_path / "nothing" / "registry.db")


# --------------------------------------------------------------------------- B3: backups under load


def writer(registry_path: str, database_url: str, root: str, model_path: str, name: str, stop: Any, errors: Any) -> None:
    """Register models until told to stop."""
    try:
        from registry import ModelRegistry

        registry = ModelRegistry(registry_path, database_url=database_url, root=root, export_json=False)
        count = 0
        while not stop.is_set():
            count += 1
            registry.register_model(model_path, "als", {"factors": 8}, {"ndcg@10": count / 1000}, {},
                                    version=f"{name}_{count}")
    except BaseException:
        errors.put(traceback.format_exc())


@pytest.mark.slow
def test_backups_taken_while_two_processes_register_are_complete(tmp_path, model_dir, database_url, registry_path):
    registry = ModelRegistry(registry_path, database_url=database_url, root=tmp_path, export_json=False)
    path = model_dir("als/shared")
    ctx = multiprocessing.get_context("spawn")
    stop, errors = ctx.Event(), ctx.Queue()
    writers = [ctx.Process(target=writer, args=(str(registry_path), database_url, str(tmp_path), path, f"w{i}", stop, errors))
               for i in range(2)]
    for process in writers:
        process.start()
    try:
        deadline = time.monotonic() + 60
        while len(registry.models) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        results = []
        for i in range(6):
            seen = len(registry.models)
            as_db = i % 2 == 1 and database_url.startswith("sqlite")
            source = registry_path.with_name("registry.db") if as_db else registry_path
            results.append((seen, backup_registry(source, backup_dir=tmp_path / "backups", database_url=database_url)))
    finally:
        stop.set()
        for process in writers:
            process.join(60)
    assert errors.empty(), errors.get()
    assert len(results) == 6 and results[-1][0] >= 4
    for seen, backup in results:
        if backup.endswith(".db"):
            with sqlite3.connect(backup) as connection:
                assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
                count = connection.execute("SELECT count(*) FROM models").fetchone()[0]
        else:
            document = json.loads(Path(backup).read_text())
            count = len(document["tables"]["models"])
            assert count == len(document["models"]) == document["metadata"]["num_models"]
            assert len(document["tables"]["audit_events"]) == count  # one REGISTER per model: one snapshot
        assert count >= seen, backup


# --------------------------------------------------------------------------- values a restore must refuse up front


def _edit_backup(good: Path, target: Path, edit: Any) -> Path:
    """A copy of a JSON backup with ``edit(document)`` applied, written with NaN tokens allowed."""
    document = json.loads(good.read_text())
    edit(document)
    target.write_text(json.dumps(document, allow_nan=True))
    return target


UNRESTORABLE = {
    "nan_in_hyperparameters": lambda d: d["tables"]["models"][0]["hyperparameters"].update(a=float("nan")),
    "infinite_selection_value": lambda d: d["tables"]["selections"][0].update(value=float("inf")),
    "metric_too_large_for_a_float": lambda d: d["tables"]["model_metrics"][0].update(value=10**400),
    "integer_beyond_its_column": lambda d: d["tables"]["bert_embeddings"][0].update(num_items=2**40),
    "lone_surrogate_in_a_path": lambda d: d["tables"]["models"][0].update(path="artifacts/\ud800"),
    "nul_in_a_text_column": lambda d: d["tables"]["selections"][0].update(reason="a\x00b"),
    "text_fields_used_not_a_list": lambda d: d["tables"]["bert_embeddings"][0].update(text_fields_used={"a": 1}),
    "hyperparameters_not_an_object": lambda d: d["tables"]["models"][0].update(hyperparameters=[1, 2]),
    "lone_surrogate_in_settings_extra": lambda d: d["tables"]["settings"][0].update(extra={"k": "\udc80"}),
}


@pytest.mark.parametrize("case", sorted(UNRESTORABLE))
def test_restore_refuses_values_the_registry_could_not_export(case, registry, model_dir, embeddings_dir, database_url,
                                                              tmp_path):
    build_history(registry, model_dir, embeddings_dir)
    good = Path(backup_registry(registry.registry_path, backup_dir=tmp_path / "b", database_url=database_url))
    damaged = _edit_backup(good, tmp_path / f"{case}.json", UNRESTORABLE[case])
    before = snapshot(registry, tmp_path / "artifacts")
    backups_before = list_backups(registry.registry_path)

    with pytest.raises(ImportFormatError, match=re.escape(damaged.name)):
        restore_registry(damaged, registry.registry_path, database_url=database_url)

    assert snapshot(registry, tmp_path / "artifacts") == before
    assert list_backups(registry.registry_path) == backups_before  # the current-state copy was removed
    # The registry keeps working: the next change commits and exports strict JSON.
    registry.register_model(model_dir("als/next", seed=7), "als", {"factors": 8}, {"ndcg@10": 0.3}, {}, version="next")
    assert "als_next" in json.loads(registry.registry_path.read_text())["models"]


def test_restore_refuses_nan_hidden_in_a_sqlite_backup(tmp_path, model_dir, embeddings_dir, registry, database_url):
    source = ModelRegistry(tmp_path / "source" / "registry.json", root=tmp_path)
    build_history(source, model_dir, embeddings_dir)
    backup = backup_registry(tmp_path / "source" / "registry.db")
    with sqlite3.connect(backup) as connection:
        connection.execute("""UPDATE models SET hyperparameters = '{"a": NaN}' WHERE model_id = 'als_a'""")
    before = snapshot(registry, tmp_path / "artifacts")

    with pytest.raises(ImportFormatError, match="non-finite"):
        restore_registry(backup, registry.registry_path, database_url=database_url)
    assert snapshot(registry, tmp_path / "artifacts") == before


def test_a_plain_original_registry_json_with_nan_tokens_still_restores(registry, database_url):
    assert "NaN" in (DATA / "legacy_registry.json").read_text()

    restore_registry(DATA / "legacy_registry.json", registry.registry_path, create_current_backup=False,
                     database_url=database_url)

    assert registry.get_model("bpr_v1_20250115_120000")["metrics"] == {"recall@10": 0.201}


@pytest.mark.parametrize("relative", [False, True])
def test_backups_of_a_registry_folder_go_into_that_folder(relative, tmp_path, model_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    registry = ModelRegistry(tmp_path / "artifacts" / "cf" / "registry.json", root=tmp_path)
    registry.register_model(model_dir("als/a"), "als", {"factors": 8}, {"ndcg@10": 0.2}, {}, version="a")
    folder = Path("artifacts/cf") if relative else tmp_path / "artifacts" / "cf"

    backup = backup_registry(folder)

    assert Path(backup).parent == folder and NAME.match(Path(backup).name)  # was artifacts/, beside the folder
    assert [b["path"] for b in list_backups(folder)] == [backup]
    assert [b["name"] for b in list_backups(registry.registry_path)] == [Path(backup).name]
    assert not list((tmp_path / "artifacts").glob("*_backup_*"))

    registry.register_model(model_dir("als/b"), "als", {"factors": 8}, {"ndcg@10": 0.3}, {}, version="b")
    restore_registry(backup, folder)  # its current-state backup goes to the same folder

    listed = list_backups(folder)
    assert len(listed) == 2 and listed[1]["path"] == backup
    assert set(json.loads(Path(listed[0]["path"]).read_text())["models"]) == {"als_a", "als_b"}
    assert set(registry.models) == {"als_a"}

"""The automation scripts (``tools/update_registry.py``, ``tools/cleanup_old_models.py``)
and the library code they share with ``cfreg`` (``registry.maintenance``).

The rules are tested on the library (both backends); the scripts themselves run as
real processes to show their flags behave as the doc's "Automation Scripts" says.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from factories import make_model_dir
from registry import InvalidArgumentError, InvalidArtifactsError, ModelRegistry
from registry.audit import query_events
from registry.maintenance import (
    cleanup_old_models,
    plan_cleanup,
    read_model_folder,
    stored_artifacts_path,
    update_registry_from_folder,
)
from registry_snapshot import snapshot

REPO = Path(__file__).resolve().parent.parent
UPDATE_SCRIPT = REPO / "tools" / "update_registry.py"
CLEANUP_SCRIPT = REPO / "tools" / "cleanup_old_models.py"


def folder(tmp_path: Path, relative: str, model_type: str = "als", *, metrics: dict[str, Any] | None = None,
           metrics_file: dict[str, Any] | None = None, seed: int = 0, **metadata: Any) -> str:
    """A model folder under ``artifacts/cf``; ``metrics`` go into the metadata, ``metrics_file`` into ``{type}_metrics.json``."""
    if metrics is not None:
        metadata["metrics"] = metrics
    path = make_model_dir(tmp_path / "artifacts" / "cf" / relative, model_type, seed=seed, metadata=metadata,
                          params={"factors": 8, "regularization": 0.05, "iterations": 15})
    if metrics_file is not None:
        (path / f"{model_type}_metrics.json").write_text(json.dumps(metrics_file))
    return f"artifacts/cf/{relative}"


def run_script(script: Path, args: list[str], cwd: Path, database_url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CFREG_")}
    extra = ["--database-url", database_url] if database_url else []
    return subprocess.run([sys.executable, str(script), *args, *extra], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


# ---------------------------------------------------------------------- reading a model folder


def test_folder_rules_metrics_file_wins_over_metadata(tmp_path: Path) -> None:
    path = folder(
        tmp_path, "als/v2_20250116_141500",
        metrics={"ndcg@10": 0.1}, metrics_file={"ndcg@10": 0.195, "recall@10": 0.245},
        training_time_seconds=102.8, num_train_interactions=320000, data_version="abc123", git_commit="ghi789",
        baseline_comparison={"baseline_type": "popularity", "improvement_ndcg@10": 0.912},
        training_info={"hardware": "cpu"},
    )
    read = read_model_folder(path, base=tmp_path)
    assert read.model_type == "als"
    assert read.version == "v2_20250116_141500"
    assert read.hyperparameters == {"factors": 8, "regularization": 0.05, "iterations": 15}
    assert (read.metrics, read.metrics_source) == ({"ndcg@10": 0.195, "recall@10": 0.245}, "als_metrics.json")
    assert read.training_info == {
        "num_users": 40, "num_items": 25, "factors": 8, "training_time_seconds": 102.8,
        "num_train_interactions": 320000, "hardware": "cpu",
    }
    assert (read.data_version, read.git_commit) == ("abc123", "ghi789")
    assert read.baseline_comparison == {"baseline_type": "popularity", "improvement_ndcg@10": 0.912}


def test_folder_rules_fallbacks(tmp_path: Path) -> None:
    from_metadata = read_model_folder(folder(tmp_path, "bpr/run 1", "bpr", metrics={"ndcg@10": 0.2}), base=tmp_path)
    assert (from_metadata.model_type, from_metadata.metrics) == ("bpr", {"ndcg@10": 0.2})
    assert from_metadata.metrics_source == "bpr_metadata.json:metrics"
    assert from_metadata.version is None  # "run 1" is not a valid version id: one is generated
    nested = read_model_folder(folder(tmp_path, "als/n", metrics_file={"metrics": {"coverage": 0.3}}), base=tmp_path)
    assert nested.metrics == {"coverage": 0.3}
    bare = read_model_folder(folder(tmp_path, "als/bare"), base=tmp_path)
    assert (bare.metrics, bare.metrics_source, bare.data_version) == ({}, None, None)


def test_folder_type_detection_errors(tmp_path: Path) -> None:
    both = tmp_path / "both"
    make_model_dir(both, "als")
    make_model_dir(both, "bpr")
    with pytest.raises(InvalidArgumentError, match="ambiguous.*als_U.npy, bpr_U.npy.*--type"):
        read_model_folder(both)
    assert read_model_folder(both, "bpr").model_type == "bpr"
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidArtifactsError, match="no \\{type\\}_U.npy"):
        read_model_folder(tmp_path / "empty")
    with pytest.raises(InvalidArtifactsError, match="not a directory"):
        read_model_folder(tmp_path / "missing")
    (tmp_path / "bad").mkdir()
    make_model_dir(tmp_path / "bad", "als")
    (tmp_path / "bad" / "als_metrics.json").write_text("[0.1]")
    with pytest.raises(InvalidArtifactsError, match="JSON object"):
        read_model_folder(tmp_path / "bad")


def test_stored_path_is_relative_to_the_registry_root(tmp_path: Path) -> None:
    root = tmp_path / "project"
    assert stored_artifacts_path(root, "artifacts/cf/als/v1", cwd=root) == "artifacts/cf/als/v1"
    assert stored_artifacts_path(root, "../artifacts/cf/als/v1", cwd=root / "sub") == "artifacts/cf/als/v1"
    assert stored_artifacts_path(root, "cf/als/v1", cwd=root / "artifacts") == "artifacts/cf/als/v1"
    assert stored_artifacts_path(root, "/elsewhere/m", cwd=root) == "/elsewhere/m"


# ---------------------------------------------------------------------- update_registry_from_folder


def test_update_registers_everything_the_folder_says(registry: ModelRegistry, tmp_path: Path) -> None:
    path = folder(tmp_path, "als/v2_20250116_141500", metrics={"ndcg@10": 0.195, "recall@10": 0.245},
                  training_time_seconds=102.8, data_version="abc123", git_commit="ghi789",
                  baseline_comparison={"baseline_type": "popularity", "improvement_ndcg@10": 0.912})
    result = update_registry_from_folder(registry, path)
    assert (result.model_id, result.promoted, result.already_registered) == ("als_v2_20250116_141500", False, False)
    info = registry.get_model("als_v2_20250116_141500")
    assert info["path"] == path
    assert info["metrics"] == {"ndcg@10": 0.195, "recall@10": 0.245}
    assert info["hyperparameters"]["iterations"] == 15
    assert info["training_info"]["training_time_seconds"] == 102.8
    assert (info["data_version"], info["git_commit"]) == ("abc123", "ghi789")
    assert info["baseline_comparison"]["improvement_ndcg@10"] == 0.912
    assert registry.get_current_best() is None  # no --auto-select: nothing promoted

    again = update_registry_from_folder(registry, path, metrics={"ndcg@10": 0.5})
    assert again.already_registered and "nothing changed" in again.note and "overwrite" in again.note
    assert registry.get_model(again.model_id)["metrics"]["ndcg@10"] == 0.195
    replaced = update_registry_from_folder(registry, path, metrics={"ndcg@10": 0.5}, overwrite=True)
    assert not replaced.already_registered
    assert registry.get_model(replaced.model_id)["metrics"] == {"ndcg@10": 0.5}


def test_auto_select_promotes_only_when_it_beats_the_current_best(registry: ModelRegistry, tmp_path: Path) -> None:
    first = update_registry_from_folder(registry, folder(tmp_path, "als/v1", metrics={"ndcg@10": 0.20}), auto_select=True)
    assert first.promoted and first.current_best == "als_v1"

    worse = update_registry_from_folder(registry, folder(tmp_path, "als/v2", metrics={"ndcg@10": 0.18}, seed=2),
                                        auto_select=True)
    assert not worse.promoted and worse.current_best == "als_v1" and "does not beat" in worse.decision

    small = update_registry_from_folder(registry, folder(tmp_path, "bpr/v1", "bpr", metrics={"ndcg@10": 0.21}, seed=3),
                                        auto_select=True, min_gain=0.10)
    assert not small.promoted and registry.get_current_best()["model_id"] == "als_v1"

    no_metric = update_registry_from_folder(registry, folder(tmp_path, "als/v3", metrics={"recall@10": 0.9}, seed=4),
                                            auto_select=True, min_gain=0.10)
    assert not no_metric.promoted and "has no ndcg@10" in no_metric.decision

    # Auto-select is the registry's selection (docs/cli.md): the best active model wins. Here that is
    # bpr_v1, registered earlier and refused then only because of min_gain; the decision says so.
    other = update_registry_from_folder(registry, folder(tmp_path, "als/v6", metrics={"ndcg@10": 0.205}, seed=7),
                                        auto_select=True)
    assert not other.promoted and other.current_best == "bpr_v1"
    assert "als_v6 is not the best by ndcg@10; selected bpr_v1" in other.decision

    better = update_registry_from_folder(registry, folder(tmp_path, "als/v4", metrics={"ndcg@10": 0.25}, seed=5),
                                         auto_select=True, min_gain=0.10)
    assert better.promoted and registry.get_current_best()["model_id"] == "als_v4"
    assert "beats the previous best bpr_v1" in better.decision
    assert better.selection["value"] == 0.25

    by_recall = update_registry_from_folder(registry, folder(tmp_path, "als/v5", metrics={"recall@10": 0.95}, seed=6),
                                            auto_select=True, metric="recall@10")
    assert by_recall.promoted and registry.get_current_best()["selection_metric"] == "recall@10"


def test_bad_folder_registers_nothing(registry: ModelRegistry, tmp_path: Path) -> None:
    before = snapshot(registry)
    path = folder(tmp_path, "als/v1", metrics={"ndcg@10": "high"})
    with pytest.raises(InvalidArgumentError, match="ndcg@10"):
        update_registry_from_folder(registry, path, auto_select=True)
    (tmp_path / path / "als_V.npy").unlink()
    with pytest.raises(InvalidArtifactsError, match="als_V.npy"):
        update_registry_from_folder(registry, path, metrics={"ndcg@10": 0.1})
    assert snapshot(registry) == before


# ---------------------------------------------------------------------- cleanup


def populate(registry: ModelRegistry, tmp_path: Path, count: int, model_type: str = "als") -> list[str]:
    """``count`` models of a type, registered oldest first; returns their ids."""
    ids = []
    for index in range(1, count + 1):
        path = folder(tmp_path, f"{model_type}/v{index}", model_type, metrics={"ndcg@10": 0.1 * index}, seed=index)
        ids.append(registry.register_model(path, model_type, metrics={"ndcg@10": 0.1 * index}, version=f"v{index}"))
    return ids


def test_cleanup_keeps_n_per_type_and_spares_current_best_and_running_test(registry: ModelRegistry, tmp_path: Path) -> None:
    als = populate(registry, tmp_path, 5)
    bpr = populate(registry, tmp_path, 2, "bpr")
    registry.promote_model("als_v1")  # oldest, would otherwise go
    registry.start_ab_test("als_v1", "als_v2", 0.1)

    before = snapshot(registry, tmp_path)
    plan = cleanup_old_models(registry, 2, archive_old=True, dry_run=True)
    assert snapshot(registry, tmp_path) == before  # --dry-run changes nothing, not even the audit trail
    actions = {item.model_id: (item.action, item.reason) for item in plan.items}
    assert actions == {
        "als_v5": ("keep", "among the 2 newest als models"),
        "als_v4": ("keep", "among the 2 newest als models"),
        "als_v3": ("archive", "older than the 2 newest als models"),
        "als_v2": ("skip", "in running A/B test " + registry.get_ab_test()["test_id"]),
        "als_v1": ("skip", "current best"),
        "bpr_v2": ("keep", "among the 2 newest bpr models"),
        "bpr_v1": ("keep", "among the 2 newest bpr models"),
    }

    seen: list[tuple[str, int, int]] = []
    report = cleanup_old_models(registry, 2, archive_old=True, on_item=lambda item, done, total: seen.append((item.model_id, done, total)))
    assert report.archived == ["als_v3"]
    assert [(done, total) for _, done, total in seen] == [(n, 7) for n in range(1, 8)]
    assert {s["model_id"] for s in report.skipped} == {"als_v1", "als_v2"}
    statuses = {model_id: registry.get_model(model_id)["status"] for model_id in als + bpr}
    assert [m for m, s in statuses.items() if s == "archived"] == ["als_v3"]
    assert [e["action"] for e in registry.context.read(lambda s: query_events(s, action="ARCHIVE"))] == ["ARCHIVE"]

    rerun = cleanup_old_models(registry, 2, archive_old=True)
    assert rerun.archived == [] and [i.action for i in rerun.items if i.model_id == "als_v3"] == ["none"]


def test_cleanup_delete_with_files_stays_inside_the_artifacts_root(registry: ModelRegistry, tmp_path: Path) -> None:
    populate(registry, tmp_path, 3)
    outside = make_model_dir(tmp_path / "elsewhere" / "old", "als", seed=9)
    registry.register_model(str(outside), "als", metrics={"ndcg@10": 0.01}, version="v0")
    with registry.context.database.session_scope() as session:  # make it the oldest
        from sqlalchemy import update

        from registry.models import Model

        session.execute(update(Model).where(Model.model_id == "als_v0").values(created_at=datetime(2000, 1, 1, tzinfo=UTC)))
    registry.promote_model("als_v3")

    report = cleanup_old_models(registry, 1, delete_files=True)
    assert report.deleted == ["als_v2", "als_v1"]
    assert not (tmp_path / "artifacts/cf/als/v1").exists() and not (tmp_path / "artifacts/cf/als/v2").exists()
    assert (tmp_path / "artifacts/cf/als/v3").is_dir()
    skipped = {s["model_id"]: s["reason"] for s in report.skipped}
    assert "artifacts root" in skipped["als_v0"]  # refused, and left in place
    assert outside.is_dir() and registry.get_model("als_v0") is not None
    assert sorted(registry.models) == ["als_v0", "als_v3"]


def _bert(registry: ModelRegistry):  # type: ignore[no-untyped-def]
    from registry import BERTEmbeddingsRegistry

    return BERTEmbeddingsRegistry(registry.context.bert_json_path, database_url=registry.context.database.url,
                                  root=registry.root)


def test_cleanup_spares_models_linked_to_embeddings(registry: ModelRegistry, tmp_path: Path, embeddings_dir: Any) -> None:
    populate(registry, tmp_path, 4)
    bert = _bert(registry)
    bert.register_embeddings(embeddings_dir("bert/e1"), "vinai/phobert-base", 25, 16, version="e1")
    bert.link_to_model("e1", "als_v1")  # the oldest: would otherwise be deleted, its link cascading away

    plan = plan_cleanup(registry, 2)
    assert {i.model_id: (i.action, i.reason) for i in plan.items if i.action != "keep"} == {
        "als_v2": ("delete", "older than the 2 newest als models"),
        "als_v1": ("skip", "linked to BERT embeddings e1"),
    }

    report = cleanup_old_models(registry, 2, delete_files=True)

    assert report.deleted == ["als_v2"] and report.skipped == [{"model_id": "als_v1", "reason": "linked to BERT embeddings e1"}]
    assert registry.get_model("als_v1") is not None and (tmp_path / "artifacts/cf/als/v1").is_dir()
    assert bert.list_embeddings(include_linked_models=True)[0]["linked_models"] == ["als_v1"]


def test_cleanup_rereads_the_protection_before_each_change(registry: ModelRegistry, tmp_path: Path,
                                                           embeddings_dir: Any) -> None:
    populate(registry, tmp_path, 4)
    bert = _bert(registry)
    bert.register_embeddings(embeddings_dir("bert/e1"), "vinai/phobert-base", 25, 16, version="e1")

    def link_the_next_victim(item: Any, done: int, total: int) -> None:
        if item.model_id == "als_v2":
            bert.link_to_model("e1", "als_v1")  # another process links it after the plan was made

    report = cleanup_old_models(registry, 2, archive_old=True, on_item=link_the_next_victim)

    assert report.archived == ["als_v2"]
    assert report.skipped == [{"model_id": "als_v1", "reason": "linked to BERT embeddings e1"}]
    assert registry.get_model("als_v1")["status"] == "active"


def test_cleanup_records_a_failed_folder_removal_and_goes_on(registry: ModelRegistry, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import registry.deletion as deletion

    populate(registry, tmp_path, 4)
    real_delete = deletion.safe_delete_tree

    def flaky(folder: Path, root: Path) -> bool:
        if folder.name == "v2":
            raise PermissionError(13, "Permission denied", str(folder))
        return real_delete(folder, root)

    monkeypatch.setattr(deletion, "safe_delete_tree", flaky)

    report = cleanup_old_models(registry, 1, delete_files=True)  # used to abort with RegistryError, losing the report

    items = {item.model_id: item for item in report.items}
    assert report.deleted == ["als_v3", "als_v2", "als_v1"]  # v2's entry was deleted (committed) before rmtree failed
    assert items["als_v2"].error is not None and "files remain" in items["als_v2"].error
    assert "files remain" in items["als_v2"].reason
    assert items["als_v1"].error is None and not (tmp_path / "artifacts/cf/als/v1").exists()
    assert (tmp_path / "artifacts/cf/als/v2").is_dir() and sorted(registry.models) == ["als_v4"]
    assert report.to_dict()["items"][2]["error"] == items["als_v2"].error


def test_cleanup_records_a_failed_change_as_skipped(registry: ModelRegistry, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from registry import RegistryError

    populate(registry, tmp_path, 3)
    real_archive = registry.archive_model

    def failing(model_id: str) -> bool:
        if model_id == "als_v2":
            raise RegistryError("database error: disk I/O error")
        return real_archive(model_id)

    monkeypatch.setattr(registry, "archive_model", failing)

    report = cleanup_old_models(registry, 1, archive_old=True)

    assert report.archived == ["als_v1"]
    item = next(i for i in report.items if i.model_id == "als_v2")
    assert (item.action, item.done, item.error) == ("skip", False, "database error: disk I/O error")
    assert "failed" in item.reason and registry.get_model("als_v2")["status"] == "active"


def test_readonly_sql_lives_in_its_own_module(registry: ModelRegistry, tmp_path: Path) -> None:
    from registry import maintenance
    from registry.readonly_sql import QueryResult, run_readonly_query

    populate(registry, tmp_path, 2)
    if registry.context.database.dialect == "postgresql":  # the reader role `cfreg init` creates
        from registry.pg_readonly import setup_reader

        assert setup_reader(registry.context.database).enabled

    result = run_readonly_query(registry.context, "SELECT model_id FROM models ORDER BY model_id")

    assert isinstance(result, QueryResult) and result.rows == [("als_v1",), ("als_v2",)]
    assert not hasattr(maintenance, "run_readonly_query") and not hasattr(maintenance, "QueryResult")


def test_cleanup_arguments_are_checked(registry: ModelRegistry) -> None:
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(InvalidArgumentError, match="keep_last"):
            plan_cleanup(registry, bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="delete_files"):
        cleanup_old_models(registry, 1, archive_old=True, delete_files=True)


# ---------------------------------------------------------------------- the scripts as processes


@pytest.mark.slow
def test_update_registry_script(tmp_path: Path, registry: ModelRegistry, database_url: str) -> None:
    registry_arg = ["--registry", str(registry.registry_path)]
    first = run_script(UPDATE_SCRIPT, ["--model-path", folder(tmp_path, "als/v1_20250115_103000", metrics={"ndcg@10": 0.189}),
                                       "--auto-select", *registry_arg], tmp_path, database_url)
    assert first.returncode == 0, first.stderr
    assert "model_id: als_v1_20250115_103000" in first.stdout and "promoted" in first.stdout

    worse = run_script(UPDATE_SCRIPT, ["--model-path", folder(tmp_path, "als/v2", metrics={"ndcg@10": 0.15}, seed=2),
                                       "--auto-select", "--json", *registry_arg], tmp_path, database_url)
    result = json.loads(worse.stdout)
    assert (result["model_id"], result["promoted"], result["current_best"]) == ("als_v2", False, "als_v1_20250115_103000")
    assert "not promoted" in worse.stderr  # the decision is logged too

    better = run_script(UPDATE_SCRIPT, ["--model-path", folder(tmp_path, "als/v4", metrics={"ndcg@10": 0.25}, seed=4),
                                        "--auto-select", "--min-gain", "0.05", *registry_arg], tmp_path, database_url)
    assert "promoted als_v4" in better.stdout and "current_best: als_v4" in better.stdout
    quiet = run_script(UPDATE_SCRIPT, ["--model-path", folder(tmp_path, "als/v5", metrics={"ndcg@10": 0.5}, seed=5),
                                       *registry_arg], tmp_path, database_url)
    assert quiet.returncode == 0 and "current_best: als_v4" in quiet.stdout  # no --auto-select: no promotion
    assert registry.get_current_best()["model_id"] == "als_v4"
    assert registry.get_model("als_v5")["metrics"] == {"ndcg@10": 0.5}


@pytest.mark.slow
def test_update_registry_script_errors(tmp_path: Path) -> None:
    both = tmp_path / "artifacts/cf/mixed"
    make_model_dir(both, "als")
    make_model_dir(both, "bpr")
    ambiguous = run_script(UPDATE_SCRIPT, ["--model-path", "artifacts/cf/mixed"], tmp_path)
    assert ambiguous.returncode == 1 and ambiguous.stdout == ""
    errors = [line for line in ambiguous.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "ambiguous" in errors[0] and "--type" in errors[0]
    usage = run_script(UPDATE_SCRIPT, [], tmp_path)
    assert usage.returncode == 2 and "--model-path" in usage.stderr


@pytest.mark.slow
def test_cleanup_script(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "artifacts/cf/registry.json", root=tmp_path)
    database_url = None
    populate(registry, tmp_path, 4)
    populate(registry, tmp_path, 1, "bpr")
    registry.promote_model("als_v1")
    registry_arg = ["--registry", str(registry.registry_path)]

    before = snapshot(registry, tmp_path / "artifacts/cf/als")
    dry = run_script(CLEANUP_SCRIPT, ["--keep-last", "2", "--archive-old", "--dry-run", *registry_arg], tmp_path, database_url)
    assert dry.returncode == 0, dry.stderr
    assert "would archive als_v2" in dry.stdout and "skip als_v1" in dry.stdout and "current best" in dry.stdout
    assert snapshot(registry, tmp_path / "artifacts/cf/als") == before

    done = run_script(CLEANUP_SCRIPT, ["--keep-last", "2", "--archive-old", "--json", *registry_arg], tmp_path, database_url)
    report = json.loads(done.stdout)
    assert (report["archived"], report["skipped"]) == (["als_v2"], [{"model_id": "als_v1", "reason": "current best"}])
    assert {m: i["status"] for m, i in registry.models.items()} == {
        "als_v1": "active", "als_v2": "archived", "als_v3": "active", "als_v4": "active", "bpr_v1": "active"
    }

    deleted = run_script(CLEANUP_SCRIPT, ["--keep-last", "1", "--delete-files", *registry_arg], tmp_path, database_url)
    assert deleted.returncode == 0, deleted.stderr
    assert sorted(registry.models) == ["als_v1", "als_v4", "bpr_v1"]
    assert not (tmp_path / "artifacts/cf/als/v3").exists() and (tmp_path / "artifacts/cf/als/v1").is_dir()

    usage = run_script(CLEANUP_SCRIPT, ["--keep-last", "1", "--archive-old", "--delete-files", *registry_arg], tmp_path)
    assert usage.returncode == 2 and "--delete-files" in usage.stderr
    missing = run_script(CLEANUP_SCRIPT, ["--keep-last", "1", "--registry", "nowhere/registry.json"], tmp_path)
    assert missing.returncode == 1 and "Error: " in missing.stderr
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.slow
def test_docs_describe_the_update_script_and_cfreg_register_as_they_are(tmp_path: Path) -> None:
    import typer.main

    from registry.cli import app

    script_help = run_script(UPDATE_SCRIPT, ["--help"], tmp_path).stdout
    register = typer.main.get_command(app).commands["register"]  # type: ignore[attr-defined]
    register_options = {opt for param in register.params for opt in getattr(param, "opts", [])}
    assert "--min-improvement" in script_help and "--min-improvement" not in register_options

    prose = (REPO / "docs" / "cli.md").read_text().split("## Reference (generated")[0]
    assert "same library functions (`registry.maintenance`) as `cfreg register --auto-select`" not in prose
    assert "| improvement over each model's own baseline | `--min-improvement` | none" in prose
    assert "without `--replace` the\n  registry must be empty" not in prose
    assert "This is the same code as ``cfreg register --auto-select``" not in UPDATE_SCRIPT.read_text()

"""One test per failure measured on the original JSON registry (docs/design-decisions.md).

Each test reproduces the situation that broke the original and asserts what a user
would check afterwards. All run on SQLite and, when configured, PostgreSQL.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from factories import make_model_dir
from registry import (
    InvalidArgumentError,
    InvalidArtifactsError,
    ModelInUseError,
    ModelRegistry,
    cf_register,
)
from registry_snapshot import file_hashes, snapshot

FROZEN_VERSION = "v_20250116_141500"
TESTS_DIR = Path(__file__).parent
REPO_DIR = TESTS_DIR.parent


def freeze_version_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cf_register, "_generate_version_id", lambda prefix="v", *a, **k: f"{prefix}_20250116_141500")


# ---------------------------------------------------------------------- lost registrations


def test_two_same_second_automatic_registrations_are_both_kept(
    registry: ModelRegistry, model_dir, monkeypatch: pytest.MonkeyPatch
) -> None:
    freeze_version_clock(monkeypatch)
    first = registry.register_model(model_dir("als/a", seed=1), "als", {}, {"ndcg@10": 0.1}, {})
    second = registry.register_model(model_dir("als/b", seed=2), "als", {}, {"ndcg@10": 0.2}, {})
    third = registry.register_model(model_dir("als/c", seed=3), "als", {}, {"ndcg@10": 0.3}, {})
    assert [first, second, third] == [f"als_{FROZEN_VERSION}", f"als_{FROZEN_VERSION}_2", f"als_{FROZEN_VERSION}_3"]
    models = registry.models
    assert {models[i]["metrics"]["ndcg@10"] for i in (first, second, third)} == {0.1, 0.2, 0.3}
    assert models[second]["path"] == "artifacts/cf/als/b"
    # another type in the same second keeps its plain id
    assert registry.register_model(model_dir("bpr/a", model_type="bpr"), "bpr", {}, {}, {}) == f"bpr_{FROZEN_VERSION}"


def _model_statements(registry: ModelRegistry, register: Any) -> tuple[Any, list[str], list[str]]:
    """Run ``register()``; returns its result, the id lookups and the inserts into ``models`` it sent."""
    from sqlalchemy import event

    lookups: list[str] = []
    inserts: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if re.match(r"SELECT models\.model_id\s+FROM models\s+WHERE models\.model_id (=|IN)", statement.strip()):
            lookups.append(statement)
        if statement.strip().startswith("INSERT INTO models "):
            inserts.append(statement)

    engine = registry.context.database.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        return register(), lookups, inserts
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _three_in_one_second(registry: ModelRegistry, model_dir: Any, monkeypatch: pytest.MonkeyPatch,
                         name: str) -> tuple[list[str], list[str]]:
    """Four model folders and the ids of the first three, registered with a frozen clock."""
    freeze_version_clock(monkeypatch)
    folders = [model_dir(f"als/{name}{i}", seed=i) for i in range(4)]
    return folders, [registry.register_model(folder, "als", {}, {"ndcg@10": 0.1}, {}) for folder in folders[:3]]


def test_an_automatic_id_in_a_busy_second_costs_one_insert_and_no_lookup(
    registry: ModelRegistry, model_dir, monkeypatch: pytest.MonkeyPatch
) -> None:
    folders, ids = _three_in_one_second(registry, model_dir, monkeypatch, "busy")
    fourth, lookups, inserts = _model_statements(
        registry, lambda: registry.register_model(folders[3], "als", {}, {"ndcg@10": 0.1}, {}))
    assert [*ids, fourth] == [f"als_{FROZEN_VERSION}", *(f"als_{FROZEN_VERSION}_{n}" for n in (2, 3, 4))]
    # The id after this process's last one is inserted at once (ON CONFLICT DO NOTHING): no lookup.
    assert (len(lookups), len(inserts)) == (0, 1), (lookups, inserts)


def test_an_automatic_id_taken_by_another_process_is_looked_up_then_inserted(
    registry: ModelRegistry, model_dir, monkeypatch: pytest.MonkeyPatch
) -> None:
    from registry import ids as id_allocation

    folders, taken = _three_in_one_second(registry, model_dir, monkeypatch, "other")
    monkeypatch.setattr(id_allocation, "_hints", {})  # a fresh process: it knows none of those ids
    fourth, lookups, inserts = _model_statements(
        registry, lambda: registry.register_model(folders[3], "als", {"factors": 4}, {"ndcg@10": 0.2}, {}))
    assert fourth == f"als_{FROZEN_VERSION}_4"
    assert len(inserts) == 2 and len(lookups) == 1 and " IN " in lookups[0], (lookups, inserts)
    # The skipped insert changed nothing: each model keeps its own folder and the new one has its own.
    paths = {model_id: registry.get_model(model_id)["path"] for model_id in [*taken, fourth]}
    assert paths == dict(zip([*taken, fourth], folders))
    assert registry.get_model(fourth)["hyperparameters"] == {"factors": 4}


def test_quick_automatic_registrations_in_a_loop_get_distinct_ids(registry: ModelRegistry, model_dir) -> None:
    path = model_dir("als/loop")
    ids = [registry.register_model(path, "als", {}, {"ndcg@10": i / 10}, {}) for i in range(6)]
    assert len(set(ids)) == 6
    assert len(registry.list_models()) == 6


_WORKER = r"""
import json, sys, time
from pathlib import Path
args = json.loads(sys.argv[1])
from factories import make_model_dir
from registry import ModelRegistry, cf_register
cf_register._generate_version_id = lambda prefix="v", *a, **k: prefix + "_20250116_141500"  # frozen clock
registry = ModelRegistry(args["registry_path"], database_url=args["database_url"], root=args["root"])
folders = []
for i in range(args["count"]):
    folder = Path(args["root"]) / "artifacts" / "cf" / "als" / f"{args['name']}_{i}"
    make_model_dir(folder, seed=i)
    folders.append(str(folder.relative_to(args["root"])))
go = Path(args["go"])
deadline = time.monotonic() + 60
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.005)
ids = [registry.register_model(p, "als", {}, {"ndcg@10": 0.1}, {"worker": args["name"]}) for p in folders]
print(json.dumps(ids))
"""


@pytest.mark.slow
def test_two_registry_instances_in_two_processes_both_keep_their_models(
    registry: ModelRegistry, registry_path: Path, database_url: str, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    count = 5
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_DIR), str(TESTS_DIR)])}  # factories from tests/
    workers = []
    for name in ("alpha", "beta"):
        args = {"registry_path": str(registry_path), "database_url": database_url,
                "root": str(tmp_path), "name": name, "count": count, "go": str(go)}
        workers.append(subprocess.Popen([sys.executable, "-c", _WORKER, json.dumps(args)], env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    go.touch()
    results = []
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    all_ids = results[0] + results[1]
    assert len(set(all_ids)) == 2 * count  # frozen clock: both processes fought over the same ids
    stored = registry.models  # an instance opened before the workers sees everything
    assert set(stored) == set(all_ids)
    by_worker = {name: sorted(i for i, info in stored.items() if info["training_info"]["worker"] == name)
                 for name in ("alpha", "beta")}
    assert by_worker == {"alpha": sorted(results[0]), "beta": sorted(results[1])}
    exported = json.loads(Path(registry.registry_path).read_text())
    assert set(exported["models"]) == set(all_ids)
    assert exported["metadata"]["num_models"] == 2 * count


# ---------------------------------------------------------------------- corrupted registry.json


def test_numpy_float32_metric_is_stored_and_registry_json_still_parses(registry: ModelRegistry, model_dir) -> None:
    model_id = registry.register_model(
        model_dir("als/np"), "als", {"factors": np.int64(8)},
        {"ndcg@10": np.float32(0.195), "recall@10": np.float64(0.245), "hits": np.int64(3)},
        {"training_time_seconds": np.float32(1.5)}, version="np",
    )
    metrics = registry.get_model(model_id)["metrics"]
    assert metrics == {"ndcg@10": 0.195, "recall@10": 0.245, "hits": 3.0}
    assert all(type(v) is float for v in metrics.values())
    document = json.loads(Path(registry.registry_path).read_text())
    assert document["models"][model_id]["metrics"]["ndcg@10"] == 0.195
    assert registry.select_best_model("ndcg@10")["value"] == 0.195
    # and the registry keeps working afterwards (the original failed every later save)
    other = registry.register_model(model_dir("als/next"), "als", {}, {"ndcg@10": 0.3}, {}, version="next")
    assert other in json.loads(Path(registry.registry_path).read_text())["models"]


def test_concurrent_readers_never_see_half_written_registry_json(registry: ModelRegistry, model_dir) -> None:
    path = Path(registry.registry_path)
    stop = threading.Event()
    errors: list[str] = []
    reads = 0

    def reader() -> None:
        nonlocal reads
        while not stop.is_set():
            try:
                json.loads(path.read_text(encoding="utf-8"))
                reads += 1
            except (ValueError, OSError) as exc:
                errors.append(repr(exc))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        folder = model_dir("als/r")
        for i in range(15):
            registry.register_model(folder, "als", {"i": i}, {"ndcg@10": i / 100}, {"padding": "x" * 2000})
    finally:
        stop.set()
        thread.join()
    assert errors == [] and reads > 0
    assert json.loads(path.read_text())["metadata"]["num_models"] == 15


# ---------------------------------------------------------------------- failed registration


def _missing_file(tmp: Path) -> dict[str, Any]:
    (tmp / "artifacts/cf/als/bad/als_V.npy").unlink()
    return {}


def _truncated_array(tmp: Path) -> dict[str, Any]:
    target = tmp / "artifacts/cf/als/bad/als_U.npy"
    target.write_bytes(target.read_bytes()[:-7])
    return {}


@pytest.mark.parametrize(
    ("prepare", "error"),
    [
        (_missing_file, InvalidArtifactsError),
        (_truncated_array, InvalidArtifactsError),
        (lambda tmp: {"metrics": {"ndcg@10": float("nan")}}, InvalidArgumentError),
        (lambda tmp: {"metrics": {"ndcg@10": "0.2"}}, InvalidArgumentError),
        (lambda tmp: {"hyperparameters": {"callback": print}}, InvalidArgumentError),
        (lambda tmp: {"model_type": "svd"}, InvalidArgumentError),
        (lambda tmp: {"version": "v1|x"}, InvalidArgumentError),
    ],
)
def test_a_failed_registration_leaves_nothing_behind(
    registry: ModelRegistry, model_dir, tmp_path: Path, prepare, error: type[Exception]
) -> None:
    registry.register_model(model_dir("als/good"), "als", {}, {"ndcg@10": 0.1}, {}, version="good")
    registry.select_best_model("ndcg@10")
    model_dir("als/bad")
    call: dict[str, Any] = {"artifacts_path": "artifacts/cf/als/bad", "model_type": "als", "hyperparameters": {},
                            "metrics": {"ndcg@10": 0.9}, "training_info": {}, "version": "bad"}
    call.update(prepare(tmp_path))
    before = snapshot(registry, tmp_path)  # tables, generation, registry.json, audit log, artifacts
    with pytest.raises(error):
        registry.register_model(**call)
    assert snapshot(registry, tmp_path) == before
    assert registry.get_current_best()["model_id"] == "als_good"


# ---------------------------------------------------------------------- selection


def test_selection_never_treats_a_missing_metric_as_zero(registry: ModelRegistry, model_dir) -> None:
    registry.register_model(model_dir("als/a"), "als", {}, {"ndcg@10": -0.4}, {}, version="a")
    registry.register_model(model_dir("als/b"), "als", {}, {"ndcg@10": -0.3}, {}, version="b")
    registry.register_model(model_dir("als/c"), "als", {}, {"recall@10": 0.9}, {}, version="c")  # lacks ndcg@10
    best = registry.select_best_model(metric="ndcg@10")
    assert best["model_id"] == "als_b" and best["value"] == -0.3
    assert registry.select_best_model(metric="ndcg@10", model_type="bpr") is None


# ---------------------------------------------------------------------- deleting files


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A valid model folder outside the artifacts root (``<tmp>/artifacts/cf``)."""
    return make_model_dir(tmp_path / "victim", seed=7)


def _escape_with_dotdot(tmp: Path, victim: Path) -> str:
    return "artifacts/cf/../../victim"


def _absolute_outside(tmp: Path, victim: Path) -> str:
    return str(victim)


def _symlink_to_outside(tmp: Path, victim: Path) -> str:
    (tmp / "artifacts/cf/als").mkdir(parents=True, exist_ok=True)
    (tmp / "artifacts/cf/als/link").symlink_to(victim, target_is_directory=True)
    return "artifacts/cf/als/link"


def _path_through_symlinked_parent(tmp: Path, victim: Path) -> str:
    (tmp / "artifacts/cf").mkdir(parents=True, exist_ok=True)
    (tmp / "artifacts/cf/linked").symlink_to(victim.parent, target_is_directory=True)
    return "artifacts/cf/linked/victim"


def _artifacts_root_itself(tmp: Path, victim: Path) -> str:
    make_model_dir(tmp / "artifacts/cf", seed=3)
    return "artifacts/cf"


@pytest.mark.parametrize(
    "make_path",
    [_escape_with_dotdot, _absolute_outside, _symlink_to_outside, _path_through_symlinked_parent, _artifacts_root_itself],
)
def test_delete_files_cannot_escape_the_artifacts_root(
    registry: ModelRegistry, tmp_path: Path, victim: Path, make_path
) -> None:
    path = make_path(tmp_path, victim)
    model_id = registry.register_model(path, "als", {}, {"ndcg@10": 0.1}, {}, version="target")
    outside = file_hashes(tmp_path / "victim")
    before = snapshot(registry, tmp_path)
    with pytest.raises(InvalidArgumentError, match="refusing to delete"):
        registry.delete_model(model_id, delete_files=True)
    assert file_hashes(tmp_path / "victim") == outside
    assert snapshot(registry, tmp_path) == before  # the model is still registered: nothing half-done


def test_delete_files_cannot_remove_a_folder_shared_with_the_current_best(
    registry: ModelRegistry, model_dir, tmp_path: Path
) -> None:
    shared = model_dir("als/shared")
    serving = registry.register_model(shared, "als", {}, {"ndcg@10": 0.3}, {}, version="serving")
    registry.select_best_model("ndcg@10")
    twin = registry.register_model(shared, "als", {}, {"ndcg@10": 0.1}, {}, version="twin")
    before = snapshot(registry, tmp_path)
    with pytest.raises(ModelInUseError, match=serving):
        registry.delete_model(twin, delete_files=True)
    assert snapshot(registry, tmp_path) == before
    assert registry.delete_model(twin) is True  # without files it is fine
    assert (tmp_path / shared / "als_U.npy").exists()


def test_delete_files_cannot_remove_another_models_folder_nested_inside(
    registry: ModelRegistry, model_dir, tmp_path: Path
) -> None:
    inner = registry.register_model(model_dir("als/parent/v1"), "als", {}, {"ndcg@10": 0.1}, {}, version="inner")
    outer = registry.register_model(model_dir("als/parent"), "als", {}, {"ndcg@10": 0.2}, {}, version="outer")
    before = snapshot(registry, tmp_path)
    with pytest.raises(ModelInUseError, match=inner):
        registry.delete_model(outer, delete_files=True)
    assert snapshot(registry, tmp_path) == before


def test_delete_files_unlinks_inner_symlinks_without_following_them(
    registry: ModelRegistry, model_dir, tmp_path: Path, victim: Path
) -> None:
    path = model_dir("als/own")
    (tmp_path / path / "escape").symlink_to(victim, target_is_directory=True)
    model_id = registry.register_model(path, "als", {}, {}, {}, version="own")
    outside = file_hashes(victim)
    assert registry.delete_model(model_id, delete_files=True) is True
    assert not (tmp_path / path).exists()
    assert file_hashes(victim) == outside and outside


def test_delete_files_of_the_current_best_is_refused(registry: ModelRegistry, model_dir, tmp_path: Path) -> None:
    path = model_dir("als/serving")
    model_id = registry.register_model(path, "als", {}, {"ndcg@10": 0.3}, {}, version="serving")
    registry.select_best_model("ndcg@10")
    with pytest.raises(ModelInUseError):
        registry.delete_model(model_id, delete_files=True)
    assert (tmp_path / path / "als_U.npy").exists()


# ---------------------------------------------------------------------- audit log after chdir


def test_registering_after_chdir_writes_the_audit_log_and_raises_nothing(
    registry: ModelRegistry, model_dir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = model_dir("als/v1")
    (tmp_path / "other").mkdir()
    monkeypatch.chdir(tmp_path / "other")
    model_id = registry.register_model(path, "als", {}, {"ndcg@10": 0.2}, {}, version="v1")
    log = (tmp_path / "logs" / "registry_audit.log").read_text()
    assert f"| REGISTER | {model_id} | ndcg@10=0.2" in log
    assert registry.validate_artifacts(path, "als") == (True, [])


"""Crash battery (docs/reliability.md, B1): SIGKILL writers in the middle of their work.

Each round starts ``VICTIMS`` processes that loop {register, select_best} with the
JSON export on, waits until both are in the loop, lets them run for a random
moment, kills them with SIGKILL, and
checks that the registry still opens, is intact, holds no half-registered model,
and that ``registry.json`` still parses. Raise the rounds with ``CFREG_BATTERY_KILL_ROUNDS``.
Victims start through ``forkserver`` (a fresh interpreter that forks them), which
keeps the spawn guarantee of no inherited connections at a fraction of the cost.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

import workers

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and forkserver are POSIX")]

ROUNDS = int(os.environ.get("CFREG_BATTERY_KILL_ROUNDS", "25"))
VICTIMS = 2
# Negative control: CFREG_BATTERY_NAIVE_EXPORT=1 gives the victims the original truncate-and-dump
# export; the test must then fail (a torn registry.json), which shows the check has teeth.
NAIVE_EXPORT = os.environ.get("CFREG_BATTERY_NAIVE_EXPORT") == "1"


def _settings(database_url: str) -> tuple[int, str | None]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            row = connection.execute(text("SELECT generation, current_model_id FROM settings WHERE id = 1")).one()
            return int(row[0]), row[1]
    finally:
        engine.dispose()


def _model_count(database_url: str) -> int:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(text("SELECT count(*) FROM models")).scalar_one())
    finally:
        engine.dispose()


def test_sigkill_during_register_and_select_leaves_a_consistent_registry(
    registry: Any, registry_path: Path, database_url: str, model_dir: Any, tmp_path: Path
) -> None:
    from registry import ModelRegistry, validate_registry_schema

    model_path = model_dir("als/crash", seed=8)
    # forkserver: each victim forks from a clean, single-threaded server that has already
    # imported the registry (no inherited connections, as with spawn) in milliseconds.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["workers", "registry.cf_registry", "registry.db", "registry.export"])
    rng = random.Random(20250116)
    kills = 0
    previous_count = 0
    for round_index in range(ROUNDS):
        victims = []
        for victim in range(VICTIMS):
            ready = ctx.Event()
            process = ctx.Process(
                target=workers.crash_worker,
                args=(database_url, str(registry_path), str(tmp_path), model_path, round_index * 10 + victim, ready,
                      NAIVE_EXPORT),
            )
            process.start()
            victims.append((process, ready))
        for _process, ready in victims:
            assert ready.wait(60), "a victim never completed its first register + select"
        # Both are looping now; let them run for a random moment, then kill mid-flight.
        victims[0][0].join(timeout=rng.uniform(0.0, 0.3))
        for process, _ in victims:
            assert process.is_alive(), f"victim died on its own with exit code {process.exitcode}"
            os.kill(process.pid, signal.SIGKILL)
        for process, _ in victims:
            process.join(timeout=30)
            assert process.exitcode == -signal.SIGKILL
            kills += 1

        # The registry opens and is intact.
        if database_url.startswith("sqlite"):
            assert workers.sqlite_integrity(database_url) == ("ok", []), f"round {round_index}"
        assert workers.half_registered(database_url) == [], f"round {round_index}"
        generation, current = _settings(database_url)
        try:
            document = workers.registry_json_state(registry_path)
        except ValueError as exc:
            raise AssertionError(f"round {round_index}: registry.json is torn ({exc})") from exc
        assert document is not None and validate_registry_schema(document)
        assert document["metadata"]["generation"] <= generation
        if current is not None:
            assert registry.get_model(current) is not None
        count = _model_count(database_url)
        assert count >= previous_count + VICTIMS, f"round {round_index}: each victim registers before the kill"
        previous_count = count

    assert kills == ROUNDS * VICTIMS
    # Still fully usable: a new handle registers, selects and exports.
    reopened = ModelRegistry(registry_path, database_url=database_url, root=tmp_path)
    model_id = reopened.register_model(model_path, "als", {}, {workers.METRIC: 2.0}, {})
    assert reopened.select_best_model(metric=workers.METRIC)["model_id"] == model_id
    exported = json.loads(registry_path.read_text(encoding="utf-8"))
    assert model_id in exported["models"] and exported["current_best"]["model_id"] == model_id
    assert exported["metadata"]["num_models"] == _model_count(database_url)


LEGACY_MODELS = 3000
IMPORT_KILL_ROUNDS = int(os.environ.get("CFREG_BATTERY_IMPORT_KILL_ROUNDS", "4"))
_OPEN_SCRIPT = (
    "import sys\n"
    "from registry import ModelRegistry\n"
    "ModelRegistry(sys.argv[1], database_url=sys.argv[2], root=sys.argv[3])\n"
)


def _legacy_document(count: int) -> dict[str, Any]:
    models = {
        f"als_v{i}": {"model_type": "als", "version": f"v{i}", "path": f"artifacts/cf/als/v{i}",
                      "created_at": "2025-01-15T10:30:00", "status": "active",
                      "metrics": {"ndcg@10": i / count, "recall@10": 0.1}, "hyperparameters": {"factors": 64},
                      "training_info": {}, "data_version": "d", "git_commit": "abc"}
        for i in range(count)
    }
    return {"current_best": "als_v5", "models": models, "metadata": {}}


def _fresh_database(backend: str, folder: Path, schemas: list[str]) -> str:
    if backend == "sqlite":
        return f"sqlite:///{folder / 'artifacts' / 'cf' / 'registry.db'}"
    import uuid

    from conftest import POSTGRES_ENV, postgres_schema_url

    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(os.environ[POSTGRES_ENV], isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    schemas.append(schema)
    return postgres_schema_url(os.environ[POSTGRES_ENV], schema)


def _drop_schemas(schemas: list[str]) -> None:
    from conftest import POSTGRES_ENV, drop_postgres_schema

    if not schemas:
        return
    admin = create_engine(os.environ[POSTGRES_ENV], isolation_level="AUTOCOMMIT")
    for schema in schemas:
        drop_postgres_schema(admin, schema)
    admin.dispose()


def _audit_count(database_url: str) -> int:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(text("SELECT count(*) FROM audit_events")).scalar_one())
    finally:
        engine.dispose()


def test_sigkill_during_the_first_open_import_of_a_legacy_registry_loses_nothing(backend: str, tmp_path: Path) -> None:
    """Kill the process importing a 3,000-model registry.json on first open, at a random moment.

    The next open must import it (the killed import's transaction left an empty database),
    and the first change after that must export all 3,000 models plus the new one.
    """
    import subprocess
    import time

    from factories import make_model_dir
    from registry import ModelRegistry, db

    legacy_text = json.dumps(_legacy_document(LEGACY_MODELS))
    rng = random.Random(20250117)
    schemas: list[str] = []
    killed_mid_import = 0
    def start(name: str) -> tuple[Path, str, subprocess.Popen[bytes], float]:
        """A folder holding the legacy file, opened by a child process; returns once its import began."""
        folder = tmp_path / name
        registry_path = folder / "artifacts" / "cf" / "registry.json"
        registry_path.parent.mkdir(parents=True)
        registry_path.write_text(legacy_text, encoding="utf-8")
        database_url = _fresh_database(backend, folder, schemas)
        process = subprocess.Popen([sys.executable, "-c", _OPEN_SCRIPT, str(registry_path), database_url, str(folder)])
        deadline = time.monotonic() + 120
        # The backup copy is written just before the import starts.
        while not list(registry_path.parent.glob("registry_backup_*.json")) and process.poll() is None:
            assert time.monotonic() < deadline, "the import never started"
            time.sleep(0.01)
        return registry_path, database_url, process, time.monotonic()

    try:
        # Calibration: how long an import takes here, so the kills below land inside it.
        _, _, process, began = start("calibration")
        process.wait(timeout=120)
        import_seconds = time.monotonic() - began
        for round_index in range(IMPORT_KILL_ROUNDS):
            registry_path, database_url, process, _ = start(f"round{round_index}")
            folder = registry_path.parent.parent.parent
            time.sleep(rng.uniform(0.0, 0.9) * import_seconds)
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=60)
            if process.returncode == -signal.SIGKILL and _audit_count(database_url) == 0:
                killed_mid_import += 1
            on_disk = json.loads(registry_path.read_text(encoding="utf-8"))
            if on_disk != json.loads(legacy_text):
                # The import committed (and exported) before the kill landed: the export holds every model.
                assert _audit_count(database_url) > 0, f"round {round_index}: the file changed but nothing was imported"
                assert len(on_disk["models"]) == LEGACY_MODELS, f"round {round_index}"
                assert on_disk["current_best"]["model_id"] == "als_v5", f"round {round_index}"

            db.forget_databases()
            reopened = ModelRegistry(registry_path, database_url=database_url, root=folder)
            assert len(reopened.models) == LEGACY_MODELS, f"round {round_index}"
            assert reopened.get_current_best()["model_id"] == "als_v5"
            make_model_dir(folder / "artifacts" / "cf" / "als" / "new", "als")
            new_id = reopened.register_model("artifacts/cf/als/new", "als", {}, {"ndcg@10": 0.01}, {}, version="new")
            exported = json.loads(registry_path.read_text(encoding="utf-8"))
            assert len(exported["models"]) == LEGACY_MODELS + 1 and new_id in exported["models"], f"round {round_index}"
            db.forget_databases()
    finally:
        _drop_schemas(schemas)
    assert killed_mid_import >= 1, "no kill landed inside the import: the test proved nothing (raise the rounds)"

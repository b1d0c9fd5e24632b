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
import workers
from sqlalchemy import create_engine, text

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
        for process, ready in victims:
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

"""Concurrency battery (docs/reliability.md, A1/A3-A5/A7) on SQLite and PostgreSQL.

Processes use the ``spawn`` start method and receive the database URL; the worker
functions live in ``tests/workers.py`` (importable by the spawned interpreters).
Sizes can be raised for a soak run with ``CFREG_BATTERY_PROCESSES`` and
``CFREG_BATTERY_REGISTRATIONS``.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

import workers
from workers import METRIC

pytestmark = pytest.mark.slow

PROCESSES = int(os.environ.get("CFREG_BATTERY_PROCESSES", "8"))
REGISTRATIONS = int(os.environ.get("CFREG_BATTERY_REGISTRATIONS", "60"))
RACE_PROCESSES = 4
RACE_ROUNDS = 15
RESULT_TIMEOUT = 240


def _collect(results: Any, expected: int) -> list[tuple[str, int, Any, str | None]]:
    collected = []
    for _ in range(expected):
        collected.append(results.get(timeout=RESULT_TIMEOUT))
    return collected


def _join(processes: list[Any]) -> None:
    for process in processes:
        process.join(timeout=60)
        if process.is_alive():
            process.kill()
            process.join()


def _scalar_rows(database_url: str, sql: str, **params: Any) -> list[Any]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return connection.execute(text(sql), params).all()
    finally:
        engine.dispose()


def test_many_processes_register_while_others_select_and_poll(
    registry: Any, registry_path: Path, database_url: str, model_dir: Any, tmp_path: Path
) -> None:
    """A1 + A5: PROCESSES x REGISTRATIONS registrations against a selector and a serving poller."""
    # Every model has its own folder and arrays, so serving one model's arrays under another's id shows.
    def seeded_folder(seed: int) -> str:
        path = workers.seeded_model_path(seed)
        assert model_dir(path.removeprefix("artifacts/cf/"), seed=seed) == path
        return path

    registry.register_model(seeded_folder(0), "als", {}, {METRIC: -1.0}, {}, version="seed")
    registry.select_best_model(metric=METRIC)
    ctx = multiprocessing.get_context("spawn")
    results, start, stop = ctx.Queue(), ctx.Event(), ctx.Event()
    common = (database_url, str(registry_path), str(tmp_path))
    folders = [[seeded_folder(1 + worker * REGISTRATIONS + i) for i in range(REGISTRATIONS)] for worker in range(PROCESSES)]
    registrars = [
        ctx.Process(target=workers.register_worker, args=(*common, folders[worker], worker, start, results))
        for worker in range(PROCESSES)
    ]
    readers = [
        ctx.Process(target=workers.select_worker, args=(*common, 0, stop, start, results)),
        ctx.Process(target=workers.poll_worker, args=(*common, 0, stop, start, results)),
    ]
    for process in registrars + readers:
        process.start()
    start.set()
    try:
        register_results = _collect(results, PROCESSES)
    finally:
        stop.set()
    reader_results = _collect(results, len(readers))
    _join(registrars + readers)

    errors = [error for *_, error in register_results + reader_results if error]
    assert not errors, errors[0]
    registered = [pair for _, _, pairs, _ in register_results for pair in pairs]
    ids = [model_id for model_id, _ in registered]
    total = PROCESSES * REGISTRATIONS
    assert len(ids) == total
    assert len(set(ids)) == total, "two registrations got the same model id"

    stored = {row[0] for row in _scalar_rows(database_url, "SELECT model_id FROM models")}
    assert stored == set(ids) | {"als_seed"}
    audit_rows = _scalar_rows(database_url, "SELECT target FROM audit_events WHERE action = 'REGISTER'")
    assert sorted(row[0] for row in audit_rows) == sorted(ids + ["als_seed"])
    if database_url.startswith("sqlite"):
        assert workers.sqlite_integrity(database_url) == ("ok", [])

    # Models are only added, so the best value can only grow: every automatic selection,
    # committed in order, must carry a value >= the previous one (a stale read-then-write would not).
    values = [row[0] for row in _scalar_rows(
        database_url, "SELECT value FROM selections WHERE selected_by = 'auto' AND metric = :metric ORDER BY id", metric=METRIC)]
    assert values == sorted(values)
    selector_calls = next(calls for kind, _, calls, _ in reader_results if kind == "select")
    assert selector_calls > 0

    poll = next(payload for kind, _, payload, _ in reader_results if kind == "poll")
    generations = [generation for generation, _ in poll["seen"]]
    assert generations and generations == sorted(generations), "a poller saw the generation go backwards"
    assert {current for _, current in poll["seen"]} <= stored
    if importlib.util.find_spec("registry.loader") is not None:
        assert poll["reloads"] > 0 and poll["swaps"] > 0, "the serving loader never reloaded"
        assert poll["checked"] == poll["reloads"], "some served states were not checked against their folders"

    best = registry.select_best_model(metric=METRIC)
    top_value = max(value for _, value in registered)
    assert best is not None and best["value"] == top_value
    assert registry.get_registry_stats()["current_best"] == best["model_id"]
    assert dict(registered)[best["model_id"]] == top_value


def test_simultaneous_selections_always_leave_the_best_current(
    registry: Any, registry_path: Path, database_url: str, model_dir: Any, tmp_path: Path
) -> None:
    """A4: rounds of RACE_PROCESSES processes released together by a barrier, each registering then selecting."""
    model_path = model_dir("als/race", seed=4)
    ctx = multiprocessing.get_context("spawn")
    results, barrier = ctx.Queue(), ctx.Barrier(RACE_PROCESSES)
    processes = [
        ctx.Process(target=workers.race_worker, args=(database_url, str(registry_path), str(tmp_path), model_path,
                                                      worker, RACE_ROUNDS, barrier, results))
        for worker in range(RACE_PROCESSES)
    ]
    for process in processes:
        process.start()
    collected = _collect(results, RACE_PROCESSES)
    _join(processes)
    errors = [error for *_, error in collected if error]
    assert not errors, errors[0]
    wrong = next(payload for _, worker, payload, _ in collected if worker == 0)
    assert wrong == [], f"rounds where the current best was not the top model: {wrong}"
    assert registry.get_registry_stats()["total_models"] == RACE_PROCESSES * RACE_ROUNDS


def test_register_waits_for_a_held_write_lock_then_succeeds(registry: Any, model_dir: Any, database_url: str) -> None:
    """A7 (positive): a writer holding the lock for a second delays, but does not fail, a registration."""
    path = model_dir("als/lock", seed=5)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        if database_url.startswith("sqlite"):
            raw = sqlite3.connect(database_url.split("sqlite:///", 1)[1], isolation_level=None)
            raw.execute("BEGIN IMMEDIATE")
            held.set()
            release.wait(1.0)
            raw.execute("ROLLBACK")
            raw.close()
            return
        engine = create_engine(database_url)
        with engine.connect() as connection:
            connection.execute(text("SELECT generation FROM settings WHERE id = 1 FOR UPDATE"))
            held.set()
            release.wait(1.0)
            connection.rollback()
        engine.dispose()

    thread = threading.Thread(target=hold)
    thread.start()
    assert held.wait(10)
    model_id = registry.register_model(path, "als", {}, {METRIC: 0.5}, {})
    thread.join()
    assert registry.get_model(model_id) is not None


def test_busy_database_raises_registry_busy_error_and_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model_dir: Any
) -> None:
    """A7 (negative, SQLite): a lock held past the whole retry budget gives RegistryBusyError naming the database."""
    from registry import ModelRegistry, RegistryBusyError, RegistryError

    monkeypatch.setenv("CFREG_BUSY_TIMEOUT_MS", "100")
    registry_path = tmp_path / "artifacts" / "cf" / "registry.json"
    registry = ModelRegistry(registry_path, root=tmp_path, export_json=False)
    path = model_dir("als/busy", seed=6)
    url = f"sqlite:///{registry_path.parent / 'registry.db'}"
    before = workers.table_dump(url)
    blocker = sqlite3.connect(registry_path.parent / "registry.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(RegistryBusyError) as caught:
            registry.register_model(path, "als", {}, {METRIC: 0.5}, {})
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert isinstance(caught.value, RegistryError) and isinstance(caught.value, TimeoutError)
    assert "registry.db" in str(caught.value)
    assert workers.table_dump(url) == before
    assert registry.register_model(path, "als", {}, {METRIC: 0.5}, {})  # usable again once the lock is gone

"""Worker functions for the multi-process reliability tests, and the checks they share.

Spawned processes import this module by name, so it must not depend on pytest
or on conftest; they inherit the parent's ``sys.path`` (``tests/`` is on it
through pytest's ``pythonpath``).
"""

from __future__ import annotations

import json
import os
import random
import time
import traceback
from pathlib import Path
from typing import Any

METRIC = "ndcg@10"


def _open(database_url: str, registry_path: str, root: str, export_json: bool = False) -> Any:
    from registry import ModelRegistry

    return ModelRegistry(registry_path, database_url=database_url, root=root, export_json=export_json)


# --------------------------------------------------------------------------- concurrency (A1, A4, A5)


def seeded_model_path(seed: int) -> str:
    """The relative folder of the model built from ``seed`` (see :func:`served_arrays_problem`)."""
    return f"artifacts/cf/als/m{seed}"


def served_arrays_problem(state: Any, stored_path: str) -> str | None:
    """None when the loader's ``state`` holds the arrays of the folder registered for its model id.

    ``stored_path`` is what the registry recorded for ``state.model_id``; the folder name
    ``m{seed}`` gives the arrays ``factories.make_model_dir`` wrote there.
    """
    import numpy as np

    from factories import model_arrays

    name = Path(stored_path).name
    if not name.startswith("m") or not name[1:].isdigit():
        return f"model {state.model_id} was registered from {stored_path!r}, not a seeded folder"
    U, V = model_arrays(int(name[1:]))
    if not (np.array_equal(state.U, U) and np.array_equal(state.V, V)):
        return f"loader reports {state.model_id} ({stored_path}) but serves other arrays"
    return None


def register_worker(database_url: str, registry_path: str, root: str, model_paths: list[str], worker: int,
                    start: Any, results: Any) -> None:
    """Register one model per folder of ``model_paths`` with default (time-based) versions;
    report ``(model_id, value)`` pairs."""
    try:
        registry = _open(database_url, registry_path, root)
        rng = random.Random(worker)
        start.wait()
        registered = []
        for model_path in model_paths:
            value = rng.random()
            model_id = registry.register_model(
                model_path, "als", {"factors": 8}, {METRIC: value, "recall@10": rng.random()},
                {"training_time_seconds": 1.0},
            )
            registered.append((model_id, value))
        results.put(("register", worker, registered, None))
    except BaseException:  # noqa: BLE001 - report everything: the parent asserts on it
        results.put(("register", worker, [], traceback.format_exc()))


def select_worker(database_url: str, registry_path: str, root: str, worker: int, stop: Any, start: Any,
                  results: Any) -> None:
    """Call ``select_best_model`` in a loop until ``stop`` is set; report the number of calls."""
    try:
        registry = _open(database_url, registry_path, root)
        start.wait()
        calls = 0
        while not stop.is_set():
            registry.select_best_model(metric=METRIC)
            calls += 1
        results.put(("select", worker, calls, None))
    except BaseException:  # noqa: BLE001 - reported to the parent
        results.put(("select", worker, 0, traceback.format_exc()))


def poll_worker(database_url: str, registry_path: str, root: str, worker: int, stop: Any, start: Any,
                results: Any) -> None:
    """Serving-side poller: read ``(generation, current best)`` every few ms; report what it saw.

    With the loader available, also ``reload_model()`` and check that the served arrays are the
    arrays of the folder the registry recorded for the model id the loader reports (every model
    comes from its own folder with its own arrays, see :func:`served_arrays_problem`).
    """
    try:
        registry = _open(database_url, registry_path, root)
        loader = None
        try:
            from registry.loader import ModelLoader

            loader = ModelLoader(registry_path, True, False, database_url=database_url)
        except ImportError:
            pass
        start.wait()
        seen: list[tuple[int, str | None]] = []
        reloads = swaps = checked = 0
        paths: dict[str, str] = {}
        while not stop.is_set():
            seen.append(registry.context.generation())
            if loader is not None and seen[-1][1] is not None:
                reloads += 1
                if loader.reload_model():
                    swaps += 1
                state = loader.get_current_model()
                if state is None or state.U is None or state.V is None:
                    raise AssertionError(f"loader served an inconsistent state: {state!r}")
                if state.model_id not in paths:
                    paths[state.model_id] = registry.get_model(state.model_id)["path"]
                problem = served_arrays_problem(state, paths[state.model_id])
                if problem:
                    raise AssertionError(problem)
                checked += 1
            time.sleep(0.005)
        results.put(("poll", worker, {"seen": seen, "reloads": reloads, "swaps": swaps, "checked": checked}, None))
    except BaseException:  # noqa: BLE001 - reported to the parent
        results.put(("poll", worker, {}, traceback.format_exc()))


def race_worker(database_url: str, registry_path: str, root: str, model_path: str, worker: int, rounds: int,
                barrier: Any, results: Any) -> None:
    """A4: each round every worker registers a candidate, all meet at a barrier, all select at once.

    After a second barrier worker 0 checks that the current best is the active model with the
    highest metric; it reports the rounds where it was not.
    """
    try:
        registry = _open(database_url, registry_path, root)
        rng = random.Random(1000 + worker)
        wrong = []
        for round_index in range(rounds):
            registry.register_model(model_path, "als", {}, {METRIC: rng.random()}, {})
            barrier.wait()
            registry.select_best_model(metric=METRIC)
            barrier.wait()
            if worker == 0:
                best = registry.get_current_best()
                frame = registry.list_models(status="active")
                top = float(frame[METRIC].max())
                if best is None or best["selection_value"] != top:
                    wrong.append((round_index, best and best["selection_value"], top))
            barrier.wait()
        results.put(("race", worker, wrong, None))
    except BaseException:  # noqa: BLE001 - reported to the parent
        results.put(("race", worker, [], traceback.format_exc()))


# --------------------------------------------------------------------------- crash safety (B1)


def crash_worker(database_url: str, registry_path: str, root: str, model_path: str, seed: int, ready: Any,
                 naive_export: bool = False) -> None:
    """Loop {register, select_best} with the JSON export on, until killed; ``ready`` is set after the first pass.

    ``naive_export`` swaps the atomic writer for the original registry's truncate-and-dump
    (the negative control: the crash test must then find torn files).
    """
    if naive_export:
        from registry import export

        def truncate_and_dump(path: Path, text: str) -> None:
            with open(path, "w", encoding="utf-8") as handle:
                json.dump(json.loads(text), handle, indent=2)

        export.atomic_write_text = truncate_and_dump
    registry = _open(database_url, registry_path, root, export_json=True)
    rng = random.Random(seed)
    while True:
        # Both metrics on every model: selecting on a metric no model has is an UnknownMetricError.
        registry.register_model(model_path, "als", {"factors": 8}, {METRIC: rng.random(), "recall@10": rng.random()},
                                {"training_time_seconds": 1.0})
        registry.select_best_model(metric=METRIC if rng.random() < 0.7 else "recall@10")
        ready.set()  # at full speed in the loop: the kill may now land anywhere in it


# --------------------------------------------------------------------------- shared checks


def table_dump(database_url: str) -> dict[str, Any]:
    """Every row of every table (sorted), for "the database is unchanged" comparisons."""
    from sqlalchemy import MetaData, create_engine, select

    engine = create_engine(database_url)
    try:
        metadata = MetaData()
        metadata.reflect(engine)
        dump: dict[str, Any] = {}
        with engine.connect() as connection:
            for name, table in sorted(metadata.tables.items()):
                rows = connection.execute(select(table)).all()
                dump[name] = sorted(repr(tuple(row)) for row in rows)
        return dump
    finally:
        engine.dispose()


def sqlite_integrity(database_url: str) -> tuple[str, list[Any]]:
    """``(PRAGMA integrity_check, PRAGMA foreign_key_check rows)`` through a bare sqlite3 connection."""
    import sqlite3

    path = database_url.split("sqlite:///", 1)[1]
    connection = sqlite3.connect(path, timeout=30)
    try:
        integrity = connection.execute("PRAGMA integrity_check").fetchone()[0]
        foreign = connection.execute("PRAGMA foreign_key_check").fetchall()
        return integrity, foreign
    finally:
        connection.close()


def half_registered(database_url: str) -> list[str]:
    """Models missing their metrics, files or REGISTER audit row, and REGISTER rows without a model."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            models = {row[0] for row in connection.execute(text("SELECT model_id FROM models"))}
            with_metrics = {row[0] for row in connection.execute(text("SELECT DISTINCT model_id FROM model_metrics"))}
            file_counts = dict(connection.execute(
                text("SELECT model_id, count(*) FROM artifact_files GROUP BY model_id")).all())
            audit_counts = dict(connection.execute(
                text("SELECT target, count(*) FROM audit_events WHERE action = 'REGISTER' GROUP BY target")).all())
        problems = []
        for model_id in sorted(models):
            if model_id not in with_metrics:
                problems.append(f"{model_id}: no metrics")
            if file_counts.get(model_id, 0) < 4:
                problems.append(f"{model_id}: {file_counts.get(model_id, 0)} file rows")
            if audit_counts.get(model_id, 0) != 1:
                problems.append(f"{model_id}: {audit_counts.get(model_id, 0)} REGISTER audit rows")
        problems.extend(f"{target}: REGISTER audit row without a model" for target in sorted(set(audit_counts) - models))
        return problems
    finally:
        engine.dispose()


def registry_json_state(json_path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The exported ``registry.json`` (None when absent); raises when it does not parse."""
    path = Path(json_path)
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))

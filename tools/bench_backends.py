"""SQLite beside PostgreSQL: the same operations on both backends, with statement counts.

``python tools/bench.py --only backends --sizes 1000 [--postgres URL]`` fills one registry per
backend to N models through the public API (export off, as in the main bench), then times each
operation in alternation between the backends and counts, per call, the SQL statements sent
(SQLAlchemy's ``before_cursor_execute``: an ``executemany`` is one) and the transactions
committed. On PostgreSQL every statement and every commit is one round trip to the server.
The PostgreSQL registry lives in a schema of its own, dropped at the end. The URL defaults to
``$CFREG_TEST_POSTGRES_URL``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url

# Targets on the local PostgreSQL server at 1,000 models (ms; list: x the SQLite figure).
PG_TARGETS = {"register": 4.0, "select_best_model": 3.0, "reload check": 0.2}
PG_LIST_FACTOR = 1.5


@dataclass
class Counted:
    """Statements and commits seen on one engine."""

    statements: int = 0
    commits: int = 0
    texts: list[str] = field(default_factory=list)

    def attach(self, engine: Any) -> None:
        @event.listens_for(engine, "before_cursor_execute")
        def count_statement(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            self.statements += 1
            self.texts.append(statement.split(None, 1)[0].upper() if statement.strip() else "?")

        @event.listens_for(engine, "commit")
        def count_commit(conn: Any) -> None:
            self.commits += 1


@dataclass
class Side:
    """One backend's registry, loader and counters."""

    name: str
    registry: Any
    loader: Any
    counted: Counted
    bases: list[str]
    count: int = 0
    cycle: int = 0

    def register(self) -> None:
        from bench import random_metrics  # the main bench's metric generator

        self.count += 1
        self.registry.register_model(
            self.bases[self.count % len(self.bases)], "als",
            hyperparameters={"factors": 128, "regularization": 0.01}, metrics=random_metrics(_RNG),
            training_info={"training_time_seconds": 100.0}, data_version="bench", git_commit="0" * 40,
            version=f"b_{self.count:06d}",
        )

    def select(self) -> None:
        self.cycle += 1
        self.registry.select_best_model(metric=("ndcg@10", "recall@10")[self.cycle % 2])


_RNG: Any = None


def _schema_url(base_url: str, schema: str) -> str:
    return make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False)


def _time(works: list[tuple[Callable[[], Any], Counted]], reps: int) -> list[tuple[float, float, float]]:
    """Per side: median ms, statements per call, commits per call. One warm-up call each, then
    the sides in alternation so that load from other processes hits them alike."""
    for work, _ in works:
        work()
    times: list[list[float]] = [[] for _ in works]
    before = [(counted.statements, counted.commits) for _, counted in works]
    for _ in range(reps):
        for (work, _), sample in zip(works, times):
            started = time.perf_counter()
            work()
            sample.append((time.perf_counter() - started) * 1000)
    return [(statistics.median(sample), (counted.statements - start[0]) / reps, (counted.commits - start[1]) / reps)
            for (_, counted), sample, start in zip(works, times, before)]


def run(sizes: list[int], postgres_url: str | None, seed: int = 7) -> str:
    """Measure and return the markdown section."""
    import random

    from bench import BASE_FOLDERS, QUICK_SHAPES, make_base_folders

    from registry import ModelRegistry
    from registry.loader import ModelLoader

    global _RNG
    _RNG = random.Random(seed)
    postgres_url = postgres_url or os.environ.get("CFREG_TEST_POSTGRES_URL")
    workdir = Path(tempfile.mkdtemp(prefix="cfreg-bench-backends-"))
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_url) if postgres_url else None
    sides: list[Side] = []
    try:
        bases = make_base_folders(workdir / "artifacts" / "cf", QUICK_SHAPES, BASE_FOLDERS)
        urls = {"SQLite": None}
        if admin is not None:
            with admin.begin() as connection:
                connection.execute(text(f'CREATE SCHEMA "{schema}"'))
            urls["PostgreSQL"] = _schema_url(postgres_url, schema)  # type: ignore[arg-type]
        for name, url in urls.items():
            path = workdir / name / "registry.json"
            registry = ModelRegistry(path, database_url=url, root=workdir, export_json=False)
            counted = Counted()
            counted.attach(registry.context.database.engine)
            sides.append(Side(name, registry, None, counted, bases))
        rows: list[tuple[str, int, dict[str, tuple[float, float, float]]]] = []
        for size in sorted(sizes):
            for side in sides:
                while side.count < size:
                    side.register()
                side.select()
                if side.loader is None:
                    side.loader = ModelLoader(side.registry.context.json_path,
                                              database_url=side.registry.context.database.url, cache_enabled=True,
                                              auto_load=False)
                    side.loader.load_current_best()
            ops: dict[str, Callable[[Side], Callable[[], Any]]] = {
                "register": lambda side: side.register,
                "select_best_model": lambda side: side.select,
                "list_models": lambda side: side.registry.list_models,
                "list_models, uncached": lambda side: lambda: (side.registry._reads.clear(), side.registry.list_models()),
                "get_registry_stats, uncached": lambda side: lambda: (side.registry._reads.clear(),
                                                                      side.registry.get_registry_stats()),
                "get_model": lambda side: lambda: side.registry.get_model("als_b_000001"),
                "get_model, uncached": lambda side: lambda: (side.registry._reads.clear(),
                                                             side.registry.get_model("als_b_000001")),
                "reload check": lambda side: side.loader.reload_model,
            }
            for op, make in ops.items():
                timed = _time([(make(side), side.counted) for side in sides], 30)
                measured = {side.name: figures for side, figures in zip(sides, timed)}
                rows.append((op, size, measured))
        return _render(rows, [side.name for side in sides], postgres_url is not None)
    finally:
        for side in sides:
            if side.loader is not None:
                side.loader.close()
            side.registry.context.database.dispose()
        if admin is not None:
            with admin.begin() as connection:
                connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            admin.dispose()
        shutil.rmtree(workdir, ignore_errors=True)


def _render(rows: list[tuple[str, int, dict[str, tuple[float, float, float]]]], names: list[str],
            have_postgres: bool) -> str:
    load = [round(x, 2) for x in os.getloadavg()]
    lines = [
        "## SQLite and PostgreSQL side by side",
        "",
        (f"`python tools/bench.py --only backends` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load "
         f"average {load}; PostgreSQL on 127.0.0.1 (same machine). Median ms over 30 calls after one warm-up, "
         "statements sent and transactions committed per call (on PostgreSQL each is one round trip)."),
        "",
        "| operation | N | " + " | ".join(f"{name} ms | stmts | commits" for name in names) + " | target | verdict |",
        "|---|---:|" + "---:|---:|---:|" * len(names) + "---|---|",
    ]
    for op, size, measured in rows:
        cells = " | ".join(f"{ms:.3f} | {stmts:.1f} | {commits:.1f}" for ms, stmts, commits in
                           (measured[name] for name in names))
        target, verdict = "-", "-"
        if have_postgres and "PostgreSQL" in measured:
            pg = measured["PostgreSQL"][0]
            if op in PG_TARGETS:
                target = f"PostgreSQL <= {PG_TARGETS[op]:g} ms"
                verdict = "met" if pg <= PG_TARGETS[op] else f"missed ({pg:.2f} ms)"
            elif op == "list_models, uncached":
                limit = PG_LIST_FACTOR * measured["SQLite"][0]
                target = f"PostgreSQL <= {PG_LIST_FACTOR}x SQLite = {limit:.2f} ms"
                verdict = "met" if pg <= limit else f"missed ({pg / measured['SQLite'][0]:.2f}x)"
        lines.append(f"| {op} | {size:,} | {cells} | {target} | {verdict} |")
    return "\n".join(lines) + "\n"


def main(args: argparse.Namespace) -> str:
    return run(sorted(args.sizes), getattr(args, "postgres", None), args.seed)

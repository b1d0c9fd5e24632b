"""Database plumbing: URL resolution, SQLite settings, transactions, locking, processes."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from registry import db, transactions
from registry.errors import RegistryBusyError, RegistryError
from registry.models import Settings

SPAWN = multiprocessing.get_context("spawn")


def test_url_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    json_path = tmp_path / "cf" / "registry.json"
    assert db.resolve_database_url(json_path) == f"sqlite:///{tmp_path / 'cf' / 'registry.db'}"
    assert db.resolve_database_url(tmp_path / "x.sqlite") == f"sqlite:///{tmp_path / 'x.sqlite'}"
    monkeypatch.setenv("CFREG_DATABASE_URL", "postgresql+psycopg://u@h/db")
    assert db.resolve_database_url(json_path) == "postgresql+psycopg://u@h/db"
    assert db.resolve_database_url(json_path, "sqlite:////elsewhere.db") == "sqlite:////elsewhere.db"


def test_in_memory_sqlite_is_refused() -> None:
    with pytest.raises(RegistryError, match="in-memory"):
        db.make_engine("sqlite://")



def test_only_the_call_that_created_the_schema_is_told_so(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    database, created = db.open_or_create_database(url)
    assert created is True
    again, created_again = db.open_or_create_database(url)
    assert again is database and created_again is False  # the cached object carries no "created" state
    assert not hasattr(database, "newly_created")
    db.forget_databases()
    reopened, created_reopened = db.open_or_create_database(url)
    assert reopened is not database and created_reopened is False  # the schema is there already

def test_pragmas_hold_on_every_pooled_connection(tmp_path: Path) -> None:
    database = db.open_database(f"sqlite:///{tmp_path / 'p.db'}")
    connections = [database.engine.connect() for _ in range(4)]  # beyond pool_size: overflow connections too
    try:
        for connection in connections:
            values = [connection.exec_driver_sql(f"PRAGMA {name}").scalar() for name in
                      ("journal_mode", "foreign_keys", "synchronous", "busy_timeout")]
            assert values == ["wal", 1, 2, db.DEFAULT_BUSY_TIMEOUT_MS]
    finally:
        for connection in connections:
            connection.close()


def test_a_failed_transaction_changes_nothing(database_url: str) -> None:
    database = db.open_database(database_url)

    def failing(session):  # type: ignore[no-untyped-def]
        session.get(Settings, 1).selection_criteria = "recall@10"
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        database.run(failing)
    settings = database.read(lambda s: (s.get(Settings, 1).generation, s.get(Settings, 1).selection_criteria))
    assert settings == (0, "ndcg@10")


def test_every_write_bumps_the_generation_once(database_url: str) -> None:
    database = db.open_database(database_url)
    for _ in range(3):
        database.run(lambda session: None)
    assert database.read(lambda s: s.get(Settings, 1).generation) == 3


def test_disposing_a_database_releases_the_shared_readers_connection(database_url: str) -> None:
    # On PostgreSQL a connection left checked out counts against max_connections until GC.
    database = db.open_database(database_url)
    assert database.shared_reader().rows(text("SELECT 1")) == [(1,)]
    pool = database.engine.pool  # dispose() replaces the engine's pool: watch the one in use
    assert pool.checkedout() == 1  # type: ignore[attr-defined]
    db.forget_databases()
    assert pool.checkedout() == 0  # type: ignore[attr-defined]


def test_locked_database_raises_registry_busy_error_and_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "busy.db"
    db.open_database(f"sqlite:///{path}")
    db.forget_databases()
    monkeypatch.setenv(db.ENV_BUSY_TIMEOUT_MS, "100")
    monkeypatch.setattr(transactions, "MAX_ATTEMPTS", 2)
    database = db.open_database(f"sqlite:///{path}")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(RegistryBusyError, match="busy"):
            database.run(lambda session: None)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert database.read(lambda s: s.get(Settings, 1).generation) == 0


def test_writer_waits_for_a_short_lock_instead_of_failing(tmp_path: Path) -> None:
    path = tmp_path / "wait.db"
    database = db.open_database(f"sqlite:///{path}")
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.5, lambda: holder.execute("COMMIT"))
    release.start()
    try:
        database.run(lambda session: None)  # blocks on busy_timeout, then succeeds
    finally:
        release.join()
        holder.close()
    assert database.read(lambda s: s.get(Settings, 1).generation) == 1


def _open_and_write(url: str, barrier, results) -> None:  # type: ignore[no-untyped-def]
    try:
        barrier.wait(timeout=30)
        database = db.open_database(url)
        for _ in range(20):
            database.run(lambda session: None)
        results.put("ok")
    except Exception as exc:  # reported to the parent
        results.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.slow
@pytest.mark.parametrize("processes", [6])
def test_many_processes_create_the_same_new_registry_and_write_at_once(tmp_path: Path, processes: int) -> None:
    url = f"sqlite:///{tmp_path / 'new' / 'registry.db'}"
    barrier = SPAWN.Barrier(processes)
    results = SPAWN.Queue()
    workers = [SPAWN.Process(target=_open_and_write, args=(url, barrier, results)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    assert outcomes == ["ok"] * processes
    database = db.open_database(url)
    assert database.read(lambda s: s.get(Settings, 1).generation) == processes * 20
    with database.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"


@pytest.mark.slow
def test_postgres_processes_write_at_once(postgres_url: str) -> None:
    db.open_database(postgres_url)
    barrier = SPAWN.Barrier(4)
    results = SPAWN.Queue()
    workers = [SPAWN.Process(target=_open_and_write, args=(postgres_url, barrier, results)) for _ in range(4)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    assert outcomes == ["ok"] * 4
    assert db.open_database(postgres_url).read(lambda s: s.get(Settings, 1).generation) == 80


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_engine_is_replaced_in_a_forked_child(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fork.db'}"
    database = db.open_database(url)
    database.run(lambda session: None)
    pid = os.fork()
    if pid == 0:  # child: must not reuse the parent's pooled connections
        code = 0
        try:
            child = db.open_database(url)
            code = 0 if child is not database else 3
            child.run(lambda session: None)
        except BaseException:
            code = 4
        os._exit(code)
    database.run(lambda session: None)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert database.read(lambda s: s.get(Settings, 1).generation) == 3
    with database.engine.connect() as connection:
        assert connection.execute(text("PRAGMA integrity_check")).scalar() == "ok"


def test_a_registry_folder_holds_its_database(tmp_path: Path) -> None:
    assert db.resolve_database_url(tmp_path / "cf") == f"sqlite:///{tmp_path / 'cf' / 'registry.db'}"


def test_every_spelling_of_a_registry_shares_one_instance(tmp_path: Path) -> None:
    from registry import get_registry

    folder = tmp_path / "cf"
    first = get_registry(folder / "registry.json")
    assert get_registry(folder) is first
    assert get_registry(folder / "registry.db") is first
    assert get_registry(tmp_path / "other" / "registry.json") is not first

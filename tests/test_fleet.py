"""Push reload across a fleet: NOTIFY in the committing transaction, LISTEN in each loader, and recovery.

In-process tests cover SQLite's fast poll and PostgreSQL's listener (including a
terminated listening connection); the fleet test runs four loader processes with
separate caches (four hosts) against PostgreSQL and an S3 server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from factories import make_model_dir
from registry import ModelNotFoundError, ModelRegistry
from registry.loader import ModelLoader
from registry.notify import APPLICATION_NAME

TESTS_DIR = Path(__file__).resolve().parent


def wait_for(condition, timeout: float = 15.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def terminate_listeners(database_url: str) -> int:
    """pg_terminate_backend on the listening connections of this test's registry (its schema); returns how many."""
    engine = create_engine(database_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            schema = connection.execute(text("SELECT current_schema()")).scalar_one()
            return len(connection.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = :name AND pid <> pg_backend_pid()"),
                {"name": f"{APPLICATION_NAME}:{schema}"[:63]}).all())
    finally:
        engine.dispose()


def register(registry: ModelRegistry, tmp_path: Path, seed: int) -> str:
    return registry.register_model(str(make_model_dir(tmp_path / f"m{seed}", seed=seed)), "als", {},
                                   {"ndcg@10": 0.1 + seed / 100}, {})


def test_watching_loader_follows_promotions(tmp_path: Path, database_url: str, backend: str) -> None:
    registry = ModelRegistry(tmp_path / "reg" / "registry.json", database_url=database_url, root=tmp_path)
    first = register(registry, tmp_path, 1)
    registry.promote_model(first)
    seen: list[tuple[str | None, str | None]] = []
    # A 60 s poll: on PostgreSQL only the notification can make the swap quick.
    loader = ModelLoader(registry.registry_path, database_url=database_url)
    loader.start_watching(lambda old, new: seen.append((old, new)), poll_seconds=60.0 if backend == "postgres" else 0.05)
    try:
        second = register(registry, tmp_path, 2)
        registry.promote_model(second)
        wait_for(lambda: loader.get_model_info()["model_id"] == second, 10, "the promotion")
        assert seen == [(first, second)]
        if backend == "postgres":
            watcher = loader.watching
            assert watcher is not None and watcher.mode == "listen" and watcher.notifications >= 1
            # The listening connection is killed: the loader reconnects, catches up, and listens again.
            wait_for(lambda: terminate_listeners(database_url) >= 1, 10, "the listener to be terminated")
            third = register(registry, tmp_path, 3)
            registry.promote_model(third)
            wait_for(lambda: loader.get_model_info()["model_id"] == third, 15, "convergence after the kill")
            wait_for(lambda: watcher.mode == "listen" and watcher.connects >= 2, 15, "the listener to reconnect")
            fourth = register(registry, tmp_path, 4)
            registry.promote_model(fourth)
            wait_for(lambda: loader.get_model_info()["model_id"] == fourth, 10, "push after reconnecting")
    finally:
        loader.close()
    assert loader.watching is None


def test_a_rolled_back_change_notifies_nobody(tmp_path: Path, postgres_url: str) -> None:
    import psycopg
    from psycopg import sql

    from registry.notify import channel_name, listen_conninfo

    registry = ModelRegistry(tmp_path / "reg" / "registry.json", database_url=postgres_url, root=tmp_path)
    model_id = register(registry, tmp_path, 1)
    with psycopg.connect(listen_conninfo(postgres_url), autocommit=True) as listener:
        schema = listener.execute("SELECT current_schema()").fetchone()[0]
        listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel_name(schema))))
        with pytest.raises(ModelNotFoundError):
            registry.promote_model("als_no_such_model")
        assert list(listener.notifies(timeout=0.3)) == []
        registry.promote_model(model_id)
        generation = registry.context.generation()[0]
        payloads = [n.payload for n in listener.notifies(timeout=2, stop_after=1)]
        assert payloads == [str(generation)]


def _start_host(index: int, tmp_path: Path, registry_path: Path, database_url: str, mode: str) -> tuple[subprocess.Popen, Path]:
    status = tmp_path / f"host{index}.json"
    process = subprocess.Popen(
        [sys.executable, str(TESTS_DIR / "fleet_worker.py"), str(registry_path), database_url,
         str(tmp_path / f"cache{index}"), str(status), mode],
        env={**os.environ, "PYTHONPATH": str(TESTS_DIR.parent)},
    )
    return process, status


def served(status: Path) -> str | None:
    try:
        return json.loads(status.read_text())["model_id"]
    except (FileNotFoundError, ValueError):
        return None


@pytest.mark.slow
def test_fleet_of_four_hosts_converges_after_promotions_and_lost_listeners(tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from s3_server import S3Server

    server = S3Server()
    server.start()
    try:
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        bucket = server.create_bucket()
        registry = ModelRegistry(tmp_path / "reg" / "registry.json", database_url=postgres_url, root=tmp_path,
                                 artifact_store=f"{bucket}/cf")
        first = register(registry, tmp_path, 1)
        registry.promote_model(first)
        hosts = [_start_host(index, tmp_path, registry.registry_path, postgres_url, "push") for index in range(4)]
        try:
            wait_for(lambda: all(served(status) == first for _, status in hosts), 60, "four hosts serving")
            second = register(registry, tmp_path, 2)
            registry.promote_model(second)
            wait_for(lambda: all(served(status) == second for _, status in hosts), 15, "every host on the promotion")

            wait_for(lambda: terminate_listeners(postgres_url) >= 4, 15, "four listeners terminated")
            third = register(registry, tmp_path, 3)
            registry.promote_model(third)
            wait_for(lambda: all(served(status) == third for _, status in hosts), 20, "convergence after the kills")
            # Each host downloaded into its own cache.
            for index in range(4):
                assert len(list((tmp_path / f"cache{index}" / "objects").glob("*/*"))) >= 8
        finally:
            for _, status in hosts:
                Path(str(status) + ".stop").touch()
            for process, _ in hosts:
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()
    finally:
        server.stop()

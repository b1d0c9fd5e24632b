"""A new serving worker's start: what a new ModelLoader and its first load cost, and what a
dropped loader leaves behind."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import event

from registry import ModelRegistry
from registry.loader import ModelLoader


@pytest.fixture
def no_cyclic_gc() -> Iterator[None]:
    """Only reference counting frees objects while the test runs."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def promoted_model(registry: ModelRegistry, model_dir: Any) -> str:
    model_id = registry.register_model(model_dir("als/v1", seed=3), "als", {"factors": 8}, {"ndcg@10": 0.2}, {},
                                       version="v1")
    registry.promote_model(model_id)
    return model_id


def second_model(registry: ModelRegistry, model_dir: Any) -> str:
    """Another active model (better than the promoted one), not promoted."""
    return registry.register_model(model_dir("als/v2", seed=4), "als", {"factors": 8}, {"ndcg@10": 0.3}, {},
                                   version="v2")


def test_a_new_loader_and_its_first_load_read_the_settings_and_the_record_once_each(
        registry: ModelRegistry, model_dir: Any, registry_path: Path, database_url: str) -> None:
    model_id = promoted_model(registry, model_dir)
    selects: list[str] = []
    engine = registry.context.database.engine

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            selects.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        with ModelLoader(registry_path, database_url=database_url, auto_load=False) as loader:
            U, _, metadata = loader.load_current_best()
    finally:
        event.remove(engine, "before_cursor_execute", record)

    assert metadata["model_id"] == model_id and U.shape == (40, 8)
    # The registry's root/store and the current best with its files are one statement; its rows
    # serve the first load later only while SQLite's data_version says nothing committed since
    # (PostgreSQL has no such stamp: the load reads again).
    assert len(selects) == (1 if engine.dialect.name == "sqlite" else 2), selects
    # With auto_load (the default) the first check follows at once: one statement on both.
    selects.clear()
    event.listen(engine, "before_cursor_execute", record)
    try:
        with ModelLoader(registry_path, database_url=database_url) as loader:
            assert loader.get_model_info()["model_id"] == model_id
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert len(selects) == 1, selects
    # Later checks still start with the cheap change check, and find nothing to load.
    with ModelLoader(registry_path, database_url=database_url) as loader:
        assert loader.reload_model() is False
        registry.select_best_model()  # a write: the generation moves, the best stays
        assert loader.reload_model() is False
        assert loader.get_model_info()["model_id"] == model_id


def test_a_new_loader_checks_out_one_connection_and_keeps_it_for_its_reload_checks(
        registry: ModelRegistry, model_dir: Any, registry_path: Path, database_url: str) -> None:
    """The opening read runs on the loader's held reader: one checkout, not a session's and then the reader's."""
    promoted_model(registry, model_dir)
    engine = registry.context.database.engine
    checkouts: list[object] = []

    def count(*_args: Any) -> None:
        checkouts.append(object())

    event.listen(engine, "checkout", count)
    try:
        loader = ModelLoader(registry_path, database_url=database_url)
        try:
            loader.reload_model()
            registry.select_best_model()  # the writer checks out a connection of its own
            before = len(checkouts)
            loader.reload_model()
            assert len(checkouts) == before
        finally:
            loader.close()
    finally:
        event.remove(engine, "checkout", count)
    assert before == 2, before  # the loader's one, then the writer's


def test_a_failed_opening_returns_the_held_readers_connection(registry: ModelRegistry, database_url: str,
                                                              registry_path: Path) -> None:
    from registry.errors import InvalidArgumentError
    from registry.opening import open_context

    registry.context.set_artifact_store("memory://cfreg-test/one")
    pool = registry.context.database.engine.pool
    before = pool.checkedout()  # type: ignore[attr-defined]
    with pytest.raises(InvalidArgumentError, match="artifact store"):
        open_context(registry_path, database_url=database_url, auto_create=False, export_json=False,
                     artifact_store="memory://cfreg-test/other", hold_reader=True)
    assert pool.checkedout() == before  # type: ignore[attr-defined]


def test_a_dropped_loader_frees_its_model_without_waiting_for_the_garbage_collector(
        registry: ModelRegistry, model_dir: Any, registry_path: Path, database_url: str, no_cyclic_gc: None) -> None:
    promoted_model(registry, model_dir)
    loader = ModelLoader(registry_path, database_url=database_url)
    U = loader.get_current_model().U
    assert isinstance(U, np.ndarray)
    gone = weakref.ref(loader)
    loader.close()
    del loader, U

    assert gone() is None


def test_auto_reload_still_works_on_a_loader_that_never_started_it_before(
        registry: ModelRegistry, model_dir: Any, registry_path: Path, database_url: str) -> None:
    promoted_model(registry, model_dir)
    with ModelLoader(registry_path, database_url=database_url) as loader:
        assert loader.stop_auto_reload() is False
        loader.start_auto_reload(60)
        loader.start_auto_reload(60)  # replaces the thread
        assert loader.stop_auto_reload() is True
        assert loader.stop_auto_reload() is False


def test_a_reload_check_with_nothing_committed_runs_no_statement_on_sqlite(
        registry: ModelRegistry, model_dir: Any, registry_path: Path, database_url: str) -> None:
    first = promoted_model(registry, model_dir)
    second = second_model(registry, model_dir)
    statements: list[str] = []
    engine = registry.context.database.engine

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    with ModelLoader(registry_path, database_url=database_url) as loader:
        assert loader.reload_model() is False
        event.listen(engine, "before_cursor_execute", record)
        try:
            assert [loader.reload_model() for _ in range(3)] == [False, False, False]
            checks = list(statements)
            registry.promote_model(second)  # another connection commits: the next check must see it
            assert loader.reload_model() is True
        finally:
            event.remove(engine, "before_cursor_execute", record)
        assert loader.get_model_info()["model_id"] == second != first

    if engine.dialect.name == "sqlite":
        assert checks == []  # PRAGMA data_version on the raw connection said "nothing committed"
    else:
        assert len(checks) == 3  # one indexed read each


def test_a_model_loaded_again_reuses_its_record_until_another_connection_commits(
        registry: ModelRegistry, model_dir: Any, registry_path: Path, database_url: str, tmp_path: Path) -> None:
    model_id = registry.register_model(model_dir("als/v1", seed=3), "als", {"factors": 8}, {"ndcg@10": 0.2}, {},
                                       version="v1")
    other = registry.register_model(model_dir("als/v2", seed=4), "als", {"factors": 8}, {"ndcg@10": 0.1}, {},
                                    version="v2")
    engine = registry.context.database.engine
    selects: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            selects.append(statement)

    def load_from_disk(loader: ModelLoader) -> np.ndarray:
        """``model_id``'s U, neither served nor cached before the call."""
        loader.load_model(other)
        loader.clear_cache()
        selects.clear()
        return loader.load_model(model_id)[0]

    with ModelLoader(registry_path, database_url=database_url, auto_load=False) as loader:
        first_U = loader.load_model(model_id)[0]
        event.listen(engine, "before_cursor_execute", record)
        try:
            assert np.array_equal(load_from_disk(loader), first_U)
            again = list(selects)
            # Another connection re-registers the id with other files: the kept record is stale.
            registry.register_model(model_dir("als/v1", seed=99), "als", {"factors": 8}, {"ndcg@10": 0.2}, {},
                                    version="v1", overwrite=True)
            U = load_from_disk(loader)
        finally:
            event.remove(engine, "before_cursor_execute", record)

    assert np.array_equal(U, np.load(tmp_path / "artifacts/cf/als/v1/als_U.npy")) and not np.array_equal(U, first_U)
    assert len(selects) == 1 and "artifact_files" in selects[0], selects  # the record was read again
    if engine.dialect.name == "sqlite":
        assert again == []  # PRAGMA data_version said nothing was committed: the kept record is current
    else:
        assert len(again) == 1  # no such stamp: one indexed read per lookup


def test_a_commit_between_a_prefetched_start_and_its_first_check_is_not_missed(
        registry: ModelRegistry, model_dir: Any, registry_path: Path, database_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The start's record is read with the opening read; a stamp read after it must not vouch for it."""
    from registry.held_reader import HeldReader

    first, second = promoted_model(registry, model_dir), second_model(registry, model_dir)
    real_version = HeldReader.data_version
    calls = []

    def promote_after_the_opening_read(reader: HeldReader) -> Any:
        calls.append(reader)
        if len(calls) == 2:  # the first check's stamp: another process committed after the opening's rows
            registry.promote_model(second)
        return real_version(reader)

    monkeypatch.setattr(HeldReader, "data_version", promote_after_the_opening_read)
    with ModelLoader(registry_path, database_url=database_url) as loader:
        if registry.context.database.dialect == "sqlite":
            assert loader.get_model_info()["model_id"] == second  # the stamp moved: the start read again
        loader.reload_model()
        assert loader.get_model_info()["model_id"] == second != first


def test_a_commit_right_after_the_opening_read_is_not_vouched_for_by_its_stamp(
        registry: ModelRegistry, model_dir: Any, registry_path: Path, database_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The stamp is read before the opening's rows: a commit just after them moves it."""
    from registry.held_reader import HeldReader

    first, second = promoted_model(registry, model_dir), second_model(registry, model_dir)
    real_rows = HeldReader.rows
    pending = [second]

    def commit_after_the_first_read(reader: HeldReader, *args: Any, **kwargs: Any) -> Any:
        rows = real_rows(reader, *args, **kwargs)
        if pending:  # another process commits right after the opening read returned
            registry.promote_model(pending.pop())
        return rows

    monkeypatch.setattr(HeldReader, "rows", commit_after_the_first_read)
    with ModelLoader(registry_path, database_url=database_url) as loader:
        if registry.context.database.dialect == "sqlite":
            assert loader.get_model_info()["model_id"] == second
        else:  # no stamp: the constructor serves what it read, and the first check moves on
            assert loader.get_model_info()["model_id"] == first
        assert loader.reload_model() is (registry.context.database.dialect != "sqlite")
        assert loader.get_model_info()["model_id"] == second


def test_a_loader_whose_opening_imports_a_legacy_registry_serves_the_imported_best(
        tmp_path: Path, registry_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An opening that writes (here: the import of a registry.json an earlier open left undone)
    drops the rows it read before: the first check reads the registry again."""
    import shutil

    from registry import InvalidArtifactsError, db
    from registry.importer import entry

    registry_path.parent.mkdir(parents=True)
    shutil.copy(Path(__file__).parent / "data" / "legacy_registry.json", registry_path)
    monkeypatch.setattr(entry, "insert_parsed", lambda *args, **kwargs: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        ModelRegistry(registry_path, database_url=database_url, root=tmp_path)  # killed mid-import
    monkeypatch.undo()
    db.forget_databases()  # a new process

    # The legacy entries' folders do not exist here: the load fails, naming the imported best.
    with pytest.raises(InvalidArtifactsError, match="als_v2_20250116_141500"):
        ModelLoader(registry_path, database_url=database_url, root=tmp_path)


def test_a_first_load_long_after_the_start_reads_the_registry_again_when_something_committed(
        registry: ModelRegistry, model_dir: Any, registry_path: Path, database_url: str) -> None:
    first = promoted_model(registry, model_dir)
    second = second_model(registry, model_dir)
    with ModelLoader(registry_path, database_url=database_url, auto_load=False) as loader:
        registry.promote_model(second)  # after the opening read
        assert loader.load_current_best()[2]["model_id"] == second != first


def test_a_failed_data_version_read_at_the_opening_falls_back_to_a_session(
        registry: ModelRegistry, model_dir: Any, registry_path: Path, database_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite's raw error on the stamp read is a database error like the others: the opening reads again."""
    import sqlite3
    import types

    from registry.held_reader import HeldReader

    if registry.context.database.dialect != "sqlite":
        pytest.skip("PRAGMA data_version is SQLite's; PostgreSQL has no stamp to read")
    model_id = promoted_model(registry, model_dir)
    real = HeldReader._held_connection
    failures: list[str] = []

    class Busy:
        connection = types.SimpleNamespace(dbapi_connection=types.SimpleNamespace(execute=None))

    def busy(sql: str) -> Any:
        failures.append(sql)
        raise sqlite3.OperationalError("database is locked")

    Busy.connection.dbapi_connection.execute = busy

    def busy_once(reader: HeldReader) -> Any:
        connection = real(reader)
        return Busy() if not failures else connection

    monkeypatch.setattr(HeldReader, "_held_connection", busy_once)
    with ModelLoader(registry_path, database_url=database_url) as loader:
        assert loader.get_model_info()["model_id"] == model_id
    assert failures == ["PRAGMA data_version"]

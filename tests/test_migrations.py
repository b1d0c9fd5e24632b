"""Schema management: Alembic round trips, ORM/migration agreement, open policy, packaging."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from registry import db
from registry.errors import RegistryNotFoundError, SchemaVersionError
from registry.models import Base

REPO = Path(__file__).resolve().parent.parent
TABLES = {
    "models", "model_metrics", "artifact_files", "selections", "bert_embeddings",
    "embedding_links", "ab_tests", "ab_outcomes", "audit_events", "settings", "model_diffs", "model_tags",
    "embedding_tags", "aliases",
}
VIEWS = {"v_model_metrics", "v_current_best", "v_selection_history", "v_model_tags", "v_alias_history", "v_aliases",
         "v_ab_arm_totals"}


def schema_snapshot(database: db.Database) -> dict:
    """Tables, columns (type, nullability), indexes, unique constraints, FKs and views."""
    inspector = inspect(database.engine)
    snapshot: dict = {"views": sorted(inspector.get_view_names())}
    for table in sorted(inspector.get_table_names()):
        if table == "alembic_version":
            continue
        snapshot[table] = {
            "columns": [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)],
            "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in inspector.get_indexes(table)),
            "uniques": sorted((u["name"], tuple(u["column_names"])) for u in inspector.get_unique_constraints(table)),
            "fks": sorted(
                (tuple(f["constrained_columns"]), f["referred_table"], (f.get("options") or {}).get("ondelete"))
                for f in inspector.get_foreign_keys(table)
            ),
            "pk": tuple(inspector.get_pk_constraint(table)["constrained_columns"]),
        }
    return snapshot


def test_schema_head_constant_is_alembics_head() -> None:
    """``db.SCHEMA_HEAD`` lets a current registry open without Alembic: it must name the newest script."""
    from alembic.script import ScriptDirectory

    assert set(ScriptDirectory.from_config(db.alembic_config()).get_heads()) == {db.SCHEMA_HEAD}


def test_opening_a_current_registry_does_not_import_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    db.open_database(url)
    code = ("import sys; from registry import db; database = db.open_database(sys.argv[1], create=False); "
            "print(db.schema_state(database)[0], 'alembic' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code, url], capture_output=True, text=True, check=True, cwd=REPO)
    assert result.stdout.split() == ["current", "False"]


def test_fresh_database_is_created_at_head_with_every_table(database_url: str) -> None:
    database = db.open_database(database_url)
    state, current, heads = db.schema_state(database)
    assert state == "current" and current == heads
    inspector = inspect(database.engine)
    assert TABLES <= set(inspector.get_table_names())
    assert VIEWS <= set(inspector.get_view_names())
    generation = database.read(lambda s: s.execute(text("SELECT generation FROM settings WHERE id = 1")).scalar_one())
    assert generation == 0


def test_orm_models_and_migrations_agree(database_url: str) -> None:
    database = db.open_database(database_url)
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == [], (
        "registry/models.py and migrations/ disagree; HOW TO FIX: write a migration with "
        "`alembic -x url=sqlite:////tmp/x.db revision --autogenerate -m '...'` after upgrading /tmp/x.db to head"
    )


def test_upgrade_downgrade_upgrade_round_trip(database_url: str) -> None:
    database = db.open_database(database_url)
    at_head = schema_snapshot(database)
    db.downgrade(database, "base")
    after_downgrade = schema_snapshot(database)
    assert not (TABLES & set(after_downgrade)), "downgrade must remove every registry table"
    assert after_downgrade["views"] == []
    db.upgrade(database, "head")
    assert schema_snapshot(database) == at_head
    assert db.schema_state(database)[0] == "current"


def test_newer_schema_is_refused_and_left_untouched(database_url: str) -> None:
    database = db.open_database(database_url)
    with database.engine.execution_options(cfreg_write=True).begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    before = schema_snapshot(database)
    db.forget_databases()
    with pytest.raises(SchemaVersionError, match="9999_future"):
        db.open_database(database_url)
    reopened = db.Database(url=database_url, engine=db.make_engine(database_url))
    try:
        assert schema_snapshot(reopened) == before
        with reopened.engine.connect() as connection:
            assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == "9999_future"
    finally:
        reopened.dispose()


def test_older_schema_is_upgraded_on_open(database_url: str) -> None:
    database = db.open_database(database_url)
    db.downgrade(database, "base")
    db.forget_databases()
    reopened = db.open_database(database_url)
    assert db.schema_state(reopened)[0] == "current"


def test_missing_database_is_not_created_without_create(tmp_path: Path) -> None:
    target = tmp_path / "nothing" / "registry.db"
    with pytest.raises(RegistryNotFoundError):
        db.open_database(f"sqlite:///{target}", create=False)
    assert not target.exists() and not target.parent.exists()


@pytest.mark.slow
def test_alembic_command_line_upgrades_a_url(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    env = {**os.environ, "CFREG_DATABASE_URL": url}
    alembic = [sys.executable, "-m", "alembic", "-c", str(REPO / "alembic.ini")]
    subprocess.run([*alembic, "upgrade", "head"], check=True, env=env, cwd=tmp_path, capture_output=True)
    current = subprocess.run([*alembic, "-x", f"url={url}", "current"], check=True, cwd=tmp_path, capture_output=True, text=True)
    assert "(head)" in current.stdout
    assert db.schema_state(db.open_database(url, create=False))[0] == "current"


@pytest.mark.slow
def test_installed_wheel_finds_its_migrations(tmp_path: Path) -> None:
    """A non-editable install has no repo-root migrations/: they must ship inside the package."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"), str(REPO)],
        check=True, capture_output=True,
    )
    wheel = next((tmp_path / "dist").glob("*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "registry/_migrations/env.py" in names
    assert any(n.startswith("registry/_migrations/versions/") and n.endswith(".py") for n in names)
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    script = (
        "import registry.db as d, sys; p = d.migrations_dir(); "
        f"assert str(p).startswith({str(unpacked)!r}), p; "
        f"d.open_database('sqlite:///{tmp_path / 'w.db'}'); print('ok', p)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(unpacked)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")

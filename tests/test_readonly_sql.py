"""`cfreg sql` on PostgreSQL: who may set up the reader role, and what the role may read.

These tests create cluster-wide roles; every one is uniquely named and dropped at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from conftest import POSTGRES_ENV, drop_postgres_schema, postgres_schema_url
from registry import InvalidArgumentError, ModelRegistry, db
from registry.errors import ReadOnlyQueryError, ReadOnlySqlUnavailableError
from registry.pg_readonly import reader_role_name, setup_reader
from registry.readonly_sql import run_readonly_query

pytestmark = pytest.mark.skipif(not os.environ.get(POSTGRES_ENV), reason=f"{POSTGRES_ENV} is not set")


@pytest.fixture
def admin():  # type: ignore[no-untyped-def]
    engine = create_engine(os.environ[POSTGRES_ENV], isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


@pytest.fixture
def plain_user(admin) -> Iterator[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """A login role without CREATEROLE that owns a fresh schema: ``(url, schema)``."""
    user, schema = f"cfreg_t_{uuid.uuid4().hex[:12]}", f"t_{uuid.uuid4().hex[:16]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE ROLE "{user}" LOGIN'))
        connection.execute(text(f'CREATE SCHEMA "{schema}" AUTHORIZATION "{user}"'))
    url = make_url(os.environ[POSTGRES_ENV]).set(username=user, password=None).render_as_string(hide_password=False)
    try:
        yield postgres_schema_url(url, schema), schema
    finally:
        db.forget_databases()
        drop_postgres_schema(admin, schema)
        with admin.connect() as connection:
            connection.execute(text(f'DROP OWNED BY "{user}"'))
            connection.execute(text(f'DROP ROLE "{user}"'))


def test_role_names_differ_per_database_and_schema() -> None:
    names = {reader_role_name(d, s) for d in ("test", "prod") for s in ("public", "team_a", "team_b")}
    assert len(names) == 6 and all(n.startswith("cfreg_ro_") and len(n) <= 63 for n in names)
    assert reader_role_name("test", "team_a") == reader_role_name("test", "team_a")


def test_without_createrole_sql_is_refused_with_how_to_enable_it(plain_user, admin, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, schema = plain_user
    registry = ModelRegistry(tmp_path / "registry.json", database_url=url, root=tmp_path)
    setup = setup_reader(registry.context.database)
    assert not setup.enabled and "may not create roles" in (setup.problem or "")
    with pytest.raises(ReadOnlySqlUnavailableError) as refused:
        run_readonly_query(registry.context, "SELECT 1")
    message = str(refused.value)
    assert "\n" not in message and "cfreg init" in message and "CREATEROLE" in message
    with admin.connect() as connection:  # nothing was created
        role = reader_role_name(connection.execute(text("SELECT current_database()")).scalar_one(), schema)
        assert connection.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).first() is None

    # Once the user may create roles, `cfreg init` (setup_reader) enables it, as a non-superuser.
    user = make_url(url).username
    with admin.connect() as connection:
        connection.execute(text(f'ALTER ROLE "{user}" CREATEROLE'))
    assert setup_reader(registry.context.database).enabled
    assert run_readonly_query(registry.context, "SELECT count(*) AS n FROM models").records() == [{"n": 0}]
    with pytest.raises(ReadOnlyQueryError):
        run_readonly_query(registry.context, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity")


def test_each_registry_reader_reads_only_its_own_schema(postgres_url: str, admin, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    other_schema = f"t_{uuid.uuid4().hex[:16]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{other_schema}"'))
    try:
        other_url = postgres_schema_url(os.environ[POSTGRES_ENV], other_schema)
        first = ModelRegistry(tmp_path / "a" / "registry.json", database_url=postgres_url, root=tmp_path)
        second = ModelRegistry(tmp_path / "b" / "registry.json", database_url=other_url, root=tmp_path)
        one, two = setup_reader(first.context.database), setup_reader(second.context.database)
        assert one.enabled and two.enabled and one.role != two.role
        assert run_readonly_query(first.context, "SELECT count(*) FROM settings").rows == [(1,)]
        with pytest.raises(ReadOnlyQueryError, match="permission denied"):
            run_readonly_query(first.context, f'SELECT * FROM "{other_schema}".settings')
        # Tampering with the function (a more powerful owner) makes `cfreg sql` refuse, not run.
        with admin.connect() as connection:
            connection.execute(text(f'ALTER FUNCTION "{other_schema}".cfreg_readonly_query(text, bigint) OWNER TO CURRENT_USER'))
        with pytest.raises(ReadOnlySqlUnavailableError, match="was altered"):
            run_readonly_query(second.context, "SELECT 1")
        assert setup_reader(second.context.database).enabled  # `cfreg init` repairs it
        assert run_readonly_query(second.context, "SELECT 1 AS one").records() == [{"one": 1}]
    finally:
        db.forget_databases()
        drop_postgres_schema(admin, other_schema)


def test_values_keep_their_types_and_the_row_limit_stops_early(postgres_url: str, tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "registry.json", database_url=postgres_url, root=tmp_path)
    assert setup_reader(registry.context.database).enabled
    result = run_readonly_query(
        registry.context,
        """SELECT 1 AS a, 'x,"y\\z' AS b, NULL::text AS c, ''::text AS d, ARRAY[1, 2] AS e, '(p)'::text AS f,
                  1.5::numeric AS g, true AS h, '{"k": [1]}'::jsonb AS i""",
    )
    assert result.columns == list("abcdefghi")
    from decimal import Decimal

    assert result.rows == [(1, 'x,"y\\z', None, "", [1, 2], "(p)", Decimal("1.5"), True, {"k": [1]})]
    assert run_readonly_query(registry.context, "SELECT NULL AS only").rows == [(None,)]
    many = run_readonly_query(registry.context, "SELECT generate_series(1, 100000000) AS i", limit=3)
    assert many.rows == [(1,), (2,), (3,)] and many.truncated
    with pytest.raises(InvalidArgumentError, match="exactly one"):
        run_readonly_query(registry.context, "SELECT 1; SELECT 2")

"""Shared fixtures.

Every database test runs on SQLite, and also on PostgreSQL when
``CFREG_TEST_POSTGRES_URL`` is set (each test gets its own schema, so
pytest-xdist workers never share state). When the variable is set and the
server is unreachable, the tests fail: they never skip.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from factories import make_embeddings_dir, make_model_dir

POSTGRES_ENV = "CFREG_TEST_POSTGRES_URL"
BACKENDS = ["sqlite"] + (["postgres"] if os.environ.get(POSTGRES_ENV) else [])
CHECKOUT = Path(__file__).resolve().parent.parent
# Not the tests' business: version control, environments, caches and build output.
CHECKOUT_IGNORED = {".git", ".venv", ".ci-venv", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache",
                    "build", "dist"}

# hypothesis keeps its example database and caches in ./.hypothesis by default: inside the
# checkout. No example database; the caches go to a temporary folder of this process.
settings.register_profile("cfreg", database=None)
settings.load_profile("cfreg")
_HYPOTHESIS_HOME = tempfile.mkdtemp(prefix="cfreg-hypothesis-")
set_hypothesis_home_dir(_HYPOTHESIS_HOME)
atexit.register(shutil.rmtree, _HYPOTHESIS_HOME, ignore_errors=True)


def checkout_files() -> set[str]:
    """Every file and folder of the checkout (relative paths), ignored folders left out."""
    found: set[str] = set()
    for folder, subfolders, files in os.walk(CHECKOUT):
        subfolders[:] = [name for name in subfolders if name not in CHECKOUT_IGNORED and not name.endswith(".egg-info")]
        relative = Path(folder).relative_to(CHECKOUT)
        found.update(str(relative / name) for name in subfolders + files)
    return found


@pytest.fixture(autouse=True)
def _writes_only_under_tmp() -> Iterator[None]:
    """Fail a test that leaves new files in the checkout: tests write only under tmp paths."""
    before = checkout_files()
    yield
    created = sorted(checkout_files() - before)
    if created:
        pytest.fail(
            f"the test created {created} in the checkout {CHECKOUT}; write under tmp_path instead "
            "(with pytest-xdist a test running at the same time may be the culprit: rerun with -n 0)",
            pytrace=False,
        )


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test sees the developer's registry settings; singletons are reset after each test."""
    for name in ("CFREG_DATABASE_URL", "CFREG_ROOT"):
        monkeypatch.delenv(name, raising=False)
    yield
    from registry import cf_registry, db

    cf_registry.reset_registries()
    from registry import bert_registry

    bert_registry.reset_bert_registries()
    try:
        from registry import loader

        loader.reset_loader()
    except ImportError:
        pass
    db.forget_databases()


def postgres_schema_url(base_url: str, schema: str) -> str:
    """The base URL with ``search_path`` pointing at ``schema``."""
    url = make_url(base_url)
    return url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL schema for one test (requires CFREG_TEST_POSTGRES_URL)."""
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(f"{POSTGRES_ENV} is not set")
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield postgres_schema_url(base, schema)
    finally:
        from registry import db

        db.forget_databases()
        drop_postgres_schema(admin, schema)
        admin.dispose()


def drop_postgres_schema(admin, schema: str) -> None:  # type: ignore[no-untyped-def]
    """Drop a test schema and the cluster-wide reader role `cfreg init` may have created for it."""
    from registry.pg_readonly import reader_role_name

    with admin.connect() as connection:
        database = connection.execute(text("SELECT current_database()")).scalar_one()
        connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        role = reader_role_name(database, schema)
        if connection.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).first():
            connection.execute(text(f'DROP OWNED BY "{role}"'))
            connection.execute(text(f'DROP ROLE "{role}"'))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """``"sqlite"`` always, ``"postgres"`` too when CFREG_TEST_POSTGRES_URL is set."""
    return request.param


@pytest.fixture
def database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A database URL on the current backend (SQLite: ``registry.db`` in the test's folder)."""
    if backend == "postgres":
        return request.getfixturevalue("postgres_url")
    return f"sqlite:///{tmp_path / 'artifacts' / 'cf' / 'registry.db'}"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the test inside its own temporary folder (for the doc's relative paths)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def registry_path(tmp_path: Path) -> Path:
    """``<tmp>/artifacts/cf/registry.json``: the doc's layout inside the test folder."""
    return tmp_path / "artifacts" / "cf" / "registry.json"


@pytest.fixture
def registry(registry_path: Path, database_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A fresh ModelRegistry on the current backend, rooted at the test folder."""
    from registry import ModelRegistry

    return ModelRegistry(registry_path, database_url=database_url, root=tmp_path)


@pytest.fixture
def model_dir(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Factory: ``model_dir("als/v1", model_type="als", seed=1, ...)`` -> a real artifact folder
    under ``<tmp>/artifacts/cf``; returns the path relative to the test folder (as users store it)."""

    def build(relative: str, model_type: str = "als", **kwargs) -> str:  # type: ignore[no-untyped-def]
        make_model_dir(tmp_path / "artifacts" / "cf" / relative, model_type, **kwargs)
        return f"artifacts/cf/{relative}"

    return build


@pytest.fixture
def embeddings_dir(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Factory: ``embeddings_dir("bert/v1", num_items=25, dim=16)`` -> relative path of a folder
    holding ``product_embeddings.npy``."""

    def build(relative: str, **kwargs) -> str:  # type: ignore[no-untyped-def]
        make_embeddings_dir(tmp_path / "artifacts" / "cf" / relative, **kwargs)
        return f"artifacts/cf/{relative}"

    return build

"""Alembic environment for cf-model-registry (SQLite and PostgreSQL).

URL: a connection handed over by the library (``config.attributes["connection"]``),
else ``-x url=...``, else the URL the library put in ``config.attributes["url"]``,
else ``$CFREG_DATABASE_URL``. Engines come from ``registry.engines.make_engine`` so the
SQLite pragmas and ``BEGIN IMMEDIATE`` apply; SQLite runs in batch mode with
transactional DDL, so an interrupted upgrade leaves the old revision intact.
"""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from registry.defaults import ENV_DATABASE_URL
from registry.engines import make_engine
from registry.models import Base

config = context.config
if config.config_file_name is not None and config.attributes.get("connection") is None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def _url() -> str:
    url = (
        context.get_x_argument(as_dictionary=True).get("url")
        or config.attributes.get("url")
        or os.environ.get(ENV_DATABASE_URL)
        or config.get_main_option("sqlalchemy.url")
    )
    if not url:
        raise SystemExit(f"no database URL: pass -x url=... or set {ENV_DATABASE_URL}")
    return url


def _configure(**kwargs: object) -> None:
    context.configure(
        target_metadata=target_metadata,
        compare_type=True,
        transactional_ddl=True,
        **kwargs,  # type: ignore[arg-type]
    )


def run_migrations_offline() -> None:
    url = _url()
    _configure(url=url, literal_binds=True, render_as_batch=url.startswith("sqlite"))
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_url())
    try:
        with engine.execution_options(cfreg_write=True).connect() as connection:
            _run(connection)
            connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

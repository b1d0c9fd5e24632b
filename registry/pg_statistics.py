"""PostgreSQL planner statistics of a growing registry: ``ANALYZE`` at generations 64, 128, 256, ...

PostgreSQL plans from statistics that autovacuum refreshes at most once a minute (and only
after 50 rows + 10% changed). A registry filled faster than that (a bulk registration, an
import, a benchmark) is planned as if its tables held a row or two: the selection's
candidate query then joins every metric row with a sequential scan of ``models``, which
measured 108 ms instead of 0.8 ms at 1,000 models. So the write transaction that commits
generation 64, 128, 256, ... (a power of two, then every 65,536th) analyses the registry's
tables right after its commit, whichever process it runs in: a few milliseconds, about
log2(writes) times in a registry's life, never inside a transaction and never blocking
readers or writers. SQLite plans without such statistics (indexes chosen by rule).
"""

from __future__ import annotations

import logging

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

logger = logging.getLogger(__name__)

FIRST_ANALYZED_GENERATION = 64
STEADY_INTERVAL = 65_536


def analyze_due(generation: int) -> bool:
    """Whether committing ``generation`` refreshes the statistics (64, 128, 256, ... then every 65,536th)."""
    if generation < FIRST_ANALYZED_GENERATION:
        return False
    return generation & (generation - 1) == 0 or generation % STEADY_INTERVAL == 0


def refresh_statistics(engine: Engine) -> None:
    """``ANALYZE`` the registry's tables (on PostgreSQL; elsewhere nothing), in its own autocommit connection.

    Statistics only guide the planner: a failure (a user who does not own the tables, a
    lost connection) is logged and never raised, since the change that triggered it is committed.
    """
    if engine.dialect.name != "postgresql":
        return
    from psycopg import Error, sql

    from .models import Base

    tables = sql.SQL(", ").join(sql.Identifier(table.name) for table in Base.metadata.sorted_tables)
    try:
        with engine.connect() as connection:
            raw = connection.execution_options(isolation_level="AUTOCOMMIT").connection.dbapi_connection
            assert raw is not None
            raw.execute(sql.SQL("ANALYZE {}").format(tables))
    except (DBAPIError, Error) as exc:
        logger.warning("could not refresh the planner statistics of the registry's tables: %s", exc)
    else:
        logger.debug("refreshed the planner statistics of %d registry tables", len(Base.metadata.sorted_tables))

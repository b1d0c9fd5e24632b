"""PostgreSQL boundary of ``cfreg sql``: a reader role and a query function per registry.

A ``READ ONLY`` transaction alone does not stop ``COPY ... TO 'file'``,
``pg_read_file``, ``pg_ls_dir`` or ``pg_terminate_backend`` for a privileged user,
and ``SET LOCAL ROLE`` can be undone from inside a query
(``set_config('role', ...)``). So the query runs inside a ``SECURITY DEFINER``
function owned by a role that only has ``USAGE`` on the registry's schema and
``SELECT`` on its tables and views: PostgreSQL itself then refuses every other
privilege, and refuses any change of role while the function runs ("cannot set
parameter role within security-definer function"). The function opens the query
as a cursor, which admits exactly one row-returning statement (no ``COPY``,
``SET``, ``RESET``, ``DO``...), and stops after ``max_rows`` rows.

Several registries may share a cluster (one per database or schema), so the role
is named from a hash of the database and schema: ``cfreg_ro_<20 hex digits>``.
Creating it needs a superuser or a ``CREATEROLE`` user (``cfreg init``); without
it, ``cfreg sql`` refuses and says how to enable it.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import ReadOnlySqlUnavailableError

if TYPE_CHECKING:
    from .transactions import Database

logger = logging.getLogger(__name__)

__all__ = ["READER_FUNCTION", "ReaderSetup", "query_function", "reader_role_name", "setup_reader"]

ROLE_PREFIX = "cfreg_ro_"
READER_FUNCTION = "cfreg_readonly_query"
_SIGNATURE = "(text, bigint)"
ENABLE_HINT = "run `cfreg init` on this registry once as a PostgreSQL superuser or a user with CREATEROLE to create it"

# Runs with the reader role's privileges only. FOR ... IN EXECUTE opens a cursor, which
# PostgreSQL allows only for one statement that returns rows.
_FUNCTION_BODY = """
DECLARE
    r record;
    n bigint := 0;
BEGIN
    FOR r IN EXECUTE query LOOP
        RETURN NEXT r::text;
        n := n + 1;
        EXIT WHEN max_rows IS NOT NULL AND n >= max_rows;
    END LOOP;
END
"""


def reader_role_name(database: str, schema: str) -> str:
    """The reader role of the registry in ``schema`` of ``database`` (unique per cluster)."""
    digest = hashlib.sha256(f"{database}\x00{schema}".encode()).hexdigest()[:20]
    return f"{ROLE_PREFIX}{digest}"


@dataclass(frozen=True)
class ReaderSetup:
    """Outcome of :func:`setup_reader`: the role's name, and why it is not enabled (None when it is)."""

    role: str
    schema: str
    problem: str | None = None

    @property
    def enabled(self) -> bool:
        """True when ``cfreg sql`` can run on this registry."""
        return self.problem is None


def _where(cursor: Any) -> tuple[str, str]:
    database, schema = cursor.execute("SELECT current_database(), current_schema()").fetchone()
    if schema is None:
        raise ReadOnlySqlUnavailableError("no schema of the search_path exists, so the registry's schema is unknown")
    return str(database), str(schema)


def setup_reader(database: Database) -> ReaderSetup:
    """Create or refresh the registry's reader role, its grants and the query function.

    Idempotent; runs under the registry's migration lock, in one transaction. Returns a
    :class:`ReaderSetup` whose ``problem`` says why it could not be done (the connecting
    user may not create roles, or lacks a privilege); nothing is changed then.
    """
    import psycopg
    from psycopg import sql

    from .schema import migration_lock

    role = schema = "?"
    with migration_lock(database), database.engine.connect() as connection:
        raw: Any = connection.connection.driver_connection
        try:
            with raw.cursor() as cursor:
                name, schema = _where(cursor)
                role = reader_role_name(name, schema)
                superuser, createrole = cursor.execute(
                    "SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user"
                ).fetchone()
                exists = cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is not None
                if not exists:
                    if not (superuser or createrole):
                        return ReaderSetup(role, schema, "the connecting user may not create roles (needs superuser or CREATEROLE)")
                    cursor.execute(sql.SQL("CREATE ROLE {} NOLOGIN NOINHERIT").format(sql.Identifier(role)))
                    cursor.execute(sql.SQL("COMMENT ON ROLE {} IS {}").format(
                        sql.Identifier(role),
                        sql.Literal(f"cf-model-registry: read-only role of `cfreg sql` for schema {schema} of database {name}"),
                    ))
                if not superuser:  # ALTER ... OWNER TO needs membership of the new owner
                    cursor.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(role)))
                _grant_and_define(cursor, schema, role)
            raw.commit()
        except psycopg.Error as exc:
            raw.rollback()
            problem = (exc.diag.message_primary or str(exc)).strip()
            logger.warning("could not set up the read-only SQL role: %s", problem)
            return ReaderSetup(role, schema, problem)
        finally:
            if raw.info.transaction_status != 0:  # not idle: a returned early path left it open
                raw.rollback()
    logger.info("read-only SQL role %s ready for schema %s", role, schema)
    return ReaderSetup(role, schema)


def _grant_and_define(cursor: Any, schema: str, role: str) -> None:
    from psycopg import sql

    s, r = sql.Identifier(schema), sql.Identifier(role)
    function = sql.SQL("{}{}").format(sql.Identifier(schema, READER_FUNCTION), sql.SQL(_SIGNATURE))
    cursor.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(s, r))
    cursor.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(s, r))
    # Tables and views later migrations create (as this user) are readable too.
    cursor.execute(sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT SELECT ON TABLES TO {}").format(s, r))
    # The owner of a function must be allowed to create in its schema at the moment of the change.
    cursor.execute(sql.SQL("GRANT CREATE ON SCHEMA {} TO {}").format(s, r))
    cursor.execute(
        sql.SQL(
            "CREATE OR REPLACE FUNCTION {}(query text, max_rows bigint) RETURNS SETOF text "
            "LANGUAGE plpgsql SECURITY DEFINER AS {}"
        ).format(sql.Identifier(schema, READER_FUNCTION), sql.Literal(_FUNCTION_BODY))
    )
    cursor.execute(sql.SQL("ALTER FUNCTION {} OWNER TO {}").format(function, r))
    cursor.execute(sql.SQL("REVOKE CREATE ON SCHEMA {} FROM {}").format(s, r))
    cursor.execute(sql.SQL("REVOKE ALL ON FUNCTION {} FROM PUBLIC").format(function))
    cursor.execute(sql.SQL("GRANT EXECUTE ON FUNCTION {} TO CURRENT_USER").format(function))


_CHECK = """
SELECT o.rolname, p.prosecdef, has_function_privilege(p.oid, 'EXECUTE'),
       o.rolsuper OR o.rolcreaterole OR o.rolcreatedb OR o.rolbypassrls OR o.rolcanlogin OR o.rolreplication,
       EXISTS (SELECT 1 FROM pg_auth_members m WHERE m.member = o.oid)
FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
JOIN pg_roles o ON o.oid = p.proowner
WHERE n.nspname = %s AND p.proname = %s
"""


def query_function(cursor: Any) -> Any:
    """The registry's query function, as a composable identifier, after checking it is safe to use.

    Raises:
        ReadOnlySqlUnavailableError: no function (the role was never set up), it was
            altered (another owner, not SECURITY DEFINER, an owner with any power or
            membership), or the current user may not execute it. The one-line message
            says how to fix it.
    """
    from psycopg import sql

    name, schema = _where(cursor)
    role = reader_role_name(name, schema)
    rows = cursor.execute(_CHECK, (schema, READER_FUNCTION)).fetchall()
    prefix = "`cfreg sql` cannot run on this PostgreSQL registry: the database could not enforce read-only access"
    if not rows:
        raise ReadOnlySqlUnavailableError(f"{prefix}, because its reader role {role} and query function {schema}.{READER_FUNCTION} do not exist; {ENABLE_HINT}")
    if len(rows) > 1:
        raise ReadOnlySqlUnavailableError(f"{prefix}: {schema}.{READER_FUNCTION} is overloaded; drop the extra versions and {ENABLE_HINT}")
    owner, definer, executable, powerful, member = rows[0]
    if owner != role or not definer or powerful or member:
        raise ReadOnlySqlUnavailableError(
            f"{prefix}: {schema}.{READER_FUNCTION} was altered (owner {owner}, security definer {definer}); {ENABLE_HINT} again"
        )
    if not executable:
        raise ReadOnlySqlUnavailableError(
            f"{prefix} for this user: ask the registry's owner to run "
            f"GRANT EXECUTE ON FUNCTION {schema}.{READER_FUNCTION}{_SIGNATURE} TO <you>"
        )
    return sql.Identifier(schema, READER_FUNCTION)

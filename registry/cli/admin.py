"""Registry administration commands: create, migrate, statistics, audit trail and read-only SQL."""

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from ..errors import InvalidArgumentError
from ..pg_readonly import ENABLE_HINT
from ..timestamps import TIME_SPEC_HELP, format_timestamp, parse_time_spec
from .common import emit, mapping_table, records_table, state_of


def init(
    ctx: typer.Context,
    root: Annotated[Path | None, typer.Option(help="Base directory of relative artifact paths (default: the current directory).")] = None,
    artifact_store: Annotated[str | None, typer.Option("--artifact-store", help="Store registered files in this artifact store: s3://bucket/prefix, gs://..., file:///... or a folder (recorded in the database).")] = None,
) -> None:
    """Create the registry (database, schema, empty registry.json); harmless when it exists.

    Example: cfreg init --root /data/project --artifact-store s3://models/cf
    """
    state = state_of(ctx)
    registry = state.registry(create=True, root=root, artifact_store=artifact_store)
    data: dict[str, object] = {
        "registry_path": str(registry.registry_path),
        "database_url": registry.database_url,
        "root": str(registry.root),
        "artifact_store": registry.artifact_store,
        "created": registry.created,
    }
    reader = registry.setup_sql_reader()
    if reader is not None:
        data["sql_reader_role"] = reader.role if reader.enabled else None
        data["sql_reader_problem"] = reader.problem

    def render() -> None:
        state.out.print(
            f"{'Created' if data['created'] else 'Registry already exists:'} {data['registry_path']} "
            f"(database {data['database_url']}, root {data['root']})"
        )
        if data["artifact_store"]:
            state.out.print(f"Artifact store: {data['artifact_store']}")
        if reader is not None and reader.enabled:
            state.out.print(f"`cfreg sql` runs as the read-only role {reader.role}")
        elif reader is not None:
            state.err.print(f"`cfreg sql` is not enabled: {reader.problem}; {ENABLE_HINT}")

    emit(state, data, render)


def upgrade(ctx: typer.Context) -> None:
    """Migrate the database schema to the version this code needs.

    Example: cfreg --database-url postgresql+psycopg://me@db/registry upgrade
    """
    from ..database_urls import resolve_database_url, sqlite_file
    from ..engines import make_engine
    from ..errors import RegistryNotFoundError
    from ..schema import ensure_schema, schema_state
    from ..transactions import Database

    state = state_of(ctx)
    url = resolve_database_url(state.registry_path, state.database_url)
    db_file = sqlite_file(url)
    if db_file is not None and not db_file.exists():
        raise RegistryNotFoundError(f"Registry not found: {db_file} does not exist")
    # Not open_database(): it would migrate before the revisions could be read, and cache the engine.
    database = Database(url=url, engine=make_engine(url))
    try:
        before, current_before, _heads = schema_state(database)
        ensure_schema(database, create=False)
        _after, current_after, heads = schema_state(database)
    finally:
        database.dispose()
    data = {"database_url": database.describe(), "state_before": before, "revisions_before": sorted(current_before),
            "revisions_after": sorted(current_after), "head": sorted(heads), "upgraded": before != "current"}
    emit(state, data, lambda: state.out.print(
        f"Upgraded {data['database_url']} from {data['revisions_before']} to {data['revisions_after']}"
        if data["upgraded"] else f"{data['database_url']} is up to date ({data['revisions_after']})"
    ))


def info(ctx: typer.Context) -> None:
    """Where the registry lives: registry.json, database, root, artifact store, generation, current best.

    Example: cfreg info
    """
    state = state_of(ctx)
    registry = state.registry()
    stats = registry.get_registry_stats()
    generation, current = stats["generation"], stats["current_best"]
    data = {
        "registry_path": str(registry.registry_path),
        "database_url": registry.database_url,
        "root": str(registry.root),
        "artifact_store": registry.artifact_store,
        "generation": generation,
        "current_best": current,
    }
    emit(state, data, lambda: state.out.print(mapping_table(
        {**data, "artifact_store": data["artifact_store"] or "none (files on the local disk)"}, title="registry")))


def stats(ctx: typer.Context) -> None:
    """Registry statistics.

    Example: cfreg stats
    """
    state = state_of(ctx)
    result = state.registry().get_registry_stats()
    emit(state, result, lambda: state.out.print(mapping_table(result, title="registry")))


def audit(
    ctx: typer.Context,
    action: Annotated[str | None, typer.Option(help="Only this action (REGISTER, SELECT_BEST, ...).")] = None,
    model: Annotated[str | None, typer.Option(help="Only events about this model/target.")] = None,
    since: Annotated[str | None, typer.Option(help=f"From this time: {TIME_SPEC_HELP}.")] = None,
    until: Annotated[str | None, typer.Option(help="Up to this time (same forms as --since).")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the newest N events.")] = None,
) -> None:
    """The audit trail, oldest first; times are UTC (2026-12-02T09:40:52+00:00).

    --since and --until take ISO dates and times, today, yesterday (from midnight UTC),
    or an age: 30m, 2h, 7d, 2w.

    Example: cfreg audit --action SELECT_BEST --since 7d
    """
    state = state_of(ctx)
    start = _time_option(since, "--since")
    end = _time_option(until, "--until")
    events = state.registry().audit_events(action=action.upper() if action else None, target=model,
                                           since=start, until=end, limit=limit)
    for event in events:  # the registry's one timestamp format (second resolution, UTC offset)
        event["at"] = format_timestamp(datetime.fromisoformat(event["at"]))
    emit(state, events, lambda: state.out.print(
        records_table(events, ["at", "action", "target", "summary", "actor"], title="audit") if events else "No events."
    ))


def _time_option(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_time_spec(value)
    except InvalidArgumentError as exc:
        raise typer.BadParameter(str(exc), param_hint=name) from None


def sql(
    ctx: typer.Context,
    query: Annotated[str, typer.Argument(help="One SQL statement (read-only).")],
    limit: Annotated[int, typer.Option(min=1, help="At most this many rows.")] = 1000,
    timeout: Annotated[float, typer.Option(min=0.001, help="Cancel the query after this many seconds.")] = 30.0,
) -> None:
    """Run a read-only SQL query and print the rows.

    The database enforces it (SQLite: read-only file, query_only and an authorizer;
    PostgreSQL: a READ ONLY transaction, run as the registry's reader role that may only
    SELECT its tables and views, created by `cfreg init`); a write attempt fails with exit code 1.

    Example: cfreg sql "SELECT model_id, value FROM model_metrics WHERE name = 'ndcg@10' ORDER BY value DESC"
    """
    state = state_of(ctx)
    result = state.registry().run_sql(query, limit=limit, timeout_seconds=timeout)
    records = result.records()

    def render() -> None:
        state.out.print(records_table(records, result.columns))
        if result.truncated:
            state.err.print(f"(only the first {limit} rows; use --limit)")

    emit(state, records, render)

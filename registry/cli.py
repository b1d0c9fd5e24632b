"""``cfreg``: the registry's command line, a thin shell over the public API.

Each command parses its arguments, calls one or two registry methods and prints
the result: rich tables for people, ``--json`` for programs (the API result as
JSON; DataFrames as a list of records, NaN as null). Every
:class:`~registry.errors.RegistryError` becomes one ``Error: ...`` line on stderr
and exit code 1 (``--traceback`` shows the stack instead); usage errors exit 2.

This is the only module of the package that prints.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import date, datetime
from enum import Enum
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from .errors import InvalidArgumentError, ModelInUseError, ModelNotFoundError, RegistryError

if TYPE_CHECKING:
    from .bert_registry import BERTEmbeddingsRegistry
    from .cf_registry import ModelRegistry

DEFAULT_REGISTRY = "artifacts/cf/registry.json"
ENV_DATABASE_URL = "CFREG_DATABASE_URL"
PIPE_WIDTH = 200


# =========================================================================== plumbing


class _StderrHandler(logging.Handler):
    """Log records as plain lines on the current ``sys.stderr`` (looked up per record)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:  # a closed stream must never turn into a second error
            self.handleError(record)


@dataclass
class CliState:
    """Global options and lazily opened registries for one invocation."""

    registry_path: str = DEFAULT_REGISTRY
    database_url: str | None = None
    json_output: bool = False
    traceback: bool = False
    _registry: ModelRegistry | None = field(default=None, repr=False)
    _bert: BERTEmbeddingsRegistry | None = field(default=None, repr=False)

    @cached_property
    def out(self) -> Console:
        """stdout; wide when it is not a terminal so piped tables are not folded at 80 columns."""
        console = Console(highlight=False)
        if not console.is_terminal and "COLUMNS" not in os.environ:
            console = Console(highlight=False, width=PIPE_WIDTH)
        return console

    @cached_property
    def err(self) -> Console:
        """stderr: progress, spinners, notes."""
        return Console(stderr=True, highlight=False)

    def registry(self, *, create: bool = False, root: Path | None = None) -> ModelRegistry:
        """The registry named by ``--registry``/``--database-url`` (must exist unless ``create``)."""
        if self._registry is None:
            from .cf_registry import ModelRegistry

            self._registry = ModelRegistry(self.registry_path, auto_create=create, database_url=self.database_url, root=root)
        return self._registry

    def bert_registry(self) -> BERTEmbeddingsRegistry:
        """The BERT embeddings registry on the same database."""
        if self._bert is None:
            from .bert_registry import BERTEmbeddingsRegistry
            from .context import json_locations

            self._bert = BERTEmbeddingsRegistry(
                json_locations(self.registry_path)[1], auto_create=False, database_url=self.database_url
            )
        return self._bert


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


class RegistryGroup(TyperGroup):
    """Command group with the registry's error boundary (one line, exit 1; ``--traceback`` re-raises)."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except RegistryError as exc:
            if _state(ctx).traceback:
                raise
            _print_error(_one_line(exc))
        except Exception as exc:  # a bug, or an error the API should have typed
            if _state(ctx).traceback:
                raise
            _print_error(f"unexpected {type(exc).__name__}: {_one_line(exc)} (re-run with --traceback and report it)")
        raise typer.Exit(1)


def _state(ctx: typer.Context) -> CliState:
    root = ctx.find_root()
    return root.obj if isinstance(root.obj, CliState) else CliState()


def _print_error(message: str) -> None:
    Console(stderr=True, highlight=False, soft_wrap=True).print(Text(f"Error: {message}", style="red"))


def _to_jsonable(value: Any) -> Any:
    """API results as JSON types: DataFrames to records, NaN to null, paths and times to strings."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, (Path, Enum)):
        return str(value.value if isinstance(value, Enum) else value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if is_dataclass(value) and not isinstance(value, type):
        to_dict = getattr(value, "to_dict", None)
        return _to_jsonable(to_dict() if callable(to_dict) else asdict(value))
    if hasattr(value, "to_dict") and hasattr(value, "columns"):  # pandas DataFrame
        return [_to_jsonable(record) for record in value.to_dict(orient="records")]
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return _to_jsonable(value.tolist())
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def _emit(state: CliState, data: Any, render: Callable[[], None]) -> None:
    """Print ``data`` as JSON with ``--json``, else call ``render``."""
    if state.json_output:
        typer.echo(json.dumps(_to_jsonable(data), indent=2, ensure_ascii=False, allow_nan=False))
    else:
        render()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (dict, list)):
        return json.dumps(_to_jsonable(value), ensure_ascii=False)
    if hasattr(value, "item") and hasattr(value, "dtype"):
        return _cell(value.item())
    return str(value)


def _records_table(records: list[dict[str, Any]], columns: list[str] | None = None, title: str | None = None) -> Table:
    columns = columns or (list(records[0]) if records else [])
    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for record in records:
        table.add_row(*(_cell(record.get(column)) for column in columns))
    return table


def _frame_records(frame: Any) -> tuple[list[dict[str, Any]], list[str]]:
    return _to_jsonable(frame), [str(c) for c in frame.columns]


def _mapping_table(data: dict[str, Any], title: str | None = None) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in data.items():
        table.add_row(str(key), _cell(value))
    return table


@contextmanager
def _busy(state: CliState, message: str) -> Iterator[None]:
    """A spinner on stderr while slow work runs (shown only on a terminal)."""
    if state.json_output or not state.err.is_terminal:
        yield
        return
    with state.err.status(message):
        yield


def _parse_metric_pairs(pairs: list[str]) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name.strip():
            raise typer.BadParameter(f"{pair!r} is not name=value (e.g. ndcg@10=0.195)", param_hint="--metric")
        try:
            metrics[name.strip()] = float(raw)
        except ValueError:
            raise typer.BadParameter(f"{pair!r}: {raw!r} is not a number", param_hint="--metric") from None
    return metrics


def _read_json_object(path: Path, what: str) -> dict[str, Any]:
    from .artifacts import read_json_file

    data = read_json_file(path)
    if not isinstance(data, dict):
        raise InvalidArgumentError(f"{what} {str(path)!r} must hold a JSON object, got {type(data).__name__}")
    return data


def _split_list(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [part.strip() for part in text.split(",") if part.strip()]


# =========================================================================== app

app = typer.Typer(
    cls=RegistryGroup,
    name="cfreg",
    help="Model registry for collaborative-filtering models: register, select, promote, roll back, audit.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
ab_app = typer.Typer(help="A/B tests (canary rollouts) between two models.", no_args_is_help=True)
bert_app = typer.Typer(help="BERT item embeddings, linked to CF models.", no_args_is_help=True)
app.add_typer(ab_app, name="ab")
app.add_typer(bert_app, name="bert")

@app.callback()
def _global_options(
    ctx: typer.Context,
    registry: Annotated[str, typer.Option("--registry", help="registry.json location (the SQLite registry.db sits beside it); a .db path names the database itself.")] = DEFAULT_REGISTRY,
    database_url: Annotated[str | None, typer.Option("--database-url", envvar=ENV_DATABASE_URL, help="SQLAlchemy URL of the database, e.g. postgresql+psycopg://user@host/db.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Machine-readable output: the API result as JSON.")] = False,
    traceback: Annotated[bool, typer.Option("--traceback", help="Show the full stack on errors.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what the registry does (stderr).")] = False,
) -> None:
    """Model registry for collaborative-filtering models (ALS/BPR embeddings)."""
    ctx.obj = CliState(registry_path=registry, database_url=database_url or None, json_output=json_output, traceback=traceback)
    package_logger = logging.getLogger("registry")
    # Library warnings repeat what the one-line error already says; show them only with -v.
    # (The handler also stops Python's last-resort handler from printing them.)
    handler = _StderrHandler(level=logging.INFO if verbose else logging.ERROR)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    package_logger.addHandler(handler)
    if verbose and package_logger.getEffectiveLevel() > logging.INFO:
        package_logger.setLevel(logging.INFO)
    ctx.call_on_close(lambda: package_logger.removeHandler(handler))


# --------------------------------------------------------------------------- setup


@app.command(rich_help_panel="Setup")
def init(
    ctx: typer.Context,
    root: Annotated[Path | None, typer.Option(help="Base directory of relative artifact paths (default: the current directory).")] = None,
) -> None:
    """Create the registry (database, schema, empty registry.json); harmless when it exists.

    Example: cfreg init --root /data/project
    """
    state = _state(ctx)
    registry = state.registry(create=True, root=root)
    data = {
        "registry_path": str(registry.registry_path),
        "database_url": registry.database_url,
        "root": str(registry.root),
        "created": registry.context.created,
    }
    _emit(state, data, lambda: state.out.print(
        f"{'Created' if data['created'] else 'Registry already exists:'} {data['registry_path']} "
        f"(database {data['database_url']}, root {data['root']})"
    ))


@app.command(rich_help_panel="Setup")
def upgrade(ctx: typer.Context) -> None:
    """Migrate the database schema to the version this code needs.

    Example: cfreg --database-url postgresql+psycopg://me@db/registry upgrade
    """
    from .context import json_locations
    from .db import SQLITE_SUFFIXES, Database, ensure_schema, make_engine, resolve_database_url, schema_state, sqlite_file
    from .errors import RegistryNotFoundError

    state = _state(ctx)
    path = Path(state.registry_path)
    url = resolve_database_url(path if path.suffix.lower() in SQLITE_SUFFIXES else json_locations(path)[0], state.database_url)
    db_file = sqlite_file(url)
    if db_file is not None and not db_file.exists():
        raise RegistryNotFoundError(f"no registry database at {db_file}; create one with `cfreg init`")
    database = Database(url=url, engine=make_engine(url))
    try:
        before, current_before, _heads = schema_state(database)
        ensure_schema(database, create=False)
        _after, current_after, heads = schema_state(database)
    finally:
        database.dispose()
    data = {"database_url": database.describe(), "state_before": before, "revisions_before": sorted(current_before),
            "revisions_after": sorted(current_after), "head": sorted(heads), "upgraded": before != "current"}
    _emit(state, data, lambda: state.out.print(
        f"Upgraded {data['database_url']} from {data['revisions_before']} to {data['revisions_after']}"
        if data["upgraded"] else f"{data['database_url']} is up to date ({data['revisions_after']})"
    ))


# --------------------------------------------------------------------------- models


@app.command(rich_help_panel="Modify")
def register(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(help="The model's artifact folder ({type}_U.npy, _V.npy, _params.json, _metadata.json).")],
    model_type: Annotated[str | None, typer.Option("--type", "-t", help="Model type (als, bpr, bert_als); default: from the {type}_U.npy file.")] = None,
    version: Annotated[str | None, typer.Option(help="Version id; default: the folder name when valid, else v_YYYYMMDD_HHMMSS.")] = None,
    metrics_file: Annotated[Path | None, typer.Option("--metrics-file", exists=True, dir_okay=False, help="JSON object of metric name -> value.")] = None,
    metric: Annotated[list[str] | None, typer.Option("--metric", "-m", help="A metric as name=value (repeatable).")] = None,
    params_file: Annotated[Path | None, typer.Option("--params-file", exists=True, dir_okay=False, help="JSON object of hyperparameters (default: {type}_params.json).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing model with the same id.")] = False,
    data_version: Annotated[str | None, typer.Option(help="Hash of the training data.")] = None,
    git_commit: Annotated[str | None, typer.Option(help="Code commit (default: metadata, else detected).")] = None,
    auto_select: Annotated[bool, typer.Option(help="Afterwards, make the best model current if it beats the current best.")] = False,
    select_by: Annotated[str, typer.Option("--select-by", help="Metric for --auto-select.")] = "ndcg@10",
    min_gain: Annotated[float, typer.Option(help="With --auto-select: relative gain over the current best required (0.02 = 2%).")] = 0.0,
) -> None:
    """Register a trained model from its artifact folder.

    Metrics come from --metrics-file/--metric, else {type}_metrics.json, else the
    "metrics" key of {type}_metadata.json. Training info, data_version, git_commit
    and baseline_comparison come from the metadata when present.

    Example: cfreg register artifacts/cf/als/v2_20250116_141500 --auto-select
    """
    from . import maintenance

    state = _state(ctx)
    if metrics_file is not None and metric:
        raise typer.BadParameter("give --metrics-file or --metric, not both", param_hint="--metric")
    metrics: dict[str, Any] | None = None
    if metrics_file is not None:
        metrics = maintenance.metrics_from_document(_read_json_object(metrics_file, "metrics file"))
    elif metric:
        metrics = _parse_metric_pairs(metric)
    hyperparameters = _read_json_object(params_file, "params file") if params_file is not None else None
    registry = state.registry(create=True)
    with _busy(state, "Registering (checksumming artifacts)..."):
        result = maintenance.update_registry_from_folder(
            registry, maintenance.stored_artifacts_path(registry.root, path), model_type=model_type, version=version,
            hyperparameters=hyperparameters, metrics=metrics, data_version=data_version, git_commit=git_commit,
            overwrite=overwrite, auto_select=auto_select, metric=select_by, min_gain=min_gain,
        )

    def render() -> None:
        if result.note:
            state.out.print(f"Note: {result.note}")
        else:
            state.out.print(f"Registered {result.model_id} ({result.path})")
        if result.auto_select:
            state.out.print(result.decision)

    _emit(state, result, render)


@app.command("select-best", rich_help_panel="Modify")
def select_best(
    ctx: typer.Context,
    metric: Annotated[str, typer.Option(help="Metric to rank by.")] = "ndcg@10",
    min_improvement: Annotated[float, typer.Option(help="Required improvement over each model's own baseline (0.1 = 10%).")] = 0.0,
    model_type: Annotated[str | None, typer.Option("--type", "-t", help="Only models of this type.")] = None,
    min_gain_over_current: Annotated[float | None, typer.Option(help="Replace the current best only when beaten by this relative gain.")] = None,
) -> None:
    """Make the active model with the highest metric the current best.

    Example: cfreg select-best --metric ndcg@10 --min-improvement 0.05
    """
    state = _state(ctx)
    result = state.registry().select_best_model(
        metric=metric, min_improvement=min_improvement, model_type=model_type, min_gain_over_current=min_gain_over_current
    )

    def render() -> None:
        if result is None:
            state.out.print(f"No change: no eligible active model with {metric} (that beats the current best)")
        else:
            state.out.print(f"Best model: {result['model_id']}, {metric}: {_cell(result['value'])}")

    _emit(state, result, render)


@app.command(rich_help_panel="Modify")
def promote(
    ctx: typer.Context,
    model_id: Annotated[str, typer.Argument(help="Model to make current.")],
    reason: Annotated[str | None, typer.Option(help="Why (kept in the selection history and audit).")] = None,
) -> None:
    """Make a model the current best by hand.

    Example: cfreg promote als_v2_20250116_141500 --reason "hotfix"
    """
    state = _state(ctx)
    result = state.registry().promote_model(model_id, reason=reason)
    _emit(state, result, lambda: state.out.print(f"Current best: {result['model_id']}"))


@app.command(rich_help_panel="Modify")
def rollback(
    ctx: typer.Context,
    to: Annotated[str | None, typer.Option(help="Model to go back to (default: the previous current best).")] = None,
    reason: Annotated[str | None, typer.Option(help="Why.")] = None,
) -> None:
    """Restore the previous current best (or the one given with --to).

    Example: cfreg rollback
    """
    state = _state(ctx)
    result = state.registry().rollback(to=to, reason=reason)
    _emit(state, result, lambda: state.out.print(f"Current best: {result['model_id']}"))


@app.command("list", rich_help_panel="Read")
def list_models(
    ctx: typer.Context,
    model_type: Annotated[str | None, typer.Option("--type", "-t", help="Only this model type.")] = None,
    status: Annotated[str | None, typer.Option(help="active, archived or failed.")] = None,
    sort_by: Annotated[str, typer.Option(help="A column or metric name.")] = "created_at",
    ascending: Annotated[bool, typer.Option(help="Sort ascending.")] = False,
) -> None:
    """List models with their metrics.

    Example: cfreg list --type als --sort-by ndcg@10
    """
    state = _state(ctx)
    frame = state.registry().list_models(model_type=model_type, status=status, sort_by=sort_by, ascending=ascending)
    records, columns = _frame_records(frame)
    _emit(state, records, lambda: state.out.print(
        _records_table(records, columns, title=f"{len(records)} model(s)") if records else "No models."
    ))


@app.command(rich_help_panel="Read")
def show(ctx: typer.Context, model_id: Annotated[str, typer.Argument(help="Model id.")]) -> None:
    """Show one model's registry entry (and its recorded files).

    Example: cfreg show als_v2_20250116_141500
    """
    state = _state(ctx)
    registry = state.registry()
    info = registry.get_model(model_id)
    if info is None:
        raise ModelNotFoundError(f"Model {model_id!r} not found in registry; run `cfreg list` to see registered ids")

    def render() -> None:
        state.out.print(_mapping_table({"model_id": model_id, **info}, title=model_id))
        files = registry.get_model_files(model_id)
        if files:
            state.out.print(_records_table(files, title="files"))

    _emit(state, info, render)


@app.command(rich_help_panel="Read")
def compare(
    ctx: typer.Context,
    model_ids: Annotated[list[str], typer.Argument(help="Models to compare.")],
    metrics: Annotated[str | None, typer.Option(help="Comma-separated metrics (default: recall@10,ndcg@10,coverage).")] = None,
) -> None:
    """Compare models side by side.

    Example: cfreg compare als_v1 als_v2 --metrics recall@10,ndcg@10
    """
    state = _state(ctx)
    frame = state.registry().compare_models(model_ids, metrics=_split_list(metrics))
    records, columns = _frame_records(frame)
    _emit(state, records, lambda: state.out.print(_records_table(records, columns)))


@app.command(rich_help_panel="Modify")
def archive(ctx: typer.Context, model_id: Annotated[str, typer.Argument(help="Model id.")]) -> None:
    """Archive a model (kept, no longer selectable). The current best cannot be archived.

    Example: cfreg archive als_v1_20250115_103000
    """
    state = _state(ctx)
    if not state.registry().archive_model(model_id):
        raise ModelInUseError(f"cannot archive {model_id!r}: it is the current best; promote or select another model first")
    _emit(state, True, lambda: state.out.print(f"Archived {model_id}"))


@app.command(rich_help_panel="Modify")
def delete(
    ctx: typer.Context,
    model_id: Annotated[str, typer.Argument(help="Model id.")],
    delete_files: Annotated[bool, typer.Option(help="Also delete the artifact folder (only inside the artifacts root).")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a model from the registry (prefer archive).

    Example: cfreg delete als_v1_20250115_103000 --delete-files --yes
    """
    state = _state(ctx)
    registry = state.registry()
    if not yes:
        typer.confirm(f"Delete {model_id}{' and its files' if delete_files else ''}?", abort=True, err=True)
    result = registry.delete_model(model_id, delete_files=delete_files)
    _emit(state, result, lambda: state.out.print(f"Deleted {model_id}{' and its files' if delete_files else ''}"))


@app.command("set-status", rich_help_panel="Modify")
def set_status(
    ctx: typer.Context,
    model_id: Annotated[str, typer.Argument(help="Model id.")],
    status: Annotated[str, typer.Argument(help="active, archived or failed.")],
) -> None:
    """Set a model's status.

    Example: cfreg set-status bpr_v1_20250115_120000 failed
    """
    state = _state(ctx)
    result = state.registry().update_model_status(model_id, status)
    _emit(state, result, lambda: state.out.print(f"{model_id}: {status}"))


@app.command(rich_help_panel="Read")
def stats(ctx: typer.Context) -> None:
    """Registry statistics.

    Example: cfreg stats
    """
    state = _state(ctx)
    result = state.registry().get_registry_stats()
    _emit(state, result, lambda: state.out.print(_mapping_table(result, title="registry")))


@app.command(rich_help_panel="Read")
def history(
    ctx: typer.Context,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the newest N changes.")] = None,
) -> None:
    """History of current-best changes, newest first.

    Example: cfreg history --limit 10
    """
    state = _state(ctx)
    result = state.registry().get_selection_history(limit=limit)
    _emit(state, result, lambda: state.out.print(_records_table(result, title="selections") if result else "No selections yet."))


@app.command(rich_help_panel="Read")
def audit(
    ctx: typer.Context,
    action: Annotated[str | None, typer.Option(help="Only this action (REGISTER, SELECT_BEST, ...).")] = None,
    model: Annotated[str | None, typer.Option(help="Only events about this model/target.")] = None,
    since: Annotated[datetime | None, typer.Option(help="From this UTC time (YYYY-MM-DD[THH:MM:SS]).")] = None,
    until: Annotated[datetime | None, typer.Option(help="Up to this UTC time.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the newest N events.")] = None,
) -> None:
    """The audit trail, oldest first.

    Example: cfreg audit --action SELECT_BEST --since 2025-01-16
    """
    from .audit import query_events

    state = _state(ctx)
    events = state.registry().context.read(
        lambda session: query_events(session, action=action.upper() if action else None, target=model,
                                     since=since, until=until, limit=limit)
    )
    _emit(state, events, lambda: state.out.print(
        _records_table(events, ["at", "action", "target", "summary", "actor"], title="audit") if events else "No events."
    ))


# --------------------------------------------------------------------------- files


@app.command("export-json", rich_help_panel="Files")
def export_json(
    ctx: typer.Context,
    stdout: Annotated[bool, typer.Option("--stdout", help="Print the registry.json document instead of writing it.")] = False,
) -> None:
    """Write registry.json (and bert_registry.json) from the database now.

    Example: cfreg export-json
    """
    state = _state(ctx)
    registry = state.registry()
    if stdout:
        document = registry.registry
        typer.echo(json.dumps(_to_jsonable(document), indent=2, ensure_ascii=False))
        return
    path = registry.export_registry_json()
    _emit(state, {"registry_json": str(path)}, lambda: state.out.print(f"Wrote {path}"))


@app.command("import-json", rich_help_panel="Files")
def import_json(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A registry.json written by the original JSON registry.")],
    bert: Annotated[Path | None, typer.Option("--bert", exists=True, dir_okay=False, help="Its bert_registry.json.")] = None,
    replace: Annotated[bool, typer.Option(help="Replace what the registry holds (default: add to it).")] = False,
) -> None:
    """Import a legacy registry.json (and bert_registry.json).

    Example: cfreg import-json old/registry.json --bert old/bert_registry.json
    """
    from .legacy import import_registry_json

    state = _state(ctx)
    registry = state.registry(create=True)
    with _busy(state, f"Importing {path}..."):
        result = import_registry_json(registry.context, path, bert, replace=replace)

    def render() -> None:
        state.out.print(
            f"Imported {result['models']} model(s), {result['embeddings']} embeddings version(s), "
            f"{result['ab_tests']} A/B test(s); current best: {result['current_best']}"
        )
        for warning in result.get("warnings", []):
            state.err.print(Text(f"warning: {warning}"), soft_wrap=True)

    _emit(state, result, render)


class BackupFormat(str, Enum):
    json = "json"
    sqlite = "sqlite"


@app.command(rich_help_panel="Files")
def backup(
    ctx: typer.Context,
    backup_dir: Annotated[Path | None, typer.Option(help="Where to write the backup (default: beside the registry).")] = None,
    backup_format: Annotated[BackupFormat, typer.Option("--format", help="json: full snapshot in the registry.json schema (any backend); sqlite: online copy of registry.db.")] = BackupFormat.json,
) -> None:
    """Write a consistent full snapshot of the registry (audit and selection history included).

    Example: cfreg backup --backup-dir backups/
    """
    from .db import sqlite_file
    from .utils import backup_registry

    state = _state(ctx)
    registry = state.registry()
    source: Path = registry.registry_path
    if backup_format is BackupFormat.sqlite:
        db_file = sqlite_file(registry.context.database.url)
        if db_file is None:
            raise InvalidArgumentError(
                f"--format sqlite needs a SQLite registry; {registry.database_url} is not one (use --format json)"
            )
        source = db_file
    with _busy(state, "Backing up..."):
        path = backup_registry(source, backup_dir=backup_dir, database_url=state.database_url)
    _emit(state, {"backup_path": str(path)}, lambda: state.out.print(f"Backup written: {path}"))


@app.command(rich_help_panel="Files")
def restore(
    ctx: typer.Context,
    backup_path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A backup (JSON or .db) or a registry.json.")],
    no_current_backup: Annotated[bool, typer.Option("--no-current-backup", help="Do not back up the current state first.")] = False,
) -> None:
    """Replace the registry's content with a backup, in one transaction.

    The current state is backed up first unless --no-current-backup.

    Example: cfreg restore artifacts/cf/registry_backup_20250116_120000_123456.json
    """
    from .utils import restore_registry

    state = _state(ctx)
    with _busy(state, f"Restoring {backup_path}..."):
        result = restore_registry(backup_path, state.registry_path, create_current_backup=not no_current_backup,
                                  database_url=state.database_url)
    _emit(state, result, lambda: state.out.print(f"Restored {backup_path}"))


@app.command("list-backups", rich_help_panel="Files")
def list_backups_command(
    ctx: typer.Context,
    backup_dir: Annotated[Path | None, typer.Option(help="Where backups are (default: beside the registry).")] = None,
) -> None:
    """List backups, newest first.

    Example: cfreg list-backups
    """
    from .utils import list_backups

    state = _state(ctx)
    backups = list_backups(state.registry_path, backup_dir=backup_dir)
    _emit(state, backups, lambda: state.out.print(_records_table(backups, title="backups") if backups else "No backups."))


@app.command(rich_help_panel="Modify")
def cleanup(
    ctx: typer.Context,
    keep_last: Annotated[int, typer.Option("--keep-last", min=0, help="Models kept per type (newest by created_at).")],
    archive_old: Annotated[bool, typer.Option("--archive-old", help="Archive the others instead of deleting them.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would happen; change nothing.")] = False,
    delete_files: Annotated[bool, typer.Option("--delete-files", help="When deleting, also remove the folders (inside the artifacts root only).")] = False,
) -> None:
    """Keep the N newest models per type; archive or delete the rest.

    The current best and models in a running A/B test are never touched.

    Example: cfreg cleanup --keep-last 5 --archive-old --dry-run
    """
    from rich.progress import Progress

    from . import maintenance

    state = _state(ctx)
    registry = state.registry()
    if dry_run or state.json_output or not state.err.is_terminal:
        report = maintenance.cleanup_old_models(registry, keep_last, archive_old=archive_old, dry_run=dry_run,
                                                delete_files=delete_files)
    else:
        with Progress(console=state.err, transient=True) as progress:
            task = progress.add_task("Cleaning up", total=None)
            report = maintenance.cleanup_old_models(
                registry, keep_last, archive_old=archive_old, delete_files=delete_files,
                on_item=lambda item, done, total: progress.update(task, completed=done, total=total),
            )

    def render() -> None:
        changed = [i for i in report.items if i.action != "keep"]
        verb = "Would" if dry_run else "Did"
        if changed:
            state.out.print(_records_table([_to_jsonable(i) for i in changed],
                                           ["model_id", "model_type", "created_at", "action", "reason"],
                                           title=f"{verb}: cleanup (keep {keep_last} per type)"))
        state.out.print(
            f"{'Dry run: ' if dry_run else ''}kept {len(report.kept)}, "
            f"{'would archive' if dry_run and archive_old else 'archived'} "
            f"{len(report.ids('archive')) if dry_run else len(report.archived)}, "
            f"{'would delete' if dry_run and not archive_old else 'deleted'} "
            f"{len(report.ids('delete')) if dry_run else len(report.deleted)}, skipped {len(report.skipped)}"
        )

    _emit(state, report, render)


@app.command(rich_help_panel="Read")
def sql(
    ctx: typer.Context,
    query: Annotated[str, typer.Argument(help="One SQL statement (read-only).")],
    limit: Annotated[int, typer.Option(min=1, help="At most this many rows.")] = 1000,
) -> None:
    """Run a read-only SQL query and print the rows.

    The connection cannot write (SQLite: read-only file and query_only; PostgreSQL: a
    READ ONLY transaction); a write attempt fails with exit code 1.

    Example: cfreg sql "SELECT model_id, value FROM model_metrics WHERE name = 'ndcg@10' ORDER BY value DESC"
    """
    from .maintenance import run_readonly_query

    state = _state(ctx)
    result = run_readonly_query(state.registry().context, query, limit=limit)
    records = result.records()

    def render() -> None:
        state.out.print(_records_table(records, result.columns))
        if result.truncated:
            state.err.print(f"(only the first {limit} rows; use --limit)")

    _emit(state, records, render)


# --------------------------------------------------------------------------- A/B tests


class Arm(str, Enum):
    control = "control"
    treatment = "treatment"


def _render_test(state: CliState, test: dict[str, Any] | None) -> None:
    state.out.print(_mapping_table(test, title="A/B test") if test else "No running A/B test.")


@ab_app.command("start")
def ab_start(
    ctx: typer.Context,
    control_model: Annotated[str, typer.Argument(help="Model serving most users.")],
    treatment_model: Annotated[str, typer.Argument(help="Model under test.")],
    split: Annotated[float, typer.Option("--split", min=0.0, max=1.0, help="Share of users routed to the treatment (0.1 = 10%).")] = 0.1,
    test_id: Annotated[str | None, typer.Option(help="Test id (default: ab_<treatment>_<date>).")] = None,
) -> None:
    """Start an A/B test.

    Example: cfreg ab start als_v1 als_v2 --split 0.1
    """
    state = _state(ctx)
    result = state.registry().start_ab_test(control_model, treatment_model, split, test_id=test_id)
    _emit(state, result, lambda: state.out.print(
        f"Started A/B test {result['test_id']}: {result['treatment_model']} gets {result['traffic_split']:.0%} "
        f"of users, {result['control_model']} the rest"
    ))


@ab_app.command("status")
def ab_status(
    ctx: typer.Context,
    test_id: Annotated[str | None, typer.Argument(help="Test id (default: the running test).")] = None,
    all_tests: Annotated[bool, typer.Option("--all", help="List every test.")] = False,
) -> None:
    """Show the running A/B test (or one test, or all).

    Example: cfreg ab status --all
    """
    state = _state(ctx)
    registry = state.registry()
    if all_tests:
        tests = registry.list_ab_tests()
        _emit(state, tests, lambda: state.out.print(_records_table(tests, title="A/B tests") if tests else "No A/B tests."))
        return
    test = registry.get_ab_test(test_id)
    _emit(state, test, lambda: _render_test(state, test))


@ab_app.command("split")
def ab_split(
    ctx: typer.Context,
    traffic_split: Annotated[float, typer.Argument(min=0.0, max=1.0, help="New treatment share.")],
    test_id: Annotated[str | None, typer.Option(help="Test id (default: the running test).")] = None,
) -> None:
    """Change a running test's traffic split.

    Example: cfreg ab split 0.5
    """
    state = _state(ctx)
    result = state.registry().update_traffic_split(test_id, traffic_split)
    _emit(state, result, lambda: state.out.print(f"{result['test_id']}: traffic split {result['traffic_split']:g}"))


@ab_app.command("stop")
def ab_stop(
    ctx: typer.Context,
    test_id: Annotated[str | None, typer.Argument(help="Test id (default: the running test).")] = None,
    promote: Annotated[Arm | None, typer.Option(help="Make this arm's model the current best.")] = None,
) -> None:
    """Stop a test (everyone goes to control); optionally promote an arm.

    Example: cfreg ab stop --promote treatment
    """
    state = _state(ctx)
    result = state.registry().stop_ab_test(test_id, promote=promote.value if promote else None)
    _emit(state, result, lambda: state.out.print(
        f"Stopped {result['test_id']}" + (f", promoted the {promote.value}" if promote else "")
    ))


@ab_app.command("rollback")
def ab_rollback(
    ctx: typer.Context,
    test_id: Annotated[str | None, typer.Argument(help="Test id (default: the running test).")] = None,
) -> None:
    """Roll a test back: split to 0, stop, current best back to the control.

    Example: cfreg ab rollback ab_als_v2_2025_01_16
    """
    state = _state(ctx)
    result = state.registry().rollback_ab_test(test_id)
    _emit(state, result, lambda: state.out.print(
        f"Rolled back {result['test_id']}: current best is {result['control_model']}"
    ))


# --------------------------------------------------------------------------- BERT embeddings


@bert_app.command("register")
def bert_register(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(help="Folder holding product_embeddings.npy or item_embeddings.npy.")],
    model_name: Annotated[str, typer.Option(help="The encoder, e.g. vinai/phobert-base.")],
    num_items: Annotated[int | None, typer.Option(min=1, help="Rows of the matrix (default: from the .npy header).")] = None,
    dim: Annotated[int | None, typer.Option("--dim", min=1, help="Embedding dimension (default: from the .npy header).")] = None,
    version: Annotated[str | None, typer.Option(help="Version id (default: bert_YYYYMMDD_HHMMSS).")] = None,
    config_file: Annotated[Path | None, typer.Option(exists=True, dir_okay=False, help="JSON object: generation config.")] = None,
    text_fields: Annotated[str | None, typer.Option(help="Comma-separated text fields used.")] = None,
    data_version: Annotated[str | None, typer.Option(help="Hash of the input data.")] = None,
    git_commit: Annotated[str | None, typer.Option(help="Code commit.")] = None,
) -> None:
    """Register a version of BERT item embeddings.

    Example: cfreg bert register data/processed/content_based_embeddings --model-name vinai/phobert-base
    """
    from . import maintenance

    state = _state(ctx)
    bert = state.bert_registry()
    stored = maintenance.stored_artifacts_path(bert.root, path)
    if num_items is None or dim is None:
        from .bert_registry import inspect_embeddings_folder
        from .errors import InvalidArtifactsError

        folder = bert.context.resolve(stored)
        _file, shape, problems = inspect_embeddings_folder(folder)
        if problems or shape is None:
            raise InvalidArtifactsError(f"Invalid embeddings in {str(folder)!r}: " + "; ".join(problems))
        num_items = shape[0] if num_items is None else num_items
        dim = shape[1] if dim is None else dim
    config = _read_json_object(config_file, "config file") if config_file is not None else None
    with _busy(state, "Registering embeddings (checksumming)..."):
        result = bert.register_embeddings(
            embedding_path=stored, model_name=model_name, num_items=num_items, embedding_dim=dim,
            generation_config=config, text_fields_used=_split_list(text_fields), data_version=data_version,
            git_commit=git_commit, version=version,
        )
    _emit(state, result, lambda: state.out.print(f"Registered embeddings {result}"))


@bert_app.command("list")
def bert_list(ctx: typer.Context) -> None:
    """List embeddings versions, newest first.

    Example: cfreg bert list
    """
    state = _state(ctx)
    result = state.bert_registry().list_embeddings(include_linked_models=True)
    _emit(state, result, lambda: state.out.print(_records_table(result, title="embeddings") if result else "No embeddings."))


@bert_app.command("show")
def bert_show(ctx: typer.Context, version: Annotated[str, typer.Argument(help="Embeddings version.")]) -> None:
    """Show one embeddings version.

    Example: cfreg bert show bert_20250115_103000
    """
    state = _state(ctx)
    result = state.bert_registry().get_embeddings(version)
    if result is None:
        raise ModelNotFoundError(f"embeddings version {version!r} not found; run `cfreg bert list`")
    _emit(state, result, lambda: state.out.print(_mapping_table(result, title=version)))


@bert_app.command("set-current")
def bert_set_current(ctx: typer.Context, version: Annotated[str, typer.Argument(help="Embeddings version.")]) -> None:
    """Make an embeddings version the current best.

    Example: cfreg bert set-current bert_20250115_103000
    """
    state = _state(ctx)
    result = state.bert_registry().set_current_best(version)
    _emit(state, result, lambda: state.out.print(f"Current embeddings: {version}"))


@bert_app.command("link")
def bert_link(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(help="Embeddings version.")],
    model_id: Annotated[str, typer.Argument(help="CF model id.")],
) -> None:
    """Link embeddings to a CF model.

    Example: cfreg bert link bert_20250115_103000 als_v2_20250116_141500
    """
    state = _state(ctx)
    result = state.bert_registry().link_to_model(version, model_id)
    _emit(state, result, lambda: state.out.print(f"Linked {version} -> {model_id}"))


@bert_app.command("unlink")
def bert_unlink(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(help="Embeddings version.")],
    model_id: Annotated[str, typer.Argument(help="CF model id.")],
) -> None:
    """Remove a link between embeddings and a CF model.

    Example: cfreg bert unlink bert_20250115_103000 als_v2_20250116_141500
    """
    state = _state(ctx)
    result = state.bert_registry().unlink_model(version, model_id)
    _emit(state, result, lambda: state.out.print(f"Unlinked {version} -/- {model_id}"))


@bert_app.command("delete")
def bert_delete(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(help="Embeddings version.")],
    delete_files: Annotated[bool, typer.Option(help="Also delete the folder (inside the artifacts root only).")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete an embeddings version (not the current one, not a linked one).

    Example: cfreg bert delete bert_20250115_103000 --yes
    """
    state = _state(ctx)
    bert = state.bert_registry()
    if not yes:
        typer.confirm(f"Delete embeddings {version}{' and its files' if delete_files else ''}?", abort=True, err=True)
    result = bert.delete_embeddings(version, delete_files=delete_files)
    _emit(state, result, lambda: state.out.print(f"Deleted embeddings {version}"))


# --------------------------------------------------------------------------- demo and serving


@app.command(rich_help_panel="Run")
def demo(
    ctx: typer.Context,
    workdir: Annotated[Path, typer.Option(help="Base folder: data, artifacts and the registry (<workdir>/artifacts/cf/registry.json) go under it.")] = Path("."),
    quick: Annotated[bool, typer.Option(help="A small data set and grid (a few seconds).")] = False,
) -> None:
    """Train ALS/BPR on synthetic data, register, select the best, start an A/B test, recommend.

    The default workdir is the current directory, so `cfreg list` works right after.

    Example: cfreg demo --workdir /tmp/cfreg-demo
    """
    from .demo import render_demo_result, run_demo

    state = _state(ctx)
    result = run_demo(workdir, quick=quick, show_progress=not state.json_output and state.err.is_terminal,
                      database_url=state.database_url, console=state.err)
    _emit(state, result, lambda: render_demo_result(result, state.out))


@app.command(rich_help_panel="Run")
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    reload_interval: Annotated[float, typer.Option(min=0.0, help="Seconds between hot-reload checks (0 = off).")] = 5.0,
) -> None:
    """Serve recommendations over HTTP with hot-reload (needs the `serve` extra).

    Example: cfreg serve --port 8000 --reload-interval 5
    """
    state = _state(ctx)
    try:
        from .serving import serve as run_server
    except ImportError as exc:
        raise RegistryError(f"serving needs the 'serve' extra: pip install 'cf-model-registry[serve]' ({exc})") from exc
    state.registry()  # fail fast, with one line, when the registry does not exist
    run_server(state.registry_path, host, port, reload_interval or None, state.database_url)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``cfreg`` console script and ``python -m registry``."""
    app(args=argv, prog_name="cfreg")


if __name__ == "__main__":  # pragma: no cover
    main()

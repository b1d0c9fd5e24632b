"""What every ``cfreg`` command shares: global options and state, the error boundary and output.

Output goes through :func:`emit`: the API result as JSON with ``--json``, else a
human rendering (rich tables from :func:`records_table` / :func:`mapping_table`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shlex
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

from ..defaults import DEFAULT_REGISTRY_PATH, ENV_DATABASE_URL
from ..errors import InvalidArgumentError, RegistryError, RegistryNotFoundError
from .plain_table import print_table

if TYPE_CHECKING:
    from ..bert_registry import BERTEmbeddingsRegistry
    from ..cf_registry import ModelRegistry

# From registry.defaults, which imports nothing: `cfreg --help` stays free of SQLAlchemy.
DEFAULT_REGISTRY = DEFAULT_REGISTRY_PATH
PIPE_WIDTH = 200


# --------------------------------------------------------------------------- state


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

    @property
    def interactive(self) -> bool:
        """Whether progress may be drawn: no ``--json`` and stderr is a terminal."""
        return not self.json_output and self.err.is_terminal

    def registry(self, *, create: bool = False, root: Path | None = None, artifact_store: str | None = None) -> ModelRegistry:
        """The registry named by ``--registry``/``--database-url`` (must exist unless ``create``)."""
        if self._registry is None:
            from ..cf_registry import ModelRegistry

            self._registry = ModelRegistry(self.registry_path, auto_create=create, database_url=self.database_url, root=root,
                                           artifact_store=artifact_store)
        return self._registry

    def bert_registry(self) -> BERTEmbeddingsRegistry:
        """The BERT embeddings registry on the same database."""
        if self._bert is None:
            from ..bert_registry import BERTEmbeddingsRegistry

            self._bert = BERTEmbeddingsRegistry(self.registry_path, auto_create=False, database_url=self.database_url)
        return self._bert


def global_options(
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


def state_of(ctx: typer.Context) -> CliState:
    """The :class:`CliState` that :func:`global_options` stored on the root context."""
    root = ctx.find_root()
    return root.obj if isinstance(root.obj, CliState) else CliState()


# --------------------------------------------------------------------------- error boundary


GLOBAL_FLAGS = ("--json", "--traceback", "--verbose", "-v")
GLOBAL_VALUE_OPTIONS = ("--registry", "--database-url")


def hoist_global_options(group: TyperGroup, ctx: typer.Context, args: list[str]) -> list[str]:
    """``args`` with the global options found after the subcommand moved before it.

    ``cfreg list --json`` becomes ``cfreg --json list``. Option values of the
    subcommand (``--reason --json``) and everything after ``--`` stay where they are.
    """
    index = 0
    while index < len(args) and args[index].startswith("-"):  # global options already in front
        index += 2 if args[index] in GLOBAL_VALUE_OPTIONS else 1
    if index >= len(args):
        return args
    command: Any = group
    moved: list[str] = []
    kept: list[str] = []
    value_options: set[str] = set()
    position = index
    while position < len(args):
        token = args[position]
        name = token.split("=", 1)[0]
        if token == "--":
            kept.extend(args[position:])
            break
        if token in GLOBAL_FLAGS:
            moved.append(token)
            position += 1
        elif name in GLOBAL_VALUE_OPTIONS:
            step = 1 if "=" in token else 2
            moved.extend(args[position:position + step])
            position += step
        elif name in value_options and "=" not in token:
            kept.extend(args[position:position + 2])
            position += 2
        else:
            if not token.startswith("-") and hasattr(command, "get_command"):  # a group: token names a subcommand
                command = command.get_command(ctx, token)
                value_options = _value_options(command)
            kept.append(token)
            position += 1
    return [*args[:index], *moved, *kept]


def _value_options(command: Any) -> set[str]:
    """The option names of ``command`` (a click command, or None) that take a value."""
    if command is None:
        return set()
    return {
        opt for param in command.params
        if param.param_type_name == "option" and not param.is_flag and not param.count
        for opt in param.opts
    }


class RegistryGroup(TyperGroup):
    """Command group with the registry's error boundary (one line, exit 1; ``--traceback`` re-raises).

    Global options work before and after the subcommand (:func:`hoist_global_options`).
    """

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:  # type: ignore[override]
        if ctx.parent is None:
            args = hoist_global_options(self, ctx, list(args))
        return super().parse_args(ctx, args)

    # typer hands its own Context subclass; the base class annotates the (vendored) click Context.
    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except BrokenPipeError:
            # The reader went away (`cfreg list | head`): stop quietly, as Unix tools do.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(141) from None
        except RegistryNotFoundError as exc:
            if state_of(ctx).traceback:
                raise
            _print_error(_one_line(not_found_message(exc)))
        except RegistryError as exc:
            if state_of(ctx).traceback:
                raise
            _print_error(_one_line(exc.cli_message()))
        except Exception as exc:  # a bug, or an error the API should have typed
            if state_of(ctx).traceback:
                raise
            _print_error(f"unexpected {type(exc).__name__}: {_one_line(exc)} (re-run with --traceback and report it)")
        raise typer.Exit(1)


def not_found_message(exc: RegistryNotFoundError) -> str:
    """A missing registry: the registries found under the working directory, or how to name one."""
    from ..discovery import DEFAULT_MAX_DEPTH, find_registries

    cwd = Path.cwd()
    found = find_registries(cwd)
    if found:
        listed = ", ".join(shlex.quote(str(path)) for path in found)
        example = shlex.quote(str(found[0]))
        return (f"{exc.message}. Registries under {cwd}: {listed}; "
                f"name one with --registry, e.g. `cfreg --registry {example} list`")
    return (f"{exc.message}. No registry under {cwd} (searched {DEFAULT_MAX_DEPTH} folders deep); "
            "name one with --registry PATH (or --database-url URL), or create one with `cfreg --registry PATH init`")


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _print_error(message: str) -> None:
    Console(stderr=True, highlight=False, soft_wrap=True).print(Text(f"Error: {message}", style="red"))


# --------------------------------------------------------------------------- output


def to_jsonable(value: Any) -> Any:
    """API results as JSON types: DataFrames to records, NaN to null, paths and times to strings."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (Path, Enum)):
        return str(value.value if isinstance(value, Enum) else value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if is_dataclass(value) and not isinstance(value, type):
        to_dict = getattr(value, "to_dict", None)
        return to_jsonable(to_dict() if callable(to_dict) else asdict(value))
    if hasattr(value, "to_dict") and hasattr(value, "columns"):  # pandas DataFrame
        return [to_jsonable(record) for record in value.to_dict(orient="records")]
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return to_jsonable(value.tolist())
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def echo_json(data: Any) -> None:
    """Print ``data`` on stdout as indented JSON (converted by :func:`to_jsonable`)."""
    typer.echo(json.dumps(to_jsonable(data), indent=2, ensure_ascii=False, allow_nan=False))


def emit(state: CliState, data: Any, render: Callable[[], None]) -> None:
    """Print ``data`` as JSON with ``--json``, else call ``render``."""
    if state.json_output:
        echo_json(data)
    else:
        render()


def cell(value: Any) -> str:
    """One value as table text: floats to 6 significant digits, NaN and None empty, bools yes/no."""
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (dict, list)):
        return json.dumps(to_jsonable(value), ensure_ascii=False) if value else ""
    if hasattr(value, "item") and hasattr(value, "dtype"):
        return cell(value.item())
    return str(value)


def records_table(records: list[dict[str, Any]], columns: list[str] | None = None, title: str | None = None) -> Table:
    """A table with one row per record (columns: ``columns``, else the first record's keys)."""
    columns = columns or (list(records[0]) if records else [])
    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for record in records:
        table.add_row(*(cell(record.get(column)) for column in columns))
    return table


def print_unfolded(console: Console, records: list[dict[str, Any]], columns: list[str], title: str | None = None) -> None:
    """Print ``records`` as a table without folding cells: wider than the console, it keeps its natural width.

    Ids and metric values cut into pieces cannot be copied or compared, so a table that
    does not fit is printed whole and the terminal wraps its lines (``--json`` gives the
    same records for scripts). The lines are those of :func:`records_table`, laid out in one
    pass (:mod:`registry.cli.plain_table`): 1,000 rows in milliseconds instead of a second.
    """
    print_table(console, columns, [[cell(record.get(column)) for column in columns] for record in records], title)


def frame_records(frame: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """A DataFrame as ``(JSON records, column names)``."""
    return to_jsonable(frame), [str(c) for c in frame.columns]


def mapping_table(data: dict[str, Any], title: str | None = None) -> Table:
    """A two-column field/value table."""
    table = Table(title=title, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in data.items():
        table.add_row(str(key), cell(value))
    return table


@contextmanager
def busy(state: CliState, message: str) -> Iterator[None]:
    """A spinner on stderr while slow work runs (shown only on a terminal)."""
    if not state.interactive:
        yield
        return
    with state.err.status(message):
        yield


# --------------------------------------------------------------------------- arguments

Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def confirm_delete(what: str, *, delete_files: bool, yes: bool) -> None:
    """Ask before deleting ``what`` (and its files) unless ``--yes``; "no" aborts."""
    if not yes:
        typer.confirm(f"Delete {what}{' and its files' if delete_files else ''}?", abort=True, err=True)


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """The JSON object in ``path`` (``what`` names the file in the error).

    Raises:
        InvalidArgumentError: the file holds another JSON type.
    """
    from ..artifacts import read_json_file

    data = read_json_file(path)
    if not isinstance(data, dict):
        raise InvalidArgumentError(f"{what} {str(path)!r} must hold a JSON object, got {type(data).__name__}")
    return data


def split_list(text: str | None) -> list[str] | None:
    """A comma-separated option as a list (blank parts dropped); None stays None."""
    if text is None:
        return None
    return [part.strip() for part in text.split(",") if part.strip()]

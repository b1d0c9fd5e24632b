"""``cfreg``: the registry's command line, a thin shell over the public API.

Each command parses its arguments, calls one or two registry methods and prints
the result: rich tables for people, ``--json`` for programs (the API result as
JSON; DataFrames as a list of records, NaN as null). Every
:class:`~registry.errors.RegistryError` becomes one ``Error: ...`` line on stderr
and exit code 1 (``--traceback`` shows the stack instead); usage errors exit 2.

This is the only part of the package that prints. ``common`` holds the global
options, the error boundary and the output helpers; each other module holds one
command group. The command modules do not use ``from __future__ import annotations``:
typer reads every command's parameters on every run, and string annotations made it
``eval`` ~1,100 of them (~65 ms of each ``cfreg`` call).
"""

from __future__ import annotations

import typer

from . import ab, admin, aliases, artifacts, bert, diff, files, models, run, tags, ui
from .common import RegistryGroup, global_options

__all__ = ["app", "main"]

app = typer.Typer(
    cls=RegistryGroup,
    name="cfreg",
    help="Model registry for collaborative-filtering models: register, select, promote, roll back, audit.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
app.callback()(global_options)

# Registered here rather than by decorators in each module: this order is the order of
# `cfreg --help` and of the reference in docs/cli.md, and it interleaves the modules.
app.command(rich_help_panel="Setup")(admin.init)
app.command(rich_help_panel="Setup")(admin.upgrade)
app.command(rich_help_panel="Setup")(admin.info)
app.command(rich_help_panel="Modify")(models.register)
app.command("select-best", rich_help_panel="Modify")(models.select_best)
app.command(rich_help_panel="Modify")(models.promote)
app.command(rich_help_panel="Modify")(models.rollback)
app.command("list", rich_help_panel="Read")(models.list_models)
app.command(rich_help_panel="Read")(models.show)
app.command(rich_help_panel="Read")(models.compare)
app.command(rich_help_panel="Read")(diff.diff)
app.command(rich_help_panel="Modify")(tags.describe)
app.command(rich_help_panel="Modify")(models.archive)
app.command(rich_help_panel="Modify")(models.delete)
app.command("set-status", rich_help_panel="Modify")(models.set_status)
app.command(rich_help_panel="Read")(admin.stats)
app.command(rich_help_panel="Read")(models.history)
app.command(rich_help_panel="Read")(admin.audit)
app.command("export-json", rich_help_panel="Files")(files.export_json)
app.command("import-json", rich_help_panel="Files")(files.import_json)
app.command(rich_help_panel="Files")(files.backup)
app.command(rich_help_panel="Files")(files.restore)
app.command("list-backups", rich_help_panel="Files")(files.list_backups)
app.command(rich_help_panel="Modify")(files.cleanup)
app.command(rich_help_panel="Read")(admin.sql)
app.command(rich_help_panel="Run")(run.demo)
app.command(rich_help_panel="Run")(run.serve)
app.command(rich_help_panel="Run")(ui.ui)
app.add_typer(ab.app, name="ab")
app.add_typer(bert.app, name="bert")
app.add_typer(tags.app, name="tag")
app.add_typer(aliases.app, name="alias")
app.add_typer(artifacts.app, name="artifacts")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``cfreg`` console script and ``python -m registry``."""
    app(args=argv, prog_name="cfreg")

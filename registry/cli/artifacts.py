"""``cfreg artifacts``: check recorded files against their bytes, and move local models into the artifact store."""

from typing import Annotated

import typer

from ..errors import InvalidArgumentError
from .common import emit, records_table, state_of

app = typer.Typer(help="Artifact files: verify them (local or in the store), push local models into the store.",
                  no_args_is_help=True)


@app.command("verify")
def verify(
    ctx: typer.Context,
    model_id: Annotated[str | None, typer.Argument(help="The model to check.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Check every model and embeddings version.")] = False,
) -> None:
    """Check that every recorded file exists with its size and sha256; exit code 1 when one does not.

    Example: cfreg artifacts verify --all
    """
    if (model_id is None) == (not all_):
        raise InvalidArgumentError("give a MODEL_ID or --all (not both)")
    state = state_of(ctx)
    report = state.registry().verify_artifacts(model_id)

    def render() -> None:
        if report["problems"]:
            state.out.print(records_table(report["problems"], ["kind", "id", "file_name", "problem", "location"],
                                          title="files that do not match the registry"))
        state.out.print(f"{report['checked']} files checked, {len(report['problems'])} problems")

    emit(state, report, render)
    if report["problems"]:
        raise typer.Exit(1)


@app.command("push")
def push(ctx: typer.Context, model_id: Annotated[str, typer.Argument(help="The local model to move into the store.")]) -> None:
    """Upload a local model's files into the registry's artifact store and record their URIs (local files stay).

    Example: cfreg artifacts push als_v2
    """
    state = state_of(ctx)
    result = state.registry().push_artifacts(model_id)
    emit(state, result, lambda: state.out.print(
        f"{model_id}: {result['uploaded']} of {result['files']} files uploaded; path {result['path']}"))

"""``cfreg alias``: named pointers at models (``champion_als``, ``challenger``) with history."""

from typing import Annotated, Any

import typer

from .common import emit, mapping_table, records_table, state_of

app = typer.Typer(help="Named aliases pointing at models, with compare-and-set and history.", no_args_is_help=True)

Name = Annotated[str, typer.Argument(help="Alias name (current_best is the current best).")]
Expected = Annotated[str | None, typer.Option(
    "--expected", help="Compare-and-set: only if the alias still points at this model id ('none': must not exist).",
)]
Reason = Annotated[str | None, typer.Option(help="Why; kept in the alias history and the audit trail.")]


def _expected(value: str | None) -> Any:
    from ..aliases import UNSET

    if value is None:
        return UNSET
    return None if value.lower() == "none" else value


@app.command("set")
def set_alias(ctx: typer.Context, name: Name, model_id: Annotated[str, typer.Argument(help="Model the alias should point at.")],
              expected: Expected = None, reason: Reason = None) -> None:
    """Point an alias at a model.

    Example: cfreg alias set champion_als als_v2 --expected als_v1 --reason "better ndcg"
    """
    state = state_of(ctx)
    result = state.registry().set_alias(name, model_id, expected=_expected(expected), reason=reason)
    emit(state, result, lambda: state.out.print(
        f"{name} -> {model_id} ({'changed' if result['changed'] else 'unchanged'}; was {result['previous_model_id'] or 'unset'})"
    ))


@app.command("get")
def get_alias(ctx: typer.Context, name: Name) -> None:
    """Show the model an alias points at (exit code 1 when unset).

    Example: cfreg alias get champion_als
    """
    state = state_of(ctx)
    found = state.registry().get_alias(name)
    if found is None:
        from ..errors import AliasNotFoundError

        raise AliasNotFoundError(f"Alias {name!r} is not set; `cfreg alias list` shows the aliases")
    emit(state, found, lambda: state.out.print(mapping_table(found, title=f"Alias {name}")))


@app.command("list")
def list_aliases(ctx: typer.Context) -> None:
    """List every alias and its target.

    Example: cfreg alias list
    """
    state = state_of(ctx)
    rows = state.registry().list_aliases()
    emit(state, rows, lambda: state.out.print(records_table(rows, title="Aliases") if rows else "No aliases."))


@app.command("history")
def alias_history(ctx: typer.Context, name: Name,
                  limit: Annotated[int | None, typer.Option(min=1, help="Show at most this many moves.")] = None) -> None:
    """Show the moves of an alias, newest first.

    Example: cfreg alias history champion_als --limit 5
    """
    state = state_of(ctx)
    rows = state.registry().alias_history(name, limit=limit)
    columns = ["at", "from", "to", "by", "reason", "selected_by"]
    emit(state, rows, lambda: state.out.print(records_table(rows, columns, title=f"History of {name}") if rows else f"{name} has no history."))


@app.command("delete")
def delete_alias(ctx: typer.Context, name: Name, expected: Expected = None, reason: Reason = None) -> None:
    """Remove an alias (not current_best).

    Example: cfreg alias delete challenger --expected als_v3
    """
    state = state_of(ctx)
    was = state.registry().delete_alias(name, expected=_expected(expected), reason=reason)
    emit(state, {"alias": name, "model_id": was}, lambda: state.out.print(f"Deleted alias {name} (was {was})"))

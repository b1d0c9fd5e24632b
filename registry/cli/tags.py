"""``cfreg tag`` and ``cfreg describe``: key/value tags and descriptions on models and embeddings."""

from typing import Annotated

import typer

from .common import CliState, emit, mapping_table, state_of

app = typer.Typer(help="Key/value tags on models (or, with --embeddings, on BERT embeddings versions).", no_args_is_help=True)

Target = Annotated[str, typer.Argument(help="Model id (or embeddings version with --embeddings).")]
Embeddings = Annotated[bool, typer.Option("--embeddings", help="The target is a BERT embeddings version.")]


def _owner(state: CliState, embeddings: bool):  # type: ignore[no-untyped-def]
    return state.bert_registry() if embeddings else state.registry()


@app.command("set")
def set_tag(
    ctx: typer.Context,
    target: Target,
    key: Annotated[str, typer.Argument(help="Tag key (letters, digits, '.', '_', '-').")],
    value: Annotated[str, typer.Argument(help="Tag value (one line, at most 1,024 characters).")],
    embeddings: Embeddings = False,
) -> None:
    """Set a tag.

    Example: cfreg tag set als_v2 team search
    """
    state = state_of(ctx)
    changed = _owner(state, embeddings).set_tag(target, key, value)
    emit(state, {"target": target, "key": key, "value": value, "changed": changed},
         lambda: state.out.print(f"{target}: {key}={value} ({'changed' if changed else 'unchanged'})"))


@app.command("delete")
def delete_tag(
    ctx: typer.Context,
    target: Target,
    key: Annotated[str, typer.Argument(help="Tag key to remove.")],
    embeddings: Embeddings = False,
) -> None:
    """Remove a tag.

    Example: cfreg tag delete als_v2 team
    """
    state = state_of(ctx)
    changed = _owner(state, embeddings).delete_tag(target, key)
    emit(state, {"target": target, "key": key, "changed": changed},
         lambda: state.out.print(f"{target}: {key} {'removed' if changed else 'was not set'}"))


@app.command("list")
def list_tags(ctx: typer.Context, target: Target, embeddings: Embeddings = False) -> None:
    """Show the tags of a model or embeddings version.

    Example: cfreg tag list als_v2
    """
    state = state_of(ctx)
    found = _owner(state, embeddings).get_tags(target)
    emit(state, found, lambda: state.out.print(mapping_table(found, title=f"Tags of {target}") if found else f"{target} has no tags."))


def describe(
    ctx: typer.Context,
    target: Target,
    text: Annotated[str, typer.Argument(help="The description ('' clears it).")],
    embeddings: Embeddings = False,
) -> None:
    """Set the description of a model or embeddings version.

    Example: cfreg describe als_v2 "ALS retrained on November data"
    """
    state = state_of(ctx)
    changed = _owner(state, embeddings).set_description(target, text)
    emit(state, {"target": target, "description": text or None, "changed": changed},
         lambda: state.out.print(f"{target}: description {'changed' if changed else 'unchanged'}"))

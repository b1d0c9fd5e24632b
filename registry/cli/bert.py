"""``cfreg bert``: BERT item embeddings, linked to CF models."""

from pathlib import Path
from typing import Annotated

import typer

from ..errors import EmbeddingsNotFoundError
from .common import Yes, busy, confirm_delete, emit, mapping_table, read_json_object, records_table, split_list, state_of

app = typer.Typer(help="BERT item embeddings, linked to CF models.", no_args_is_help=True)

Version = Annotated[str, typer.Argument(help="Embeddings version.")]
CfModelId = Annotated[str, typer.Argument(help="CF model id.")]


@app.command("register")
def register(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(help="Folder holding product_embeddings.npy or item_embeddings.npy (or a store folder URI, s3://...).")],
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

    With an artifact store the file is uploaded into it; a store folder (s3://bucket/folder) is registered in place.

    Example: cfreg bert register data/processed/content_based_embeddings --model-name vinai/phobert-base
    """
    from .. import folder_registration

    state = state_of(ctx)
    bert = state.bert_registry()
    stored = folder_registration.stored_artifacts_path(bert.root, path)
    if num_items is None or dim is None:
        from ..errors import InvalidArtifactsError
        from ..storage import is_uri

        _file, shape, problems = bert.inspect_embedding_files(stored)
        if problems or shape is None:
            where = stored if is_uri(stored) else str(bert.resolve_path(stored))
            raise InvalidArtifactsError(f"Invalid embeddings in {where!r}: " + "; ".join(problems))
        num_items = shape[0] if num_items is None else num_items
        dim = shape[1] if dim is None else dim
    config = read_json_object(config_file, "config file") if config_file is not None else None
    with busy(state, "Registering embeddings (checksumming)..."):
        result = bert.register_embeddings(
            embedding_path=stored, model_name=model_name, num_items=num_items, embedding_dim=dim,
            generation_config=config, text_fields_used=split_list(text_fields), data_version=data_version,
            git_commit=git_commit, version=version,
        )
    emit(state, result, lambda: state.out.print(f"Registered embeddings {result}"))


@app.command("list")
def list_versions(ctx: typer.Context) -> None:
    """List embeddings versions, newest first.

    Example: cfreg bert list
    """
    state = state_of(ctx)
    result = state.bert_registry().list_embeddings(include_linked_models=True)
    emit(state, result, lambda: state.out.print(records_table(result, title="embeddings") if result else "No embeddings."))


@app.command("show")
def show(ctx: typer.Context, version: Version) -> None:
    """Show one embeddings version.

    Example: cfreg bert show bert_20250115_103000
    """
    state = state_of(ctx)
    result = state.bert_registry().get_embeddings(version)
    if result is None:
        raise EmbeddingsNotFoundError(f"embeddings version {version!r} not found; run `cfreg bert list`")
    emit(state, result, lambda: state.out.print(mapping_table(result, title=version)))


@app.command("set-current")
def set_current(ctx: typer.Context, version: Version) -> None:
    """Make an embeddings version the current best.

    Example: cfreg bert set-current bert_20250115_103000
    """
    state = state_of(ctx)
    result = state.bert_registry().set_current_best(version)
    emit(state, result, lambda: state.out.print(f"Current embeddings: {version}"))


@app.command("link")
def link(ctx: typer.Context, version: Version, model_id: CfModelId) -> None:
    """Link embeddings to a CF model.

    Example: cfreg bert link bert_20250115_103000 als_v2_20250116_141500
    """
    state = state_of(ctx)
    result = state.bert_registry().link_to_model(version, model_id)
    emit(state, result, lambda: state.out.print(f"Linked {version} -> {model_id}"))


@app.command("unlink")
def unlink(ctx: typer.Context, version: Version, model_id: CfModelId) -> None:
    """Remove a link between embeddings and a CF model.

    Example: cfreg bert unlink bert_20250115_103000 als_v2_20250116_141500
    """
    state = state_of(ctx)
    result = state.bert_registry().unlink_model(version, model_id)
    message = f"Unlinked {version} -/- {model_id}" if result else f"No link between {version} and {model_id}; nothing to unlink"
    emit(state, result, lambda: state.out.print(message))


@app.command("delete")
def delete(
    ctx: typer.Context,
    version: Version,
    delete_files: Annotated[bool, typer.Option(help="Also delete the folder (inside the artifacts root only).")] = False,
    yes: Yes = False,
) -> None:
    """Delete an embeddings version (not the current one, not a linked one).

    Example: cfreg bert delete bert_20250115_103000 --yes
    """
    state = state_of(ctx)
    bert = state.bert_registry()
    confirm_delete(f"embeddings {version}", delete_files=delete_files, yes=yes)
    result = bert.delete_embeddings(version, delete_files=delete_files)
    emit(state, result, lambda: state.out.print(f"Deleted embeddings {version}"))

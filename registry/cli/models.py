"""Model commands: register, select and promote, roll back, read, archive and delete."""

from pathlib import Path
from typing import Annotated, Any

import typer

from ..defaults import DEFAULT_METRIC
from ..errors import ModelInUseError, ModelNotFoundError
from .common import (
    Yes,
    busy,
    cell,
    confirm_delete,
    emit,
    frame_records,
    mapping_table,
    print_unfolded,
    read_json_object,
    records_table,
    split_list,
    state_of,
    to_jsonable,
)

ModelId = Annotated[str, typer.Argument(help="Model id.")]


def register(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(help="The model's artifact folder ({type}_U.npy, _V.npy, _params.json, _metadata.json), or a store folder URI (s3://...) registered in place.")],
    model_type: Annotated[str | None, typer.Option("--type", "-t", help="Model type (als, bpr, bert_als); default: from the {type}_U.npy file.")] = None,
    version: Annotated[str | None, typer.Option(help="Version id. Default: the folder's name when it is a valid version (als/v2_20250116 -> als_v2_20250116), else v_YYYYMMDD_HHMMSS (UTC), the Python API's default.")] = None,
    metrics_file: Annotated[Path | None, typer.Option("--metrics-file", exists=True, dir_okay=False, help="JSON object of metric name -> value.")] = None,
    metric: Annotated[list[str] | None, typer.Option("--metric", "-m", help="A metric as name=value (repeatable).")] = None,
    params_file: Annotated[Path | None, typer.Option("--params-file", exists=True, dir_okay=False, help="JSON object of hyperparameters (default: {type}_params.json).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing model with the same id.")] = False,
    data_version: Annotated[str | None, typer.Option(help="Hash of the training data.")] = None,
    git_commit: Annotated[str | None, typer.Option(help="Code commit (default: metadata, else detected).")] = None,
    auto_select: Annotated[bool, typer.Option(help="Afterwards, make the best model current if it beats the current best.")] = False,
    select_by: Annotated[str, typer.Option("--select-by", help="Metric for --auto-select.")] = DEFAULT_METRIC,
    min_gain: Annotated[float, typer.Option(help="With --auto-select: relative gain over the current best required (0.02 = 2%).")] = 0.0,
) -> None:
    """Register a trained model from its artifact folder.

    The model id is {type}_{version}. Unlike ModelRegistry.register_model, whose
    default version is v_YYYYMMDD_HHMMSS, the CLI takes the version from the folder's
    name when it is a valid version id: artifacts/cf/als/v2_20250116 registers
    als_v2_20250116. Pass --version to choose it; the output says which rule applied.

    Metrics come from --metrics-file/--metric, else {type}_metrics.json, else the
    "metrics" key of {type}_metadata.json. Training info, data_version, git_commit
    and baseline_comparison come from the metadata when present.

    Example: cfreg register artifacts/cf/als/v2_20250116_141500 --auto-select
    """
    from .. import folder_registration

    state = state_of(ctx)
    if metrics_file is not None and metric:
        raise typer.BadParameter("give --metrics-file or --metric, not both", param_hint="--metric")
    metrics: dict[str, Any] | None = None
    if metrics_file is not None:
        metrics = folder_registration.metrics_from_document(read_json_object(metrics_file, "metrics file"))
    elif metric:
        metrics = _parse_metric_pairs(metric)
    hyperparameters = read_json_object(params_file, "params file") if params_file is not None else None
    registry = state.registry(create=True)
    with busy(state, "Registering (checksumming artifacts)..."):
        result = folder_registration.update_registry_from_folder(
            registry, folder_registration.stored_artifacts_path(registry.root, path), model_type=model_type, version=version,
            hyperparameters=hyperparameters, metrics=metrics, data_version=data_version, git_commit=git_commit,
            overwrite=overwrite, auto_select=auto_select, metric=select_by, min_gain=min_gain,
        )

    def render() -> None:
        if result.note:
            state.out.print(f"Note: {result.note}")
        else:
            state.out.print(f"Registered {result.model_id} ({result.path}); {VERSION_RULES[result.version_source]}")
        if result.auto_select:
            state.out.print(result.decision)

    emit(state, result, render)


VERSION_RULES = {
    "argument": "version from --version",
    "folder name": "version from the folder name (--version to choose another)",
    "generated": "version v_YYYYMMDD_HHMMSS (UTC) generated: the folder name is not a valid version",
}


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


def select_best(
    ctx: typer.Context,
    metric: Annotated[str, typer.Option(help="Metric to rank by.")] = DEFAULT_METRIC,
    min_improvement: Annotated[float, typer.Option(help="Required improvement over each model's own baseline (0.1 = 10%).")] = 0.0,
    model_type: Annotated[str | None, typer.Option("--type", "-t", help="Only models of this type.")] = None,
    min_gain_over_current: Annotated[float | None, typer.Option(help="Replace the current best only when beaten by this relative gain.")] = None,
    max_churn: Annotated[float | None, typer.Option(help="Refuse a winner whose churn@10 against the current best exceeds this fraction (see `cfreg diff`).")] = None,
    confidence: Annotated[float | None, typer.Option(min=0.5, max=0.999, help="Replace the current best only when the lower bound of this interval of the per-user improvement is above --min-improvement.")] = None,
    allow_unevaluated: Annotated[bool, typer.Option("--allow-unevaluated", help="With --confidence: fall back to the averages when a model has no per-user evaluation.")] = False,
    alias: Annotated[str, typer.Option(help="Move this alias instead of the current best (created when missing), e.g. a champion per type.")] = "current_best",
) -> None:
    """Make the active model with the highest metric the current best (or the target of --alias).

    Example: cfreg select-best --metric ndcg@10 --min-improvement 0.05 --confidence 0.95
    Example: cfreg select-best --metric ndcg@10 --type bpr --alias bpr_champion
    """
    state = state_of(ctx)
    if confidence is not None:
        result = state.registry().select_best_model(
            metric=metric, min_improvement=min_improvement, model_type=model_type, min_gain_over_current=min_gain_over_current,
            confidence=confidence, require_evaluation=not allow_unevaluated, alias=alias,
        )
    else:
        result = state.registry().select_best_model_outcome(
            metric=metric, min_improvement=min_improvement, model_type=model_type, min_gain_over_current=min_gain_over_current,
            max_churn=max_churn, alias=alias,
        )

    def render() -> None:
        if result is None:
            state.out.print(f"Unchanged: no eligible active model with {metric} (that beats {pointer_name(alias)})")
        else:
            state.out.print(f"{change_line(result, alias)} ({metric}: {cell(result['value'])})")
            comparison = result.get("comparison")
            if comparison:
                state.out.print(f"Improvement over {comparison['model_a']}: {comparison['relative']:+.2%} "
                                f"[{comparison['confidence']:.0%} interval {comparison['relative_ci_low']:+.2%}, "
                                f"{comparison['relative_ci_high']:+.2%}], p={comparison['p_value']:.3g}, "
                                f"{comparison['n_users']} users")

    emit(state, result, render)


def pointer_name(alias: str) -> str:
    """``the current best`` or ``alias NAME``: what select-best, promote and rollback move."""
    return "the current best" if alias == "current_best" else f"alias {alias}"


def change_line(result: dict[str, Any], alias: str = "current_best") -> str:
    """``Changed: A -> B`` or ``Unchanged: B is already the current best`` (or ``... alias NAME``)."""
    if result["changed"]:
        what = "current best" if alias == "current_best" else f"alias {alias}"
        return f"Changed: {what} {result['previous_model_id'] or 'none'} -> {result['model_id']}"
    target = "the current best" if alias == "current_best" else f"the target of alias {alias}"
    return f"Unchanged: {result['model_id']} is already {target}"


def promote(
    ctx: typer.Context,
    model_id: Annotated[str, typer.Argument(help="Model to make current.")],
    reason: Annotated[str | None, typer.Option(help="Why (kept in the selection history and audit).")] = None,
    max_churn: Annotated[float | None, typer.Option(help="Refuse when churn@10 against the current best exceeds this fraction (see `cfreg diff`).")] = None,
    force: Annotated[bool, typer.Option("--force", help="With --max-churn: promote anyway (needs --reason; audited).")] = False,
    alias: Annotated[str, typer.Option(help="Point this alias at the model instead of the current best.")] = "current_best",
) -> None:
    """Make a model the current best (or the target of --alias) by hand.

    Example: cfreg promote als_v2_20250116_141500 --reason "hotfix"
    Example: cfreg promote bpr_v3 --alias bpr_champion --max-churn 0.3
    """
    state = state_of(ctx)
    result = state.registry().promote_model(model_id, reason=reason, max_churn=max_churn, force=force, alias=alias)
    emit(state, result, lambda: state.out.print(change_line(result, alias)))


def rollback(
    ctx: typer.Context,
    to: Annotated[str | None, typer.Option(help="Go back to the most recent earlier state of this model.")] = None,
    steps: Annotated[int, typer.Option(min=1, help="Go this many states back.")] = 1,
    reason: Annotated[str | None, typer.Option(help="Why.")] = None,
    alias: Annotated[str, typer.Option(help="Walk this alias back through its history instead of the current best.")] = "current_best",
) -> None:
    """Walk the current best (or --alias) back through the selection history (one state by default).

    Each change of the current best is a state; rollback moves back along them:
    after A -> B -> C, `cfreg rollback` gives B and a second one A (it does not
    toggle back to C). --steps N goes N states back; --to MODEL_ID to that model's
    most recent earlier state. `cfreg history` shows the states (`cfreg alias history
    NAME` those of an alias).

    Example: cfreg rollback --steps 2
    Example: cfreg rollback --alias bpr_champion
    """
    state = state_of(ctx)
    if to is not None and steps != 1:
        raise typer.BadParameter("give --to or --steps, not both", param_hint="--steps")
    result = state.registry().rollback(to=to, reason=reason, steps=steps, alias=alias)
    emit(state, result, lambda: state.out.print(change_line(result, alias)))


def list_models(
    ctx: typer.Context,
    model_type: Annotated[str | None, typer.Option("--type", "-t", help="Only this model type.")] = None,
    status: Annotated[str | None, typer.Option(help="active, archived or failed.")] = None,
    sort_by: Annotated[str, typer.Option(help="A column or metric name.")] = "created_at",
    ascending: Annotated[bool, typer.Option(help="Sort ascending.")] = False,
    filter_string: Annotated[str | None, typer.Option(
        "--filter", help="Search filter, e.g. \"metrics.ndcg@10 > 0.1 and tags.team = 'search'\" (see docs/aliases.md).")] = None,
    order_by: Annotated[list[str] | None, typer.Option(
        "--order-by", help="With --filter: e.g. 'metrics.ndcg@10 desc' (repeatable).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="With --filter/--order-by: page size.")] = 100,
    offset: Annotated[int, typer.Option(min=0, help="With --filter/--order-by: rows to skip.")] = 0,
) -> None:
    """List models with their metrics, or search them with --filter / --order-by.

    Example: cfreg list --type als --sort-by ndcg@10
    Example: cfreg list --filter "metrics.ndcg@10 > 0.1 and model_type = 'als'" --order-by "metrics.ndcg@10 desc"
    """
    state = state_of(ctx)
    registry = state.registry()
    if filter_string is not None or order_by:
        conditions = [filter_string] if filter_string else []
        conditions += [f"model_type = '{quoted(model_type)}'"] if model_type else []
        conditions += [f"status = '{quoted(status)}'"] if status else []
        combined = " and ".join(f"({part})" for part in conditions)
        records, columns = frame_records(registry.search_models(combined, order_by=order_by, limit=limit, offset=offset))
    else:
        records = to_jsonable(registry.list_model_records(
            model_type=model_type, status=status, sort_by=sort_by, ascending=ascending))
        columns = list(records[0]) if records else []

    def render() -> None:
        if not records:
            state.out.print("No models.")
            return
        shown = [column for column in columns if column in LIST_KEY_COLUMNS or any(
            cell(record.get(column)) for record in records)]
        shown = [column for column in shown if column != "version"]  # model_id already carries it
        print_unfolded(state.out, records, shown, title=f"{len(records)} model(s)")

    emit(state, records, render)


# Shown even when empty; other columns (tags, description, metrics no model has) only when some row has a value.
LIST_KEY_COLUMNS = ("model_id", "model_type", "status", "created_at")


def quoted(value: str) -> str:
    """``value`` as the inside of a quoted search-filter string."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


def show(ctx: typer.Context, model_id: ModelId) -> None:
    """Show one model's registry entry (and its recorded files).

    Example: cfreg show als_v2_20250116_141500
    """
    state = state_of(ctx)
    registry = state.registry()
    info = registry.get_model(model_id)
    if info is None:
        raise ModelNotFoundError(f"Model {model_id!r} not found in registry; run `cfreg list` to see registered ids")

    def render() -> None:
        state.out.print(mapping_table({"model_id": model_id, **info}, title=model_id))
        files = registry.get_model_files(model_id)
        if files:
            state.out.print(records_table(files, title="files"))

    emit(state, info, render)


def compare(
    ctx: typer.Context,
    model_ids: Annotated[list[str], typer.Argument(help="Models to compare.")],
    metrics: Annotated[str | None, typer.Option(help="Comma-separated metrics (default: recall@10,ndcg@10,coverage).")] = None,
) -> None:
    """Compare models side by side.

    Example: cfreg compare als_v1 als_v2 --metrics recall@10,ndcg@10
    """
    state = state_of(ctx)
    frame = state.registry().compare_models(model_ids, metrics=split_list(metrics))
    records, columns = frame_records(frame)
    emit(state, records, lambda: state.out.print(records_table(records, columns)))


def archive(ctx: typer.Context, model_id: ModelId) -> None:
    """Archive a model (kept, no longer selectable). The current best cannot be archived.

    Example: cfreg archive als_v1_20250115_103000
    """
    state = state_of(ctx)
    if not state.registry().archive_model(model_id):
        raise ModelInUseError(f"cannot archive {model_id!r}: it is the current best; promote or select another model first")
    emit(state, True, lambda: state.out.print(f"Archived {model_id}"))


def delete(
    ctx: typer.Context,
    model_id: ModelId,
    delete_files: Annotated[bool, typer.Option(help="Also delete the artifact folder (only inside the artifacts root).")] = False,
    yes: Yes = False,
) -> None:
    """Delete a model from the registry (prefer archive).

    Example: cfreg delete als_v1_20250115_103000 --delete-files --yes
    """
    state = state_of(ctx)
    registry = state.registry()
    confirm_delete(model_id, delete_files=delete_files, yes=yes)
    result = registry.delete_model(model_id, delete_files=delete_files)
    emit(state, result, lambda: state.out.print(f"Deleted {model_id}{' and its files' if delete_files else ''}"))


def set_status(
    ctx: typer.Context,
    model_id: ModelId,
    status: Annotated[str, typer.Argument(help="active, archived or failed.")],
) -> None:
    """Set a model's status.

    Example: cfreg set-status bpr_v1_20250115_120000 failed
    """
    state = state_of(ctx)
    result = state.registry().update_model_status(model_id, status)
    emit(state, result, lambda: state.out.print(f"{model_id}: {status}"))


def history(
    ctx: typer.Context,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the newest N changes.")] = None,
) -> None:
    """History of current-best changes, newest first.

    Example: cfreg history --limit 10
    """
    state = state_of(ctx)
    result = state.registry().get_selection_history(limit=limit)
    emit(state, result, lambda: state.out.print(records_table(result, title="selections") if result else "No selections yet."))

"""``cfreg diff A B``: what changes if B replaces A (churn, neighbours, coverage, drift, metrics)."""

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from .common import CliState, busy, cell, emit, records_table, state_of

if TYPE_CHECKING:
    from ..diff.report import DiffReport


def diff(
    ctx: typer.Context,
    model_a: Annotated[str, typer.Argument(help="The model in place now (e.g. the current best).")],
    model_b: Annotated[str, typer.Argument(help="The candidate that would replace it.")],
    k: Annotated[int, typer.Option("--k", "-k", help="Length of the recommendation and neighbour lists.")] = 10,
    users: Annotated[int, typer.Option(help="Shared users sampled for churn and coverage.")] = 2000,
    items: Annotated[int, typer.Option(help="Shared items sampled for neighbours and drift.")] = 2000,
    seed: Annotated[int, typer.Option(help="Seed of both samples.")] = 0,
    full: Annotated[bool, typer.Option("--full", help="Churn over every shared user (in batches) instead of a sample.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON (same as the global --json).")] = False,
) -> None:
    """Compare two models' recommendations, not just their metrics: churn, neighbours, coverage, drift.

    The report is stored (keyed by both models' file checksums and these options):
    asking again prints the stored one. See docs/model-diff.md.

    Example: cfreg diff als_v1_20250115_103000 als_v2_20250116_141500 --users 5000
    """
    state = state_of(ctx)
    if json_output:
        state.json_output = True
    registry = state.registry()
    with busy(state, "Comparing models..."):
        report = registry.diff_models(model_a, model_b, k=k, users=users, items=items, seed=seed, full=full)
    emit(state, report.to_dict(), lambda: render(state, report))


def render(state: CliState, report: "DiffReport") -> None:
    """The report as rich tables: summary, catalogue, churn, neighbours/drift, coverage, metrics."""
    out = state.out
    out.print(f"[bold]{report.model_a} -> {report.model_b}[/bold]  (k={report.params['k']}, "
              f"users={report.params['users']}{' full' if report.params['full'] else ''}, "
              f"items={report.params['items']}, seed={report.params['seed']})")
    for warning in report.compatibility.warnings:
        out.print(f"[yellow]warning:[/yellow] {warning}")
    c = report.compatibility
    out.print(_pairs_table("Compatibility", [
        ("model type", *c.model_types), ("factors", *c.factors), ("dtype", *c.dtypes),
        ("users", *c.num_users), ("items", *c.num_items),
        ("id maps (users/items)", *(f"{cell(c.id_maps[s]['users'])}/{cell(c.id_maps[s]['items'])}" for s in "ab")),
        ("training interactions", *c.interactions),
    ]))
    catalogue = [
        {"": what, "matched by": side.matched_by, "added": side.added, "removed": side.removed, "kept": side.kept,
         "added (sample)": ", ".join(map(str, side.added_sample)), "removed (sample)": ", ".join(map(str, side.removed_sample))}
        for what, side in (("users", report.catalogue.users), ("items", report.catalogue.items))
    ]
    out.print(records_table(catalogue, title="Catalogue (B against A)"))
    ch, nb, dr = report.churn, report.neighbours, report.drift
    rows: list[dict[str, Any]] = [
        {"number": f"churn@{ch.k} (1 - mean overlap)", "value": ch.churn, "detail": ch.note or f"{ch.users_compared} users, seen excluded: {ch.seen_excluded}"},
        {"number": "top-1 changed (share of users)", "value": ch.top1_changed, "detail": ""},
        {"number": "rank-biased overlap (p=0.9)", "value": ch.mean_rbo, "detail": _quantiles(ch.rbo)},
        {"number": f"top-{ch.k} overlap", "value": ch.mean_overlap, "detail": _quantiles(ch.overlap)},
        {"number": f"neighbour overlap@{nb.k}", "value": nb.mean_overlap, "detail": nb.note or f"{nb.items_compared} items; {_quantiles(nb.overlap)}"},
        {"number": "drift: aligned cosine", "value": dr.aligned.get("mean"), "detail": dr.note or f"{dr.items_compared} items; {_quantiles(dr.aligned)}"},
        {"number": "drift: raw cosine (no alignment)", "value": dr.raw.get("mean"), "detail": "factor counts differ" if dr.padded else ""},
    ]
    out.print(records_table(rows, title="Recommendations"))
    a, b = report.coverage.a, report.coverage.b
    out.print(_pairs_table("Coverage and popularity", [
        (f"coverage@{ch.k}", a.coverage_at_k, b.coverage_at_k), ("distinct items recommended", a.distinct_items, b.distinct_items),
        ("gini of recommendations", a.gini, b.gini), ("mean popularity rank", a.mean_popularity_rank, b.mean_popularity_rank),
        ("mean popularity percentile", a.mean_popularity_percentile, b.mean_popularity_percentile),
    ]))
    if report.metrics:
        out.print(records_table([{"metric": r.name, "A": r.a, "B": r.b, "B - A": r.diff, "relative": r.relative}
                                 for r in report.metrics], title="Registered metrics"))


def _pairs_table(title: str, rows: list[tuple[Any, ...]]) -> Table:
    table = Table(title=title)
    for column in ("", "A", "B"):
        table.add_column(column)
    for name, left, right in rows:
        table.add_row(str(name), cell(left), cell(right))
    return table


def _quantiles(distribution: dict[str, Any]) -> str:
    q = distribution.get("quantiles") or {}
    return f"p5 {q['p5']:.3f}, median {q['p50']:.3f}, p95 {q['p95']:.3f}" if q else ""

"""Commands that run something: the end-to-end demo and the HTTP server.

:func:`render_demo_result` prints a demo run; it lives here because the CLI is the
only layer that prints (``tools/demo.py`` imports it from here too).
"""

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import RegistryError
from .common import emit, state_of

if TYPE_CHECKING:
    from rich.console import Console

    from ..demo import DemoResult


def demo(
    ctx: typer.Context,
    workdir: Annotated[Path, typer.Option(help="Base folder: data, artifacts and the registry (<workdir>/artifacts/cf/registry.json) go under it.")] = Path("."),
    quick: Annotated[bool, typer.Option(help="A small data set and grid (a few seconds).")] = False,
) -> None:
    """Train ALS/BPR on synthetic data, register, select the best, start an A/B test, recommend.

    The registry is <workdir>/artifacts/cf/registry.json; the run ends by printing the
    commands that explore it (e.g. cfreg --registry demo_workdir/artifacts/cf/registry.json list).
    With the default workdir (the current directory) a plain `cfreg list` works too.

    Example: cfreg demo --workdir /tmp/cfreg-demo
    """
    from ..demo import run_demo

    state = state_of(ctx)
    result = run_demo(workdir, quick=quick, show_progress=state.interactive, database_url=state.database_url,
                      console=state.err)
    emit(state, result, lambda: render_demo_result(result, state.out))


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    reload_interval: Annotated[float, typer.Option(min=0.0, help="Seconds between hot-reload checks (0 = off).")] = 5.0,
    token_file: Annotated[Path | None, typer.Option(
        help="File holding the bearer token that POST /reload_model requires (default: $CFREG_SERVE_TOKEN; "
             "neither: the endpoint is open).")] = None,
    alias: Annotated[str | None, typer.Option(
        help="Serve and follow this alias's target (e.g. champion_als) instead of the current best; "
             "moving the alias switches the service at the next reload check.")] = None,
    watch: Annotated[bool, typer.Option("--watch/--no-watch", help="Reload as soon as the registry changes "
                                        "(PostgreSQL NOTIFY/LISTEN; a 50 ms generation poll on SQLite).")] = True,
) -> None:
    """Serve recommendations over HTTP with hot-reload (needs the `serve` extra).

    Example: cfreg serve --port 8000 --reload-interval 5 --token-file ~/.cfreg-token
    Example: cfreg serve --alias champion_als --port 8001
    """
    state = state_of(ctx)
    try:
        from ..serving import serve as run_server
        from ..serving.auth import read_token_file
    except ImportError as exc:
        raise RegistryError(f"serving needs the 'serve' extra: pip install 'cf-model-registry[serve]' ({exc})") from exc
    token = read_token_file(token_file) if token_file is not None else None
    if alias is not None:
        from ..aliases import validate_alias_name

        validate_alias_name(alias)
    state.registry()  # fail fast, with one line, when the registry does not exist
    run_server(state.registry_path, host, port, reload_interval or None, state.database_url, api_token=token,
               alias=alias, watch=watch)


def render_demo_result(result: "DemoResult", console: "Console") -> None:
    """Print a demo run: data, leaderboard, selection, A/B test and sample recommendations."""
    from rich import box
    from rich.table import Table

    from ..demo import MIN_IMPROVEMENT, SELECTION_METRIC, SHOWN_METRICS, TOP_K

    console.print(
        f"[bold]Data[/bold]: {result.num_users} users x {result.num_items} items, "
        f"{result.num_train_interactions} train / {result.num_holdout_interactions} holdout interactions, "
        f"data_version [cyan]{result.data_version[:12]}[/cyan]"
    )
    table = Table(title=f"Leaderboard on the holdout (best first by {SELECTION_METRIC})", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("model", no_wrap=True)
    for column in (*SHOWN_METRICS.values(), "vs pop"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("", no_wrap=True, min_width=len("treatment"))
    for row in result.leaderboard.to_dict("records"):
        marks = " ".join(mark for mark, on in (("best", row["current_best"]), (row["ab_arm"], bool(row["ab_arm"]))) if on)
        improvement = row[f"improvement_{SELECTION_METRIC}"]
        table.add_row(
            row["model_id"],
            *(f"{row[name]:.4f}" for name in SHOWN_METRICS),
            "" if row["model_type"] == "popularity" else f"{improvement:+.0%}",
            marks,
            style="bold green" if row["current_best"] else ("dim" if row["model_type"] == "popularity" else None),
        )
    console.print(table)
    if result.selection is not None:
        console.print(f"[bold]Current best[/bold]: {result.best_model_id} ({SELECTION_METRIC}={result.selection['value']:.4f}, "
                      f"min_improvement={MIN_IMPROVEMENT:.0%} over popularity)")
    else:
        console.print(f"[yellow]No model passed min_improvement={MIN_IMPROVEMENT:.0%}; current best: {result.best_model_id}[/yellow]")
    if result.ab_test is not None:
        test = result.ab_test
        console.print(f"[bold]A/B test[/bold] {test['test_id']}: control {test['control_model']} vs treatment "
                      f"{test['treatment_model']} at {test['traffic_split']:.0%} traffic")
    if result.recommendations:
        console.print(f"[bold]Top-{TOP_K} recommendations[/bold] from {result.served_model_id} "
                      "(loaded with get_loader(); [green]green[/green] = in the user's holdout)")
        recs = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        recs.add_column("rank", justify="right")
        for user_id in result.recommendations:
            routed = result.routing.get(user_id)
            arm = ""
            if result.ab_test is not None and routed is not None:
                arm = " (treatment)" if routed == result.ab_test["treatment_model"] else " (control)"
            recs.add_column(f"{user_id}{arm}")
        lists = list(result.recommendations.values())
        for rank in range(max(len(items) for items in lists)):
            cells = []
            for items in lists:
                if rank >= len(items):
                    cells.append("")
                    continue
                item = items[rank]
                text = f"{item['item_id']}  {item['score']:.3f}"
                cells.append(f"[green]{text}[/green]" if item["held_out"] else text)
            recs.add_row(str(rank + 1), *cells)
        console.print(recs)
    console.print(f"Registry: {result.registry_path} ({result.database}); finished in {result.elapsed_seconds:.1f}s")
    console.print("Next, from this folder:")
    for command in next_commands(result.registry_path):
        console.print(f"  {command}", markup=False, highlight=False)


def next_commands(registry_path: Path) -> list[str]:
    """The commands that explore the demo's registry, exactly as they run from the working directory.

    The path is relative when the registry is under the working directory. A database
    named by --database-url is recorded in the registry folder, so --registry suffices.
    """
    path = Path(registry_path)
    try:
        shown = str(path.relative_to(Path.cwd()))
    except ValueError:
        shown = str(path)
    registry = shlex.quote(shown)
    return [f"cfreg --registry {registry} {command}" for command in ("list", "history", "ab status")]

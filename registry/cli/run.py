"""Commands that run something: the end-to-end demo and the HTTP server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import RegistryError
from .common import emit, state_of


def demo(
    ctx: typer.Context,
    workdir: Annotated[Path, typer.Option(help="Base folder: data, artifacts and the registry (<workdir>/artifacts/cf/registry.json) go under it.")] = Path("."),
    quick: Annotated[bool, typer.Option(help="A small data set and grid (a few seconds).")] = False,
) -> None:
    """Train ALS/BPR on synthetic data, register, select the best, start an A/B test, recommend.

    The default workdir is the current directory, so `cfreg list` works right after.

    Example: cfreg demo --workdir /tmp/cfreg-demo
    """
    from ..demo import render_demo_result, run_demo

    state = state_of(ctx)
    result = run_demo(workdir, quick=quick, show_progress=state.interactive, database_url=state.database_url,
                      console=state.err)
    emit(state, result, lambda: render_demo_result(result, state.out))


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    reload_interval: Annotated[float, typer.Option(min=0.0, help="Seconds between hot-reload checks (0 = off).")] = 5.0,
) -> None:
    """Serve recommendations over HTTP with hot-reload (needs the `serve` extra).

    Example: cfreg serve --port 8000 --reload-interval 5
    """
    state = state_of(ctx)
    try:
        from ..serving import serve as run_server
    except ImportError as exc:
        raise RegistryError(f"serving needs the 'serve' extra: pip install 'cf-model-registry[serve]' ({exc})") from exc
    state.registry()  # fail fast, with one line, when the registry does not exist
    run_server(state.registry_path, host, port, reload_interval or None, state.database_url)

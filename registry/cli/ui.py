"""``cfreg ui``: the registry's web app (pages and REST API) on one port."""

from pathlib import Path
from typing import Annotated

import typer

from ..errors import RegistryError
from .common import state_of


def ui(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Interface to listen on (127.0.0.1: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 5000,
    token_file: Annotated[Path | None, typer.Option(help="File of operator tokens ('NAME TOKEN' per line); default $CFREG_UI_TOKEN_FILE, else the token in $CFREG_UI_TOKEN. None: read-only.")] = None,
) -> None:
    """Serve the web UI and REST API (needs the `ui` extra).

    Example: CFREG_UI_TOKEN=$(cat ~/.cfreg-token) cfreg ui --port 5000
    """
    state = state_of(ctx)
    try:
        from ..web import create_app, is_loopback
    except ImportError as exc:
        raise RegistryError(f"the web UI needs the 'ui' extra: pip install 'cf-model-registry[ui]' ({exc})") from exc
    import uvicorn

    app = create_app(state.registry_path, state.database_url, token_file=token_file)
    writable = app.state.tokens.enabled
    if not writable and not is_loopback(host):
        state.err.print(f"[yellow]Warning:[/yellow] listening on {host} without a token: anyone who can reach "
                        "this port can read the registry (operator actions stay disabled).")
    state.err.print(f"Registry UI on http://{host}:{port}/ ({'operator actions need a login' if writable else 'read-only: no token configured'})")
    uvicorn.run(app, host=host, port=port, log_level="warning")

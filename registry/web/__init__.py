"""The registry's web app: HTML pages for people and a JSON REST API (the ``ui`` extra).

One FastAPI app serves both: pages at ``/`` (leaderboard, model, compare with the
model diff and per-user significance, charts, history, aliases, A/B tests with their
results, embeddings, paged audit log), the API at ``/api`` and its OpenAPI
document at ``/api/openapi.json``. Every asset ships in the package (no CDN); pages
work with JavaScript off. Without a token the app is read-only.

Usage::

    from registry.web import create_app
    app = create_app("artifacts/cf/registry.json", token_file="ui_tokens.txt")
    # or from the shell: cfreg ui --port 5000
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from .. import __version__
from ..errors import RegistryError
from .auth import TokenStore, load_tokens
from .errors import WebError, error_body, status_for

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
STATIC_DIR = Path(__file__).parent / "static"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "create_app", "is_loopback"]


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api")


def create_app(
    registry_path: str | os.PathLike[str],
    database_url: str | None = None,
    *,
    tokens: TokenStore | None = None,
    token_file: str | os.PathLike[str] | None = None,
    export_json: bool = True,
) -> FastAPI:
    """The web app for the registry at ``registry_path`` (which must exist).

    Args:
        registry_path: ``registry.json`` location (or the ``.db`` file), as for ``ModelRegistry``.
        database_url: a SQLAlchemy URL (else ``$CFREG_DATABASE_URL`` or the SQLite file).
        tokens: the operator tokens; default :func:`registry.web.auth.load_tokens`
            (``token_file``, ``$CFREG_UI_TOKEN_FILE`` or ``$CFREG_UI_TOKEN``). None configured:
            read-only.
        export_json: rewrite ``registry.json`` after each change made through the app.

    Raises:
        RegistryNotFoundError: the registry does not exist.
        InvalidArgumentError: an unreadable token file or a token that is too short.
    """
    from . import api, pages
    from .service import RegistryService

    store = tokens if tokens is not None else load_tokens(token_file)
    service = RegistryService(registry_path, database_url, export_json=export_json)
    app = FastAPI(
        title="cf-model-registry",
        version=__version__,
        description="Read the model registry; operators with a bearer token select, promote, roll back, "
        "archive and run A/B tests.",
        openapi_url="/api/openapi.json",
        docs_url=None,  # Swagger UI and ReDoc load their assets from a CDN
        redoc_url=None,
    )
    app.state.service = service
    app.state.tokens = store

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if not request.url.path.startswith("/static"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.exception_handler(RegistryError)
    async def registry_error(request: Request, exc: RegistryError) -> Response:
        status = status_for(exc)
        if status >= 500:
            logger.error("%s %s failed: %s", request.method, request.url.path, exc)
        if _is_api(request):
            return JSONResponse(error_body(exc.code, str(exc), type(exc).__name__), status_code=status)
        return pages.error_page(request, status, exc.code, str(exc))

    @app.exception_handler(WebError)
    async def web_error(request: Request, exc: WebError) -> Response:
        if _is_api(request):
            return JSONResponse(error_body(exc.code, exc.message, "WebError"), status_code=exc.status,
                                headers=exc.headers)
        return pages.error_page(request, exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error.get('loc', ()))}: {error.get('msg', '')}" for error in exc.errors()
        )
        if _is_api(request):
            return JSONResponse(error_body("invalid_argument", problems, "RequestValidationError"), status_code=422)
        return pages.error_page(request, 422, "invalid_argument", problems)

    @app.exception_handler(404)
    async def not_found(request: Request, exc: Exception) -> Response:
        message = f"nothing at {request.url.path}"
        if _is_api(request) or request.url.path.startswith("/static"):
            return JSONResponse(error_body("not_found", message, "NotFound"), status_code=404)
        return pages.error_page(request, 404, "not_found", message)

    app.include_router(api.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response((STATIC_DIR / "favicon.svg").read_bytes(), media_type="image/svg+xml")

    return app


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False

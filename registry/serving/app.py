"""A hot-reloading recommendation service over HTTP (FastAPI; the ``serve`` extra).

The doc's "Serving Integration" as a ready app: its lifespan opens the
registry's shared loader (:func:`registry.get_loader`) and loads the current
best; requests are served from memory, routed through the running A/B test.
The app watches the registry (``watch=True`` by default: PostgreSQL NOTIFY/LISTEN,
a generation poll on SQLite) and swaps in a newly selected best as soon as it
commits, without dropping a request; ``POST /reload_model`` (or a background check
every ``reload_interval`` seconds) does the same on demand.

Usage::

    app = create_app("artifacts/cf/registry.json", reload_interval=5)
    # or, blocking: serve("artifacts/cf/registry.json", port=8000, reload_interval=5)

Endpoints (see ``docs/serving.md``):

* ``GET /health``: 200 with the served model id, 503 while no model is loaded.
* ``GET /model``: the served model (id, type, version, shapes, ``loaded_at``), the
  alias the service follows (``current_best`` unless ``alias=`` / ``cfreg serve --alias``)
  and the running A/B test (or null).
* ``GET /recommend/{user_id}?k=10&exclude=i1&exclude=i2&include_seen=false``: top-k
  items for an external user id, from the model the A/B test assigns the user to,
  never one of ``exclude`` nor (unless ``include_seen``) one the user interacted
  with in training; the response names that model and arm.
* ``POST /reload_model``: ``{"reloaded": bool, "model_id": ...}``; needs
  ``Authorization: Bearer <token>`` when a token is configured (:mod:`registry.serving.auth`).
* ``GET /metrics``: Prometheus metrics (:mod:`registry.serving.metrics`).
* ``GET /docs``, ``GET /redoc``: API docs, with their assets served by the app (no CDN).

Responses never carry server paths or internal error text: those go to the log.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline
from pydantic import StringConstraints
from starlette.concurrency import run_in_threadpool

from ..defaults import DEFAULT_REGISTRY_PATH
from ..errors import (
    InvalidArgumentError,
    ModelNotFoundError,
    NoModelLoadedError,
    RegistryError,
)
from ..models import CURRENT_BEST_ALIAS
from ..validation import validate_identifier
from .auth import require_token, resolve_token
from .loader import ModelLoader, ModelState, get_loader
from .metrics import CONTENT_TYPE_LATEST, MetricsMiddleware, ServiceMetrics

logger = logging.getLogger(__name__)

DEFAULT_K = 10
MAX_K = 1000
MAX_USER_ID_LENGTH = 256
MAX_ITEM_ID_LENGTH = 256
MAX_EXCLUDE = 1000
# Numeric ids: ASCII digits only (str.isdigit also accepts "²" and "٣"), at most 18 of them (int64).
_ASCII_INT = re.compile(r"-?[0-9]{1,18}", re.ASCII)

__all__ = ["MAX_EXCLUDE", "MAX_ITEM_ID_LENGTH", "MAX_K", "MAX_USER_ID_LENGTH", "create_app", "serve"]


class RecommendationService:
    """What the endpoints share: the loader, which also holds the A/B routing table.

    The running A/B test is the loader's own copy (:meth:`ModelLoader.routing_config`),
    refreshed by its reload check, so a request never reads the database and the
    test a response names is always the one its model was routed with.
    """

    def __init__(self, loader: ModelLoader) -> None:
        self.loader = loader

    def missing(self) -> str:
        """Why nothing is served yet (the pointer the loader follows is unset)."""
        if self.loader.alias == CURRENT_BEST_ALIAS:
            return "no model loaded: the registry has no current best yet"
        return f"no model loaded: alias {self.loader.alias!r} is not set yet"

    def ab_test(self) -> dict[str, Any] | None:
        """The running A/B test the loader routes with (the doc's ``ab_test`` dict) or None."""
        return self.loader.routing_config()

    def served(self) -> ModelState:
        """The current best being served; 503 when there is none."""
        state = self.loader.get_current_model()
        if state is None:
            how = ("select one (ModelRegistry.select_best_model)" if self.loader.alias == CURRENT_BEST_ALIAS
                   else "set it (ModelRegistry.set_alias)")
            raise HTTPException(status_code=503, detail=f"{self.missing()}; {how} and call POST /reload_model")
        return state

    def recommend(self, user_id: str, k: int, exclude: list[str] | None = None,
                  include_seen: bool = False) -> dict[str, Any]:
        """Top-``k`` for an external user id from the model the user is routed to, minus
        ``exclude`` and (unless ``include_seen``) the user's training items."""
        self.served()
        state, test = self.loader.route_for_user(user_id)  # one routing snapshot: model and test agree
        arm = None
        if test is not None:
            arm = {test["control_model"]: "control", test["treatment_model"]: "treatment"}.get(state.model_id)
        try:
            item_ids, scores = _recommend(state, user_id, k, exclude or [], exclude_seen=not include_seen)
        except ModelNotFoundError as exc:  # messages built from the request's ids and the model id only
            raise HTTPException(status_code=404, detail=str(exc)) from None
        except InvalidArgumentError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        return {
            "user_id": user_id,
            "model_id": state.model_id,
            "model_type": state.model_type,
            "version": state.version,
            "ab_test_id": test["test_id"] if test is not None and arm is not None else None,
            "arm": arm,
            "k": k,
            "seen_excluded": not include_seen and state.interactions is not None,
            "items": [{"item_id": item, "score": float(score)} for item, score in zip(item_ids, scores)],
        }


def _recommend(state: ModelState, user_id: str, k: int, exclude: list[str], *,
               exclude_seen: bool) -> tuple[list[Any], Any]:
    """Recommend for path/query parameters, which are always strings.

    Id maps may hold integer ids, so ``"42"`` also matches the id ``42``; a model
    without id maps is addressed by row index and returns item indices. Numbers
    are ASCII digits only.
    """
    if state.user_ids is None or state.item_ids is None:
        row = _ascii_int(user_id)
        if row is None or not 0 <= row < state.num_users:
            raise ModelNotFoundError(
                f"unknown user {user_id!r}: model {state.model_id!r} has no id maps, so users are row indices "
                f"0..{state.num_users - 1}"
            )
        items = [_ascii_int(item) for item in exclude]
        if any(item is None or not 0 <= item < state.num_items for item in items):
            raise InvalidArgumentError(
                f"exclude must hold item row indices 0..{state.num_items - 1} for model {state.model_id!r} (it has no id maps)"
            )
        indices, scores = state.recommend(row, k, items, exclude_seen=exclude_seen)  # type: ignore[arg-type]
        return indices.tolist(), scores
    # unknown ids are ignored by the loader, so offering both spellings is harmless
    excluded: list[Any] = [*exclude, *(number for item in exclude if (number := _ascii_int(item)) is not None)]
    try:
        return state.recommend_for_user(user_id, k, excluded, exclude_seen=exclude_seen)
    except ModelNotFoundError:
        number = _ascii_int(user_id)
        if number is None:
            raise
    return state.recommend_for_user(number, k, excluded, exclude_seen=exclude_seen)


def _ascii_int(text: str) -> int | None:
    """``text`` as an int when it is an optional ``-`` and 1-18 ASCII digits, else None."""
    return int(text) if _ASCII_INT.fullmatch(text) else None


def create_app(
    registry_path: str | os.PathLike[str] = DEFAULT_REGISTRY_PATH,
    *,
    database_url: str | None = None,
    reload_interval: float | None = None,
    api_token: str | None = None,
    alias: str | None = None,
    watch: bool = True,
) -> FastAPI:
    """Build the recommendation service for a registry.

    Args:
        registry_path: the registry's ``registry.json`` location (its database
            beside it unless ``database_url`` or ``$CFREG_DATABASE_URL`` names one).
        database_url: SQLAlchemy URL of the registry database.
        reload_interval: seconds between background reload checks; None or 0
            disables them (``POST /reload_model`` still works).
        api_token: bearer token required by ``POST /reload_model`` (default:
            ``$CFREG_SERVE_TOKEN``; neither set: the endpoint is open).
        alias: serve the target of this alias instead of the current best
            (``"champion_als"``); the service follows it like the current best: a move is
            picked up by the next reload check. None or ``"current_best"``: the current best.
        watch: reload as soon as the registry changes (PostgreSQL NOTIFY/LISTEN, a
            50 ms generation poll on SQLite; see :meth:`ModelLoader.start_watching`).
            On by default; False leaves reloads to ``POST /reload_model`` and ``reload_interval``.

    Returns:
        The FastAPI app. Its lifespan opens the shared loader of the registry
        (a missing registry fails startup) and loads the current best; a registry
        without a current best starts anyway and answers 503 until one is
        selected and reloaded.

    Raises:
        InvalidArgumentError: a negative ``reload_interval``, a malformed token or alias name.
    """
    followed = CURRENT_BEST_ALIAS if alias is None else validate_identifier(alias, "alias")
    if reload_interval is not None and reload_interval < 0:
        raise InvalidArgumentError(f"reload_interval must be >= 0 seconds (0 or None: off), got {reload_interval!r}")
    token = resolve_token(api_token)
    writer = require_token(token)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # auto_load=False: a loader created here loads below, once the metrics observe its loads.
        loader = await run_in_threadpool(lambda: get_loader(registry_path, database_url=database_url, auto_load=False,
                                                            alias=followed))
        metrics = ServiceMetrics(loader)
        try:
            # The loader is shared per process and may be older than the registry's current best.
            await run_in_threadpool(loader.reload_model)
            try:
                await run_in_threadpool(loader.load_current_best)
                logger.info("serving model %s", loader.get_model_info()["model_id"])
            except NoModelLoadedError as exc:
                logger.warning("starting without a model: %s", exc)
            await run_in_threadpool(loader.routing_config)  # the A/B routing table (arms in memory) before any request
            if token is None:
                logger.warning("no API token configured: POST /reload_model is open to every client "
                               "(set $CFREG_SERVE_TOKEN or cfreg serve --token-file)")
            if reload_interval:
                loader.start_auto_reload(reload_interval)
            if watch:
                loader.start_watching()
            app.state.service = RecommendationService(loader)
            app.state.metrics = metrics
            try:
                yield
            finally:
                if reload_interval:
                    loader.stop_auto_reload()
                if watch:
                    loader.stop_watching()
        finally:
            metrics.close()

    app = FastAPIOffline(
        title="cf-model-registry recommendations",
        summary="Top-k recommendations from the registry's current best model, with hot reload and A/B routing.",
        lifespan=lifespan,
        swagger_ui_parameters={"validatorUrl": None},  # Swagger UI would otherwise call an online validator
    )
    app.add_middleware(MetricsMiddleware)

    def service() -> RecommendationService:
        return app.state.service

    @app.exception_handler(NoModelLoadedError)
    async def no_model(_request: Request, exc: NoModelLoadedError) -> JSONResponse:
        logger.warning("request answered 503: %s", exc)
        return JSONResponse(status_code=503, content={"detail": service().missing()})

    @app.exception_handler(RegistryError)
    async def registry_error(request: Request, exc: RegistryError) -> JSONResponse:
        # Registry messages name files and database locations: log them, answer with the error code only.
        logger.error("%s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        return JSONResponse(status_code=500, content={"detail": f"internal registry error ({exc.code}); see the server log"})

    @app.get("/health")
    def health() -> JSONResponse:
        """Liveness/readiness: 200 while a model is served, 503 before."""
        state = service().loader.get_current_model()
        if state is None:
            return JSONResponse(status_code=503, content={"status": "no_model", "model_id": None})
        return JSONResponse(content={"status": "ok", "model_id": state.model_id})

    @app.get("/model")
    def model() -> dict[str, Any]:
        """The served model, the alias the service follows, and the running A/B test (null when none)."""
        svc = service()
        state = svc.served()
        return {
            "model_id": state.model_id,
            "model_type": state.model_type,
            "version": state.version,
            "num_users": state.num_users,
            "num_items": state.num_items,
            "factors": state.factors,
            "has_id_maps": state.user_ids is not None and state.item_ids is not None,
            "has_interactions": state.interactions is not None,
            "loaded_at": state.loaded_at,
            "alias": svc.loader.alias,
            "ab_test": svc.ab_test(),
        }

    @app.get("/recommend/{user_id}")
    def recommend(
        user_id: Annotated[str, Path(min_length=1, max_length=MAX_USER_ID_LENGTH, description="External user id.")],
        k: Annotated[int, Query(ge=1, le=MAX_K, description="Number of items.")] = DEFAULT_K,
        exclude: Annotated[
            list[Annotated[str, StringConstraints(min_length=1, max_length=MAX_ITEM_ID_LENGTH)]] | None,
            Query(max_length=MAX_EXCLUDE, description="Item ids never to return (repeat the parameter).")
        ] = None,
        include_seen: Annotated[
            bool, Query(description="Also return items the user interacted with in training (excluded by default).")
        ] = False,
    ) -> dict[str, Any]:
        """Top-k items for a user, from the model the running A/B test assigns (else the current best)."""
        return service().recommend(user_id, k, exclude, include_seen)

    @app.post("/reload_model", dependencies=[Depends(writer)])
    def reload_model() -> dict[str, Any]:
        """Load the registry's current best if it changed; the old model serves until the new one is ready."""
        loader = service().loader
        before = loader.get_current_model()
        still = before.model_id if before else "nothing"
        try:
            changed = loader.reload_model()
        except RegistryError as exc:
            logger.error("reload failed, still serving %s: %s", still, exc)
            raise HTTPException(
                status_code=503,
                detail=f"reload failed ({exc.code}), still serving {still}; the server log has the details",
            ) from None
        after = loader.get_current_model()
        return {
            "reloaded": changed,
            "model_id": after.model_id if after else None,
            "previous_model_id": before.model_id if before else None,
        }

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        """Prometheus metrics in the text exposition format."""
        return Response(content=app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app


def serve(
    registry_path: str | os.PathLike[str] = DEFAULT_REGISTRY_PATH,
    host: str = "127.0.0.1",
    port: int = 8000,
    reload_interval: float | None = None,
    database_url: str | None = None,
    *,
    api_token: str | None = None,
    alias: str | None = None,
    watch: bool = True,
) -> None:
    """Run the service with uvicorn until interrupted (``cfreg serve``).

    Args:
        registry_path: the registry to serve from.
        host: interface to listen on.
        port: TCP port.
        reload_interval: seconds between background reload checks (None/0: off).
        database_url: SQLAlchemy URL of the registry database.
        api_token: bearer token for ``POST /reload_model`` (default ``$CFREG_SERVE_TOKEN``).
        alias: serve and follow this alias's target instead of the current best.
        watch: reload as soon as the registry changes (see :func:`create_app`).
    """
    import uvicorn

    app = create_app(registry_path, database_url=database_url, reload_interval=reload_interval, api_token=api_token,
                     alias=alias, watch=watch)
    if resolve_token(api_token) is None and not _is_loopback(host):
        logger.warning("serving on %s without an API token: anyone who can reach it can trigger reloads", host)
    uvicorn.run(app, host=host, port=port)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

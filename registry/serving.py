"""A hot-reloading recommendation service over HTTP (FastAPI; the ``serve`` extra).

The doc's "Serving Integration" as a ready app: its lifespan opens the
registry's shared loader (:func:`registry.get_loader`) and loads the current
best; requests are served from memory, routed through the running A/B test;
``POST /reload_model`` (or a background check every ``reload_interval``
seconds) swaps in a newly selected best without dropping a request.

Usage::

    app = create_app("artifacts/cf/registry.json", reload_interval=5)
    # or, blocking: serve("artifacts/cf/registry.json", port=8000, reload_interval=5)

Endpoints (see ``docs/serving.md``):

* ``GET /health``: 200 with the served model id, 503 while no model is loaded.
* ``GET /model``: the served model (id, type, version, shapes, ``loaded_at``) and
  the running A/B test (or null).
* ``GET /recommend/{user_id}?k=10&exclude=i1&exclude=i2``: top-k items for an
  external user id, from the model the A/B test assigns the user to, never one of
  ``exclude``; the response names that model and arm.
* ``POST /reload_model``: ``{"reloaded": bool, "model_id": ...}``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Path, Query
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from .cf_registry import DEFAULT_REGISTRY_PATH
from .errors import InvalidArgumentError, ModelNotFoundError, NoModelLoadedError, RegistryError
from .loader import ModelLoader, ModelState, get_loader

logger = logging.getLogger(__name__)

DEFAULT_K = 10
MAX_K = 1000
MAX_USER_ID_LENGTH = 256
MAX_EXCLUDE = 10_000

__all__ = ["MAX_K", "create_app", "serve"]


class RecommendationService:
    """What the endpoints share: the loader, which also holds the A/B routing table.

    The running A/B test is the loader's own copy (:meth:`ModelLoader.routing_config`),
    refreshed by its reload check, so a request never reads the database and the
    test a response names is always the one its model was routed with.
    """

    def __init__(self, loader: ModelLoader) -> None:
        self.loader = loader

    def ab_test(self) -> dict[str, Any] | None:
        """The running A/B test the loader routes with (the doc's ``ab_test`` dict) or None."""
        return self.loader.routing_config()

    def served(self) -> ModelState:
        """The current best being served; 503 when there is none."""
        state = self.loader.get_current_model()
        if state is None:
            raise HTTPException(
                status_code=503,
                detail="no model loaded: the registry has no current best yet; select one "
                "(ModelRegistry.select_best_model) and call POST /reload_model",
            )
        return state

    def recommend(self, user_id: str, k: int, exclude: list[str] | None = None) -> dict[str, Any]:
        """Top-``k`` for an external user id from the model the user is routed to, minus ``exclude``."""
        self.served()
        state, test = self.loader.route_for_user(user_id)  # one routing snapshot: model and test agree
        arm = None
        if test is not None:
            arm = {test["control_model"]: "control", test["treatment_model"]: "treatment"}.get(state.model_id)
        item_ids, scores = _recommend(state, user_id, k, exclude or [])
        return {
            "user_id": user_id,
            "model_id": state.model_id,
            "model_type": state.model_type,
            "version": state.version,
            "ab_test_id": test["test_id"] if test is not None and arm is not None else None,
            "arm": arm,
            "k": k,
            "items": [{"item_id": item, "score": float(score)} for item, score in zip(item_ids, scores)],
        }


def _recommend(state: ModelState, user_id: str, k: int, exclude: list[str]) -> tuple[list[Any], Any]:
    """Recommend for path/query parameters, which are always strings.

    Id maps may hold integer ids, so ``"42"`` also matches the id ``42``; a model
    without id maps is addressed by row index and returns item indices.
    """
    if state.user_ids is None or state.item_ids is None:
        if not user_id.isdigit() or int(user_id) >= state.num_users:
            raise ModelNotFoundError(
                f"unknown user {user_id!r}: model {state.model_id!r} has no id maps, so users are row indices "
                f"0..{state.num_users - 1}"
            )
        if not all(item.isdigit() for item in exclude):
            raise InvalidArgumentError(f"exclude must hold item row indices for model {state.model_id!r} (it has no id maps)")
        indices, scores = state.recommend(int(user_id), k, [int(item) for item in exclude])
        return indices.tolist(), scores
    # unknown ids are ignored by the loader, so offering both spellings is harmless
    excluded = [*exclude, *(int(item) for item in exclude if _is_int(item))]
    try:
        return state.recommend_for_user(user_id, k, excluded)
    except ModelNotFoundError:
        if not _is_int(user_id):
            raise
    return state.recommend_for_user(int(user_id), k, excluded)


def _is_int(text: str) -> bool:
    return text.isdigit() or (text.startswith("-") and text[1:].isdigit())


def create_app(
    registry_path: str | os.PathLike[str] = DEFAULT_REGISTRY_PATH,
    *,
    database_url: str | None = None,
    reload_interval: float | None = None,
) -> FastAPI:
    """Build the recommendation service for a registry.

    Args:
        registry_path: the registry's ``registry.json`` location (its database
            beside it unless ``database_url`` or ``$CFREG_DATABASE_URL`` names one).
        database_url: SQLAlchemy URL of the registry database.
        reload_interval: seconds between background reload checks; None or 0
            disables them (``POST /reload_model`` still works).

    Returns:
        The FastAPI app. Its lifespan opens the shared loader of the registry
        (a missing registry fails startup) and loads the current best; a registry
        without a current best starts anyway and answers 503 until one is
        selected and reloaded.
    """
    if reload_interval is not None and reload_interval < 0:
        raise InvalidArgumentError(f"reload_interval must be >= 0 seconds (0 or None: off), got {reload_interval!r}")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loader = await run_in_threadpool(lambda: get_loader(registry_path, database_url=database_url))
        # The loader is shared per process and may be older than the registry's current best.
        await run_in_threadpool(loader.reload_model)
        try:
            await run_in_threadpool(loader.load_current_best)
            logger.info("serving model %s", loader.get_model_info()["model_id"])
        except NoModelLoadedError as exc:
            logger.warning("starting without a model: %s", exc)
        await run_in_threadpool(loader.routing_config)  # the A/B routing table (arms in memory) before any request
        if reload_interval:
            loader.start_auto_reload(reload_interval)
        app.state.service = RecommendationService(loader)
        try:
            yield
        finally:
            if reload_interval:
                loader.stop_auto_reload()

    app = FastAPI(
        title="cf-model-registry recommendations",
        summary="Top-k recommendations from the registry's current best model, with hot reload and A/B routing.",
        lifespan=lifespan,
    )

    def service() -> RecommendationService:
        return app.state.service  # type: ignore[no-any-return]

    @app.exception_handler(ModelNotFoundError)
    async def not_found(_request: Any, exc: ModelNotFoundError) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(exc)})

    @app.exception_handler(NoModelLoadedError)
    async def no_model(_request: Any, exc: NoModelLoadedError) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": str(exc)})

    @app.exception_handler(InvalidArgumentError)
    async def invalid(_request: Any, exc: InvalidArgumentError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    @app.get("/health")
    def health() -> JSONResponse:
        """Liveness/readiness: 200 while a model is served, 503 before."""
        state = service().loader.get_current_model()
        if state is None:
            return JSONResponse(status_code=503, content={"status": "no_model", "model_id": None})
        return JSONResponse(content={"status": "ok", "model_id": state.model_id})

    @app.get("/model")
    def model() -> dict[str, Any]:
        """The served model and the running A/B test (null when none)."""
        svc = service()
        state = svc.served()
        return {
            "model_id": state.model_id,
            "model_type": state.model_type,
            "version": state.version,
            "path": state.path,
            "num_users": state.num_users,
            "num_items": state.num_items,
            "factors": state.factors,
            "has_id_maps": state.user_ids is not None and state.item_ids is not None,
            "loaded_at": state.loaded_at,
            "ab_test": svc.ab_test(),
        }

    @app.get("/recommend/{user_id}")
    def recommend(
        user_id: Annotated[str, Path(min_length=1, max_length=MAX_USER_ID_LENGTH, description="External user id.")],
        k: Annotated[int, Query(ge=1, le=MAX_K, description="Number of items.")] = DEFAULT_K,
        exclude: Annotated[
            list[str] | None, Query(max_length=MAX_EXCLUDE, description="Item ids never to return (repeat the parameter).")
        ] = None,
    ) -> dict[str, Any]:
        """Top-k items for a user, from the model the running A/B test assigns (else the current best)."""
        return service().recommend(user_id, k, exclude)

    @app.post("/reload_model")
    def reload_model() -> dict[str, Any]:
        """Load the registry's current best if it changed; the old model serves until the new one is ready."""
        loader = service().loader
        before = loader.get_current_model()
        try:
            changed = loader.reload_model()
        except RegistryError as exc:
            logger.error("reload failed, still serving %s: %s", before.model_id if before else None, exc)
            raise HTTPException(
                status_code=503,
                detail=f"reload failed, still serving {before.model_id if before else 'nothing'}: {exc}",
            ) from exc
        after = loader.get_current_model()
        return {
            "reloaded": changed,
            "model_id": after.model_id if after else None,
            "previous_model_id": before.model_id if before else None,
        }

    return app


def serve(
    registry_path: str | os.PathLike[str] = DEFAULT_REGISTRY_PATH,
    host: str = "127.0.0.1",
    port: int = 8000,
    reload_interval: float | None = None,
    database_url: str | None = None,
) -> None:
    """Run the service with uvicorn until interrupted (``cfreg serve``).

    Args:
        registry_path: the registry to serve from.
        host: interface to listen on.
        port: TCP port.
        reload_interval: seconds between background reload checks (None/0: off).
        database_url: SQLAlchemy URL of the registry database.
    """
    import uvicorn

    uvicorn.run(create_app(registry_path, database_url=database_url, reload_interval=reload_interval), host=host, port=port)

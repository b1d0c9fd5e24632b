"""The REST API under ``/api``: read endpoints for everything the Python API reads, and
bearer-token write endpoints for the operator actions.

Errors are JSON ``{"error": {"code", "type", "message"}}`` (schema ``ErrorResponse``)
with 404 (unknown id), 409 (conflicts with the registry's state: current best, running
test), 422 (malformed input), 401 (missing or wrong token), 403 (read-only app).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response

from .errors import WebError
from .schemas.actions import (
    ABStartRequest,
    ABStopRequest,
    AliasDetail,
    AliasInfo,
    ArchiveResult,
    PromoteRequest,
    RollbackRequest,
    SelectBestRequest,
    SelectBestResult,
    SelectionResult,
)
from .schemas.evidence import ABTestResults, ModelDiff, Significance
from .schemas.reads import (
    ABTestInfo,
    AuditEventInfo,
    Comparison,
    CurrentBest,
    EmbeddingsVersion,
    ErrorResponse,
    ModelDetail,
    ModelPage,
    ModelSummary,
    RegistryStats,
    RouteResult,
    SelectionEvent,
)
from .service import RegistryService

ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": ErrorResponse} for status in (401, 403, 404, 409, 422)}

router = APIRouter(prefix="/api", responses=ERRORS)


def service_of(request: Request) -> RegistryService:
    """The app's registry service."""
    return request.app.state.service


def writer(request: Request, authorization: Annotated[str | None, Header()] = None) -> str:
    """The identity behind ``Authorization: Bearer <token>``; 403 when read-only, 401 when wrong."""
    tokens = request.app.state.tokens
    if not tokens.enabled:
        raise WebError(403, "read_only_mode", "this registry UI is read-only: start it with a token to allow changes")
    identity = tokens.identify_bearer(authorization)
    if identity is None:
        raise WebError(401, "unauthorized", "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})
    return f"web:{identity}"


Service = Annotated[RegistryService, Depends(service_of)]
Identity = Annotated[str, Depends(writer)]
ModelId = Annotated[str, Path(max_length=200)]


# --------------------------------------------------------------------------- reads


@router.get("/models", response_model=ModelPage, tags=["models"])
def list_models(
    service: Service,
    model_type: str | None = None,
    status: str | None = None,
    q: Annotated[str | None, Query(description="Substring of the model id (case-insensitive).")] = None,
    sort: Annotated[str, Query(description="model_id, model_type, version, status, created_at, training_time or a metric name.")] = "created_at",
    order: Literal["asc", "desc"] = "desc",
    page: int = 1,
    per_page: int = 50,
) -> ModelPage:
    """Models, filtered, sorted (missing values last) and paged; ``is_current`` marks the current best."""
    result = service.page(model_type=model_type or None, status=status or None, search=q, sort=sort,
                          ascending=order == "asc", page=page, per_page=per_page)
    return ModelPage(
        items=[ModelSummary(**row.__dict__) for row in result.rows], total=result.total, page=result.page,
        per_page=result.per_page, pages=result.pages, sort=result.sort, order=order,
        current_best=result.current_best, metric_names=result.metric_names,
    )


@router.get("/models/{model_id}", response_model=ModelDetail, tags=["models"])
def get_model(service: Service, model_id: ModelId) -> dict:  # type: ignore[type-arg]
    """One model: metrics, hyperparameters, training info, lineage, files, selections, A/B tests."""
    return service.model(model_id)


@router.get("/compare", response_model=Comparison, tags=["models"])
def compare(service: Service, ids: Annotated[list[str], Query(description="Two to ten model ids.")]) -> dict:  # type: ignore[type-arg]
    """Models side by side: metrics with differences from the first, hyperparameters that differ."""
    return service.compare(ids)


@router.get("/current-best", response_model=CurrentBest | None, tags=["selection"])
def current_best(service: Service) -> dict | None:  # type: ignore[type-arg]
    """The current best model, or null."""
    return service.current_best()


@router.get("/selections", response_model=list[SelectionEvent], tags=["selection"])
def selections(service: Service, limit: Annotated[int | None, Query(ge=1, le=10_000)] = None) -> list:  # type: ignore[type-arg]
    """The selection history, newest first."""
    return service.selections(limit)


@router.get("/stats", response_model=RegistryStats, tags=["registry"])
def stats(service: Service) -> dict:  # type: ignore[type-arg]
    """Counts by status and type, the current best, generation."""
    return service.stats()


@router.get("/embeddings", response_model=list[EmbeddingsVersion], tags=["embeddings"])
def embeddings(service: Service) -> list:  # type: ignore[type-arg]
    """BERT embeddings versions, newest first, with their linked models."""
    return service.embeddings()


@router.get("/ab-tests", response_model=list[ABTestInfo], tags=["ab-tests"])
def ab_tests(service: Service) -> list:  # type: ignore[type-arg]
    """Every A/B test, newest first, with the share of users each arm gets now."""
    return service.ab_tests()


@router.get("/route/{user_id}", response_model=RouteResult, tags=["ab-tests"])
def route(service: Service, user_id: Annotated[str, Path(max_length=256)]) -> dict:  # type: ignore[type-arg]
    """The model serving ``user_id`` now (the running test's arm, else the current best)."""
    return service.route(user_id)


@router.get("/audit", response_model=list[AuditEventInfo], tags=["registry"])
def audit_events(
    service: Service,
    request: Request,
    response: Response,
    action: str | None = None,
    model: Annotated[str | None, Query(description="Target: a model id, test id or embeddings version.")] = None,
    since: Annotated[str | None, Query(description="UTC time, e.g. 2025-01-16 or 2025-01-16T10:30:00.")] = None,
    until: str | None = None,
    limit: Annotated[int, Query(description="Page size, 1 to 1000.")] = 100,
    page: Annotated[int, Query(description="1-based page of the newest-first log.")] = 1,
) -> list:  # type: ignore[type-arg]
    """Audit events, newest first, one page of ``limit``. The ``X-Total-Count`` header holds the number
    of matching events; ``Link`` holds the ``prev``/``next`` pages (RFC 8288)."""
    result = service.audit_page(action=action, model=model, since=since, until=until, limit=limit, page=page)
    response.headers["X-Total-Count"] = str(result["total"])
    links = []
    if page > 1:
        links.append(f'<{request.url.include_query_params(page=min(page - 1, result["pages"]))}>; rel="prev"')
    if page < result["pages"]:
        links.append(f'<{request.url.include_query_params(page=page + 1)}>; rel="next"')
    if links:
        response.headers["Link"] = ", ".join(links)
    return result["items"]


@router.get("/aliases", response_model=list[AliasInfo], tags=["aliases"])
def list_aliases(service: Service) -> list:  # type: ignore[type-arg]
    """Every alias with its model (``current_best`` first when set), who moved it last, when and why."""
    return service.list_aliases()


@router.get("/aliases/{name}", response_model=AliasDetail, tags=["aliases"])
def get_alias(service: Service, name: ModelId,
              limit: Annotated[int, Query(description="Moves to return, 1 to 1000.")] = 100) -> dict:  # type: ignore[type-arg]
    """One alias: its model now and its history of moves, newest first (404 when it never existed)."""
    return service.alias_detail(name, limit)


@router.get("/diff", response_model=ModelDiff, tags=["models"])
def diff(
    service: Service,
    a: Annotated[str, Query(max_length=200, description="Model A (the one in place, e.g. the current best).")],
    b: Annotated[str, Query(max_length=200, description="Model B (the candidate).")],
    k: Annotated[int, Query(description="List length, 1 to 100.")] = 10,
    users: Annotated[int, Query(description="Sampled shared users, 1 to 20,000.")] = 2000,
    items: Annotated[int, Query(description="Sampled shared items, 1 to 20,000.")] = 2000,
    seed: int = 0,
) -> dict:  # type: ignore[type-arg]
    """What changes if B replaces A: recommendation churn, neighbour stability, coverage, embedding
    drift, catalogue changes and registered metrics. A stored report is returned as is; otherwise it
    is computed for this request and not stored."""
    return service.diff(a, b, k=k, users=users, items=items, seed=seed)


@router.get("/significance", response_model=Significance, tags=["models"])
def significance(
    service: Service,
    a: Annotated[str, Query(max_length=200)],
    b: Annotated[str, Query(max_length=200)],
    confidence: float = 0.95,
    method: Annotated[str, Query(description="paired_bootstrap or paired_t_test.")] = "paired_bootstrap",
    seed: int = 0,
    resamples: int = 2000,
) -> dict:  # type: ignore[type-arg]
    """B against A on the users both per-user evaluation files cover: per metric, the mean difference,
    its confidence interval and a p-value (422 ``no_user_evaluation`` when a model has no such file)."""
    return service.significance(a, b, confidence=confidence, method=method, seed=seed, resamples=resamples)


@router.get("/ab-tests/{test_id}/results", response_model=ABTestResults, tags=["ab-tests"])
def ab_results(
    service: Service,
    test_id: ModelId,
    metric: Annotated[str | None, Query(description="conversion or value; default: conversion when recorded.")] = None,
    method: Annotated[str, Query(description="fixed_horizon or msprt.")] = "fixed_horizon",
    confidence: float = 0.95,
) -> dict:  # type: ignore[type-arg]
    """Per-arm totals, the treatment's lift over control with its interval, the p-value, exposures still
    needed and the verdict."""
    return service.ab_results(test_id, metric=metric, method=method, confidence=confidence)


# --------------------------------------------------------------------------- writes


@router.post("/select-best", response_model=SelectBestResult, tags=["actions"])
def select_best(service: Service, identity: Identity, body: SelectBestRequest) -> dict:  # type: ignore[type-arg]
    """Make the active model with the highest metric the current best (optionally bounded by churn
    against the current best, or requiring a significant improvement on per-user evaluations)."""
    return service.select_best(identity, body.metric, body.min_improvement, body.model_type, max_churn=body.max_churn,
                               confidence=body.confidence, require_evaluation=body.require_evaluation)


@router.post("/models/{model_id}/promote", response_model=SelectionResult, tags=["actions"])
def promote(service: Service, identity: Identity, model_id: ModelId, body: PromoteRequest | None = None) -> dict:  # type: ignore[type-arg]
    """Make this model the current best by hand (``max_churn``: refused over that churn unless ``force``)."""
    if body is None:
        return service.promote(identity, model_id)
    return service.promote(identity, model_id, body.reason, max_churn=body.max_churn, force=body.force)


@router.post("/rollback", response_model=SelectionResult, tags=["actions"])
def rollback(service: Service, identity: Identity, body: RollbackRequest | None = None) -> dict:  # type: ignore[type-arg]
    """Restore the previous current best (or make ``to`` current)."""
    return service.rollback(identity, body.to if body else None, body.reason if body else None)


@router.post("/models/{model_id}/archive", response_model=ArchiveResult, tags=["actions"])
def archive(service: Service, identity: Identity, model_id: ModelId) -> dict:  # type: ignore[type-arg]
    """Archive a model (409 for the current best or a model in a running test)."""
    return service.archive(identity, model_id)


@router.post("/ab-tests", response_model=ABTestInfo, status_code=201, tags=["actions"])
def start_ab_test(service: Service, identity: Identity, body: ABStartRequest) -> dict:  # type: ignore[type-arg]
    """Start an A/B test (409 when one is running)."""
    return service.start_ab_test(identity, body.control_model, body.treatment_model, body.traffic_split, body.test_id)


@router.post("/ab-tests/{test_id}/stop", response_model=ABTestInfo, tags=["actions"])
def stop_ab_test(service: Service, identity: Identity, test_id: ModelId, body: ABStopRequest | None = None) -> dict:  # type: ignore[type-arg]
    """Stop an A/B test, optionally promoting an arm or the winner by the results."""
    return service.stop_ab_test(identity, test_id, body.promote if body else None,
                                promote_winner=body.promote_winner if body else False)

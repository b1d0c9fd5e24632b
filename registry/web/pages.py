"""Server-rendered HTML pages (Jinja2) and the operator forms behind them.

Pages need no JavaScript. Forms post to ``/actions/...`` with a CSRF token and the
login session cookie, run the same :class:`RegistryService` operations as the write
endpoints of the API, and redirect back (post/redirect/get) with a one-time message.
"""

from __future__ import annotations

import hmac
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from ..ab_results import validate_result_options
from ..defaults import DEFAULT_METRIC, MODEL_STATUSES
from ..errors import InvalidArgumentError, ModelNotFoundError, RegistryError
from . import charts
from .auth import (
    CSRF_COOKIE,
    CSRF_FIELD,
    SESSION_COOKIE,
    SESSION_SECONDS,
    TokenStore,
    new_csrf_token,
)
from .errors import WebError, status_for
from .service import RegistryService

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
FLASH_COOKIE = "cfreg_flash"
MAX_FORM_BYTES = 64 * 1024
CSRF_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")
LEADERBOARD_PER_PAGE = 25
AUDIT_PER_PAGE = 50
NAV = (("/", "Leaderboard"), ("/charts", "Charts"), ("/compare", "Compare"), ("/history", "Selection history"),
       ("/aliases", "Aliases"), ("/ab-tests", "A/B tests"), ("/embeddings", "Embeddings"), ("/audit", "Audit log"))

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)


def _tokens(request: Request) -> TokenStore:
    return request.app.state.tokens


def _service(request: Request) -> RegistryService:
    return request.app.state.service


def session_identity(request: Request) -> str | None:
    """The logged-in identity of this request's session cookie, if valid."""
    return _tokens(request).session_identity(request.cookies.get(SESSION_COOKIE))


def _csrf(request: Request) -> tuple[str, bool]:
    token = request.cookies.get(CSRF_COOKIE, "")
    return (token, False) if CSRF_PATTERN.fullmatch(token) else (new_csrf_token(), True)


def render(request: Request, template: str, context: dict[str, Any], status_code: int = 200) -> Response:
    """Render a page with the layout's shared context (user, CSRF token, flash message)."""
    csrf, fresh = _csrf(request)
    flash = request.cookies.get(FLASH_COOKIE)
    kind, _, message = unquote(flash or "").partition("|")
    response = TEMPLATES.TemplateResponse(request, template, {
        **context,
        "nav": NAV,
        "path": request.url.path,
        "user": session_identity(request),
        "writable": _tokens(request).enabled,
        "csrf_field": CSRF_FIELD,
        "csrf_token": csrf,
        "flash": {"kind": kind, "message": message} if message and kind in ("ok", "error") else None,
        "here": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
    }, status_code=status_code)
    if fresh:
        response.set_cookie(CSRF_COOKIE, csrf, httponly=True, samesite="strict", path="/")
    if flash:
        response.delete_cookie(FLASH_COOKIE, path="/")
    return response


def error_page(request: Request, status: int, code: str, message: str) -> Response:
    """An error page with the error's code and message."""
    return render(request, "error.html", {"title": f"{status} {code}", "status": status, "code": code,
                                          "message": message}, status)


def _int(value: str | None, name: str, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise InvalidArgumentError(f"{name} must be a whole number, got {value!r}") from None


def _local_path(target: str | None, fallback: str = "/") -> str:
    """``target`` when it is a path on this site (no scheme, host or ``//``), else ``fallback``."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target and target.isprintable():
        return target
    return fallback


# --------------------------------------------------------------------------- pages


@router.get("/")
def leaderboard_view(request: Request) -> Response:
    """All models, sortable, filterable and paged; the current best marked."""
    query = request.query_params
    filters = {
        "model_type": query.get("model_type") or None,
        "status": query.get("status") or None,
        "search": query.get("q") or None,
        "sort": query.get("sort") or "created_at",
        "ascending": query.get("order") == "asc",
        "page": _int(query.get("page"), "page", 1),
        "per_page": _int(query.get("per_page"), "per_page", LEADERBOARD_PER_PAGE),
    }
    result = _service(request).page(**filters)

    def link(**changes: Any) -> str:
        params = {"model_type": filters["model_type"], "status": filters["status"], "q": filters["search"],
                  "sort": result.sort, "order": "asc" if result.ascending else "desc", "page": result.page,
                  "per_page": result.per_page}
        params.update(changes)
        return "/?" + urlencode({k: v for k, v in params.items() if v not in (None, "")})

    return render(request, "leaderboard.html", {"title": "Leaderboard", "result": result, "filters": filters,
                                                "link": link, "statuses": MODEL_STATUSES})


@router.get("/models/{model_id}")
def model_view(request: Request, model_id: str) -> Response:
    """Everything about one model, its selections, A/B tests, embeddings and audit trail."""
    service = _service(request)
    model = service.model(model_id)
    events = service.audit_events(model=model_id, limit=50)
    current = service.current_best()
    return render(request, "model.html", {"title": model_id, "model": model, "events": events, "current": current})


def _attempt(work: Any) -> tuple[Any, dict[str, str] | None]:
    """``(work(), None)``, or ``(None, {"code", "message"})`` when it raises a registry error
    other than an unknown id (a section of a page that cannot be shown says why)."""
    try:
        return work(), None
    except ModelNotFoundError:
        raise
    except RegistryError as exc:
        return None, {"code": exc.code, "message": str(exc)}


@router.get("/compare")
def compare_view(request: Request) -> Response:
    """Two or more models side by side; with no ids, a form to choose them.

    Below the side-by-side tables, the pair (first model, ``b``: the second by default) gets
    the recommender-aware diff and, when both have per-user evaluation files, the confidence
    interval and p-value of each metric's difference.
    """
    query = request.query_params
    ids = [value for value in query.getlist("ids") if value]
    if not ids:
        return render(request, "compare.html", {"title": "Compare", "comparison": None, "ids": []})
    service = _service(request)
    comparison = service.compare(ids)
    a, b = ids[0], query.get("b") or ids[1]
    if b not in ids[1:]:
        raise InvalidArgumentError(f"b must be one of the compared models after the first ({ids[1:]}), got {b!r}")
    k = _int(query.get("k"), "k", 10)
    method = query.get("method") or "paired_bootstrap"
    confidence = _float(query.get("confidence"), "confidence", 0.95)
    report, diff_error = _attempt(lambda: service.diff(a, b, k=k))
    significance, significance_error = _attempt(
        lambda: service.significance(a, b, confidence=confidence, method=method))

    def pair_link(**changes: Any) -> str:
        params: list[tuple[str, Any]] = [("ids", model_id) for model_id in ids]
        settings = {"b": b, "k": k, "method": method, "confidence": confidence}
        settings.update(changes)
        params.extend((key, value) for key, value in settings.items())
        return "/compare?" + urlencode(params)

    return render(request, "compare.html", {
        "title": "Compare", "comparison": comparison, "ids": ids, "pair": {"a": a, "b": b, "k": k},
        "method": method, "confidence": confidence, "report": report, "diff_error": diff_error,
        "significance": significance, "significance_error": significance_error, "pair_link": pair_link,
    })


@router.get("/charts")
def charts_view(request: Request) -> Response:
    """A metric over time per model type, and a two-metric scatter."""
    service = _service(request)
    names = service.registry.metric_names()
    types = service.registry.model_types()
    query = request.query_params

    def pick(key: str, preferred: str, fallback_index: int) -> str | None:
        value = query.get(key)
        if value:
            return value
        if preferred in names:
            return preferred
        return names[min(fallback_index, len(names) - 1)] if names else None

    metric, x_metric, y_metric = pick("metric", DEFAULT_METRIC, 0), pick("x", "recall@10", 0), pick("y", DEFAULT_METRIC, 1)
    model_type = query.get("model_type") or None
    time_svg = scatter_svg = charts.time_chart([], "metric")
    if metric:
        time_svg = charts.time_chart(service.registry.metric_series(metric, model_type), metric)
    if x_metric and y_metric:
        scatter_svg = charts.scatter_chart(
            service.registry.metric_pairs(x_metric, y_metric, model_type), x_metric, y_metric)
    return render(request, "charts.html", {
        "title": "Charts", "names": names, "types": types, "metric": metric, "x_metric": x_metric,
        "y_metric": y_metric, "model_type": model_type, "time_svg": time_svg, "scatter_svg": scatter_svg,
    })


@router.get("/history")
def history_view(request: Request) -> Response:
    """The selection history as a timeline, with select-best and rollback forms."""
    service = _service(request)
    return render(request, "history.html", {
        "title": "Selection history", "selections": service.selections(200), "current": service.current_best(),
        "names": service.registry.metric_names(),
    })


@router.get("/ab-tests")
def ab_tests_view(request: Request) -> Response:
    """A/B tests: arms, split, status, results (per-arm totals, lift, interval, p-value, verdict);
    start and stop forms."""
    service = _service(request)
    query = request.query_params
    metric, method = query.get("metric") or None, query.get("method") or "fixed_horizon"
    validate_result_options(metric or "conversion", method, 0.95)  # a bad option is a 422 even with no test
    tests = service.ab_tests()
    results = {test["test_id"]: service.ab_results(test["test_id"], metric=metric, method=method) for test in tests}
    return render(request, "ab_tests.html", {"title": "A/B tests", "tests": tests, "results": results,
                                             "metric": metric, "method": method})


@router.get("/aliases")
def aliases_view(request: Request) -> Response:
    """Every alias and the model it points at, who moved it last, when and why."""
    return render(request, "aliases.html", {"title": "Aliases", "aliases": _service(request).list_aliases()})


@router.get("/aliases/{name}")
def alias_view(request: Request, name: str) -> Response:
    """One alias: its model now and every move, newest first."""
    detail = _service(request).alias_detail(name, 200)
    return render(request, "alias.html", {"title": f"Alias {name}", "alias": detail})


@router.get("/embeddings")
def embeddings_view(request: Request) -> Response:
    """BERT embeddings versions and the models linked to them."""
    return render(request, "embeddings.html", {"title": "Embeddings", "embeddings": _service(request).embeddings()})


@router.get("/audit")
def audit_view(request: Request) -> Response:
    """The audit log, newest first, filtered by action, model and time."""
    query = request.query_params
    filters: dict[str, Any] = {"action": query.get("action") or None, "model": query.get("model") or None,
                               "since": query.get("since") or None, "until": query.get("until") or None,
                               "limit": _int(query.get("limit"), "limit", AUDIT_PER_PAGE)}
    result = _service(request).audit_page(**filters, page=_int(query.get("page"), "page", 1))

    def link(page: int) -> str:
        params = {**filters, "page": page}
        return "/audit?" + urlencode({k: v for k, v in params.items() if v not in (None, "")})

    return render(request, "audit.html", {"title": "Audit log", "events": result["items"], "filters": filters,
                                          "result": result, "link": link})


@router.get("/login")
def login_view(request: Request) -> Response:
    """The login form (only when tokens are configured)."""
    if not _tokens(request).enabled:
        return error_page(request, 404, "read_only_mode", "This registry UI is read-only: there is nothing to log in to.")
    return render(request, "login.html", {"title": "Log in", "next": _local_path(request.query_params.get("next")),
                                          "failed": False})


# --------------------------------------------------------------------------- forms


async def _form(request: Request) -> dict[str, str]:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        raise WebError(415, "unsupported_media_type", "forms must be sent as application/x-www-form-urlencoded")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise WebError(413, "too_large", f"form bodies are limited to {MAX_FORM_BYTES} bytes")
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise WebError(400, "bad_form", "the form is not valid UTF-8") from None
    return {key: values[-1].strip() for key, values in parsed.items()}


def _check_csrf(request: Request, form: dict[str, str]) -> None:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = form.get(CSRF_FIELD, "")
    if not (CSRF_PATTERN.fullmatch(cookie) and hmac.compare_digest(cookie.encode(), sent.encode())):
        raise WebError(403, "csrf_failed", "the form's security token is missing or stale: reload the page and try again")


def _redirect(target: str, kind: str, message: str) -> Response:
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(FLASH_COOKIE, quote(f"{kind}|{message[:500]}"), httponly=True, samesite="strict", path="/",
                        max_age=60)
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    """Check the token; on success set the session cookie and go to ``next``."""
    form = await _form(request)
    _check_csrf(request, form)
    tokens = _tokens(request)
    if not tokens.enabled:
        raise WebError(403, "read_only_mode", "this registry UI is read-only")
    target = _local_path(form.get("next"))
    identity = tokens.identify(form.get("token"))
    if identity is None:
        return render(request, "login.html", {"title": "Log in", "next": target, "failed": True}, 401)
    response = _redirect(target, "ok", f"Logged in as {identity}.")
    response.set_cookie(SESSION_COOKIE, tokens.session_cookie(identity), httponly=True, samesite="strict",
                        path="/", max_age=SESSION_SECONDS)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """End the session."""
    form = await _form(request)
    _check_csrf(request, form)
    response = _redirect("/", "ok", "Logged out.")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


ACTIONS = {
    "select-best": lambda s, who, f: s.select_best(who, f.get("metric") or DEFAULT_METRIC,
                                                   _float(f.get("min_improvement"), "min_improvement", 0.0),
                                                   f.get("model_type") or None,
                                                   max_churn=_optional_float(f.get("max_churn"), "max_churn"),
                                                   confidence=_optional_float(f.get("confidence"), "confidence")),
    "promote": lambda s, who, f: s.promote(who, f.get("model_id", ""), f.get("reason") or None,
                                           max_churn=_optional_float(f.get("max_churn"), "max_churn")),
    "rollback": lambda s, who, f: s.rollback(who, f.get("to") or None, f.get("reason") or None),
    "archive": lambda s, who, f: s.archive(who, f.get("model_id", "")),
    "ab-start": lambda s, who, f: s.start_ab_test(who, f.get("control_model", ""), f.get("treatment_model", ""),
                                                  _float(f.get("traffic_split"), "traffic_split", None),
                                                  f.get("test_id") or None),
    "ab-stop": lambda s, who, f: s.stop_ab_test(who, f.get("test_id", ""),
                                                None if f.get("promote") == "winner" else f.get("promote") or None,
                                                promote_winner=f.get("promote") == "winner"),
}


def _float(value: str | None, name: str, default: float | None) -> float:
    if value is None or value == "":
        if default is None:
            raise InvalidArgumentError(f"{name} is required")
        return default
    try:
        return float(value)
    except ValueError:
        raise InvalidArgumentError(f"{name} must be a number, got {value!r}") from None


def _optional_float(value: str | None, name: str) -> float | None:
    return None if value is None or value == "" else _float(value, name, None)


def _done_message(action: str, result: dict[str, Any]) -> str:
    if action == "select-best":
        return (f"Selected {result['model_id']} as the current best ({result['metric']}={result['value']:.4f})."
                if result["selected"] else f"No active model qualifies on {result['metric']}; nothing changed.")
    if action in ("promote", "rollback"):
        return f"{result['model_id']} is now the current best."
    if action == "archive":
        return f"Archived {result['model_id']}."
    if action == "ab-start":
        return f"Started A/B test {result['test_id']} ({result['traffic_split']:.0%} to {result['treatment_model']})."
    return f"Stopped A/B test {result['test_id']}" + (f", promoted the {result['promoted']}." if result.get("promoted") else ".")


@router.post("/actions/{action}")
async def run_action(request: Request, action: str) -> Response:
    """Run one operator action from a page form, then go back to the page."""
    if action not in ACTIONS:
        raise WebError(404, "not_found", f"unknown action {action!r}")
    form = await _form(request)
    _check_csrf(request, form)
    if not _tokens(request).enabled:
        raise WebError(403, "read_only_mode", "this registry UI is read-only: start it with a token to allow changes")
    identity = session_identity(request)
    if identity is None:
        raise WebError(401, "unauthorized", "log in with your token first")
    back = _local_path(form.get("next"))
    try:
        result = await run_in_threadpool(ACTIONS[action], _service(request), f"web:{identity}", form)
    except RegistryError as exc:
        return _redirect(back, "error", f"{exc.code} ({status_for(exc)}): {exc}")
    return _redirect(back, "ok", _done_message(action, result))

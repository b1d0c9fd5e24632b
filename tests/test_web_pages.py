"""HTML pages and forms of the web app in-process (the browser tests drive them in Chromium),
the login session and CSRF checks, and the SVG charts."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

from factories import make_model_dir
from registry import InvalidArgumentError, ModelRegistry, write_user_eval
from registry.web import create_app
from registry.web.auth import TokenStore, load_tokens, parse_token_file
from registry.web.charts import nice_ticks, scatter_chart, time_chart
from registry_snapshot import snapshot

TOKEN = "bob-token-0123456789abc"


@pytest.fixture
def app_client(registry: ModelRegistry, model_dir, database_url: str):  # type: ignore[no-untyped-def]
    path = model_dir("als/v1")
    for index in range(3):
        registry.register_model(path, "als", {"factors": 8 * (index + 1)}, {"ndcg@10": 0.1 + index / 10},
                                {}, version=f"v{index}")
    registry.select_best_model()
    with TestClient(create_app(registry.registry_path, database_url, tokens=TokenStore({"bob": TOKEN}))) as client:
        yield registry, client


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]


def test_pages_render_and_errors_are_pages(app_client) -> None:  # type: ignore[no-untyped-def]
    _, client = app_client
    for path in ("/", "/?sort=ndcg@10&order=asc&page=1&per_page=2", "/models/als_v0", "/compare",
                 "/compare?ids=als_v0&ids=als_v2", "/charts", "/history", "/ab-tests", "/embeddings",
                 "/audit?action=select_best", "/login", "/aliases", "/aliases/current_best", "/audit?page=2&limit=1"):
        response = client.get(path)
        assert response.status_code == 200 and "text/html" in response.headers["content-type"], path
    page = client.get("/?sort=ndcg@10").text
    assert page.index("als_v2") < page.index("als_v1") < page.index("als_v0")
    assert 'class="current"' in page and "current best" in page
    for path, status in (("/models/ghost", 404), ("/?per_page=9999", 422), ("/?page=x", 422),
                         ("/compare?ids=als_v0", 422), ("/audit?since=soon", 422), ("/no/such/page", 404),
                         ("/compare?ids=als_v0&ids=als_v1&b=als_v2", 422), ("/compare?ids=als_v0&ids=als_v1&k=x", 422),
                         ("/aliases/nobody", 404), ("/ab-tests?method=bayes", 422), ("/audit?page=0", 422)):
        response = client.get(path)
        assert response.status_code == status and "text/html" in response.headers["content-type"], path


def test_login_session_csrf_and_promote_form(app_client) -> None:  # type: ignore[no-untyped-def]
    registry, client = app_client
    before = snapshot(registry, registry.root)
    form = client.get("/models/als_v0")
    assert 'action="/actions/promote"' not in form.text  # logged out: no action forms
    token = csrf_of(client.get("/login").text)
    assert client.post("/actions/promote", data={"csrf_token": token, "model_id": "als_v0"}).status_code == 401
    assert client.post("/login", data={"csrf_token": token, "token": "wrong-token-0123456789"}).status_code == 401
    assert client.post("/login", data={"token": TOKEN}).status_code == 403  # no CSRF token
    assert snapshot(registry, registry.root) == before
    logged = client.post("/login", data={"csrf_token": token, "token": TOKEN, "next": "//evil.example/x"},
                         follow_redirects=False)
    assert logged.status_code == 303 and logged.headers["location"] == "/"  # no open redirect
    assert "httponly" in logged.headers["set-cookie"].lower() and "samesite=strict" in logged.headers["set-cookie"].lower()
    page = client.get("/models/als_v0").text
    assert 'action="/actions/promote"' in page and "bob" in page
    assert client.post("/actions/promote", data={"csrf_token": "A" * 43, "model_id": "als_v0"}).status_code == 403
    assert registry.get_current_best()["model_id"] == "als_v2"
    done = client.post("/actions/promote", data={"csrf_token": csrf_of(page), "model_id": "als_v0",
                                                 "reason": "form", "next": "/models/als_v0"}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/models/als_v0"
    assert registry.get_current_best()["model_id"] == "als_v0"
    assert "als_v0 is now the current best" in client.get("/models/als_v0").text
    failed = client.post("/actions/archive", data={"csrf_token": csrf_of(page), "model_id": "als_v0"})
    assert failed.status_code == 200 and "in_use (409)" in failed.text  # redirected back with the error
    assert client.post("/logout", data={"csrf_token": csrf_of(page)}, follow_redirects=False).status_code == 303


def test_tokens_from_environment_and_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert not load_tokens(environ={}).enabled
    assert load_tokens(environ={"CFREG_UI_TOKEN": TOKEN}).identify(TOKEN) == "operator"
    file = tmp_path / "tokens.txt"
    file.write_text(f"# operators\nalice {TOKEN}x\nbob {TOKEN}\n")
    store = load_tokens(environ={"CFREG_UI_TOKEN_FILE": str(file)})
    assert store.identify(TOKEN) == "bob" and store.identify(TOKEN + "x") == "alice" and store.identify("nope") is None
    cookie = store.session_cookie("alice", now=1000.0)
    assert store.session_identity(cookie, now=1001.0) == "alice"
    assert store.session_identity(cookie, now=10**9) is None  # expired
    assert store.session_identity(cookie[:-1] + ("0" if cookie[-1] != "0" else "1"), now=1001.0) is None
    for bad in ("short", f"a {TOKEN}\na {TOKEN}x", f"a {TOKEN}\nb {TOKEN}", "a b c"):
        with pytest.raises(InvalidArgumentError):
            parse_token_file(bad, "tokens.txt")
    with pytest.raises(InvalidArgumentError):
        load_tokens(tmp_path / "missing.txt")


def test_charts_mark_the_current_best_and_escape_ids() -> None:
    assert nice_ticks(0.14, 0.2, 6) == [0.14, 0.15, 0.16, 0.17, 0.18, 0.19, 0.2]
    points = [{"model_id": "a<b", "model_type": "als", "created_at": f"2025-01-0{day}T00:00:00",
               "value": 0.1 * day, "is_current": day == 2} for day in (1, 2, 3)]
    svg = str(time_chart(points, "ndcg@10"))
    assert svg.count("<circle") == 3 + 1 + 2 and "a&lt;b" in svg and "a<b" not in svg  # points, best ring, legend
    assert ">best<" in svg and "<polyline" in svg
    scatter = str(scatter_chart([{"model_id": "m", "model_type": "bpr", "x": 0.2, "y": 0.3, "is_current": False}],
                                "recall@10", "ndcg@10"))
    assert ">best<" not in scatter and "recall@10" in scatter
    assert "No data" in str(time_chart([], "ndcg@10"))


def test_compare_page_shows_the_diff_and_the_significance(app_client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    registry, client = app_client
    users = [f"u{i}" for i in range(120)]
    base = np.random.default_rng(0).random(120) * 0.3
    ids = []
    for index, shift in enumerate((0.0, 0.05)):
        folder = make_model_dir(tmp_path / "artifacts" / "cf" / f"bpr{index}", "bpr", seed=10 + index)
        values = np.clip(base + shift + np.random.default_rng(index).normal(0, 0.01, 120), 0, 1)
        write_user_eval(folder, "bpr", users, {"ndcg@10": values})
        ids.append(registry.register_model(folder, "bpr", {}, {"ndcg@10": float(values.mean())}, {}, version=f"e{index}"))
    before = snapshot(registry, registry.root)
    page = client.get("/compare", params=[("ids", ids[0]), ("ids", ids[1]), ("ids", "als_v0")]).text
    assert f"What changes if <a href=\"/models/{ids[1]}\">{ids[1]}</a> replaces" in page
    churn = client.get("/api/diff", params={"a": ids[0], "b": ids[1]}).json()["churn"]["churn"]
    assert f'data-stat="churn">{churn * 100:.1f}%' in page
    assert "not stored" in page and snapshot(registry, registry.root) == before  # the page stored nothing
    assert f"{ids[1]} better" in page and 'class="ci ci-up"' in page  # the interval excludes zero
    assert "paired bootstrap" in page
    other = client.get("/compare", params=[("ids", ids[0]), ("ids", ids[1]), ("ids", "als_v0"), ("b", "als_v0")]).text
    assert "What changes if <a href=\"/models/als_v0\">als_v0</a> replaces" in other
    assert "No confidence interval: no_user_evaluation" in other  # als_v0 has no per-user file: said, not a 500
    assert "model types differ" in other
    t_test = client.get("/compare", params=[("ids", ids[0]), ("ids", ids[1]), ("method", "paired_t_test"),
                                            ("confidence", "0.9")]).text
    assert "90% interval" in t_test and "paired t test" in t_test


def test_ab_aliases_model_and_audit_pages(app_client) -> None:  # type: ignore[no-untyped-def]
    registry, client = app_client
    registry.set_alias("challenger", "als_v1", reason="next up")
    registry.set_tag("als_v1", "team", "recs")
    registry.set_description("als_v1", "A <b>bold</b> claim.")
    registry.start_ab_test("als_v2", "als_v1", 0.5, test_id="t1")
    assert "No outcomes recorded yet" in client.get("/ab-tests").text
    for day in range(3):
        registry.record_ab_outcomes("t1", "control", 30_000, 3_000, batch_id=f"d{day}")
        registry.record_ab_outcomes("t1", "treatment", 30_000, 2_500, batch_id=f"d{day}")
    page = client.get("/ab-tests").text
    assert 'data-verdict="control wins"' in page and "-16.7%" in page and "90,000" in page
    assert "fixed-horizon two-sample z-test" in page
    assert "always-valid mixture sequential" in client.get("/ab-tests?method=msprt").text

    model = client.get("/models/als_v1").text
    assert 'href="/aliases/challenger"' in model and "team=recs" in model
    assert "A &lt;b&gt;bold&lt;/b&gt; claim." in model  # escaped
    board = client.get("/").text
    assert 'href="/aliases/challenger"' in board and "team=recs" in board
    aliases = client.get("/aliases").text
    assert "@current_best" in aliases and "@challenger" in aliases and "next up" in aliases
    history = client.get("/aliases/challenger").text
    assert "als_v1" in history and "next up" in history

    events = registry.context.read(lambda s: __import__("registry.audit").audit.count_events(s))
    first = client.get("/audit?limit=3").text
    assert f"Page 1 of {-(-events // 3)}" in first and 'rel="next"' in first and 'rel="prev"' not in first
    assert f"{events:,} matching events" in first
    second = client.get("/audit?limit=3&page=2").text
    assert 'rel="prev"' in second and "/audit?limit=3&amp;page=1" in second
    assert re.findall(r"<tr><td class=\"nowrap\">", first) and first.count("<tr><td") == 3


def test_stop_form_promotes_the_winner_or_says_why_not(app_client) -> None:  # type: ignore[no-untyped-def]
    registry, client = app_client
    registry.start_ab_test("als_v2", "als_v1", 0.5, test_id="t1")
    token = csrf_of(client.get("/login").text)
    client.post("/login", data={"csrf_token": token, "token": TOKEN})
    page = client.get("/ab-tests").text
    assert '<option value="winner">' in page
    before = snapshot(registry, registry.root)
    refused = client.post("/actions/ab-stop", data={"csrf_token": csrf_of(page), "test_id": "t1", "promote": "winner",
                                                   "next": "/ab-tests"})
    assert "has no winner" in refused.text and snapshot(registry, registry.root) == before
    for day in range(3):
        registry.record_ab_outcomes("t1", "control", 30_000, 3_000, batch_id=f"d{day}")
        registry.record_ab_outcomes("t1", "treatment", 30_000, 3_600, batch_id=f"d{day}")
    done = client.post("/actions/ab-stop", data={"csrf_token": csrf_of(page), "test_id": "t1", "promote": "winner",
                                                "next": "/ab-tests"})
    assert "Stopped A/B test t1, promoted the treatment." in done.text
    assert registry.get_current_best()["model_id"] == "als_v1"


def test_promote_and_select_best_forms_pass_the_promotion_rules(app_client) -> None:  # type: ignore[no-untyped-def]
    registry, client = app_client
    token = csrf_of(client.get("/login").text)
    client.post("/login", data={"csrf_token": token, "token": TOKEN})
    page = client.get("/models/als_v0").text
    assert 'name="max_churn"' in page and 'name="max_churn"' in client.get("/history").text
    bad = client.post("/actions/promote", data={"csrf_token": csrf_of(page), "model_id": "als_v0", "max_churn": "lots"})
    assert "max_churn must be a number" in bad.text and registry.get_current_best()["model_id"] == "als_v2"
    done = client.post("/actions/promote", data={"csrf_token": csrf_of(page), "model_id": "als_v0", "max_churn": "0"})
    assert "als_v0 is now the current best" in done.text  # one folder for all three: churn 0 <= 0
    event = registry.context.read(lambda s: __import__("registry.audit").audit.query_events(s, action="PROMOTE"))[-1]
    assert event["details"]["churn_check"]["churn"] == 0 and event["details"]["churn_check"]["max_churn"] == 0
    refused = client.post("/actions/select-best", data={"csrf_token": csrf_of(page), "confidence": "0.95"})
    assert "no_user_evaluation (422)" in refused.text and registry.get_current_best()["model_id"] == "als_v0"

"""The web UI in a real headless Chromium (Debian's ``chromium`` driven by Playwright).

A uvicorn server on a free port of 127.0.0.1 serves a realistic registry
(``web_data.py``). The tests click through leaderboard -> model -> compare ->
log in -> promote -> leaderboard, check that read-only mode hides the actions,
that a wrong token gets 401 and changes nothing, that pages work with JavaScript
off and from the keyboard, that no page logs a console error and that no request
leaves 127.0.0.1; the compare page's diff and significance, the A/B results, the
aliases pages and the audit log's pager are visited too. Screenshots go to the test's folder, or to
``$CFREG_UI_SCREENSHOTS`` (``docs/img`` refreshes the documentation's images).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import uvicorn

from registry import ModelRegistry
from registry.web import create_app
from registry.web.auth import TokenStore
from registry_snapshot import snapshot, table_rows
from web_data import build_registry

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
TOKEN = "ui-test-token-7f3a9c2e41"
VIEWPORT = {"width": 1366, "height": 860}


@contextmanager
def running(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port; yields the base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install -y chromium"
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield instance
        instance.close()


@pytest.fixture
def filled(tmp_path: Path) -> ModelRegistry:
    return build_registry(tmp_path)


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("CFREG_UI_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Watch:
    """Console errors, page errors and every requested URL of a browser context."""

    def __init__(self, context: Any) -> None:
        self.errors: list[str] = []
        self.urls: list[str] = []
        context.on("request", lambda request: self.urls.append(request.url))
        context.on("page", self.attach)

    def attach(self, page: Any) -> None:
        page.on("console", lambda message: message.type == "error" and self.errors.append(message.text))
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    def check(self) -> None:
        assert self.errors == [], self.errors
        hosts = {urlsplit(url).hostname for url in self.urls if not url.startswith(("data:", "about:"))}
        assert hosts == {"127.0.0.1"}, hosts


def open_page(browser: Any, **options: Any) -> tuple[Any, Any, Watch]:
    context = browser.new_context(viewport=VIEWPORT, **options)
    watch = Watch(context)
    page = context.new_page()
    return context, page, watch


def test_click_through_compare_login_promote(browser: Any, filled: ModelRegistry, shots: Path) -> None:
    app = create_app(filled.registry_path, tokens=TokenStore({"alice": TOKEN}))
    with running(app) as base:
        context, page, watch = open_page(browser)
        page.goto(base + "/")
        best_row = page.locator("tr.current")
        assert best_row.count() == 1 and "als_v8" in best_row.inner_text() and "current best" in best_row.inner_text()
        assert page.locator("table.leaderboard tbody tr").count() == 18
        page.get_by_role("link", name="ndcg@10").click()
        page.wait_for_url("**sort=ndcg%4010**")
        first = page.locator("table.leaderboard tbody tr").first.locator("a.model-link").inner_text()
        assert first == "bert_als_v4"  # the highest ndcg@10
        page.screenshot(path=str(shots / "ui-leaderboard.png"), full_page=True)

        page.get_by_role("link", name="bpr_v6", exact=True).click()
        page.wait_for_url("**/models/bpr_v6")
        assert page.locator("h1").inner_text().startswith("bpr_v6")
        assert page.get_by_role("heading", name="Files").is_visible()
        assert page.locator("code.hash").count() == 7  # U, V, params, metadata, two id maps, per-user evaluation
        assert page.locator("form[action='/actions/promote']").count() == 0  # not logged in: no action forms
        page.screenshot(path=str(shots / "ui-model.png"), full_page=True)

        page.goto(base + "/?sort=ndcg@10")
        page.get_by_label("Compare bpr_v6").check()
        page.get_by_label("Compare als_v8").check()
        page.get_by_role("button", name="Compare selected").click()
        page.wait_for_url("**/compare?ids=**")
        assert page.locator("tr.differs").count() >= 1 and page.locator(".delta").count() >= 4
        page.screenshot(path=str(shots / "ui-compare.png"))  # the top: models, metrics; the diff has its own shots

        # A wrong token: 401, no session, nothing changed (the browser logs the 401, as it should).
        watch.check()
        before = snapshot(filled, filled.root)
        page.goto(base + "/models/bpr_v6")
        page.get_by_role("link", name="Log in").click()
        page.get_by_label("Token").fill("not-the-token-0000000000")
        with page.expect_response(lambda r: r.url.endswith("/login") and r.request.method == "POST") as answer:
            page.get_by_role("button", name="Log in").click()
        assert answer.value.status == 401
        assert "Wrong token" in page.locator("[role=alert]").inner_text()
        api_answer = page.request.post(base + "/api/models/bpr_v6/promote", data={},
                                       headers={"Authorization": "Bearer not-the-token-0000000000"})
        assert api_answer.status == 401
        assert snapshot(filled, filled.root) == before
        assert watch.errors == ["Failed to load resource: the server responded with a status of 401 (Unauthorized)"]
        watch.errors.clear()

        page.get_by_label("Token").fill(TOKEN)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url("**/models/bpr_v6")
        assert "Logged in as alice" in page.locator("[role=status]").inner_text()
        page.get_by_label("Reason").fill("wins the canary")
        page.get_by_role("button", name="Promote to current best").click()
        page.wait_for_url("**/models/bpr_v6")
        assert "bpr_v6 is now the current best" in page.locator("[role=status]").inner_text()
        page.get_by_role("link", name="Leaderboard", exact=True).first.click()
        assert "bpr_v6" in page.locator("tr.current").inner_text()
        assert filled.get_current_best()["model_id"] == "bpr_v6"
        event = filled.context.read(lambda s: __import__("registry.audit").audit.query_events(s, action="PROMOTE"))[-1]
        assert event["target"] == "bpr_v6" and event["actor"].startswith("web:alice via ")

        # A forged form (no CSRF token) is refused even with a session.
        forged = page.request.post(base + "/actions/promote", form={"model_id": "als_v1", "csrf_token": "x" * 43})
        assert forged.status == 403
        assert filled.get_current_best()["model_id"] == "bpr_v6"

        for path, name in (("/charts", "ui-charts.png"), ("/history", "ui-history.png"), ("/embeddings", None)):
            page.goto(base + path)
            assert page.locator("h1").count() == 1
            if name:
                page.screenshot(path=str(shots / name), full_page=True)
        assert page.goto(base + "/charts").ok and page.locator("svg.chart").count() == 2
        assert page.locator("svg.chart circle title").count() > 10
        watch.check()
        context.close()


def test_diff_significance_ab_results_aliases_and_audit_pages(browser: Any, filled: ModelRegistry, shots: Path) -> None:
    app = create_app(filled.registry_path, tokens=TokenStore({"alice": TOKEN}))
    with running(app) as base:
        context, page, watch = open_page(browser)
        tables = table_rows(filled)  # (the screenshots land under the registry's root: compare the database)
        page.goto(base + "/compare?ids=als_v8&ids=bpr_v6&ids=bert_als_v4")
        diff = page.locator("#diff")
        assert "What changes if bpr_v6 replaces als_v8" in diff.locator("h2").inner_text()
        expected = page.request.get(base + "/api/diff?a=als_v8&b=bpr_v6").json()
        assert diff.locator("[data-stat=churn]").inner_text() == f"{expected['churn']['churn'] * 100:.1f}%"
        assert diff.locator("svg.histogram-svg rect").count() == 11  # users with 0..10 items in common
        assert "model types differ" in diff.inner_text()
        significance = page.locator("#significance")
        rows = significance.locator("table.significance tbody tr")
        assert rows.count() == 2 and all("bpr_v6 worse" in text for text in rows.all_inner_texts())
        diff.screenshot(path=str(shots / "ui-diff.png"))
        significance.screenshot(path=str(shots / "ui-significance.png"))
        page.get_by_role("navigation", name="Candidate to diff against als_v8").get_by_role("link", name="bert_als_v4").click()
        page.wait_for_url("**b=bert_als_v4**")
        assert "What changes if bert_als_v4 replaces als_v8" in page.locator("#diff h2").inner_text()
        page.get_by_label("Method").select_option("paired_t_test")
        page.get_by_role("button", name="Recompute").click()
        page.wait_for_url("**method=paired_t_test**")
        assert "paired t test" in page.locator("#significance").inner_text()
        assert table_rows(filled) == tables  # reading diffs stores nothing

        page.goto(base + "/ab-tests")
        verdicts = dict(zip(page.locator("section.abtest h2").all_inner_texts(),
                            page.locator("[data-verdict]").all_inner_texts(), strict=True))
        assert [v for k, v in verdicts.items() if k.startswith("ab_bpr_v6")] == ["control wins"]
        assert [v for k, v in verdicts.items() if k.startswith("ab_bert_als_v4")] == ["keep running"]
        assert page.locator("table.ab-results").count() == 2 and "still needed" in page.locator("main").inner_text()
        page.screenshot(path=str(shots / "ui-ab-tests.png"), full_page=True)
        page.get_by_label("Method").select_option("msprt")
        page.get_by_role("button", name="Show results").click()
        page.wait_for_url("**method=msprt**")
        assert "mSPRT" in page.locator("main").inner_text()

        page.goto(base + "/")
        challenger = page.locator("tr", has=page.get_by_role("link", name="bert_als_v4", exact=True))
        assert "@challenger" in challenger.inner_text() and "team=recs" in challenger.inner_text()
        page.get_by_role("link", name="Aliases", exact=True).click()
        page.wait_for_url("**/aliases")
        assert page.locator("table.aliases tbody tr").count() == 3
        page.screenshot(path=str(shots / "ui-aliases.png"), full_page=True)
        page.get_by_role("link", name="@challenger").click()
        page.wait_for_url("**/aliases/challenger")
        moves = page.locator("ol.timeline li")
        assert moves.count() == 2 and "v4 beats v3 offline" in moves.first.inner_text()
        page.get_by_role("link", name="bert_als_v4").first.click()
        page.wait_for_url("**/models/bert_als_v4")
        assert "@challenger" in page.locator(".page-head").inner_text()
        page.goto(base + "/models/als_v8")
        assert "Weekly ALS retrain" in page.locator(".description").inner_text()
        assert "stage=production" in page.locator(".page-head").inner_text()

        page.goto(base + "/audit?limit=10")
        total = filled.context.read(lambda s: __import__("registry.audit").audit.count_events(s))
        pager = page.get_by_role("navigation", name="Pages")
        assert f"Page 1 of {-(-total // 10)}" in pager.inner_text()
        newest = page.locator("table.data tbody tr").all_inner_texts()
        page.screenshot(path=str(shots / "ui-audit.png"), full_page=True)
        pager.get_by_role("link", name="Older ›").click()
        page.wait_for_url("**page=2**")
        older = page.locator("table.data tbody tr").all_inner_texts()
        assert len(older) == 10 and not set(older) & set(newest)
        page.get_by_role("navigation", name="Pages").get_by_role("link", name="‹ Newer").click()
        page.wait_for_url("**page=1**")
        assert page.locator("table.data tbody tr").all_inner_texts() == newest

        # Logged in: "stop and promote the winner" on a test that has none is refused and changes nothing.
        page.goto(base + "/login?next=/ab-tests")
        page.get_by_label("Token").fill(TOKEN)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url("**/ab-tests")
        before = snapshot(filled, filled.root)
        page.get_by_label("Then promote").select_option("winner")
        page.get_by_role("button", name="Stop test").click()
        page.wait_for_url("**/ab-tests")
        assert "has no winner" in page.locator("[role=alert]").inner_text()
        assert snapshot(filled, filled.root) == before and filled.get_ab_test()["status"] == "running"
        watch.check()
        context.close()


def test_read_only_hides_actions_and_refuses_writes(browser: Any, filled: ModelRegistry) -> None:
    app = create_app(filled.registry_path, tokens=TokenStore())
    with running(app) as base:
        context, page, watch = open_page(browser)
        before = snapshot(filled, filled.root)
        for path in ("/", "/models/bpr_v6", "/history", "/ab-tests", "/aliases", "/compare?ids=als_v8&ids=bpr_v6"):
            page.goto(base + path)
            assert page.locator("main form[method=post]").count() == 0, path
            assert page.get_by_role("link", name="Log in").count() == 0
            assert page.locator(".session").inner_text().strip() == "read-only"
        assert page.request.post(base + "/api/models/bpr_v6/promote", data={},
                                 headers={"Authorization": f"Bearer {TOKEN}"}).status == 403
        assert page.request.post(base + "/actions/promote", form={"model_id": "bpr_v6"}).status == 403
        assert snapshot(filled, filled.root) == before
        watch.check()
        context.close()


def test_reading_works_without_javascript_and_by_keyboard(browser: Any, filled: ModelRegistry) -> None:
    app = create_app(filled.registry_path, tokens=TokenStore({"alice": TOKEN}))
    with running(app) as base:
        context, page, watch = open_page(browser, java_script_enabled=False)
        page.goto(base + "/")
        page.get_by_label("Type").fill("bpr")
        page.get_by_role("button", name="Filter").click()
        rows = page.locator("table.leaderboard tbody tr")
        assert rows.count() == 6 and all("bpr_" in text for text in rows.all_inner_texts())
        page.get_by_role("link", name="Model", exact=True).click()  # sort by id, no JavaScript needed
        assert page.locator("th[aria-sort]").inner_text().startswith("Model")
        page.goto(base + "/audit?action=PROMOTE")
        assert page.locator("table.data tbody tr").count() == 1
        watch.check()
        context.close()

        context, page, watch = open_page(browser)
        page.goto(base + "/")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to content"
        focused = []
        for _ in range(12):
            page.keyboard.press("Tab")
            focused.append(page.evaluate("document.activeElement.textContent.trim() || document.activeElement.name"))
        assert {"Leaderboard", "Charts", "Compare", "Audit log", "Log in"} <= set(focused)
        watch.check()
        context.close()

"""The web app's REST API (registry.web): every endpoint, auth, typed errors, OpenAPI, on both backends.

Bad input (unknown ids, bad filters, huge page sizes, wrong tokens) must get a 4xx
JSON error with a stable code and leave the database exactly as it was.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

import numpy as np

from registry import BERTEmbeddingsRegistry, ModelRegistry, audit, write_user_eval
from registry.web import create_app, is_loopback
from registry.web.auth import TokenStore
from registry_snapshot import snapshot

TOKEN = "alice-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SCHEMA_NAMES = {
    "ABRouting", "ABStartRequest", "ABStopRequest", "ABTestInfo", "ArchiveResult", "ArtifactFileInfo",
    "AuditEventInfo", "ComparedModel", "Comparison", "CurrentBest", "EmbeddingsVersion", "ErrorDetail",
    "ErrorResponse", "MetricComparison", "ModelDetail", "ModelPage", "ModelSummary", "ParameterComparison",
    "PromoteRequest", "RegistryStats", "RollbackRequest", "RouteResult", "SelectBestRequest", "SelectBestResult",
    "SelectionEvent", "SelectionResult",
    "ABArmResult", "ABTestResults", "AliasDetail", "AliasInfo", "AliasMove", "DiffCatalogue", "DiffCatalogueSide",
    "DiffChurn", "DiffCompatibility", "DiffCoverage", "DiffCoverageSide", "DiffDrift", "DiffMetricRow",
    "DiffNeighbours", "MetricSignificance", "ModelDiff", "Significance",
}


@pytest.fixture
def filled(registry: ModelRegistry, model_dir, embeddings_dir, registry_path: Path, database_url: str,
           tmp_path: Path) -> ModelRegistry:  # type: ignore[no-untyped-def]
    als, bpr = model_dir("als/v1"), model_dir("bpr/v1", "bpr", seed=1)
    bert = BERTEmbeddingsRegistry(registry_path, database_url=database_url, root=tmp_path)
    bert.register_embeddings(embeddings_dir("bert/v1"), "bert-base", 25, 16, version="emb1")
    registry.register_model(als, "als", {"factors": 8, "alpha": 1}, {"ndcg@10": 0.20, "recall@10": 0.30},
                            {"training_time_seconds": 12.5}, data_version="d1", git_commit="abc123", version="v1")
    registry.register_model(als, "als", {"factors": 16, "alpha": 1}, {"ndcg@10": 0.25, "recall@10": 0.28},
                            {"training_time_seconds": 20.0}, data_version="d1", version="v2")
    registry.register_model(bpr, "bpr", {"factors": 8}, {"ndcg@10": 0.22}, {}, version="v1")
    bert.link_to_model("emb1", "als_v2")
    registry.select_best_model("ndcg@10")
    return registry


@pytest.fixture
def client(filled: ModelRegistry, database_url: str) -> Iterator[TestClient]:
    app = create_app(filled.registry_path, database_url, tokens=TokenStore({"alice": TOKEN}))
    with TestClient(app) as test_client:
        yield test_client


def error_code(response) -> str:  # type: ignore[no-untyped-def]
    return response.json()["error"]["code"]


# --------------------------------------------------------------------------- reads


def test_models_page_filters_sorts_and_marks_current(client: TestClient) -> None:
    body = client.get("/api/models", params={"sort": "ndcg@10", "per_page": 2}).json()
    assert body["total"] == 3 and body["pages"] == 2 and body["current_best"] == "als_v2"
    assert [m["model_id"] for m in body["items"]] == ["als_v2", "bpr_v1"]
    assert body["items"][0]["is_current"] and body["items"][0]["metrics"] == {"ndcg@10": 0.25, "recall@10": 0.28}
    assert body["items"][0]["training_time"] == 20.0
    second = client.get("/api/models", params={"sort": "ndcg@10", "per_page": 2, "page": 2}).json()
    assert [m["model_id"] for m in second["items"]] == ["als_v1"]
    filtered = client.get("/api/models", params={"model_type": "bpr"}).json()
    assert [m["model_id"] for m in filtered["items"]] == ["bpr_v1"]
    assert client.get("/api/models", params={"q": "V1", "sort": "model_id", "order": "asc"}).json()["total"] == 2


def test_model_detail_has_lineage_files_links_and_history(client: TestClient) -> None:
    detail = client.get("/api/models/als_v2").json()
    assert detail["metrics"] == {"ndcg@10": 0.25, "recall@10": 0.28}
    assert detail["hyperparameters"] == {"factors": 16, "alpha": 1}
    assert detail["training_info"] == {"training_time_seconds": 20.0}
    assert detail["data_version"] == "d1" and detail["embeddings"] == ["emb1"] and detail["is_current"]
    assert {f["file_name"] for f in detail["files"]} == {"als_U.npy", "als_V.npy", "als_params.json", "als_metadata.json"}
    assert all(len(f["sha256"]) == 64 and f["size_bytes"] > 0 for f in detail["files"])
    assert [s["model_id"] for s in detail["selections"]] == ["als_v2"]
    assert client.get("/api/models/als_v1").json()["git_commit"] == "abc123"


def test_current_best_selections_stats_embeddings(client: TestClient) -> None:
    assert client.get("/api/current-best").json()["model_id"] == "als_v2"
    history = client.get("/api/selections").json()
    assert len(history) == 1 and history[0]["is_current"] and history[0]["metric"] == "ndcg@10"
    stats = client.get("/api/stats").json()
    assert stats["total_models"] == 3 and stats["by_type"] == {"als": 2, "bpr": 1} and stats["total_embeddings"] == 1
    embeddings = client.get("/api/embeddings").json()
    assert embeddings[0]["version"] == "emb1" and embeddings[0]["linked_models"] == ["als_v2"]


def test_compare_shows_differences_and_differing_hyperparameters(client: TestClient) -> None:
    body = client.get("/api/compare", params=[("ids", "als_v1"), ("ids", "als_v2"), ("ids", "bpr_v1")]).json()
    assert body["model_ids"] == ["als_v1", "als_v2", "bpr_v1"]
    ndcg = next(m for m in body["metrics"] if m["name"] == "ndcg@10")
    assert ndcg["differences"]["als_v2"] == pytest.approx(0.05) and ndcg["differences"]["als_v1"] == 0
    recall = next(m for m in body["metrics"] if m["name"] == "recall@10")
    assert recall["values"]["bpr_v1"] is None and recall["differences"]["bpr_v1"] is None
    params = {p["name"]: p for p in body["hyperparameters"]}
    assert params["factors"]["differs"] and params["alpha"]["differs"]  # bpr lacks alpha
    same = client.get("/api/compare", params=[("ids", "als_v1"), ("ids", "als_v2")]).json()
    assert not {p["name"]: p for p in same["hyperparameters"]}["alpha"]["differs"]


def test_ab_tests_routing_and_audit_filters(client: TestClient) -> None:
    started = client.post("/api/ab-tests", json={"control_model": "als_v2", "treatment_model": "bpr_v1",
                                                 "traffic_split": 0.3, "test_id": "t1"}, headers=AUTH)
    assert started.status_code == 201 and started.json()["routing"] == {"control": 0.7, "treatment": 0.3}
    tests = client.get("/api/ab-tests").json()
    assert tests[0]["test_id"] == "t1" and tests[0]["status"] == "running"
    routed = client.get("/api/route/user-42").json()
    assert routed["test_id"] == "t1" and routed["model_id"] in ("als_v2", "bpr_v1")
    assert routed["arm"] == ("treatment" if routed["model_id"] == "bpr_v1" else "control")
    stopped = client.post("/api/ab-tests/t1/stop", json={"promote": "treatment"}, headers=AUTH).json()
    assert stopped["status"] == "stopped" and stopped["routing"] == {"control": 1.0, "treatment": 0.0}
    assert client.get("/api/current-best").json()["model_id"] == "bpr_v1"
    events = client.get("/api/audit", params={"action": "ab_start"}).json()
    assert [e["target"] for e in events] == ["t1"] and events[0]["actor"].startswith("web:alice via ")
    newest = client.get("/api/audit", params={"limit": 2}).json()
    assert [e["action"] for e in newest] == ["AB_PROMOTE", "AB_STOP"]
    assert client.get("/api/audit", params={"model": "als_v1"}).json()[0]["action"] == "REGISTER"
    assert client.get("/api/audit", params={"since": "2999-01-01"}).json() == []
    assert len(client.get("/api/audit", params={"until": "2999-01-01T00:00:00"}).json()) > 5


def test_aliases_tags_and_description_on_models_and_alias_endpoints(client: TestClient, filled: ModelRegistry) -> None:
    filled.set_alias("champion", "als_v1", reason="first")
    filled.set_alias("champion", "bpr_v1", expected="als_v1", reason="better")
    filled.set_alias("temp", "als_v1")
    filled.delete_alias("temp", reason="done")
    filled.set_tag("als_v2", "team", "recs")
    filled.set_tag("als_v2", "stage", "")
    filled.set_description("als_v2", "Weekly retrain.\nSecond line.")
    detail = client.get("/api/models/als_v2").json()
    assert detail["aliases"] == ["current_best"] and detail["tags"] == {"stage": "", "team": "recs"}
    assert detail["description"] == "Weekly retrain.\nSecond line."
    bare = client.get("/api/models/als_v1").json()
    assert bare["aliases"] == [] and bare["tags"] == {} and bare["description"] is None
    rows = {row["model_id"]: row for row in client.get("/api/models").json()["items"]}
    assert rows["als_v2"]["aliases"] == ["current_best"] and rows["als_v2"]["tags"] == {"stage": "", "team": "recs"}
    assert rows["bpr_v1"]["aliases"] == ["champion"] and rows["als_v1"]["aliases"] == []

    listed = client.get("/api/aliases").json()
    assert [(a["alias"], a["model_id"]) for a in listed] == [("current_best", "als_v2"), ("champion", "bpr_v1")]
    assert listed[1]["reason"] == "better" and listed[1]["updated_by"] and listed[1]["model_type"] == "bpr"
    champion = client.get("/api/aliases/champion").json()
    assert (champion["model_id"], champion["model_type"], champion["version"]) == ("bpr_v1", "bpr", "v1")
    assert [(m["previous_model_id"], m["model_id"], m["reason"]) for m in champion["history"]] == [
        ("als_v1", "bpr_v1", "better"), (None, "als_v1", "first")]
    assert len(client.get("/api/aliases/champion", params={"limit": 1}).json()["history"]) == 1
    deleted = client.get("/api/aliases/temp").json()  # gone, but its history stays readable
    assert deleted["model_id"] is None and [m["model_id"] for m in deleted["history"]] == [None, "als_v1"]
    assert deleted["history"][0]["selected_by"] == "delete" and deleted["history"][0]["previous_model_id"] == "als_v1"
    best = client.get("/api/aliases/current_best").json()
    assert best["model_id"] == "als_v2" and best["history"][0]["selected_by"] == "auto"
    assert best["history"][0]["metric"] == "ndcg@10"


def test_diff_is_the_registry_report_and_a_read_stores_nothing(client: TestClient, filled: ModelRegistry) -> None:
    before = snapshot(filled, filled.root)
    body = client.get("/api/diff", params={"a": "als_v2", "b": "bpr_v1", "k": 5, "users": 30, "items": 20}).json()
    assert snapshot(filled, filled.root) == before  # computed for the request, not stored, no audit event
    assert body["stored"] is False and body["model_a"] == "als_v2" and body["model_b"] == "bpr_v1"
    report = filled.diff_models("als_v2", "bpr_v1", k=5, users=30, items=20).to_dict()  # stores it
    for section in ("compatibility", "catalogue", "churn", "neighbours", "coverage", "drift", "metrics", "params", "key"):
        assert body[section] == report[section], section
    assert 0 < body["churn"]["churn"] <= 1 and body["churn"]["users_compared"] == 30 and body["churn"]["k"] == 5
    assert sum(body["churn"]["overlap_histogram"]) == 30 and len(body["churn"]["overlap_histogram"]) == 6
    assert body["compatibility"]["model_types"] == ["als", "bpr"] and body["compatibility"]["warnings"]
    assert {row["name"]: row["diff"] for row in body["metrics"]}["ndcg@10"] == pytest.approx(0.22 - 0.25)
    assert body["summary"].startswith("als_v2 -> bpr_v1 (k=5, 30 users")
    again = client.get("/api/diff", params={"a": "als_v2", "b": "bpr_v1", "k": 5, "users": 30, "items": 20}).json()
    assert again["stored"] is True and again["computed_at"] == report["computed_at"]
    same_files = client.get("/api/diff", params={"a": "als_v1", "b": "als_v2"}).json()  # one folder: identical factors
    assert same_files["churn"]["churn"] == 0 and same_files["neighbours"]["mean_overlap"] == 1
    assert same_files["drift"]["aligned"]["mean"] == pytest.approx(1, abs=1e-5)


def evaluated(registry: ModelRegistry, tmp_path: Path, version: str, values: np.ndarray) -> str:
    from factories import make_model_dir

    folder = make_model_dir(tmp_path / "artifacts" / "cf" / "eval" / version, "als", seed=len(version))
    write_user_eval(folder, "als", [f"u{i}" for i in range(values.size)], {"ndcg@10": values, "recall@10": values / 2})
    return registry.register_model(folder, "als", {"factors": 8}, {"ndcg@10": float(values.mean())}, {}, version=version)


def test_significance_matches_compare_models(client: TestClient, filled: ModelRegistry, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    base = rng.random(200) * 0.4
    a = evaluated(filled, tmp_path, "e1", base)
    b = evaluated(filled, tmp_path, "e2", np.clip(base + 0.03 + rng.normal(0, 0.02, 200), 0, 1))
    body = client.get("/api/significance", params={"a": a, "b": b}).json()
    assert (body["model_a"], body["model_b"], body["method"], body["confidence"]) == (a, b, "paired_bootstrap", 0.95)
    assert [row["metric"] for row in body["metrics"]] == ["ndcg@10", "recall@10"] and not body["only_a"]
    ndcg = body["metrics"][0]
    assert {**ndcg, "model_a": a, "model_b": b} == filled.compare_metrics(a, b, "ndcg@10")
    assert ndcg["ci_low"] > 0 and ndcg["p_value"] < 0.01 and ndcg["n_users"] == 200
    t_test = client.get("/api/significance", params={"a": a, "b": b, "method": "paired_t_test", "confidence": 0.9}).json()
    recall = filled.compare_metrics(a, b, "recall@10", method="paired_t_test", confidence=0.9)
    assert {**t_test["metrics"][1], "model_a": a, "model_b": b} == recall
    missing = client.get("/api/significance", params={"a": a, "b": "als_v1"})
    assert missing.status_code == 422 and error_code(missing) == "no_user_evaluation"


def same_results(api: dict, python: dict) -> bool:  # type: ignore[type-arg]
    """The API's results equal the Python API's (the schema adds null for an arm's absent keys)."""
    arms = all({key: value for key, value in got.items() if key in want} == want
               and all(got[key] is None for key in set(got) - set(want))
               for got, want in zip(api["arms"], python["arms"], strict=True))
    return arms and {**api, "arms": None} == {**python, "arms": None}


def test_ab_results_endpoint_and_stop_with_the_winner(client: TestClient, filled: ModelRegistry) -> None:
    filled.start_ab_test("als_v2", "bpr_v1", 0.5, test_id="t1")
    fresh = client.get("/api/ab-tests/t1/results").json()
    assert fresh["batches"] == 0 and fresh["verdict"] == "keep running" and fresh["arms"][0]["exposures"] == 0
    for day in range(4):
        filled.record_ab_outcomes("t1", "control", 20_000, 2_000, batch_id=f"d{day}")
        filled.record_ab_outcomes("t1", "treatment", 20_000, 2_400, batch_id=f"d{day}")
    body = client.get("/api/ab-tests/t1/results").json()
    assert same_results(body, filled.ab_test_results("t1"))
    assert body["verdict"] == "treatment wins" and body["final"] and body["method"] == "fixed_horizon"
    control, treatment = body["arms"]
    assert (control["model_id"], control["exposures"], control["rate"]) == ("als_v2", 80_000, 0.1)
    assert treatment["lift"] == pytest.approx(0.2) and treatment["lift_ci_low"] > 0 and treatment["p_value"] < 1e-6
    sequential = client.get("/api/ab-tests/t1/results", params={"method": "msprt", "confidence": 0.99}).json()
    assert same_results(sequential, filled.ab_test_results("t1", method="msprt", confidence=0.99))
    assert sequential["method_name"].endswith("(mSPRT)")
    values = client.get("/api/ab-tests/t1/results", params={"metric": "value"}).json()
    assert values["batches"] == 0  # no batch carries sums
    assert client.get("/api/ab-tests/t1/results", params={"method": "bayes"}).status_code == 422

    stopped = client.post("/api/ab-tests/t1/stop", json={"promote_winner": True}, headers=AUTH).json()
    assert stopped["status"] == "stopped" and stopped["promoted"] == "treatment"
    assert filled.get_current_best()["model_id"] == "bpr_v1"
    event = client.get("/api/audit", params={"action": "AB_PROMOTE"}).json()[0]
    assert event["actor"].startswith("web:alice via ")


def test_ab_results_pick_value_outcomes_and_refuse_a_winner_too_early(client: TestClient, filled: ModelRegistry) -> None:
    filled.start_ab_test("als_v2", "bpr_v1", 0.2, test_id="t2")
    filled.record_ab_outcomes("t2", "control", 400, batch_id="b1", value_sum=800.0, value_sum_squares=2000.0)
    filled.record_ab_outcomes("t2", "treatment", 100, batch_id="b1", value_sum=210.0, value_sum_squares=520.0)
    body = client.get("/api/ab-tests/t2/results").json()
    assert body["metric"] == "value" and body["batches"] == 2 and body["verdict"] == "keep running"
    assert body["arms"][0]["mean"] == 2.0 and body["arms"][1]["mean"] == 2.1 and body["arms"][0]["rate"] is None
    before = snapshot(filled, filled.root)
    refused = client.post("/api/ab-tests/t2/stop", json={"promote_winner": True}, headers=AUTH)
    assert refused.status_code == 422 and "no winner" in refused.json()["error"]["message"]
    assert snapshot(filled, filled.root) == before and filled.get_ab_test()["status"] == "running"


def test_promotion_rules_churn_bound_and_confidence(client: TestClient, filled: ModelRegistry, tmp_path: Path) -> None:
    refused = client.post("/api/models/bpr_v1/promote", json={"max_churn": 0.05}, headers=AUTH)
    assert refused.status_code == 409 and error_code(refused) == "churn_limit"
    assert "churn@10 against the current best 'als_v2'" in refused.json()["error"]["message"]
    assert filled.get_current_best()["model_id"] == "als_v2"
    no_reason = client.post("/api/models/bpr_v1/promote", json={"max_churn": 0.05, "force": True}, headers=AUTH)
    assert no_reason.status_code == 422 and filled.get_current_best()["model_id"] == "als_v2"
    forced = client.post("/api/models/bpr_v1/promote", json={"max_churn": 0.05, "force": True, "reason": "ok by PM"},
                         headers=AUTH)
    assert forced.status_code == 200 and filled.get_current_best()["model_id"] == "bpr_v1"
    event = client.get("/api/audit", params={"action": "PROMOTE"}).json()[0]
    assert event["details"]["churn_check"]["forced"] is True and event["actor"].startswith("web:alice via ")
    back = client.post("/api/select-best", json={"metric": "ndcg@10", "max_churn": 0.05}, headers=AUTH)
    assert back.status_code == 409 and error_code(back) == "churn_limit"  # als_v2 has other factors than bpr_v1
    assert filled.get_current_best()["model_id"] == "bpr_v1"

    unevaluated = client.post("/api/select-best", json={"confidence": 0.95}, headers=AUTH)
    assert unevaluated.status_code == 422 and error_code(unevaluated) == "no_user_evaluation"
    rng = np.random.default_rng(5)
    base = rng.random(300) * 0.3
    better = evaluated(filled, tmp_path, "e1", np.clip(base + 0.2, 0, 1))  # the highest ndcg@10 now
    filled.promote_model(evaluated(filled, tmp_path, "e0", base))
    chosen = client.post("/api/select-best", json={"confidence": 0.95, "min_improvement": 0.01}, headers=AUTH).json()
    assert chosen["selected"] and chosen["model_id"] == better
    assert chosen["comparison"]["ci_low"] > 0.01 and chosen["comparison"]["n_users"] == 300
    assert client.post("/api/select-best", json={"confidence": 0.95, "max_churn": 0.5}, headers=AUTH).status_code == 422


def test_audit_pages_cover_the_log_once(client: TestClient, filled: ModelRegistry) -> None:
    for index in range(7):
        filled.set_tag("als_v1", f"k{index}", "v")
    everything = client.get("/api/audit", params={"limit": 1000})
    total = int(everything.headers["x-total-count"])
    assert total == len(everything.json()) > 10 and "link" not in everything.headers
    ids = [event["id"] for event in everything.json()]
    assert ids == sorted(ids, reverse=True)
    pages, page = [], 1
    while True:
        response = client.get("/api/audit", params={"limit": 4, "page": page})
        assert int(response.headers["x-total-count"]) == total
        links = response.headers.get("link", "")
        assert ('rel="prev"' in links) == (page > 1)
        pages.append([event["id"] for event in response.json()])
        if 'rel="next"' not in links:
            break
        assert f"page={page + 1}" in links and "limit=4" in links
        page += 1
    assert page == -(-total // 4) and sum(pages, []) == ids
    assert client.get("/api/audit", params={"limit": 4, "page": page + 5}).json() == []
    tagged = client.get("/api/audit", params={"action": "TAG_SET", "limit": 3, "page": 3})
    assert tagged.headers["x-total-count"] == "7" and [e["summary"] for e in tagged.json()] == ["k0=v"]
    assert 'rel="prev"' in tagged.headers["link"] and "action=TAG_SET" in tagged.headers["link"]
    model_events = client.get("/api/audit", params={"model": "als_v1", "limit": 2, "page": 1})
    assert model_events.headers["x-total-count"] == str(
        filled.context.read(lambda s: audit.count_events(s, target="als_v1")))


# --------------------------------------------------------------------------- writes


def test_operator_actions_write_audit_with_identity(client: TestClient, filled: ModelRegistry) -> None:
    promoted = client.post("/api/models/als_v1/promote", json={"reason": "canary ok"}, headers=AUTH)
    assert promoted.status_code == 200 and promoted.json()["model_id"] == "als_v1"
    event = client.get("/api/audit", params={"action": "PROMOTE"}).json()[0]
    assert event["target"] == "als_v1" and event["actor"].startswith("web:alice via ")
    assert event["details"]["reason"] == "canary ok"
    assert client.post("/api/rollback", headers=AUTH).json()["model_id"] == "als_v2"
    assert client.post("/api/select-best", json={"metric": "recall@10"}, headers=AUTH).json() == {
        "selected": True, "model_id": "als_v1", "metric": "recall@10", "value": 0.30, "comparison": None}
    unknown = client.post("/api/select-best", json={"metric": "coverage"}, headers=AUTH)  # no model has it: a typo
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "unknown_metric"
    assert client.post("/api/models/bpr_v1/archive", headers=AUTH).json() == {"model_id": "bpr_v1", "status": "archived"}
    assert filled.get_model("bpr_v1")["status"] == "archived"
    actors = {e["actor"].split(" via ")[0] for e in client.get("/api/audit", params={"limit": 4}).json()}
    assert actors == {"web:alice"}


BAD_REQUESTS = [
    ("get", "/api/models/nope", None, 404, "not_found"),
    ("get", "/api/models/bad%20id", None, 422, "invalid_argument"),
    ("get", "/api/models?per_page=100000", None, 422, "invalid_argument"),
    ("get", "/api/models?per_page=0", None, 422, "invalid_argument"),
    ("get", "/api/models?page=abc", None, 422, "invalid_argument"),
    ("get", "/api/models?sort=nosuchmetric", None, 422, "invalid_argument"),
    ("get", "/api/models?status=deleted", None, 422, "invalid_argument"),
    ("get", "/api/models?order=sideways", None, 422, "invalid_argument"),
    ("get", "/api/compare?ids=als_v1", None, 422, "invalid_argument"),
    ("get", "/api/compare?ids=als_v1&ids=ghost", None, 404, "not_found"),
    ("get", "/api/audit?since=yesterday", None, 422, "invalid_argument"),
    ("get", "/api/audit?limit=1000000", None, 422, "invalid_argument"),
    ("get", "/api/audit?since=2025-02-01&until=2025-01-01", None, 422, "invalid_argument"),
    ("get", "/api/selections?limit=0", None, 422, "invalid_argument"),
    ("post", "/api/models/ghost/promote", {}, 404, "not_found"),
    ("post", "/api/models/als_v2/archive", None, 409, "in_use"),
    ("post", "/api/select-best", {"metric": "bad metric!"}, 422, "invalid_argument"),
    ("post", "/api/select-best", {"metric": "ndcg@10", "min_improvement": -1}, 422, "invalid_argument"),
    ("post", "/api/select-best", {"unknown_field": 1}, 422, "invalid_argument"),
    ("post", "/api/rollback", {}, 422, "invalid_argument"),  # nothing to roll back to
    ("post", "/api/ab-tests", {"control_model": "als_v1", "treatment_model": "als_v1", "traffic_split": 0.1}, 422, "invalid_argument"),
    ("post", "/api/ab-tests", {"control_model": "als_v1", "treatment_model": "bpr_v1", "traffic_split": 2}, 422, "invalid_argument"),
    ("post", "/api/ab-tests", {"control_model": "als_v1", "treatment_model": "ghost", "traffic_split": 0.1}, 404, "not_found"),
    ("post", "/api/ab-tests/ghost/stop", {}, 404, "ab_test_not_found"),
    ("get", "/api/nothing-here", None, 404, "not_found"),
    ("get", "/api/audit?page=0", None, 422, "invalid_argument"),
    ("get", "/api/audit?page=abc", None, 422, "invalid_argument"),
    ("get", "/api/audit?page=2000000", None, 422, "invalid_argument"),
    ("get", "/api/aliases/never_set", None, 404, "alias_not_found"),
    ("get", "/api/aliases/bad%20name", None, 422, "invalid_argument"),
    ("get", "/api/aliases/current_best?limit=0", None, 422, "invalid_argument"),
    ("get", "/api/aliases/current_best?limit=5000", None, 422, "invalid_argument"),
    ("get", "/api/diff?a=als_v1", None, 422, "invalid_argument"),
    ("get", "/api/diff?a=als_v1&b=ghost", None, 404, "not_found"),
    ("get", "/api/diff?a=als_v1&b=als_v1", None, 422, "invalid_argument"),
    ("get", "/api/diff?a=als_v1&b=bpr_v1&k=0", None, 422, "invalid_argument"),
    ("get", "/api/diff?a=als_v1&b=bpr_v1&k=101", None, 422, "invalid_argument"),
    ("get", "/api/diff?a=als_v1&b=bpr_v1&users=1000000", None, 422, "invalid_argument"),
    ("get", "/api/diff?a=als_v1&b=bpr_v1&seed=-1", None, 422, "invalid_argument"),
    ("get", "/api/significance?a=als_v1&b=bpr_v1", None, 422, "no_user_evaluation"),
    ("get", "/api/significance?a=als_v1&b=ghost", None, 404, "not_found"),
    ("get", "/api/significance?a=als_v1&b=bpr_v1&confidence=2", None, 422, "invalid_argument"),
    ("get", "/api/significance?a=als_v1&b=bpr_v1&method=guess", None, 422, "invalid_argument"),
    ("get", "/api/ab-tests/ghost/results", None, 404, "ab_test_not_found"),
    ("post", "/api/ab-tests/ghost/stop", {"promote_winner": True}, 404, "ab_test_not_found"),
    ("post", "/api/ab-tests/ghost/stop", {"promote": "control", "promote_winner": True}, 422, "invalid_argument"),
]


def test_bad_input_is_a_typed_4xx_and_changes_nothing(client: TestClient, filled: ModelRegistry) -> None:
    before = snapshot(filled, filled.root)
    for method, url, body, status, code in BAD_REQUESTS:
        response = client.request(method.upper(), url, json=body, headers=AUTH)
        assert (response.status_code, error_code(response)) == (status, code), (url, response.text)
        assert response.json()["error"]["message"]
        assert snapshot(filled, filled.root) == before, url


def test_running_test_conflict_is_409(client: TestClient, filled: ModelRegistry) -> None:
    body = {"control_model": "als_v2", "treatment_model": "bpr_v1", "traffic_split": 0.1}
    assert client.post("/api/ab-tests", json=body, headers=AUTH).status_code == 201
    before = snapshot(filled, filled.root)
    second = client.post("/api/ab-tests", json={**body, "treatment_model": "als_v1"}, headers=AUTH)
    assert second.status_code == 409 and error_code(second) == "invalid_state"
    assert client.post("/api/models/bpr_v1/archive", headers=AUTH).status_code == 409
    assert snapshot(filled, filled.root) == before


WRITE_CALLS = [("/api/models/als_v1/promote", {}), ("/api/rollback", {}), ("/api/select-best", {}),
               ("/api/models/bpr_v1/archive", None), ("/api/ab-tests/x/stop", {}),
               ("/api/ab-tests", {"control_model": "als_v1", "treatment_model": "bpr_v1", "traffic_split": 0.1})]
WRONG_CREDENTIALS = [{}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": f"Basic {TOKEN}"},
                     {"Authorization": "Bearer"}, {"Authorization": f"Bearer {TOKEN}x"}]


def test_missing_or_wrong_token_is_401_and_changes_nothing(client: TestClient, filled: ModelRegistry) -> None:
    before = snapshot(filled, filled.root)
    for headers in WRONG_CREDENTIALS:
        for url, body in WRITE_CALLS:
            response = client.post(url, json=body, headers=headers)
            assert (response.status_code, error_code(response)) == (401, "unauthorized"), (url, headers)
            assert response.headers["www-authenticate"] == "Bearer"
    assert snapshot(filled, filled.root) == before


def test_without_tokens_the_api_is_read_only(filled: ModelRegistry, database_url: str) -> None:
    with TestClient(create_app(filled.registry_path, database_url, tokens=TokenStore())) as client:
        before = snapshot(filled, filled.root)
        response = client.post("/api/models/als_v1/promote", json={}, headers=AUTH)
        assert response.status_code == 403 and error_code(response) == "read_only_mode"
        assert client.get("/api/models").status_code == 200
        assert snapshot(filled, filled.root) == before


def test_openapi_document_is_local_and_names_are_stable(client: TestClient) -> None:
    document = client.get("/api/openapi.json").json()
    assert SCHEMA_NAMES <= set(document["components"]["schemas"])
    paths = set(document["paths"])
    assert {"/api/models", "/api/models/{model_id}", "/api/compare", "/api/current-best", "/api/selections",
            "/api/stats", "/api/embeddings", "/api/ab-tests", "/api/route/{user_id}", "/api/audit",
            "/api/select-best", "/api/models/{model_id}/promote", "/api/rollback", "/api/models/{model_id}/archive",
            "/api/ab-tests/{test_id}/stop", "/api/aliases", "/api/aliases/{name}", "/api/diff", "/api/significance",
            "/api/ab-tests/{test_id}/results"} == paths
    assert not any(path.startswith("/models") or path == "/" for path in paths)  # pages stay out of the API
    assert document["paths"]["/api/models/{model_id}"]["get"]["responses"]["404"]["content"]["application/json"][
        "schema"]["$ref"].endswith("/ErrorResponse")
    assert client.get("/docs").status_code == 404  # Swagger UI would load assets from a CDN


def test_security_headers_and_static_assets(client: TestClient) -> None:
    page = client.get("/")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    css = client.get("/static/app.css")
    assert css.status_code == 200 and "text/css" in css.headers["content-type"]
    assert client.get("/favicon.ico").headers["content-type"].startswith("image/svg+xml")


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3") and not is_loopback("example.org")

"""What the service tells its operators: swap log lines, Prometheus ``/metrics``, offline ``/docs``."""

from __future__ import annotations

import logging
import re
import warnings

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

from registry import ModelLoader, ModelRegistry
from registry.serving import create_app


@pytest.fixture
def two_models(registry: ModelRegistry, model_dir) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    a = registry.register_model(model_dir("als/v1", id_maps=True), "als", {}, {"ndcg@10": 0.2}, {}, version="v1")
    registry.select_best_model()
    b = registry.register_model(model_dir("bpr/v1", "bpr", seed=2, id_maps=True), "bpr", {}, {"ndcg@10": 0.3}, {},
                                version="v1")
    return a, b


def _samples(text: str) -> dict[str, list]:
    found: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append(sample)
    return found


def test_loader_logs_every_swap_with_from_to_and_load_time(registry: ModelRegistry, database_url: str,
                                                          two_models: tuple[str, str],
                                                          caplog: pytest.LogCaptureFixture) -> None:
    a, b = two_models
    with caplog.at_level(logging.INFO, logger="registry.loader"):
        loader = ModelLoader(registry.registry_path, database_url=database_url)
        registry.select_best_model()
        assert loader.reload_model() is True
        loader.load_model(a)  # back to a, from memory
    swaps = [record.getMessage() for record in caplog.records if "model swap" in record.getMessage()]
    assert len(swaps) == 3, swaps
    assert re.search(rf"now serving {a} \(was nothing\); read from disk in [0-9.]+ ms", swaps[0])
    assert re.search(rf"now serving {b} \(was {a}\); read from disk in [0-9.]+ ms", swaps[1])
    assert f"now serving {a} (was {b}); from memory" in swaps[2]
    loader.close()


def test_metrics_expose_model_swaps_loads_and_request_latency(registry: ModelRegistry, database_url: str,
                                                             two_models: tuple[str, str]) -> None:
    a, b = two_models
    with TestClient(create_app(registry.registry_path, database_url=database_url)) as client:
        for user in ("u1", "u2", "u3"):
            assert client.get(f"/recommend/{user}").status_code == 200
        assert client.get("/recommend/nobody").status_code == 404
        response = client.get("/metrics")
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
        before = _samples(response.text)
        assert [(s.labels, s.value) for s in before["cfreg_model_info"]] == [
            ({"model_id": a, "model_type": "als", "version": "v1"}, 1.0)]
        assert before["cfreg_model_load_duration_seconds_count"][0].value >= 1
        counts = {(s.labels["endpoint"], s.labels["status"]): s.value
                  for s in before["cfreg_request_duration_seconds_count"]}
        assert counts[("/recommend/{user_id}", "200")] == 3 and counts[("/recommend/{user_id}", "404")] == 1
        assert not any("u1" in endpoint for endpoint, _ in counts)  # route templates, never raw paths
        swaps_before = before["cfreg_model_swaps_total"][0].value

        registry.select_best_model()
        assert client.post("/reload_model").json()["model_id"] == b
        after = _samples(client.get("/metrics").text)
        assert [s.labels["model_id"] for s in after["cfreg_model_info"]] == [b]
        assert after["cfreg_model_swaps_total"][0].value == swaps_before + 1
        loads = after["cfreg_model_load_duration_seconds_count"][0].value
        assert loads == before["cfreg_model_load_duration_seconds_count"][0].value + 1
        assert after["cfreg_reload_checks_total"][0].value >= 2


def test_two_apps_in_one_process_keep_separate_metrics(registry: ModelRegistry, database_url: str,
                                                      two_models: tuple[str, str]) -> None:
    first = create_app(registry.registry_path, database_url=database_url)
    second = create_app(registry.registry_path, database_url=database_url)
    with TestClient(first) as one, TestClient(second) as two:
        one.get("/recommend/u1")
        counts = _samples(two.get("/metrics").text).get("cfreg_request_duration_seconds_count", [])
        assert not [s for s in counts if s.labels["endpoint"] == "/recommend/{user_id}"]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_their_assets_from_the_app(registry: ModelRegistry, database_url: str,
                                                   two_models: tuple[str, str], page: str) -> None:
    with TestClient(create_app(registry.registry_path, database_url=database_url)) as client:
        html = client.get(page)
        assert html.status_code == 200
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", html.text, re.IGNORECASE), "an external host"
        assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html.text)
        assert any(asset.endswith(".js") for asset in assets)
        for asset in assets:
            assert asset.startswith("/"), asset
            response = client.get(asset)
            assert response.status_code == 200 and len(response.content) > 0, asset
        assert client.get("/openapi.json").json()["paths"]["/recommend/{user_id}"]

"""The FastAPI recommendation service: endpoints, errors, hot reload and A/B routing.

Most tests drive the app in-process with ``TestClient``; the last ones start a
real uvicorn server on a free port of 127.0.0.1 and talk to it over HTTP while
another process changes the registry.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    # starlette's TestClient warns on import that it prefers httpx2; httpx is what the `serve` extra ships.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

from registry import ModelRegistry, RegistryNotFoundError, get_model_for_user
from registry.serving import MAX_K, create_app

USERS = [f"u{i}" for i in range(40)]
DEADLINE_SECONDS = 30.0


@pytest.fixture
def two_models(registry: ModelRegistry, model_dir) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """Model A (current best, ndcg@10 0.2) and a better model B registered but not selected."""
    baseline = {"baseline_type": "popularity", "baseline_ndcg@10": 0.1}
    a = registry.register_model(model_dir("als/v1", seed=1, id_maps=True), "als", {"factors": 8},
                                {"ndcg@10": 0.2}, {}, baseline_comparison=baseline, version="v1")
    registry.select_best_model()
    b = registry.register_model(model_dir("bpr/v1", "bpr", seed=2, id_maps=True), "bpr", {"factors": 8},
                                {"ndcg@10": 0.3}, {}, baseline_comparison=baseline, version="v1")
    return a, b


@pytest.fixture
def client(registry: ModelRegistry, database_url: str, two_models: tuple[str, str]) -> Iterator[TestClient]:
    """The app as created by default (watching the registry)."""
    app = create_app(registry.registry_path, database_url=database_url)
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def manual_client(registry: ModelRegistry, database_url: str, two_models: tuple[str, str]) -> Iterator[TestClient]:
    """An app that does not watch: only ``POST /reload_model`` changes what it serves."""
    app = create_app(registry.registry_path, database_url=database_url, watch=False)
    with TestClient(app) as test_client:
        yield test_client


def _eventually(check, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def _top_k(folder: Path, model_type: str, user_row: int, k: int) -> list[str]:
    U = np.load(folder / f"{model_type}_U.npy")
    V = np.load(folder / f"{model_type}_V.npy")
    scores = V @ U[user_row]
    return [f"i{i}" for i in np.argsort(-scores, kind="stable")[:k]]


# --------------------------------------------------------------------------- endpoints


def test_health_and_model_describe_the_served_model(client: TestClient, two_models: tuple[str, str]) -> None:
    a, _ = two_models
    health = client.get("/health")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "model_id": a}

    model = client.get("/model").json()
    assert (model["model_id"], model["model_type"], model["version"]) == (a, "als", "v1")
    assert (model["num_users"], model["num_items"], model["factors"]) == (40, 25, 8)
    assert model["has_id_maps"] is True and model["loaded_at"] and model["ab_test"] is None


def test_recommend_returns_the_models_top_k_item_ids(client: TestClient, two_models: tuple[str, str], tmp_path: Path) -> None:
    a, _ = two_models
    response = client.get("/recommend/u3", params={"k": 5})
    assert response.status_code == 200
    body = response.json()
    assert (body["user_id"], body["model_id"], body["arm"], body["ab_test_id"], body["k"]) == ("u3", a, None, None, 5)
    assert [item["item_id"] for item in body["items"]] == _top_k(tmp_path / "artifacts/cf/als/v1", "als", 3, 5)
    scores = [item["score"] for item in body["items"]]
    assert scores == sorted(scores, reverse=True)
    assert len(client.get("/recommend/u3").json()["items"]) == 10  # default k


def test_excluded_items_are_never_recommended(client: TestClient, tmp_path: Path) -> None:
    top = _top_k(tmp_path / "artifacts/cf/als/v1", "als", 3, 6)
    body = client.get("/recommend/u3", params={"k": 4, "exclude": top[:2] + ["not-an-item"]}).json()
    assert [item["item_id"] for item in body["items"]] == top[2:6]


def test_k_larger_than_the_catalogue_returns_every_item(client: TestClient) -> None:
    assert len(client.get("/recommend/u0", params={"k": MAX_K}).json()["items"]) == 25


def test_unknown_user_is_a_404_naming_the_user(client: TestClient, two_models: tuple[str, str]) -> None:
    response = client.get("/recommend/nobody")
    assert response.status_code == 404
    assert "nobody" in response.json()["detail"] and two_models[0] in response.json()["detail"]


@pytest.mark.parametrize("k", ["0", "-3", str(MAX_K + 1), "ten", "2.5"])
def test_bad_k_is_a_422(client: TestClient, k: str) -> None:
    response = client.get("/recommend/u1", params={"k": k})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "k"]


def test_default_app_switches_to_a_new_best_without_reload_model(client: TestClient, registry: ModelRegistry,
                                                                  two_models: tuple[str, str], tmp_path: Path) -> None:
    a, b = two_models
    assert client.get("/recommend/u3").json()["model_id"] == a
    assert registry.promote_model(b)["model_id"] == b

    _eventually(lambda: client.get("/model").json()["model_id"] == b, "the watching app never served the new best")
    body = client.get("/recommend/u3", params={"k": 4}).json()
    assert body["model_id"] == b and body["model_type"] == "bpr"
    assert [item["item_id"] for item in body["items"]] == _top_k(tmp_path / "artifacts/cf/bpr/v1", "bpr", 3, 4)

    test = registry.start_ab_test(a, b, traffic_split=0.5)  # routing changes are picked up the same way
    _eventually(lambda: client.get("/model").json()["ab_test"] == test, "the watching app never routed the test")
    registry.stop_ab_test(test["test_id"])
    _eventually(lambda: client.get("/model").json()["ab_test"] is None, "the watching app kept routing a stopped test")


def test_reload_switches_to_a_newly_selected_best(manual_client: TestClient, registry: ModelRegistry,
                                                  two_models: tuple[str, str], tmp_path: Path) -> None:
    client = manual_client
    a, b = two_models
    assert client.post("/reload_model").json() == {"reloaded": False, "model_id": a, "previous_model_id": a}

    assert registry.select_best_model()["model_id"] == b
    assert client.get("/recommend/u3").json()["model_id"] == a  # nothing changes until reload
    assert client.post("/reload_model").json() == {"reloaded": True, "model_id": b, "previous_model_id": a}

    body = client.get("/recommend/u3", params={"k": 4}).json()
    assert body["model_id"] == b and body["model_type"] == "bpr"
    assert [item["item_id"] for item in body["items"]] == _top_k(tmp_path / "artifacts/cf/bpr/v1", "bpr", 3, 4)
    assert client.get("/model").json()["model_id"] == b
    assert client.post("/reload_model").json()["reloaded"] is False


def test_failed_reload_keeps_serving_the_old_model(manual_client: TestClient, registry: ModelRegistry,
                                                   two_models: tuple[str, str], tmp_path: Path) -> None:
    client = manual_client
    a, b = two_models
    registry.select_best_model()
    (tmp_path / "artifacts/cf/bpr/v1/bpr_V.npy").write_bytes(b"truncated")

    response = client.post("/reload_model")
    assert response.status_code == 503
    assert f"still serving {a}" in response.json()["detail"]
    assert client.get("/recommend/u1").json()["model_id"] == a


def test_ab_test_routes_users_like_get_model_for_user(manual_client: TestClient, registry: ModelRegistry,
                                                      two_models: tuple[str, str]) -> None:
    client = manual_client
    a, b = two_models
    test = registry.start_ab_test(a, b, traffic_split=0.5)
    client.post("/reload_model")  # the service re-reads the registry on reload checks only

    assert client.get("/model").json()["ab_test"] == test
    arms = {}
    for user in USERS:
        body = client.get(f"/recommend/{user}", params={"k": 3}).json()
        expected = get_model_for_user(user, test)
        assert body["model_id"] == expected, user
        assert body["arm"] == ("treatment" if expected == b else "control")
        assert body["ab_test_id"] == test["test_id"]
        arms[user] = body["arm"]
    assert set(arms.values()) == {"control", "treatment"}

    registry.stop_ab_test(test["test_id"])
    client.post("/reload_model")
    body = client.get(f"/recommend/{USERS[0]}").json()
    assert (body["model_id"], body["arm"]) == (a, None)
    assert client.get("/model").json()["ab_test"] is None


def test_responses_name_the_test_their_model_was_routed_with(manual_client: TestClient, registry: ModelRegistry,
                                                            two_models: tuple[str, str], model_dir, tmp_path: Path) -> None:
    # Regression: the service re-read the running test from the database on every reload
    # check, apart from the loader's routing table; after a failed reload the two disagreed
    # (a treatment model answered with "arm": null and the stopped test still routing).
    client = manual_client
    a, b = two_models
    test = registry.start_ab_test(a, b, traffic_split=0.5)
    client.post("/reload_model")
    assert {client.get(f"/recommend/{user}").json()["arm"] for user in USERS} == {"control", "treatment"}

    registry.stop_ab_test(test["test_id"])
    broken = registry.register_model(model_dir("als/v9", seed=9, id_maps=True), "als", {}, {"ndcg@10": 0.9}, {},
                                     version="v9")
    registry.promote_model(broken)
    (tmp_path / "artifacts/cf/als/v9/als_V.npy").write_bytes(b"truncated")
    assert client.post("/reload_model").status_code == 503  # the new best cannot load; a keeps serving

    shown = client.get("/model").json()["ab_test"]
    for user in USERS:
        body = client.get(f"/recommend/{user}").json()
        if body["arm"] is None:
            assert (body["model_id"], body["ab_test_id"]) == (a, None), user
        else:
            assert body["ab_test_id"] == shown["test_id"], user
            assert body["model_id"] == shown[f"{body['arm']}_model"], user
    assert shown is None  # the stopped test no longer routes, even though the reload failed


def test_without_a_current_best_the_service_starts_and_answers_503(registry: ModelRegistry, database_url: str,
                                                                   model_dir) -> None:  # type: ignore[no-untyped-def]
    with TestClient(create_app(registry.registry_path, database_url=database_url, watch=False)) as client:
        assert client.get("/health").status_code == 503
        assert client.get("/recommend/u1").status_code == 503
        assert "no model loaded" in client.get("/model").json()["detail"]

        model_id = registry.register_model(model_dir("als/v1", id_maps=True), "als", {}, {"ndcg@10": 0.2}, {})
        registry.select_best_model()
        assert client.post("/reload_model").json()["model_id"] == model_id
        assert client.get("/health").json() == {"status": "ok", "model_id": model_id}


def test_models_without_id_maps_are_addressed_by_row(registry: ModelRegistry, database_url: str,
                                                     model_dir, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    registry.register_model(model_dir("als/plain"), "als", {}, {"ndcg@10": 0.2}, {})
    registry.select_best_model()
    with TestClient(create_app(registry.registry_path, database_url=database_url)) as client:
        body = client.get("/recommend/7", params={"k": 3}).json()
        expected = _top_k(tmp_path / "artifacts/cf/als/plain", "als", 7, 4)
        assert [f"i{item['item_id']}" for item in body["items"]] == expected[:3]
        body = client.get("/recommend/7", params={"k": 3, "exclude": expected[0][1:]}).json()
        assert [f"i{item['item_id']}" for item in body["items"]] == expected[1:]
        assert client.get("/recommend/7", params={"exclude": "i3"}).status_code == 422
        assert client.get("/recommend/7", params={"exclude": "99"}).status_code == 422
        assert client.get("/recommend/40").status_code == 404
        assert "row indices 0..39" in client.get("/recommend/u7").json()["detail"]


def test_integer_id_maps_match_numeric_path_ids(registry: ModelRegistry, database_url: str, tmp_path: Path) -> None:
    import json

    from factories import make_model_dir

    folder = make_model_dir(tmp_path / "artifacts/cf/als/ints", num_users=5, num_items=6)
    (folder / "als_user_ids.json").write_text(json.dumps([100, 101, 102, 103, 104]))
    (folder / "als_item_ids.json").write_text(json.dumps([7, 8, 9, 10, 11, 12]))
    registry.register_model("artifacts/cf/als/ints", "als", {}, {"ndcg@10": 0.2}, {})
    registry.select_best_model()
    with TestClient(create_app(registry.registry_path, database_url=database_url)) as client:
        body = client.get("/recommend/102", params={"k": 6}).json()
        assert sorted(item["item_id"] for item in body["items"]) == [7, 8, 9, 10, 11, 12]
        body = client.get("/recommend/102", params={"k": 6, "exclude": ["8", "12"]}).json()
        assert sorted(item["item_id"] for item in body["items"]) == [7, 9, 10, 11]
        assert client.get("/recommend/2").status_code == 404


def test_an_app_started_later_in_the_process_serves_the_current_best(
    registry: ModelRegistry, database_url: str, two_models: tuple[str, str]
) -> None:
    a, b = two_models
    with TestClient(create_app(registry.registry_path, database_url=database_url)) as client:
        assert client.get("/model").json()["model_id"] == a
    registry.select_best_model()
    with TestClient(create_app(registry.registry_path, database_url=database_url)) as client:
        assert client.get("/model").json()["model_id"] == b  # the shared loader was checked at startup


def test_missing_registry_fails_startup(tmp_path: Path) -> None:
    app = create_app(tmp_path / "nowhere" / "registry.json")
    with pytest.raises(RegistryNotFoundError), TestClient(app):
        pass
    assert not (tmp_path / "nowhere").exists()


def test_negative_reload_interval_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="reload_interval"):
        create_app(tmp_path / "registry.json", reload_interval=-1)


# --------------------------------------------------------------------------- a real server


@contextmanager
def running_server(app) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """Serve ``app`` with uvicorn on a free port of 127.0.0.1; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(DEADLINE_SECONDS)
        sock.close()


class Traffic:
    """A background client sending requests without pause; records every outcome in order."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.served: list[str] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(DEADLINE_SECONDS)

    def _run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=10.0) as http:
            index = 0
            while not self._stop.is_set():
                user = USERS[index % len(USERS)]
                index += 1
                try:
                    response = http.get(f"/recommend/{user}", params={"k": 5})
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                    continue
                if response.status_code != 200 or len(response.json()["items"]) != 5:
                    self.failures.append(f"{response.status_code} {response.text}")
                else:
                    self.served.append(response.json()["model_id"])

    def wait_for(self, count: int) -> None:
        deadline = time.monotonic() + DEADLINE_SECONDS
        while len(self.served) + len(self.failures) < count:
            assert time.monotonic() < deadline, "the server stopped answering"
            time.sleep(0.01)


def _in_other_process(registry: ModelRegistry, database_url: str, statement: str) -> str:
    """Run ``statement`` against the registry in a new Python process; returns its stdout."""
    script = (
        "import sys\nfrom registry import ModelRegistry\n"
        f"registry = ModelRegistry({str(registry.registry_path)!r}, database_url={database_url!r}, auto_create=False)\n"
        f"print({statement})\n"
    )
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    return completed.stdout.strip()


@pytest.mark.slow
def test_real_server_switches_model_on_reload_with_zero_failed_requests(
    registry: ModelRegistry, database_url: str, two_models: tuple[str, str]
) -> None:
    a, b = two_models
    with running_server(create_app(registry.registry_path, database_url=database_url, watch=False)) as url, \
            httpx.Client(base_url=url, timeout=10.0) as http, Traffic(url) as traffic:
        traffic.wait_for(10)
        assert _in_other_process(registry, database_url, "registry.select_best_model()['model_id']") == b
        traffic.wait_for(len(traffic.served) + 10)
        assert set(traffic.served) == {a}  # the new best is not served before a reload

        assert http.post("/reload_model").json() == {"reloaded": True, "model_id": b, "previous_model_id": a}
        switched = len(traffic.served)
        traffic.wait_for(switched + 20)

        # A/B routing over HTTP matches the doc's function
        test = registry.start_ab_test(a, b, traffic_split=0.5)
        assert http.post("/reload_model").json()["reloaded"] is False  # same best; the test is picked up
        for user in USERS:
            assert http.get(f"/recommend/{user}").json()["model_id"] == get_model_for_user(user, test), user

    assert traffic.failures == []
    served_after = traffic.served[switched + 1:]
    assert traffic.served[:switched - 1].count(a) == switched - 1
    assert b in served_after and a not in served_after[:15]


@pytest.mark.slow
def test_real_server_auto_reload_picks_up_a_new_best(registry: ModelRegistry, database_url: str,
                                                     two_models: tuple[str, str]) -> None:
    a, b = two_models
    app = create_app(registry.registry_path, database_url=database_url, reload_interval=0.05, watch=False)
    with running_server(app) as url, httpx.Client(base_url=url, timeout=10.0) as http, Traffic(url) as traffic:
        assert http.get("/model").json()["model_id"] == a
        _in_other_process(registry, database_url, "registry.select_best_model()['model_id']")
        deadline = time.monotonic() + DEADLINE_SECONDS
        while http.get("/model").json()["model_id"] != b:
            assert time.monotonic() < deadline, "auto-reload never switched to the new best"
            time.sleep(0.02)
        traffic.wait_for(len(traffic.served) + 10)
    assert traffic.failures == []
    assert traffic.served[-1] == b

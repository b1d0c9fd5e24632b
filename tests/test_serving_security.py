"""The recommendation service against hostile input: ASCII-only ids, bounded ``exclude``,
4xx for every bad request, no server paths in responses, and the bearer token on writes."""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.exceptions import StarletteDeprecationWarning
from typer.testing import CliRunner

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

from registry import InvalidArgumentError, ModelRegistry
from registry.cli import app as cli_app
from registry.serving import MAX_EXCLUDE, MAX_ITEM_ID_LENGTH, create_app
from registry.serving.auth import ENV_TOKEN, read_token_file, validate_token

TOKEN = "s3cret-token-0123456789"


def _client(registry: ModelRegistry, database_url: str, model_dir, kind: str) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    registry.register_model(model_dir(f"als/{kind}", id_maps=kind == "mapped"), "als", {}, {"ndcg@10": 0.2}, {})
    registry.select_best_model()
    with TestClient(create_app(registry.registry_path, database_url=database_url)) as client:
        yield client


@pytest.fixture
def plain_client(registry: ModelRegistry, database_url: str, model_dir) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    """A service whose model has no id maps: users and items are row indices (40 x 25)."""
    yield from _client(registry, database_url, model_dir, "plain")


@pytest.fixture
def mapped_client(registry: ModelRegistry, database_url: str, model_dir) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    """A service whose model has string id maps (u0..u39, i0..i24)."""
    yield from _client(registry, database_url, model_dir, "mapped")


@pytest.fixture(params=["plain", "mapped"])
def any_client(request: pytest.FixtureRequest, registry: ModelRegistry, database_url: str,  # type: ignore[no-untyped-def]
               model_dir) -> Iterator[tuple[str, TestClient]]:
    """Each kind of service in turn, with a valid user id for it."""
    for client in _client(registry, database_url, model_dir, request.param):
        yield ("3" if request.param == "plain" else "u3"), client


# --------------------------------------------------------------------------- ids are ASCII


@pytest.mark.parametrize("user", ["%C2%B2", "%C2%B9", "%EF%BC%91", "%D9%A3", "3%C2%B2"])
def test_non_ascii_digits_are_not_row_indices(plain_client: TestClient, user: str) -> None:
    # "²" passed str.isdigit and crashed int() (500); Arabic-Indic "٣" was served as user 3.
    response = plain_client.get(f"/recommend/{user}")
    assert response.status_code == 404, response.text
    assert "row indices" in response.json()["detail"]


def test_ascii_row_index_still_works(plain_client: TestClient) -> None:
    assert plain_client.get("/recommend/3").status_code == 200


@pytest.mark.parametrize("item", ["²", "٣", "１", "-1", "25", "99999999999999999999"])
def test_bad_row_indices_in_exclude_are_a_422(plain_client: TestClient, item: str) -> None:
    response = plain_client.get("/recommend/3", params={"exclude": item})
    assert response.status_code == 422, response.text


@pytest.mark.parametrize("item", ["²", "٣", "-7", "0" * 18])
def test_odd_exclude_ids_are_ignored_with_id_maps(mapped_client: TestClient, item: str) -> None:
    response = mapped_client.get("/recommend/u3", params={"exclude": item, "k": 25})
    assert response.status_code == 200, response.text
    assert len(response.json()["items"]) == 25


def test_an_exclude_id_of_5000_digits_is_a_422(any_client: tuple[str, TestClient]) -> None:
    user, client = any_client
    response = client.get(f"/recommend/{user}", params={"exclude": "9" * 5000})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["query", "exclude", 0]


def test_exclude_ids_up_to_the_length_bound_are_accepted(mapped_client: TestClient) -> None:
    ok = mapped_client.get("/recommend/u3", params={"exclude": "x" * MAX_ITEM_ID_LENGTH})
    assert ok.status_code == 200


def test_exclude_is_bounded_in_count(mapped_client: TestClient) -> None:
    assert mapped_client.get("/recommend/u3", params={"exclude": ["i1"] * MAX_EXCLUDE}).status_code == 200
    response = mapped_client.get("/recommend/u3", params={"exclude": ["i1"] * (MAX_EXCLUDE + 1)})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "exclude"]


@pytest.mark.parametrize(
    "path",
    ["/recommend/%00", "/recommend/%FF%FE", "/recommend/" + "9" * 5000, "/recommend/-1", "/recommend/%20",
     "/recommend/u3?k=" + "9" * 5000, "/recommend/u3?k=%C2%B2", "/recommend/u3?include_seen=maybe",
     "/recommend/u3?exclude="],
)
def test_bad_requests_are_4xx_never_500(any_client: tuple[str, TestClient], path: str) -> None:
    status = any_client[1].get(path).status_code
    assert 400 <= status < 500, (path, status)


# --------------------------------------------------------------------------- no server paths


def test_failed_reload_names_no_server_path(registry: ModelRegistry, database_url: str, model_dir,  # type: ignore[no-untyped-def]
                                            tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    a = registry.register_model(model_dir("als/v1", id_maps=True), "als", {}, {"ndcg@10": 0.2}, {})
    registry.select_best_model()
    # watch=False: a watching app could load b before its file is truncated below.
    with TestClient(create_app(registry.registry_path, database_url=database_url, watch=False)) as client:
        b = registry.register_model(model_dir("als/v2", seed=2, id_maps=True), "als", {}, {"ndcg@10": 0.3}, {})
        registry.promote_model(b)
        (tmp_path / "artifacts/cf/als/v2/als_V.npy").write_bytes(b"truncated")
        with caplog.at_level(logging.ERROR, logger="registry.serving"):
            response = client.post("/reload_model")
        assert response.status_code == 503
        detail = response.json()["detail"]
        assert f"still serving {a}" in detail and "checksum_mismatch" in detail
        assert str(tmp_path) not in response.text and "als_V.npy" not in response.text
        assert str(tmp_path) in caplog.text  # the details went to the log
        model = client.get("/model").json()
        assert "path" not in model and str(tmp_path) not in json.dumps(model)


def test_no_model_answer_names_no_database_location(registry: ModelRegistry, database_url: str, tmp_path: Path) -> None:
    with TestClient(create_app(registry.registry_path, database_url=database_url)) as client:
        for response in (client.get("/recommend/u1"), client.get("/model")):
            assert response.status_code == 503
            assert str(tmp_path) not in response.text and "sqlite" not in response.text


# --------------------------------------------------------------------------- bearer token


@pytest.fixture
def two_apps(registry: ModelRegistry, database_url: str, model_dir) -> ModelRegistry:  # type: ignore[no-untyped-def]
    registry.register_model(model_dir("als/v1", id_maps=True), "als", {}, {"ndcg@10": 0.2}, {})
    registry.select_best_model()
    return registry


def test_reload_requires_the_configured_token(two_apps: ModelRegistry, database_url: str) -> None:
    app = create_app(two_apps.registry_path, database_url=database_url, api_token=TOKEN)
    with TestClient(app) as client:
        for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": f"Basic {TOKEN}"},
                        {"Authorization": TOKEN}, {"Authorization": f"Bearer {TOKEN}x"}):
            response = client.post("/reload_model", headers=headers)
            assert response.status_code == 401, headers
            assert response.headers["www-authenticate"].startswith("Bearer")
        ok = client.post("/reload_model", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200 and ok.json()["reloaded"] is False
        assert client.get("/recommend/u1").status_code == 200  # reads stay open


def test_token_from_the_environment(two_apps: ModelRegistry, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_TOKEN, TOKEN)
    with TestClient(create_app(two_apps.registry_path, database_url=database_url)) as client:
        assert client.post("/reload_model").status_code == 401
        assert client.post("/reload_model", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_without_a_token_reload_is_open(two_apps: ModelRegistry, database_url: str) -> None:
    with TestClient(create_app(two_apps.registry_path, database_url=database_url)) as client:
        assert client.post("/reload_model").status_code == 200


@pytest.mark.parametrize("token", ["short", "has space inside-0123", "nön-ascii-token-0123", "x" * 5000, ""])
def test_malformed_tokens_are_refused(token: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidArgumentError):
        validate_token(token)
    if token:
        with pytest.raises(InvalidArgumentError):
            create_app(tmp_path / "registry.json", api_token=token)
        monkeypatch.setenv(ENV_TOKEN, token)
        with pytest.raises(InvalidArgumentError, match=ENV_TOKEN):
            create_app(tmp_path / "registry.json")


def test_token_file(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(f"  {TOKEN}\n")
    os.chmod(path, 0o600)
    assert read_token_file(path) == TOKEN
    with pytest.raises(InvalidArgumentError, match="cannot read"):
        read_token_file(tmp_path / "missing")
    path.write_text("\n")
    with pytest.raises(InvalidArgumentError):
        read_token_file(path)
    with pytest.raises(InvalidArgumentError, match="token file"):
        read_token_file(tmp_path)


def test_cfreg_serve_reads_the_token_file(two_apps: ModelRegistry, database_url: str, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import registry.serving

    calls: list[tuple[tuple, dict]] = []
    monkeypatch.setattr(registry.serving, "serve", lambda *args, **kwargs: calls.append((args, kwargs)))
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    base = ["--registry", str(two_apps.registry_path), "--database-url", database_url, "serve"]
    result = CliRunner().invoke(cli_app, [*base, "--token-file", str(path)])
    assert result.exit_code == 0, result.output
    assert calls[0][1]["api_token"] == TOKEN

    path.write_text("short\n")
    result = CliRunner().invoke(cli_app, [*base, "--token-file", str(path)])
    assert result.exit_code == 1 and "token" in result.output and len(calls) == 1

"""Finding a registry's files and database from any path a user may give."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry import ModelRegistry
from registry.locations import locate


@pytest.fixture(autouse=True)
def no_database_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CFREG_DATABASE_URL", raising=False)


@pytest.mark.parametrize("given", ["registry.json", "bert_registry.json", ".", "registry.db"])
def test_every_spelling_finds_the_same_files(tmp_path: Path, given: str) -> None:
    location = locate(tmp_path / given)
    assert location.json_path == tmp_path.absolute() / "registry.json"
    assert location.bert_json_path == tmp_path.absolute() / "bert_registry.json"
    assert location.sqlite_file is not None and location.sqlite_file.name == "registry.db"


def test_a_named_database_file_keeps_its_name(tmp_path: Path) -> None:
    assert locate(tmp_path / "team.sqlite").sqlite_file == (tmp_path / "team.sqlite").absolute()


def test_missing_database_and_json_only_registry(tmp_path: Path) -> None:
    location = locate(tmp_path / "registry.json")
    assert location.database_missing and not location.json_only
    (tmp_path / "registry.json").write_text('{"models": {}}')
    assert locate(tmp_path / "registry.json").json_only
    ModelRegistry(tmp_path / "registry.json")  # imports the JSON into a new registry.db
    assert not locate(tmp_path / "registry.json").database_missing


def test_a_server_database_is_never_missing(tmp_path: Path) -> None:
    location = locate(tmp_path, "postgresql+psycopg://user@db.example/registry")
    assert location.sqlite_file is None and not location.database_missing and not location.json_only

"""A new user's first hour with ``cfreg``: each test reproduces one stumble and proves it is gone.

Demo next steps, registries found when one is missing, the database URL remembered by
the registry folder, CLI hints naming CLI commands, typos refused, global options
anywhere, selection history that says what changed, the register version rule.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from factories import make_model_dir
from registry import ModelRegistry, db
from registry.cli import app
from registry.discovery import find_registries
from registry_snapshot import snapshot

WIDE = {"COLUMNS": "300"}


def invoke(*args: str, code: int = 0) -> Any:
    result = CliRunner().invoke(app, list(args), env=WIDE)
    assert result.exit_code == code, f"cfreg {' '.join(args)}: {result.exit_code}\n{result.stdout}\n{result.stderr}"
    return result


def error_line(result: Any) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), lines
    return lines[0]


@pytest.fixture
def cfreg(registry: ModelRegistry, registry_path: Path, database_url: str, workdir: Path):  # type: ignore[no-untyped-def]
    """``cfreg --registry R --database-url U ...`` on the test's registry."""

    def run(*args: str, code: int = 0) -> Any:
        return invoke("--registry", str(registry_path), "--database-url", database_url, *args, code=code)

    return run


def add(registry: ModelRegistry, model_dir: Any, name: str, metrics: dict[str, float]) -> str:
    return registry.register_model(model_dir(f"als/{name}"), "als", {}, metrics, {}, version=name)


# ---------------------------------------------------------------------- 1. demo next steps, registry not found


@pytest.mark.slow
def test_demo_ends_with_next_commands_that_work_as_printed(backend: str, database_url: str, workdir: Path) -> None:
    args = ["demo", "--quick", "--workdir", "demo_workdir"]
    if backend == "postgres":
        args = ["--database-url", database_url, *args]
    output = invoke(*args).stdout
    lines = output.splitlines()
    commands = [line.strip() for line in lines[lines.index("Next, from this folder:") + 1:] if line.strip()]
    assert commands[0] == "cfreg --registry demo_workdir/artifacts/cf/registry.json list"
    assert len(commands) == 3
    for command in commands:
        argv = shlex.split(command)
        assert argv[0] == "cfreg"
        result = invoke(*argv[1:])  # as printed: no --database-url even on PostgreSQL
        assert result.stdout.strip()
    listing = invoke(*shlex.split(commands[0])[1:]).stdout
    assert "als_" in listing and "bpr_" in listing
    assert not Path("artifacts").exists()  # nothing created in the wrong place


def test_registry_not_found_lists_the_registries_under_the_working_directory(workdir: Path) -> None:
    ModelRegistry("demo_workdir/artifacts/cf/registry.json")
    ModelRegistry("team/b/registry.json")
    ModelRegistry("a/b/c/d/e/f/registry.json")  # deeper than the search goes
    before = sorted(p for p in workdir.rglob("*") if p.is_file())
    message = error_line(invoke("list", code=1))
    assert "Registry not found" in message
    assert "demo_workdir/artifacts/cf/registry.json" in message and "team/b/registry.json" in message
    assert "a/b/c/d/e/f" not in message
    assert "e.g. `cfreg --registry team/b/registry.json list`" in message  # nearest first
    assert "init" not in message
    assert sorted(p for p in workdir.rglob("*") if p.is_file()) == before  # nothing created


def test_registry_not_found_without_any_registry_says_how_to_name_or_create_one(workdir: Path) -> None:
    message = error_line(invoke("history", code=1))
    assert "No registry under" in message and "--registry PATH" in message and "cfreg --registry PATH init" in message
    assert not any(workdir.iterdir())


def test_find_registries_is_bounded_and_sees_folders_with_a_database_url_file(tmp_path: Path) -> None:
    (tmp_path / "x" / "pg").mkdir(parents=True)
    (tmp_path / "x" / "pg" / db.DATABASE_URL_FILE).write_text("postgresql+psycopg://u@h/db\n")
    (tmp_path / "y").mkdir()
    (tmp_path / "y" / "registry.db").write_bytes(b"")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "registry.db").write_bytes(b"")
    assert find_registries(tmp_path) == [Path("y/registry.json"), Path("x/pg/registry.json")]
    assert find_registries(tmp_path, max_depth=1) == [Path("y/registry.json")]
    assert find_registries(tmp_path, limit=1) == [Path("y/registry.json")]


# ---------------------------------------------------------------------- 2. the registry folder remembers its database


@pytest.fixture
def elsewhere_url(backend: str, database_url: str, tmp_path: Path) -> str:
    """A database that is not the folder's default registry.db, with a password in the URL."""
    if backend == "postgres":
        return make_url(database_url).set(password="s3cret-pw").render_as_string(hide_password=False)
    return f"sqlite:///{tmp_path / 'elsewhere' / 'reg.db'}"


def test_init_with_a_database_url_is_remembered_by_the_folder(elsewhere_url: str, workdir: Path,
                                                              monkeypatch: pytest.MonkeyPatch, model_dir) -> None:
    monkeypatch.setenv("CFREG_DATABASE_URL", elsewhere_url)
    invoke("init")
    monkeypatch.delenv("CFREG_DATABASE_URL")
    recorded = Path("artifacts/cf") / db.DATABASE_URL_FILE
    text = recorded.read_text()
    assert "s3cret-pw" not in text  # never a password
    assert db.recorded_database_url(Path("artifacts/cf")) == db.without_password(elsewhere_url)
    assert not Path("artifacts/cf/registry.db").exists()

    model_dir("als/v1")
    invoke("register", "artifacts/cf/als/v1", "--metric", "ndcg@10=0.2")
    assert "als_v1" in invoke("list").stdout  # plain `cfreg list` in that folder
    registry = ModelRegistry("artifacts/cf/registry.json", auto_create=False)  # the Python API too
    assert db.same_database(registry.context.database.url, elsewhere_url)
    assert list(registry.list_models()["model_id"]) == ["als_v1"]
    assert not Path("artifacts/cf/registry.db").exists()


def test_the_default_database_writes_no_url_file(registry: ModelRegistry, registry_path: Path, backend: str) -> None:
    written = (registry_path.parent / db.DATABASE_URL_FILE).exists()
    assert written is (backend == "postgres")


def test_an_existing_url_file_is_not_repointed_silently(elsewhere_url: str, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "reg"
    ModelRegistry(folder / "registry.json", database_url=elsewhere_url)
    before = (folder / db.DATABASE_URL_FILE).read_text()
    other = f"sqlite:///{tmp_path / 'other.db'}"
    ModelRegistry(folder / "registry.json", database_url=other)  # explicit URL wins for this call only
    assert (folder / db.DATABASE_URL_FILE).read_text() == before
    assert "left unchanged" in caplog.text
    assert db.resolve_database_url(folder / "registry.json") == db.without_password(elsewhere_url)


def test_a_damaged_url_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "reg").mkdir()
    (tmp_path / "reg" / db.DATABASE_URL_FILE).write_text("# comment\nnot a url\n")
    with pytest.raises(db.InvalidArgumentError, match="not a database URL"):
        ModelRegistry(tmp_path / "reg" / "registry.json")
    assert sorted(p.name for p in (tmp_path / "reg").iterdir()) == [db.DATABASE_URL_FILE]


# ---------------------------------------------------------------------- 3. CLI errors name CLI commands


def test_cli_errors_suggest_cli_commands_python_errors_python_calls(cfreg, registry: ModelRegistry, model_dir,
                                                                    embeddings_dir) -> None:
    a, b = add(registry, model_dir, "a", {"ndcg@10": 0.1}), add(registry, model_dir, "b", {"ndcg@10": 0.2})
    test = registry.start_ab_test(a, b, 0.1, test_id="ab_1")
    message = error_line(cfreg("ab", "start", a, b, code=1))
    assert "`cfreg ab stop ab_1`" in message and "stop_ab_test" not in message
    with pytest.raises(Exception, match=r"stop_ab_test\('ab_1'\)"):
        registry.start_ab_test(a, b, 0.2)
    assert "`cfreg ab status --all`" in error_line(cfreg("ab", "status", "nope", code=1))
    assert "`cfreg ab stop ab_1`" in error_line(cfreg("archive", a, code=1))
    registry.stop_ab_test(test["test_id"])
    assert "`cfreg promote MODEL_ID`" in error_line(cfreg("ab", "stop", "ab_1", "--promote", "treatment", code=1))

    bert = registry_bert(registry)
    version = bert.register_embeddings(embeddings_dir("bert/v1", num_items=25, dim=16), "m", 25, 16, version="e1")
    message = error_line(cfreg("bert", "delete", version, "--yes", code=1))
    assert "`cfreg bert set-current VERSION`" in message and "set_current_best()" not in message
    assert "`cfreg bert list`" in error_line(cfreg("bert", "show", "nope", code=1))
    assert "`cfreg list`" in error_line(cfreg("promote", "als_nope", code=1))


def registry_bert(registry: ModelRegistry):  # type: ignore[no-untyped-def]
    from registry import BERTEmbeddingsRegistry

    return BERTEmbeddingsRegistry(registry.registry_path, database_url=registry.context.database.url)


# ---------------------------------------------------------------------- 4. typos are errors


def test_unknown_metric_and_model_type_are_errors_listing_the_known_ones(cfreg, registry: ModelRegistry, model_dir) -> None:
    add(registry, model_dir, "a", {"ndcg@10": 0.1, "recall@10": 0.3})
    before = snapshot(registry)
    message = error_line(cfreg("select-best", "--metric", "bogus@10", code=1))
    assert "'bogus@10'" in message and "known metrics: ndcg@10, recall@10" in message
    message = error_line(cfreg("list", "--type", "xyz", code=1))
    assert "'xyz'" in message and "known types: als, bert_als, bpr" in message
    assert "known types" in error_line(cfreg("select-best", "--type", "xyz", code=1))
    assert snapshot(registry) == before
    assert "No models." in cfreg("list", "--type", "bpr").stdout  # a known type without models


def test_register_auto_select_with_a_metric_typo_registers_nothing(cfreg, registry: ModelRegistry, model_dir) -> None:
    add(registry, model_dir, "a", {"ndcg@10": 0.1})
    model_dir("als/v2")
    before = snapshot(registry)
    message = error_line(cfreg("register", "artifacts/cf/als/v2", "--metric", "ndcg@10=0.2", "--auto-select",
                               "--select-by", "ndgc@10", code=1))
    assert "known metrics: ndcg@10" in message
    assert snapshot(registry) == before


# ---------------------------------------------------------------------- 5. global options anywhere


def test_global_options_work_after_the_subcommand(registry: ModelRegistry, registry_path: Path, database_url: str,
                                                  model_dir, workdir: Path) -> None:
    add(registry, model_dir, "a", {"ndcg@10": 0.1})
    expected = invoke("--registry", str(registry_path), "--database-url", database_url, "--json", "list").stdout
    assert json.loads(expected)[0]["model_id"] == "als_a"
    for args in (
        ["list", "--json", "--registry", str(registry_path), "--database-url", database_url],
        ["--registry", str(registry_path), "list", "--database-url", database_url, "--json"],
        ["list", f"--registry={registry_path}", f"--database-url={database_url}", "--json"],
        ["--json", "list", "--registry", str(registry_path), "--database-url", database_url, "--sort-by", "ndcg@10"],
    ):
        assert invoke(*args).stdout == expected, args
    nested = invoke("ab", "status", "--all", "--json", "--registry", str(registry_path), "--database-url", database_url)
    assert json.loads(nested.stdout) == []
    verbose = CliRunner().invoke(app, ["history", "-v", "--registry", str(registry_path), "--database-url", database_url])
    assert verbose.exit_code == 0


def test_a_subcommand_option_value_is_not_taken_for_a_global_option(cfreg, registry: ModelRegistry, model_dir) -> None:
    a = add(registry, model_dir, "a", {"ndcg@10": 0.1})
    result = cfreg("promote", a, "--reason=--json", "--verbose")
    assert not result.stdout.lstrip().startswith("{")  # --json stayed the reason's value
    assert registry.get_selection_history()[0]["reason"] == "--json"


# ---------------------------------------------------------------------- 7. selection output and rollback


def test_select_promote_rollback_say_whether_anything_changed(cfreg, registry: ModelRegistry, model_dir) -> None:
    a, b, c = (add(registry, model_dir, n, {"ndcg@10": v}) for n, v in (("a", 0.1), ("b", 0.2), ("c", 0.3)))
    assert "Changed: current best none -> als_c" in cfreg("select-best").stdout
    generation = registry.context.generation()
    assert "Unchanged: als_c is already the current best" in cfreg("select-best").stdout
    outcome = json.loads(cfreg("--json", "select-best").stdout)
    assert (outcome["changed"], outcome["previous_model_id"]) == (False, c)
    assert registry.context.generation() == generation  # nothing written
    assert len(registry.get_selection_history()) == 1
    assert "Changed: current best als_c -> als_a" in cfreg("promote", a).stdout
    assert "Unchanged" in cfreg("promote", a).stdout
    assert registry.get_selection_history()[0]["metric"] is None  # manual, not under ndcg@10
    cfreg("promote", b)
    # a -> b is the line after c: c, a, b
    assert "Changed: current best als_b -> als_c" in cfreg("rollback", "--steps", "2").stdout
    assert error_line(cfreg("rollback", code=1)).startswith("Error: nothing to roll back to")
    cfreg("promote", b)  # line c, b
    assert "Changed: current best als_b -> als_c" in cfreg("rollback", "--to", c).stdout
    message = error_line(cfreg("rollback", "--to", a, code=1))
    assert "`cfreg promote als_a`" in message and "promote_model" not in message
    assert "not both" in cfreg("rollback", "--to", c, "--steps", "2", code=2).stderr
    history = json.loads(cfreg("--json", "history").stdout)
    assert [(h["model_id"], h["selected_by"]) for h in history][:2] == [(c, "rollback"), (b, "manual")]


# ---------------------------------------------------------------------- 8. the register version rule


def test_register_says_where_the_version_came_from(cfreg, registry: ModelRegistry, workdir: Path) -> None:
    make_model_dir(workdir / "artifacts/cf/als/v2_20250116", "als")
    make_model_dir(workdir / "artifacts/cf/als/not a version", "als")
    out = cfreg("register", "artifacts/cf/als/v2_20250116", "-m", "ndcg@10=0.1").stdout
    assert "Registered als_v2_20250116" in out and "version from the folder name" in out
    out = cfreg("register", "artifacts/cf/als/v2_20250116", "-m", "ndcg@10=0.1", "--version", "v9").stdout
    assert "Registered als_v9" in out and "version from --version" in out
    out = cfreg("register", "artifacts/cf/als/not a version", "-m", "ndcg@10=0.1").stdout
    assert "version v_YYYYMMDD_HHMMSS (UTC) generated" in out
    generated = [m for m in registry.list_models()["model_id"] if m.startswith("als_v_")]
    assert len(generated) == 1
    assert json.loads(cfreg("--json", "register", "artifacts/cf/als/v2_20250116", "--version", "v10",
                            "-m", "ndcg@10=0.1").stdout)["version_source"] == "argument"
    helptext = invoke("register", "--help").stdout
    assert "folder's name" in helptext and "v_YYYYMMDD_HHMMSS" in helptext

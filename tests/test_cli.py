"""The ``cfreg`` command line: every command group, its happy path and its error path.

Breadth goes through typer's ``CliRunner`` (in process, on every backend); at least
one path per command group also runs as a real ``python -m registry`` / ``cfreg``
subprocess. ``--json`` output is compared with what the Python API returns.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from factories import make_embeddings_dir, make_model_dir
from registry import ModelNotFoundError, ModelRegistry, db
from registry.audit import query_events
from registry.cli import app
from registry.timestamps import format_timestamp

REPO = Path(__file__).resolve().parent.parent
CFREG = Path(sys.executable).parent / "cfreg"


# ---------------------------------------------------------------------- helpers


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """What ``--json`` must print for a DataFrame: records, NaN as null."""
    return json.loads(json.dumps(frame.astype(object).where(frame.notna(), None).to_dict(orient="records")))


def plain(value: Any) -> Any:
    return json.loads(json.dumps(value))


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one stderr line, got {lines!r}"
    assert lines[0].startswith("Error: "), lines[0]
    return lines[0]


class Cli:
    """Runs ``cfreg --registry R --database-url U ...`` in process."""

    def __init__(self, registry_path: Path, database_url: str) -> None:
        self.base = ["--registry", str(registry_path), "--database-url", database_url]
        self.runner = CliRunner()

    def __call__(self, *args: str, code: int = 0, input: str | None = None) -> Any:
        result = self.runner.invoke(app, [*self.base, *args], input=input)
        assert result.exit_code == code, (
            f"cfreg {' '.join(args)} exited {result.exit_code}, expected {code}\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}\nexception: {result.exception!r}"
        )
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self("--json", *args).stdout)

    def fails(self, *args: str, code: int = 1) -> str:
        """Run a failing command; returns its single stderr line (stdout must be empty)."""
        result = self(*args, code=code)
        assert result.stdout == ""
        return one_error_line(result.stderr)


@pytest.fixture
def cli(registry: ModelRegistry, registry_path: Path, database_url: str, workdir: Path) -> Cli:
    """The CLI on the test's registry (created by the ``registry`` fixture, root = test folder)."""
    return Cli(registry_path, database_url)


@pytest.fixture
def trained(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Factory: a model folder ``artifacts/cf/<type>/<version>`` whose metadata carries metrics."""

    def build(version: str, ndcg: float | None, model_type: str = "als", seed: int = 0, **extra: Any) -> str:
        metadata: dict[str, Any] = {"training_time_seconds": 2.5, **extra}
        if ndcg is not None:
            metadata["metrics"] = {"ndcg@10": ndcg, "recall@10": round(ndcg * 1.5, 4)}
        make_model_dir(tmp_path / "artifacts" / "cf" / model_type / version, model_type, seed=seed, metadata=metadata)
        return f"artifacts/cf/{model_type}/{version}"

    return build


def run_cfreg(args: list[str], cwd: Path, *, entry_point: bool = False, env: dict[str, str] | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """A real process: ``python -m registry`` (or the installed ``cfreg`` script)."""
    command = [str(CFREG)] if entry_point else [sys.executable, "-m", "registry"]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CFREG_")}
    environment.update(env or {})
    return subprocess.run([*command, *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------------- models: happy paths


def test_register_list_show_stats_json_match_the_api(cli: Cli, registry: ModelRegistry, trained) -> None:
    first = cli.json("register", trained("v1", 0.10, seed=1))
    second = cli.json("register", trained("v2", 0.20, seed=2), "--data-version", "abc123")
    cli("register", trained("v1", None, model_type="bpr", seed=3), "--metric", "ndcg@10=0.15", "-m", "coverage=0.3")

    assert (first["model_id"], second["model_id"]) == ("als_v1", "als_v2")
    assert first["metrics"] == {"ndcg@10": 0.10, "recall@10": 0.15}
    assert registry.get_model("als_v2")["data_version"] == "abc123"
    assert registry.get_model("bpr_v1")["metrics"] == {"ndcg@10": 0.15, "coverage": 0.3}

    assert cli.json("list") == records(registry.list_models())
    assert cli.json("list", "--type", "als", "--sort-by", "ndcg@10", "--ascending") == records(
        registry.list_models(model_type="als", sort_by="ndcg@10", ascending=True)
    )
    assert [row["model_id"] for row in cli.json("list", "--sort-by", "ndcg@10")] == ["als_v2", "bpr_v1", "als_v1"]
    assert cli.json("show", "als_v1") == plain(registry.get_model("als_v1"))
    assert cli.json("stats") == plain(registry.get_registry_stats())
    assert cli.json("compare", "als_v1", "bpr_v1", "--metrics", "ndcg@10,coverage") == records(
        registry.compare_models(["als_v1", "bpr_v1"], ["ndcg@10", "coverage"])
    )


def test_human_output_is_a_table_with_the_models(cli: Cli, trained, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")  # a narrow terminal must not fold ids and metric names into pieces
    quiet = cli("register", trained("v1", 0.1))
    assert quiet.stderr == ""  # nothing but the result unless -v
    assert "registered als_v2" in cli("-v", "register", trained("v2", 0.2, seed=2)).stderr
    listing = cli("list").stdout
    assert "\x1b[" not in listing  # no colour codes when stdout is not a terminal
    assert "als_v1" in listing and "ndcg@10" in listing and "0.1" in listing
    assert "version" not in listing  # the model id carries it; the JSON output keeps every column
    shown = cli("show", "als_v1").stdout
    assert "artifacts/cf/als/v1" in shown and "als_U.npy" in shown  # entry plus recorded files
    assert "No models." in cli("list", "--type", "bpr").stdout


def test_the_model_list_prints_the_lines_of_a_rich_table(cli: Cli, trained) -> None:
    """cfreg list lays its table out in one pass; the lines are those rich prints for the same table."""
    import io

    from rich.console import Console
    from rich.markup import escape
    from rich.segment import Segments

    from registry.cli.common import print_unfolded, records_table

    cli("register", trained("v1", 0.1))
    records = cli.json("list")
    columns = ["model_id", "model_type", "status", "created_at", "ndcg@10"]
    records += [{"model_id": "bpr_中文_é", "model_type": "bpr", "status": "active", "created_at": "", "ndcg@10": None},
                {"model_id": "x" * 90, "model_type": "als", "status": "", "created_at": "[bold]", "ndcg@10": 0.5}]
    for title in (f"{len(records)} model(s)", "an odd title", None):
        expected, printed = io.StringIO(), io.StringIO()
        console = Console(file=expected, width=80)
        literal = [{key: escape(value) if isinstance(value, str) else value for key, value in record.items()}
                   for record in records]  # rich reads markup in cells; cfreg list shows them as they are
        roomy = console.options.update(width=10_000)
        console.print(Segments(console.render(records_table(literal, columns, title=title), roomy)), crop=False,
                      soft_wrap=True)
        print_unfolded(Console(file=printed, width=80), records, columns, title)
        assert printed.getvalue() == expected.getvalue()
        assert "[bold]" in printed.getvalue() and "x" * 90 in printed.getvalue()


def test_register_with_metrics_and_params_files(cli: Cli, registry: ModelRegistry, trained, tmp_path: Path) -> None:
    (tmp_path / "m.json").write_text(json.dumps({"metrics": {"ndcg@10": 0.3}}))
    (tmp_path / "p.json").write_text(json.dumps({"factors": 8, "alpha": 40}))
    result = cli.json("register", trained("v7", 0.1), "--metrics-file", "m.json", "--params-file", "p.json",
                      "--version", "custom")
    assert result["model_id"] == "als_custom"
    info = registry.get_model("als_custom")
    assert info["metrics"] == {"ndcg@10": 0.3}
    assert info["hyperparameters"] == {"factors": 8, "alpha": 40}


def test_register_auto_select_promotes_only_when_better(cli: Cli, registry: ModelRegistry, trained) -> None:
    assert cli.json("register", trained("v1", 0.20), "--auto-select")["promoted"] is True
    worse = cli.json("register", trained("v2", 0.19, seed=2), "--auto-select")
    assert worse["promoted"] is False and "not promoted" in worse["decision"]
    small_gain = cli.json("register", trained("v3", 0.21, seed=3), "--auto-select", "--min-gain", "0.10")
    assert small_gain["promoted"] is False
    assert registry.get_current_best()["model_id"] == "als_v1"
    better = cli("register", trained("v4", 0.25, seed=4), "--auto-select", "--min-gain", "0.10").stdout
    assert "promoted als_v4" in better
    assert registry.get_current_best()["model_id"] == "als_v4"


def test_select_promote_rollback_history(cli: Cli, registry: ModelRegistry, trained) -> None:
    cli("register", trained("v1", 0.1))
    cli("register", trained("v2", 0.2, seed=2))
    best = cli.json("select-best", "--metric", "ndcg@10")
    assert (best["model_id"], best["value"]) == ("als_v2", 0.2)
    assert (best["changed"], best["previous_model_id"]) == (True, None)
    again = cli.json("select-best", "--metric", "ndcg@10")  # already current: same answer, no write
    assert {key: again[key] for key in ("model_id", "model_info", "metric", "value")} == plain(
        registry.select_best_model(metric="ndcg@10"))
    assert (again["changed"], again["previous_model_id"]) == (False, "als_v2")

    assert cli.json("select-best", "--metric", "ndcg@10", "--min-gain-over-current", "0.5") is None
    assert "Unchanged" in cli("select-best", "--type", "bpr").stdout

    assert cli.json("promote", "als_v1", "--reason", "hotfix")["model_id"] == "als_v1"
    assert cli.json("rollback")["model_id"] == "als_v2"
    assert "not an earlier current best" in cli.fails("rollback", "--to", "als_v1")  # the line is now just v2
    history = cli.json("history")
    assert history == plain(registry.get_selection_history())
    assert [(h["model_id"], h["selected_by"]) for h in history] == [
        ("als_v2", "rollback"), ("als_v1", "manual"), ("als_v2", "auto")
    ]
    assert history[1]["reason"] == "hotfix"
    assert len(cli.json("history", "--limit", "1")) == 1


def test_archive_set_status_delete(cli: Cli, registry: ModelRegistry, trained, tmp_path: Path) -> None:
    for version, ndcg in (("v1", 0.1), ("v2", 0.2), ("v3", 0.3)):
        cli("register", trained(version, ndcg, seed=int(version[1])))
    cli("select-best")
    assert cli.json("archive", "als_v1") is True
    assert registry.get_model("als_v1")["status"] == "archived"
    assert cli.json("set-status", "als_v1", "active") is True
    cli("set-status", "als_v2", "failed")
    assert registry.get_model("als_v2")["status"] == "failed"

    # No --yes and answering "n": nothing happens (click's Abort exits 1).
    cli("delete", "als_v1", "--delete-files", input="n\n", code=1)
    assert registry.get_model("als_v1") is not None
    assert (tmp_path / "artifacts/cf/als/v1").is_dir()
    cli("delete", "als_v1", "--delete-files", input="y\n")
    assert registry.get_model("als_v1") is None
    assert not (tmp_path / "artifacts/cf/als/v1").exists()
    assert cli.json("delete", "als_v2", "--yes") is True
    assert (tmp_path / "artifacts/cf/als/v2").is_dir()  # registry entry only


def test_audit_filters(cli: Cli, registry: ModelRegistry, trained) -> None:
    cli("register", trained("v1", 0.1))
    cli("register", trained("v2", 0.2, seed=2))
    cli("select-best")
    events = cli.json("audit")
    assert [e["action"] for e in events] == ["REGISTER", "REGISTER", "SELECT_BEST"]
    api_events = plain(registry.context.read(lambda s: query_events(s)))
    for event in api_events:  # the CLI prints the registry's one timestamp format
        event["at"] = format_timestamp(datetime.fromisoformat(event["at"]))
    assert events == api_events
    assert [e["target"] for e in cli.json("audit", "--action", "register")] == ["als_v1", "als_v2"]
    assert [e["action"] for e in cli.json("audit", "--model", "als_v2")] == ["REGISTER", "SELECT_BEST"]
    assert [e["action"] for e in cli.json("audit", "--limit", "1")] == ["SELECT_BEST"]
    assert cli.json("audit", "--since", "2999-01-01") == []
    assert len(cli.json("audit", "--until", "2999-01-01T00:00:00")) == 3
    assert "SELECT_BEST" in cli("audit").stdout


def test_init_and_upgrade(tmp_path: Path, database_url: str, backend: str, workdir: Path) -> None:
    path = tmp_path / "reg" / "registry.json"
    cli = Cli(path, database_url)
    created = cli.json("init", "--root", str(tmp_path))
    assert created["created"] is True and created["root"] == str(tmp_path)
    assert path.exists()  # the empty registry.json is written at creation
    assert cli.json("init")["created"] is False
    upgraded = cli.json("upgrade")
    assert upgraded["upgraded"] is False and upgraded["revisions_after"] == upgraded["head"]
    assert "up to date" in cli("upgrade").stdout

    # A schema newer than the code is refused with one line and left untouched.
    database = db.open_database(database_url)
    with database.engine.execution_options(cfreg_write=True).begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    db.forget_databases()
    assert "9999_future" in cli.fails("upgrade")
    with db.make_engine(database_url).connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == "9999_future"


def test_commands_on_a_missing_registry_fail_without_creating_it(tmp_path: Path, workdir: Path) -> None:
    runner = CliRunner()
    for command in (["list"], ["upgrade"], ["stats"], ["cleanup", "--keep-last", "1"]):
        result = runner.invoke(app, ["--registry", "nowhere/registry.json", *command])
        assert result.exit_code == 1, command
        assert "Registry not found" in one_error_line(result.stderr)
        assert "cfreg --registry PATH init" in one_error_line(result.stderr)
    assert not (tmp_path / "nowhere").exists()


# ---------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["show", "nope"], "'nope' not found"),
        (["promote", "nope"], "'nope' not found"),
        (["archive", "nope"], "'nope' not found"),
        (["delete", "nope", "--yes"], "'nope' not found"),
        (["set-status", "nope", "active"], "'nope' not found"),
        (["compare", "als_v1", "nope"], "nope"),
        (["set-status", "als_v1", "bogus"], "Invalid status 'bogus'"),
        (["list", "--sort-by", "bogus"], "unknown sort_by 'bogus'"),
        (["select-best", "--metric", "ndcg 10"], "invalid metric name"),
        (["archive", "als_v1"], "current best"),
        (["delete", "als_v1", "--yes"], "current best"),
        (["rollback"], "nothing to roll back"),
        (["register", "artifacts/cf/missing"], "is not a directory"),
        (["register", "artifacts/cf/als/v1", "--type", "svd"], "Unknown model_type 'svd'"),
    ],
)
def test_registry_errors_are_one_line_exit_1_and_change_nothing(
    cli: Cli, registry: ModelRegistry, trained, args: list[str], fragment: str
) -> None:
    cli("register", trained("v1", 0.1), "--auto-select")
    before = registry.registry
    line = cli.fails(*args)
    assert fragment in line
    after = registry.registry
    assert after["models"] == before["models"] and after["current_best"] == before["current_best"]


def test_traceback_flag_reraises_the_typed_error(cli: Cli) -> None:
    result = cli.runner.invoke(app, [*cli.base, "--traceback", "show", "nope"])
    assert result.exit_code == 1
    assert isinstance(result.exception, ModelNotFoundError)


@pytest.mark.parametrize(
    "args",
    [
        ["promote"],  # missing argument
        ["no-such-command"],
        ["register", "artifacts/cf/als/v1", "--metric", "ndcg@10"],  # not name=value
        ["register", "artifacts/cf/als/v1", "--metric", "ndcg@10=high"],
        ["register", "artifacts/cf/als/v1", "--metrics-file", "m.json", "--metric", "a=1"],
        ["cleanup"],  # --keep-last is required
        ["cleanup", "--keep-last", "-1"],
        ["ab", "start", "a", "b", "--split", "1.5"],
        ["ab", "stop", "--promote", "nobody"],
    ],
)
def test_usage_errors_exit_2(cli: Cli, trained, tmp_path: Path, args: list[str]) -> None:
    trained("v1", 0.1)
    (tmp_path / "m.json").write_text("{}")
    result = cli(*args, code=2)
    assert result.stdout == ""


def test_bad_files_are_registry_errors(cli: Cli, registry: ModelRegistry, trained, tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("[1, 2]")
    assert "must hold a JSON object" in cli.fails("register", trained("v1", 0.1), "--metrics-file", "bad.json")
    (tmp_path / "nan.json").write_text('{"ndcg@10": NaN}')
    assert "NaN" in cli.fails("register", trained("v1", 0.1), "--metrics-file", "nan.json")
    assert registry.list_models().empty


# ---------------------------------------------------------------------- files


def test_export_json_writes_the_document(cli: Cli, registry: ModelRegistry, trained, registry_path: Path) -> None:
    cli("register", trained("v1", 0.1), "--auto-select")
    registry_path.unlink()
    assert cli.json("export-json") == {"registry_json": str(registry_path)}
    written = json.loads(registry_path.read_text())
    assert written["current_best"]["model_id"] == "als_v1"
    assert written["models"] == registry.registry["models"]
    printed = json.loads(cli("export-json", "--stdout").stdout)
    assert printed["models"] == written["models"]


def test_backup_list_restore(cli: Cli, registry: ModelRegistry, trained) -> None:
    cli("register", trained("v1", 0.1), "--auto-select")
    backup = cli.json("backup")["backup_path"]
    listed = cli.json("list-backups")
    assert [Path(b["path"]).name for b in listed] == [Path(backup).name]

    cli("register", trained("v2", 0.2, seed=2), "--auto-select")
    assert registry.get_current_best()["model_id"] == "als_v2"
    assert cli.json("restore", backup) is True
    assert sorted(registry.models) == ["als_v1"]
    assert registry.get_current_best()["model_id"] == "als_v1"
    assert len(cli.json("list-backups")) == 2  # the state before the restore was backed up first
    assert cli.json("restore", backup, "--no-current-backup") is True
    assert len(cli.json("list-backups")) == 2
    (Path(backup).parent / "damaged.json").write_text("{not json")
    assert "damaged.json" in cli.fails("restore", str(Path(backup).parent / "damaged.json"))
    assert sorted(registry.models) == ["als_v1"]


def test_backup_sqlite_format(cli: Cli, backend: str, trained) -> None:
    cli("register", trained("v1", 0.1))
    if backend == "sqlite":
        path = Path(cli.json("backup", "--format", "sqlite")["backup_path"])
        with sqlite3.connect(path) as connection:
            assert connection.execute("SELECT model_id FROM models").fetchall() == [("als_v1",)]
    else:
        assert "needs a SQLite registry" in cli.fails("backup", "--format", "sqlite")


def test_import_json_into_a_fresh_registry(cli: Cli, registry: ModelRegistry, trained, tmp_path: Path) -> None:
    cli("register", trained("v1", 0.1))
    cli("register", trained("v2", 0.2, seed=2), "--auto-select")
    legacy = tmp_path / "legacy.json"
    legacy.write_text(json.dumps(registry.registry))
    fresh = Cli(tmp_path / "fresh" / "registry.json", f"sqlite:///{tmp_path / 'fresh' / 'registry.db'}")
    result = fresh.json("import-json", str(legacy))
    assert (result["models"], result["current_best"]) == (2, "als_v2")
    assert [row["model_id"] for row in fresh.json("list", "--sort-by", "model_id", "--ascending")] == ["als_v1", "als_v2"]
    assert "replace" in fresh.fails("import-json", str(legacy))
    assert fresh.json("import-json", str(legacy), "--replace")["models"] == 2


# ---------------------------------------------------------------------- cleanup


def test_cleanup_dry_run_then_archive(cli: Cli, registry: ModelRegistry, trained) -> None:
    for index in range(1, 5):
        cli("register", trained(f"v{index}", 0.1 * index, seed=index))
    cli("promote", "als_v1")  # the oldest is the current best: it must be spared
    plan = cli.json("cleanup", "--keep-last", "2", "--archive-old", "--dry-run")
    assert plan["dry_run"] is True
    assert {i["model_id"]: i["action"] for i in plan["items"]} == {
        "als_v4": "keep", "als_v3": "keep", "als_v2": "archive", "als_v1": "skip"
    }
    assert {m["status"] for m in registry.models.values()} == {"active"}  # dry run changed nothing

    done = cli.json("cleanup", "--keep-last", "2", "--archive-old")
    assert done["archived"] == ["als_v2"]
    assert done["skipped"] == [{"model_id": "als_v1", "reason": "current best"}]
    assert registry.get_model("als_v2")["status"] == "archived"
    assert "archived 0" in cli("cleanup", "--keep-last", "2", "--archive-old").stdout


def test_progress_displays_on_a_terminal(cli: Cli, registry: ModelRegistry, trained) -> None:
    """With a (forced) terminal the spinner and the cleanup progress bar run, on stderr only."""
    terminal = {"FORCE_COLOR": "1", "TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1"}
    for index in (1, 2, 3):
        result = cli.runner.invoke(app, [*cli.base, "register", trained(f"v{index}", 0.1 * index, seed=index)], env=terminal)
        assert result.exit_code == 0, result.stderr
    result = cli.runner.invoke(app, [*cli.base, "cleanup", "--keep-last", "1", "--archive-old"], env=terminal)
    assert result.exit_code == 0, result.stderr
    assert sorted(m for m, i in registry.models.items() if i["status"] == "archived") == ["als_v1", "als_v2"]
    assert "archived" in result.stdout


# ---------------------------------------------------------------------- read-only SQL


def test_sql_reads_and_refuses_writes(cli: Cli, registry: ModelRegistry, trained, tmp_path: Path, backend: str) -> None:
    if backend == "postgres":
        assert "cfreg init" in cli.fails("sql", "SELECT 1")  # no reader role yet: refused, nothing runs
        assert cli.json("init")["sql_reader_role"].startswith("cfreg_ro_")
    cli("register", trained("v1", 0.1))
    cli("register", trained("v2", 0.2, seed=2))
    rows = cli.json("sql", "SELECT model_id, value FROM model_metrics WHERE name = 'ndcg@10' ORDER BY value DESC")
    assert rows == [{"model_id": "als_v2", "value": 0.2}, {"model_id": "als_v1", "value": 0.1}]
    assert "als_v2" in cli("sql", "SELECT model_id FROM models").stdout
    assert len(cli.json("sql", "SELECT model_id FROM models", "--limit", "1")) == 1

    for statement in ("DELETE FROM models", "UPDATE models SET status = 'failed'",
                      "INSERT INTO settings (id) VALUES (2)", "DROP TABLE audit_events",
                      "CREATE TABLE evil (a int)"):
        assert "read-only" in cli.fails("sql", statement), statement
    assert "exactly one" in cli.fails("sql", "SELECT 1; DELETE FROM models")
    assert "NUL" in cli.fails("sql", "SELECT 1\x00; DELETE FROM models")
    assert "query failed" in cli.fails("sql", "SELECT * FROM no_such_table")
    if backend == "sqlite":  # ATTACH would create the file even on a read-only connection
        assert "read-only" in cli.fails("sql", f"ATTACH DATABASE '{tmp_path / 'x.db'}' AS x")
        assert not (tmp_path / "x.db").exists()
        assert "read-only" in cli.fails("sql", "PRAGMA journal_mode=DELETE")
        assert cli.json("sql", "PRAGMA table_info(models)")[0]["name"] == "model_id"
        columns = cli.json("sql", "SELECT name FROM pragma_table_info('models') ORDER BY cid")
        assert columns[0] == {"name": "model_id"} and {"name": "path"} in columns
        refused = {"UPDATE sqlite_master SET sql = 'x'": "sqlite_master may not be modified",
                   "PRAGMA writable_schema=ON": "read-only", "VACUUM INTO 'copy.db'": "cannot VACUUM",
                   "SELECT load_extension('x')": "not authorized", "DELETE FROM models WHERE 1": "read-only"}
        for statement, fragment in refused.items():
            assert fragment in cli.fails("sql", statement), statement
        assert not (tmp_path / "copy.db").exists()
    else:
        assert "read-only" in cli.fails("sql", "SELECT nextval('audit_events_id_seq')")
    assert sorted(registry.models) == ["als_v1", "als_v2"]
    assert {m["status"] for m in registry.models.values()} == {"active"}


def test_sql_times_out(cli: Cli, registry: ModelRegistry, backend: str) -> None:
    if backend == "postgres":
        cli("init")
        slow = "SELECT pg_sleep(30)"
    else:
        slow = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"
    assert "longer than 0.5 s" in cli.fails("sql", slow, "--timeout", "0.5")


@pytest.mark.skipif(not os.environ.get("CFREG_TEST_POSTGRES_URL"), reason="PostgreSQL only")
def test_sql_on_postgres_is_confined_by_the_database(cli: Cli, registry: ModelRegistry, tmp_path: Path, backend: str) -> None:
    """What a READ ONLY transaction alone let through on PostgreSQL, and the escapes from SET ROLE."""
    if backend != "postgres":
        pytest.skip("PostgreSQL only")
    cli("init")
    target = tmp_path / "copied.txt"
    refused = {
        f"COPY (SELECT 1) TO '{target}'": "read-only",
        "SELECT pg_read_file('/etc/passwd')": "reader role",
        "SELECT * FROM pg_ls_dir('/')": "reader role",
        "SELECT pg_terminate_backend(pg_backend_pid())": "reader role",
        "SELECT pg_cancel_backend(pid) FROM pg_stat_activity": "reader role",
        # SET LOCAL ROLE alone would be undone by this, then the nested query runs as the connecting user
        "SELECT set_config('role', current_user, true), query_to_xml('SELECT pg_read_file(''/etc/passwd'')', true, false, '')":
            "reader role",
        "SELECT set_config('session_authorization', session_user, true)": "reader role",
        "RESET ROLE": "read-only",
        "SET ROLE NONE": "read-only",
        "DO $$ BEGIN RESET ROLE; END $$": "read-only",
        "SELECT lo_import('/etc/passwd')": "read-only",
        "WITH gone AS (DELETE FROM models RETURNING 1) SELECT * FROM gone": "read-only",
        "SELECT * FROM pg_catalog.pg_authid": "reader role",
    }
    for statement, fragment in refused.items():
        message = cli.fails("sql", statement)
        assert fragment in message and "read-only" in message, (statement, message)
    assert not target.exists()
    # Reads still work, including the reporting views and an empty result with its columns.
    assert cli.json("sql", "SELECT count(*) AS n FROM v_current_best") == [{"n": 0}]
    assert cli.json("sql", "SELECT model_id, path FROM models WHERE false") == []
    assert cli.json("sql", "SELECT current_user LIKE 'cfreg_ro_%' AS reader") == [{"reader": True}]


# ---------------------------------------------------------------------- A/B tests


def test_ab_group(cli: Cli, registry: ModelRegistry, trained) -> None:
    cli("register", trained("v1", 0.1))
    cli("register", trained("v2", 0.2, seed=2))
    cli("promote", "als_v1")
    started = cli.json("ab", "start", "als_v1", "als_v2", "--split", "0.1", "--test-id", "ab_test_1")
    assert started == plain(registry.get_ab_test())
    assert cli.json("ab", "status") == started
    assert "ab_test_1" in cli("ab", "status").stdout
    assert "already running" in cli.fails("ab", "start", "als_v1", "als_v2")
    assert "running A/B test" in cli.fails("archive", "als_v2")

    assert cli.json("ab", "split", "0.5")["traffic_split"] == 0.5
    assert cli.json("ab", "split", "0.25", "--test-id", "ab_test_1")["traffic_split"] == 0.25
    stopped = cli.json("ab", "stop", "--promote", "treatment")
    assert (stopped["status"], stopped["promoted"]) == ("stopped", "treatment")
    assert registry.get_current_best()["model_id"] == "als_v2"
    assert "No running A/B test" in cli("ab", "status").stdout
    assert cli.json("ab", "status", "ab_test_1") == plain(registry.get_ab_test("ab_test_1"))
    assert cli.json("ab", "status", "--all") == plain(registry.list_ab_tests())

    rolled = cli.json("ab", "rollback", "ab_test_1")
    assert (rolled["traffic_split"], rolled["promoted"]) == (0.25, "control")  # a stopped test keeps its split
    assert registry.get_current_best()["model_id"] == "als_v1"
    assert "not found" in cli.fails("ab", "status", "ab_missing")


# ---------------------------------------------------------------------- BERT embeddings


def test_bert_unlink_without_a_link_says_so(cli: Cli, registry: ModelRegistry, trained, tmp_path: Path) -> None:
    # Regression: `cfreg bert unlink` printed "Unlinked" even when there was no link.
    cli("register", trained("v1", 0.1))
    make_embeddings_dir(tmp_path / "artifacts/cf/bert/e1", num_items=25, dim=16)
    cli("bert", "register", "artifacts/cf/bert/e1", "--model-name", "m", "--version", "bert_v1")

    output = cli("bert", "unlink", "bert_v1", "als_v1").stdout
    assert "Unlinked" not in output and "No link between bert_v1 and als_v1" in output
    assert cli.json("bert", "unlink", "bert_v1", "als_v1") is False

    cli("bert", "link", "bert_v1", "als_v1")
    assert "Unlinked bert_v1 -/- als_v1" in cli("bert", "unlink", "bert_v1", "als_v1").stdout


def test_bert_group(cli: Cli, registry: ModelRegistry, trained, tmp_path: Path) -> None:
    from registry import BERTEmbeddingsRegistry

    cli("register", trained("v1", 0.1))
    make_embeddings_dir(tmp_path / "artifacts/cf/bert/e1", num_items=25, dim=16)
    make_embeddings_dir(tmp_path / "artifacts/cf/bert/e2", num_items=25, dim=16, seed=1)
    version = cli.json("bert", "register", "artifacts/cf/bert/e1", "--model-name", "vinai/phobert-base",
                       "--version", "bert_v1", "--text-fields", "product_name,description")
    assert version == "bert_v1"  # num_items/dim read from the .npy header
    cli("bert", "register", "artifacts/cf/bert/e2", "--model-name", "m", "--num-items", "25", "--dim", "16",
        "--version", "bert_v2")
    assert "does not match" in cli.fails("bert", "register", "artifacts/cf/bert/e2", "--model-name", "m",
                                         "--dim", "8", "--version", "bert_v3")

    bert = BERTEmbeddingsRegistry(registry.registry_path.parent / "bert_registry.json", database_url=cli.base[3])
    assert cli.json("bert", "list") == plain(bert.list_embeddings(include_linked_models=True))
    shown = cli.json("bert", "show", "bert_v1")
    assert shown == plain(bert.get_embeddings("bert_v1"))
    assert shown["text_fields_used"] == ["product_name", "description"]

    assert cli.json("bert", "link", "bert_v2", "als_v1") is True
    assert bert.get_embeddings("bert_v2")["linked_models"] == ["als_v1"]
    assert "linked" in cli.fails("bert", "delete", "bert_v2", "--yes")
    assert cli.json("bert", "unlink", "bert_v2", "als_v1") is True
    assert "current" in cli.fails("bert", "delete", "bert_v1", "--yes")
    cli("bert", "set-current", "bert_v2")
    assert bert.get_current_best()["version"] == "bert_v2"
    assert cli.json("bert", "delete", "bert_v1", "--yes") is True
    assert [e["version"] for e in bert.list_embeddings()] == ["bert_v2"]
    assert "not found" in cli.fails("bert", "show", "bert_v1")


# ---------------------------------------------------------------------- real processes


@pytest.mark.slow
def test_subprocess_models_group_and_error_line(tmp_path: Path, registry: ModelRegistry, database_url: str, trained) -> None:
    base = ["--registry", str(registry.registry_path), "--database-url", database_url]
    done = run_cfreg([*base, "--json", "register", trained("v1", 0.1), "--auto-select"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["promoted"] is True
    registry.register_model(trained("v2", 0.05, seed=2), "als", metrics={"ndcg@10": 0.05}, version="v2")
    listed = run_cfreg([*base, "--json", "list"], tmp_path)
    assert json.loads(listed.stdout) == records(registry.list_models())

    failed = run_cfreg([*base, "archive", "als_v1"], tmp_path)
    assert failed.returncode == 1 and failed.stdout == ""
    assert "current best" in one_error_line(failed.stderr)
    usage = run_cfreg([*base, "promote"], tmp_path)
    assert usage.returncode == 2 and usage.stdout == ""


@pytest.mark.slow
def test_subprocess_setup_group_with_the_installed_entry_point(tmp_path: Path) -> None:
    assert CFREG.exists(), "the console script `cfreg` is not installed in the virtualenv"
    created = run_cfreg(["--json", "init"], tmp_path, entry_point=True)
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["created"] is True
    assert (tmp_path / "artifacts/cf/registry.db").exists()
    upgraded = run_cfreg(["--json", "upgrade"], tmp_path, entry_point=True)
    assert json.loads(upgraded.stdout)["upgraded"] is False
    missing = run_cfreg(["--registry", "elsewhere/registry.json", "list"], tmp_path, entry_point=True)
    assert missing.returncode == 1
    assert "cfreg --registry artifacts/cf/registry.json list" in one_error_line(missing.stderr)  # the one found


def api_registry(tmp_path: Path) -> ModelRegistry:
    """The default-location registry of a subprocess test, opened in this process."""
    return ModelRegistry(tmp_path / "artifacts/cf/registry.json", root=tmp_path)


@pytest.mark.slow
def test_subprocess_files_cleanup_and_sql(tmp_path: Path, trained) -> None:
    registry = api_registry(tmp_path)
    for index in (1, 2, 3):
        registry.register_model(trained(f"v{index}", 0.1 * index, seed=index), "als", version=f"v{index}")
    backup = run_cfreg(["--json", "backup"], tmp_path)
    assert Path(json.loads(backup.stdout)["backup_path"]).exists()
    plan = run_cfreg(["--json", "cleanup", "--keep-last", "1", "--dry-run"], tmp_path)
    assert [i["action"] for i in json.loads(plan.stdout)["items"]] == ["keep", "delete", "delete"]
    rows = run_cfreg(["--json", "sql", "SELECT count(*) AS n FROM models"], tmp_path)
    assert json.loads(rows.stdout) == [{"n": 3}]
    refused = run_cfreg(["sql", "DELETE FROM models"], tmp_path)
    assert refused.returncode == 1 and "read-only" in one_error_line(refused.stderr)
    assert sorted(registry.models) == ["als_v1", "als_v2", "als_v3"]


@pytest.mark.slow
def test_subprocess_ab_and_bert_groups(tmp_path: Path, trained) -> None:
    registry = api_registry(tmp_path)
    registry.register_model(trained("v1", 0.1), "als", version="v1")
    registry.register_model(trained("v2", 0.2, seed=2), "als", version="v2")
    registry.promote_model("als_v2")
    started = run_cfreg(["--json", "ab", "start", "als_v2", "als_v1", "--split", "0.2"], tmp_path)
    assert started.returncode == 0, started.stderr
    assert json.loads(started.stdout) == plain(registry.get_ab_test())
    assert registry.get_ab_test()["traffic_split"] == 0.2

    make_embeddings_dir(tmp_path / "artifacts/cf/bert/e1")
    registered = run_cfreg(["--json", "bert", "register", "artifacts/cf/bert/e1", "--model-name", "m"], tmp_path)
    assert registered.returncode == 0, registered.stderr
    from registry import BERTEmbeddingsRegistry

    listed = BERTEmbeddingsRegistry(tmp_path / "artifacts/cf/bert_registry.json").list_embeddings()
    assert [(e["version"], e["is_current"]) for e in listed] == [(json.loads(registered.stdout), True)]
    bad = run_cfreg(["bert", "link", "nope", "als_v1"], tmp_path)
    assert bad.returncode == 1 and "nope" in one_error_line(bad.stderr)


@pytest.mark.slow
def test_subprocess_demo_quick(tmp_path: Path) -> None:
    done = run_cfreg(["--json", "demo", "--quick", "--workdir", "run"], tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["best_model_id"] in result_ids(result)
    listed = run_cfreg(["--registry", "run/artifacts/cf/registry.json", "--json", "list"], tmp_path)
    assert {row["model_id"] for row in json.loads(listed.stdout)} == set(result_ids(result))


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_subprocess_serve_answers_http(tmp_path: Path, trained) -> None:
    import time

    import httpx

    registry = api_registry(tmp_path)
    registry.register_model(trained("v1", 0.1), "als", metrics={"ndcg@10": 0.1}, version="v1")
    registry.select_best_model()
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CFREG_")}
    server = subprocess.Popen([sys.executable, "-m", "registry", "serve", "--port", str(port), "--reload-interval", "0"],
                              cwd=tmp_path, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        health = None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert health is not None and health.status_code == 200, server.stderr.read() if server.poll() is not None else health
        assert httpx.get(f"http://127.0.0.1:{port}/model", timeout=5).json()["model_id"] == "als_v1"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_serve_without_a_registry_is_one_line(tmp_path: Path, workdir: Path) -> None:
    result = CliRunner().invoke(app, ["--registry", "none/registry.json", "serve", "--port", "1"])
    assert result.exit_code == 1
    assert "Registry not found" in one_error_line(result.stderr)


def test_unexpected_exceptions_are_one_line_too(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: ModelRegistry) -> dict[str, Any]:
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(ModelRegistry, "get_registry_stats", broken)
    line = cli.fails("stats")
    assert line == "Error: unexpected RuntimeError: disk on fire second line (re-run with --traceback and report it)"
    result = cli.runner.invoke(app, [*cli.base, "--traceback", "stats"])
    assert isinstance(result.exception, RuntimeError)


def result_ids(result: dict[str, Any]) -> list[str]:
    return [model["model_id"] for model in result["models"]]


# ---------------------------------------------------------------------- the doc's debug commands


DEBUG_COMMANDS = [
    "from registry import get_registry; print(get_registry().list_models())",
    "from registry import get_registry; print(get_registry().registry.get('current_best'))",
    "from registry import get_registry; print(get_registry().get_registry_stats())",
    "from registry import get_loader; print(get_loader().get_current_model())",
]


@pytest.mark.slow
def test_the_docs_debug_commands_work(tmp_path: Path, trained) -> None:
    """The four commands of the doc's "Debug Commands" section, in a folder with artifacts/cf/."""
    registry = ModelRegistry(tmp_path / "artifacts/cf/registry.json", root=tmp_path)
    registry.register_model(trained("v1", 0.1), "als", {"factors": 8}, {"ndcg@10": 0.1}, version="v1")
    registry.register_model(trained("v2", 0.2, seed=2), "als", {"factors": 8}, {"ndcg@10": 0.2}, version="v2")
    registry.select_best_model(metric="ndcg@10")
    outputs = []
    for code in DEBUG_COMMANDS:
        done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                              env={k: v for k, v in os.environ.items() if not k.startswith("CFREG_")})
        assert done.returncode == 0, (code, done.stderr)
        outputs.append(done.stdout)
    models, current, stats, state = outputs
    assert "als_v1" in models and "als_v2" in models and "ndcg@10" in models
    assert "'model_id': 'als_v2'" in current and "'selection_metric': 'ndcg@10'" in current
    assert "'total_models': 2" in stats and "'current_best': 'als_v2'" in stats
    assert "ModelState(" in state and "als_v2" in state


def test_json_output_never_contains_nan(cli: Cli, trained) -> None:
    cli("register", trained("v1", 0.1))
    cli("register", trained("v2", None, seed=2), "--metric", "coverage=0.2")
    raw = cli("--json", "list").stdout
    assert "NaN" not in raw
    rows = json.loads(raw)
    assert {row["model_id"]: row["coverage"] for row in rows} == {"als_v1": None, "als_v2": 0.2}
    assert all(not (isinstance(v, float) and math.isnan(v)) for row in rows for v in row.values())


BEGIN_REFERENCE = "<!-- BEGIN GENERATED REFERENCE: CFREG_UPDATE_DOCS=1 pytest tests/test_cli.py -k reference -->"
END_REFERENCE = "<!-- END GENERATED REFERENCE -->"


def command_names() -> list[str]:
    """Every command path, e.g. ``register``, ``ab start``, in the app's order."""
    import typer.main

    group = typer.main.get_command(app)
    names: list[str] = []
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        assert command.help, f"cfreg {name} has no help"
        subcommands = getattr(command, "commands", None)
        names.append(name)
        for sub, subcommand in (subcommands or {}).items():
            assert subcommand.help, f"cfreg {name} {sub} has no help"
            names.append(f"{name} {sub}")
    return names


def help_reference() -> str:
    """The ``--help`` text of cfreg and of every command, as markdown (the generated part of docs/cli.md)."""
    runner = CliRunner()
    parts = []
    for name in ["", *command_names()]:
        result = runner.invoke(app, [*name.split(), "--help"], prog_name="cfreg",
                               env={"COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"})
        assert result.exit_code == 0, result.stderr
        body = "\n".join(line.rstrip() for line in result.stdout.strip("\n").splitlines()).strip("\n")
        parts.append(f"### `cfreg{' ' + name if name else ''}`\n\n```text\n{body}\n```\n")
    return "\n".join(parts)


def test_every_command_has_help_and_is_documented() -> None:
    """Like sqlite-utils' test_docs: each command has help text and appears in docs/cli.md's prose."""
    docs = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    prose = docs.split(BEGIN_REFERENCE)[0]
    for name in command_names():
        assert f"cfreg {name}" in prose, f"`cfreg {name}` is not described in docs/cli.md"


def test_cli_reference_in_docs_matches_help() -> None:
    """The reference part of docs/cli.md is generated from --help (set CFREG_UPDATE_DOCS=1 to regenerate)."""
    path = REPO / "docs" / "cli.md"
    docs = path.read_text(encoding="utf-8")
    assert BEGIN_REFERENCE in docs and END_REFERENCE in docs
    head, rest = docs.split(BEGIN_REFERENCE)
    _, tail = rest.split(END_REFERENCE)
    fresh = f"{head}{BEGIN_REFERENCE}\n\n{help_reference()}\n{END_REFERENCE}{tail}"
    if os.environ.get("CFREG_UPDATE_DOCS") == "1":
        path.write_text(fresh, encoding="utf-8")
    assert docs == fresh, "docs/cli.md is out of date: run CFREG_UPDATE_DOCS=1 pytest tests/test_cli.py -k reference"


def test_bert_commands_use_the_database_named_by_a_db_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--registry pointing at a .db file: the bert group opens that same database and writes no stray files."""
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    database = tmp_path / "reg" / "x.db"
    assert runner.invoke(app, ["--registry", str(database), "init"]).exit_code == 0
    make_embeddings_dir(tmp_path / "reg" / "bert" / "v1", num_items=5, dim=4)
    registered = runner.invoke(app, ["--registry", str(database), "--json", "bert", "register", "reg/bert/v1",
                                     "--model-name", "m", "--num-items", "5", "--dim", "4"])
    assert registered.exit_code == 0, registered.output
    listed = runner.invoke(app, ["--registry", str(database), "--json", "bert", "list"])
    assert listed.exit_code == 0, listed.output
    assert [entry["model_name"] for entry in json.loads(listed.stdout)] == ["m"]
    assert sorted(p.name for p in (tmp_path / "reg").glob("*.db")) == ["x.db"]

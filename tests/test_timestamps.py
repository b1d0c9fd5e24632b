"""One timestamp format everywhere: ISO 8601, UTC, seconds, ``+00:00`` (API, registry.json, views, CLI)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from registry import InvalidArgumentError, ModelRegistry, db
from registry.cli import app
from registry.timestamps import format_timestamp, parse_time_spec

ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+00:00$")


def assert_timestamp(value: Any, where: str) -> datetime:
    assert isinstance(value, str) and ISO.match(value), f"{where}: {value!r} is not YYYY-MM-DDTHH:MM:SS+00:00"
    moment = datetime.fromisoformat(value)  # what legacy readers use
    assert moment.utcoffset() == timedelta(0), where
    assert abs(datetime.now(UTC) - moment) < timedelta(hours=1), f"{where}: {value} is not now (UTC)"
    return moment


@pytest.fixture
def busy_registry(registry: ModelRegistry, model_dir) -> ModelRegistry:  # type: ignore[no-untyped-def]
    for number, ndcg in ((1, 0.18), (2, 0.19)):
        registry.register_model(model_dir(f"als/v{number}"), "als", {}, {"ndcg@10": ndcg}, {}, version=f"v{number}")
    registry.select_best_model(metric="ndcg@10")
    registry.start_ab_test("als_v1", "als_v2", 0.1)
    return registry


def test_api_dicts_use_the_iso_format(busy_registry: ModelRegistry) -> None:
    registry = busy_registry
    assert_timestamp(registry.get_model("als_v1")["created_at"], "get_model created_at")
    assert_timestamp(registry.get_current_best()["selected_at"], "get_current_best selected_at")
    assert_timestamp(registry.get_selection_history()[0]["selected_at"], "history selected_at")
    assert_timestamp(registry.get_registry_stats()["last_updated"], "stats last_updated")
    assert_timestamp(registry.get_ab_test()["start_time"], "ab_test start_time")
    for value in registry.list_models()["created_at"]:
        assert_timestamp(value, "list_models created_at")


def test_registry_json_uses_the_iso_format_and_stays_readable_by_legacy_readers(busy_registry: ModelRegistry) -> None:
    document = json.loads(Path(busy_registry.registry_path).read_text(encoding="utf-8"))
    assert_timestamp(document["metadata"]["last_updated"], "metadata.last_updated")
    assert_timestamp(document["current_best"]["selected_at"], "current_best.selected_at")
    assert_timestamp(document["ab_test"]["start_time"], "ab_test.start_time")
    created = [entry["created_at"] for entry in document["models"].values()]
    moments = [assert_timestamp(value, "models.created_at") for value in created]
    # The original list_models sorted created_at as text: text order must be time order.
    assert sorted(created) == [format_timestamp(m) for m in sorted(moments)]


def test_reporting_views_use_the_iso_format(busy_registry: ModelRegistry) -> None:
    def read(session):  # type: ignore[no-untyped-def]
        return {
            "v_model_metrics": session.execute(text("SELECT created_at FROM v_model_metrics")).scalars().all(),
            "v_current_best": session.execute(text("SELECT selected_at FROM v_current_best")).scalars().all(),
            "v_selection_history": session.execute(text("SELECT selected_at FROM v_selection_history")).scalars().all(),
        }

    views = busy_registry.context.read(read)
    for view, values in views.items():
        assert values, view
        for value in values:
            assert_timestamp(value, view)
    assert views["v_current_best"] == [busy_registry.get_current_best()["selected_at"]]


def test_downgrading_to_0001_restores_the_native_view_columns(busy_registry: ModelRegistry) -> None:
    database = busy_registry.context.database
    db.downgrade(database, "0001")
    try:
        raw = database.read(lambda s: s.execute(text("SELECT selected_at FROM v_current_best")).scalar_one())
        assert not (isinstance(raw, str) and ISO.match(raw))
    finally:
        db.upgrade(database, "head")
    iso = database.read(lambda s: s.execute(text("SELECT selected_at FROM v_current_best")).scalar_one())
    assert_timestamp(iso, "after re-upgrade")


def test_cli_prints_the_iso_format(busy_registry: ModelRegistry, registry_path: Path, database_url: str) -> None:
    runner = CliRunner()
    base = ["--registry", str(registry_path), "--database-url", database_url, "--json"]
    history = json.loads(runner.invoke(app, [*base, "history"]).stdout)
    assert_timestamp(history[0]["selected_at"], "cfreg history")
    events = json.loads(runner.invoke(app, [*base, "audit"]).stdout)
    for event in events:
        assert_timestamp(event["at"], "cfreg audit")
    table = runner.invoke(app, ["--registry", str(registry_path), "--database-url", database_url, "audit"],
                          env={"COLUMNS": "300"}).stdout
    assert re.search(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+00:00", table), table


def test_format_timestamp_is_utc_seconds_with_offset() -> None:
    moment = datetime(2026, 12, 2, 11, 40, 52, 954086, tzinfo=timezone(timedelta(hours=2)))
    assert format_timestamp(moment) == "2026-12-02T09:40:52+00:00"
    assert format_timestamp(datetime(2026, 12, 2, 9, 40, 52)) == "2026-12-02T09:40:52+00:00"  # naive = UTC
    assert format_timestamp(None) is None


NOW = datetime(2026, 12, 2, 9, 40, 52, tzinfo=UTC)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("2025-01-16", datetime(2025, 1, 16, tzinfo=UTC)),
        ("2025-01-16T14:30:00", datetime(2025, 1, 16, 14, 30, tzinfo=UTC)),
        ("2025-01-16T14:30:00Z", datetime(2025, 1, 16, 14, 30, tzinfo=UTC)),
        ("2025-01-16T16:30:00+02:00", datetime(2025, 1, 16, 14, 30, tzinfo=UTC)),
        ("now", NOW),
        ("today", datetime(2026, 12, 2, tzinfo=UTC)),
        ("Yesterday", datetime(2026, 12, 1, tzinfo=UTC)),
        ("7d", NOW - timedelta(days=7)),
        ("2h", NOW - timedelta(hours=2)),
        ("30m", NOW - timedelta(minutes=30)),
        ("2w", NOW - timedelta(weeks=2)),
        ("45s", NOW - timedelta(seconds=45)),
    ],
)
def test_parse_time_spec(spec: str, expected: datetime) -> None:
    assert parse_time_spec(spec, now=NOW) == expected


@pytest.mark.parametrize("spec", ["", "last week", "7x", "-2h", "2025-13-01", "tomorrowish"])
def test_parse_time_spec_refuses_other_text(spec: str) -> None:
    with pytest.raises(InvalidArgumentError, match="yesterday"):
        parse_time_spec(spec, now=NOW)


def test_cli_audit_accepts_relative_and_iso_times(busy_registry: ModelRegistry, registry_path: Path, database_url: str) -> None:
    runner = CliRunner()
    base = ["--registry", str(registry_path), "--database-url", database_url, "--json", "audit"]

    def events(*args: str) -> list[dict[str, Any]]:
        result = runner.invoke(app, [*base, *args])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    everything = events()
    assert everything
    assert events("--since", "yesterday") == everything
    assert events("--since", "2h") == everything
    assert events("--since", "7d", "--until", "now") == everything
    assert events("--until", "2000-01-01") == []
    assert events("--since", "2999-01-01T00:00:00Z") == []
    assert events("--since", everything[-1]["at"]) == [e for e in everything if e["at"] >= everything[-1]["at"]]


def test_cli_audit_refuses_a_bad_time_with_the_accepted_forms(registry: ModelRegistry, registry_path: Path,
                                                              database_url: str) -> None:
    result = CliRunner().invoke(app, ["--registry", str(registry_path), "--database-url", database_url,
                                      "audit", "--since", "last tuesday"])
    assert result.exit_code == 2
    assert "--since" in result.stderr and "yesterday" in result.stderr and "7d" in result.stderr
    assert "pydantic" not in result.stderr.lower()


def test_the_per_second_stamp_follows_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from registry.timestamps import SecondStamp

    clock = [1_767_225_599.9]  # 2025-12-31T23:59:59.9 UTC
    monkeypatch.setattr(time, "time", lambda: clock[0])
    stamp = SecondStamp()
    assert stamp.now() == "2025-12-31T23:59:59+00:00"
    clock[0] += 0.2  # the next second (and year): formatted anew, not the cached text
    assert stamp.now() == "2026-01-01T00:00:00+00:00"
    assert stamp.now() == format_timestamp(datetime.fromtimestamp(clock[0], UTC))

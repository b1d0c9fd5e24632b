"""ModelRegistry behaviour (docs/registry.md), on SQLite and PostgreSQL.

Every test uses the ``registry`` fixture (a fresh registry on each backend, rooted at
the test folder) and real artifact folders written by ``model_dir``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from registry import (
    MODEL_STATUS,
    InvalidArgumentError,
    ModelExistsError,
    ModelInUseError,
    ModelNotFoundError,
    ModelRegistry,
    RegistryError,
    RegistryNotFoundError,
    UnknownMetricError,
    UnknownModelTypeError,
    audit,
    get_registry,
)
from registry_snapshot import snapshot

LINE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} \| (?P<action>[A-Z_]+) \| (?P<target>[^|]+) \| (?P<details>[^|]*)$")


# ---------------------------------------------------------------------- helpers


def add(registry: ModelRegistry, model_dir, version: str, metrics: dict[str, Any], model_type: str = "als",
        baseline: dict[str, Any] | None = None, **kwargs: Any) -> str:
    """Register a fresh artifact folder ``<type>/<version>`` under an explicit version."""
    path = model_dir(f"{model_type}/{version}", model_type=model_type)
    return registry.register_model(
        path, model_type, {"factors": 8}, metrics, {"training_time_seconds": 1.5},
        baseline_comparison=baseline, version=version, **kwargs,
    )


def audit_rows(registry: ModelRegistry) -> list[dict[str, Any]]:
    return registry.context.read(lambda session: audit.query_events(session))


def log_lines(registry: ModelRegistry) -> list[re.Match[str]]:
    path = Path(registry.audit_log_path)
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    matches = [LINE.match(line) for line in lines]
    assert all(matches), f"malformed audit lines: {lines}"
    return matches  # type: ignore[return-value]


def exported(registry: ModelRegistry) -> dict[str, Any]:
    return json.loads(Path(registry.registry_path).read_text(encoding="utf-8"))


# ---------------------------------------------------------------------- opening


def test_new_registry_writes_an_empty_registry_json(registry: ModelRegistry) -> None:
    document = exported(registry)
    assert document["current_best"] is None and document["models"] == {}
    assert document["metadata"]["num_models"] == 0


def test_missing_registry_without_auto_create_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(RegistryNotFoundError) as caught:
        ModelRegistry(tmp_path / "nowhere" / "registry.json", auto_create=False)
    assert isinstance(caught.value, FileNotFoundError)
    assert not (tmp_path / "nowhere").exists()


def test_get_registry_returns_one_instance_per_registry(tmp_path: Path, database_url: str) -> None:
    first = get_registry(tmp_path / "artifacts" / "cf" / "registry.json", database_url=database_url, root=tmp_path)
    again = get_registry(tmp_path / "artifacts" / "cf" / "registry.json", database_url=database_url)
    assert first is again


# ---------------------------------------------------------------------- registration


def test_register_stores_the_documented_entry(registry: ModelRegistry, model_dir) -> None:
    path = model_dir("als/v2_20250116")
    model_id = registry.register_model(
        path, "als", {"factors": 8, "regularization": 0.01}, {"ndcg@10": 0.195, "recall@10": 0.245},
        {"training_time_seconds": 102.8, "num_users": 40}, data_version="abc123", git_commit="ghi789",
        baseline_comparison={"baseline_type": "popularity", "improvement_ndcg@10": 0.912},
        version="v2_20250116_141500",
    )
    assert model_id == "als_v2_20250116_141500"
    info = registry.get_model(model_id)
    assert info is not None
    assert info["model_type"] == "als" and info["version"] == "v2_20250116_141500"
    assert info["path"] == path  # stored as given, relative
    assert info["metrics"] == {"ndcg@10": 0.195, "recall@10": 0.245}
    assert info["hyperparameters"] == {"factors": 8, "regularization": 0.01}
    assert info["training_info"]["training_time_seconds"] == 102.8
    assert info["data_version"] == "abc123" and info["git_commit"] == "ghi789"
    assert info["baseline_comparison"]["improvement_ndcg@10"] == 0.912
    assert info["status"] == "active"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+00:00", info["created_at"])
    assert exported(registry)["models"][model_id]["metrics"]["ndcg@10"] == 0.195


def test_optional_fields_default_like_the_original(registry: ModelRegistry, model_dir) -> None:
    model_id = registry.register_model(model_dir("als/a"), "als", {}, {}, {}, version="a", baseline_comparison={})
    info = registry.get_model(model_id)
    assert info["data_version"] == "unknown"
    assert "baseline_comparison" not in info and "bert_integration" not in info  # empty dicts are dropped


def test_automatic_version_is_v_utc_timestamp(registry: ModelRegistry, model_dir) -> None:
    model_id = registry.register_model(model_dir("als/auto"), "als", {}, {"ndcg@10": 0.1}, {})
    assert re.fullmatch(r"als_v_\d{8}_\d{6}", model_id)
    assert registry.get_model(model_id)["version"] == model_id.removeprefix("als_")


def test_file_sizes_and_checksums_are_recorded(registry: ModelRegistry, model_dir, tmp_path: Path) -> None:
    path = model_dir("als/v1", id_maps=True)
    model_id = registry.register_model(path, "als", {}, {}, {}, version="v1")
    files = {row["file_name"]: row for row in registry.get_model_files(model_id)}
    assert set(files) == {"als_U.npy", "als_V.npy", "als_params.json", "als_metadata.json",
                          "als_user_ids.json", "als_item_ids.json"}
    for name, row in files.items():
        content = (tmp_path / path / name).read_bytes()
        assert row["size_bytes"] == len(content)
        assert row["sha256"] == hashlib.sha256(content).hexdigest()


def test_git_commit_is_detected_under_root_not_the_working_directory(
    registry: ModelRegistry, model_dir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True, text=True).stdout.strip()

    git("init", "-q")
    git("-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "x")
    elsewhere = tmp_path.parent
    monkeypatch.chdir(elsewhere)
    model_id = registry.register_model(model_dir("als/g"), "als", {}, {}, {}, version="g")
    assert registry.get_model(model_id)["git_commit"] == git("rev-parse", "HEAD")
    explicit = registry.register_model(model_dir("als/h"), "als", {}, {}, {}, version="h", git_commit="ghi789")
    assert registry.get_model(explicit)["git_commit"] == "ghi789"


def test_numpy_values_in_payloads_are_converted(registry: ModelRegistry, model_dir) -> None:
    model_id = registry.register_model(
        model_dir("als/np"), "als", {"factors": np.int64(8), "alpha": np.float32(0.5), "grid": np.arange(3)},
        {"ndcg@10": np.float64(0.2)}, {"num_users": np.int32(40)}, version="np",
    )
    info = registry.get_model(model_id)
    assert info["hyperparameters"] == {"factors": 8, "alpha": 0.5, "grid": [0, 1, 2]}
    assert info["training_info"] == {"num_users": 40}


def test_identical_explicit_re_registration_is_idempotent(registry: ModelRegistry, model_dir, tmp_path: Path) -> None:
    model_id = add(registry, model_dir, "v1", {"ndcg@10": 0.2})
    before = snapshot(registry, tmp_path)
    again = registry.register_model("artifacts/cf/als/v1", "als", {"factors": 8}, {"ndcg@10": 0.2}, {}, version="v1")
    assert again == model_id
    assert snapshot(registry, tmp_path) == before  # no row, no audit event, no generation bump


@pytest.mark.parametrize("change", ["other_path", "other_files"])
def test_explicit_version_with_other_content_raises_model_exists(
    registry: ModelRegistry, model_dir, tmp_path: Path, change: str
) -> None:
    add(registry, model_dir, "v1", {"ndcg@10": 0.2})
    if change == "other_path":
        path = model_dir("als/elsewhere", seed=5)
    else:
        path = model_dir("als/v1", seed=5)  # rewrite the same folder with other arrays
    before = snapshot(registry)
    with pytest.raises(ModelExistsError, match="als_v1") as caught:
        registry.register_model(path, "als", {}, {"ndcg@10": 0.9}, {}, version="v1")
    assert isinstance(caught.value, ValueError)
    assert snapshot(registry) == before


def test_overwrite_replaces_the_entry_in_one_change(registry: ModelRegistry, model_dir) -> None:
    model_id = add(registry, model_dir, "v1", {"ndcg@10": 0.2, "recall@10": 0.3})
    generation = registry.context.generation()[0]
    registry.register_model(model_dir("als/v1", seed=3), "als", {"factors": 16}, {"ndcg@10": 0.25}, {},
                            version="v1", overwrite=True)
    info = registry.get_model(model_id)
    assert info["metrics"] == {"ndcg@10": 0.25}  # old metrics gone, not merged
    assert info["hyperparameters"] == {"factors": 16}
    assert registry.context.generation()[0] == generation + 1
    assert len(registry.list_models()) == 1


def test_overwrite_of_the_current_best_refreshes_the_selection(registry: ModelRegistry, model_dir) -> None:
    model_id = add(registry, model_dir, "v1", {"ndcg@10": 0.2})
    registry.select_best_model("ndcg@10")
    generation, current = registry.context.generation()
    registry.register_model(model_dir("als/v1", seed=9), "als", {}, {"ndcg@10": 0.31}, {}, version="v1", overwrite=True)
    new_generation, new_current = registry.context.generation()
    assert new_current == current == model_id
    assert new_generation > generation  # loaders see the change
    best = registry.get_current_best()
    assert best["selection_value"] == 0.31 and best["selection_metric"] == "ndcg@10"
    assert exported(registry)["current_best"]["selection_value"] == 0.31


def test_rollback_after_overwriting_the_current_best_returns_to_the_previous_model(
    registry: ModelRegistry, model_dir
) -> None:
    first = add(registry, model_dir, "v1", {"ndcg@10": 0.2})
    registry.select_best_model("ndcg@10")
    second = add(registry, model_dir, "v2", {"ndcg@10": 0.3})
    registry.select_best_model("ndcg@10")
    registry.register_model("artifacts/cf/als/v2", "als", {}, {"ndcg@10": 0.35}, {}, version="v2", overwrite=True)
    assert registry.get_current_best()["model_id"] == second
    assert registry.rollback()["model_id"] == first
    assert registry.get_current_best()["model_id"] == first


BAD_REGISTRATIONS: list[tuple[dict[str, Any], str]] = [
        ({"model_type": "svd"}, "svd"),
        ({"model_type": "als/x"}, "als/x"),
        ({"version": "v1/../x"}, "v1/../x"),
        ({"version": "a|b"}, "a|b"),
        ({"version": "a b"}, "a b"),
        ({"version": "a\nb"}, "a\\nb"),
        ({"version": ""}, "version"),
        ({"version": "x" * 200}, "version"),
        ({"version": 3}, "version"),
        ({"metrics": {"ndcg@10": float("nan")}}, "ndcg@10"),
        ({"metrics": {"ndcg@10": float("inf")}}, "ndcg@10"),
        ({"metrics": {"ndcg@10": -math.inf}}, "ndcg@10"),
        ({"metrics": {"ndcg@10": "0.9"}}, "ndcg@10"),
        ({"metrics": {"ndcg@10": True}}, "ndcg@10"),
        ({"metrics": {"ndcg@10": None}}, "ndcg@10"),
        ({"metrics": {"ndcg@10": [0.1]}}, "ndcg@10"),
        ({"metrics": {"ndcg@10": np.float64("nan")}}, "ndcg@10"),
        ({"metrics": {"ndcg@10": 10**400}}, "ndcg@10"),
        ({"metrics": {'a"."b': 0.1}}, 'a"."b'),
        ({"metrics": {"ndcg@10; DROP TABLE models": 0.1}}, "DROP"),
        ({"metrics": {"": 0.1}}, "metric name"),
        ({"metrics": {"m" * 65: 0.1}}, "metric name"),
        ({"metrics": [("ndcg@10", 0.1)]}, "metrics"),
        ({"hyperparameters": {"alpha": float("nan")}}, "hyperparameters"),
        ({"hyperparameters": {"when": object()}}, "hyperparameters"),
        ({"hyperparameters": {"ids": {1, 2}}}, "hyperparameters"),
        ({"hyperparameters": {"big": 10**5000}}, "hyperparameters"),
        ({"hyperparameters": {"text": "\ud800"}}, "hyperparameters"),
        ({"training_info": ["not", "a", "dict"]}, "training_info"),
        ({"data_version": "a|b"}, "data_version"),
        ({"git_commit": "x" * 65}, "git_commit"),
        ({"artifacts_path": ""}, "artifacts_path"),
        ({"artifacts_path": "artifacts/cf/als/v1\x00"}, "artifacts_path"),
        ({"artifacts_path": 42}, "artifacts_path"),
]


def test_bad_input_is_refused_with_a_value_error_and_changes_nothing(
    registry: ModelRegistry, model_dir, tmp_path: Path, subtests
) -> None:
    add(registry, model_dir, "v0", {"ndcg@10": 0.1})
    path = model_dir("als/v1")
    before = snapshot(registry, tmp_path)
    for index, (kwargs, fragment) in enumerate(BAD_REGISTRATIONS):
        with subtests.test(case=index, field=next(iter(kwargs))):
            call: dict[str, Any] = {
                "artifacts_path": path, "model_type": "als", "hyperparameters": {"factors": 8},
                "metrics": {"ndcg@10": 0.2}, "training_info": {}, "version": "v1",
            }
            call.update(kwargs)
            with pytest.raises(InvalidArgumentError) as caught:
                registry.register_model(**call)
            assert isinstance(caught.value, ValueError) and isinstance(caught.value, RegistryError)
            assert fragment in str(caught.value)
            assert snapshot(registry, tmp_path) == before


def test_unknown_bert_embeddings_version_is_refused(registry: ModelRegistry, model_dir, tmp_path: Path) -> None:
    before = snapshot(registry, tmp_path)
    with pytest.raises(ModelNotFoundError, match="bert_v9"):
        registry.register_model(model_dir("als/b"), "als", {}, {}, {}, version="b",
                                bert_integration={"embeddings_version": "bert_v9"})
    snapshot_after = snapshot(registry, tmp_path)
    # the new artifact folder is the caller's; nothing of the registry changed
    assert snapshot_after["tables"] == before["tables"]


def test_failure_inside_the_transaction_leaves_nothing(
    registry: ModelRegistry, model_dir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add(registry, model_dir, "v1", {"ndcg@10": 0.2})
    path = model_dir("als/v2")
    before = snapshot(registry, tmp_path)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("audit store down")

    monkeypatch.setattr(audit, "record", broken)
    with pytest.raises(RuntimeError):
        registry.register_model(path, "als", {}, {"ndcg@10": 0.3}, {}, version="v2")
    assert snapshot(registry, tmp_path) == before  # the model row and metrics rolled back with the audit row


# ---------------------------------------------------------------------- selection


def test_select_best_returns_the_documented_shape(registry: ModelRegistry, model_dir) -> None:
    add(registry, model_dir, "v1", {"ndcg@10": 0.189})
    best_id = add(registry, model_dir, "v2", {"ndcg@10": 0.195})
    add(registry, model_dir, "v3", {"ndcg@10": 0.150})
    best = registry.select_best_model(metric="ndcg@10")
    assert set(best) == {"model_id", "model_info", "metric", "value"}
    assert best["model_id"] == best_id and best["metric"] == "ndcg@10" and best["value"] == 0.195
    assert best["model_info"]["metrics"]["ndcg@10"] == 0.195
    current = registry.get_current_best()
    assert current["model_id"] == best_id
    assert current["selection_metric"] == "ndcg@10" and current["selection_value"] == 0.195
    assert current["selected_by"] == "auto" and current["path"] == "artifacts/cf/als/v2"
    assert exported(registry)["current_best"]["model_id"] == best_id
    assert exported(registry)["metadata"]["selection_criteria"] == "ndcg@10"


def test_missing_metric_is_never_treated_as_zero(registry: ModelRegistry, model_dir) -> None:
    add(registry, model_dir, "neg_a", {"ndcg@10": -0.5})
    best = add(registry, model_dir, "neg_b", {"ndcg@10": -0.2})
    add(registry, model_dir, "no_metric", {"recall@10": 0.9})
    assert registry.select_best_model("ndcg@10")["model_id"] == best


def test_a_metric_no_model_has_is_an_error_listing_the_known_ones(registry: ModelRegistry, model_dir) -> None:
    add(registry, model_dir, "v1", {"recall@10": 0.9, "coverage": 0.3})
    before = snapshot(registry)
    with pytest.raises(UnknownMetricError, match="'ndcg@10'.*known metrics: coverage, recall@10") as raised:
        registry.select_best_model("ndcg@10")
    assert isinstance(raised.value, InvalidArgumentError) and isinstance(raised.value, ValueError)
    assert raised.value.known == ["coverage", "recall@10"]
    assert snapshot(registry) == before


def test_a_known_metric_without_an_eligible_candidate_returns_none_and_changes_nothing(
    registry: ModelRegistry, model_dir
) -> None:
    archived = add(registry, model_dir, "v1", {"ndcg@10": 0.9})
    add(registry, model_dir, "v2", {"recall@10": 0.9})
    registry.archive_model(archived)
    before = snapshot(registry)
    assert registry.select_best_model("ndcg@10") is None  # only an archived model has it
    assert registry.select_best_model("recall@10", model_type="bpr") is None  # no bpr model at all
    assert registry.select_best_model("ndcg@10", min_improvement=0.1) is None
    assert snapshot(registry) == before


def test_a_registry_without_metrics_accepts_any_metric_name(registry: ModelRegistry) -> None:
    assert registry.select_best_model("ndcg@10") is None


def test_an_unknown_model_type_is_an_error_listing_the_known_ones(registry: ModelRegistry, model_dir) -> None:
    add(registry, model_dir, "v1", {"ndcg@10": 0.9})
    before = snapshot(registry)
    with pytest.raises(UnknownModelTypeError, match="'xyz'.*known types: als, bert_als, bpr"):
        registry.select_best_model("ndcg@10", model_type="xyz")
    with pytest.raises(UnknownModelTypeError, match="known types: als, bert_als, bpr"):
        registry.list_models(model_type="xyz")
    assert snapshot(registry) == before
    assert registry.list_models(model_type="bpr").empty  # a known type without models is fine


def test_ties_go_to_the_earliest_registered(registry: ModelRegistry, model_dir) -> None:
    first = add(registry, model_dir, "zz_first", {"ndcg@10": 0.2})
    add(registry, model_dir, "aa_second", {"ndcg@10": 0.2})
    assert registry.select_best_model("ndcg@10")["model_id"] == first


def test_model_type_filter(registry: ModelRegistry, model_dir) -> None:
    als = add(registry, model_dir, "v1", {"ndcg@10": 0.2})
    bpr = add(registry, model_dir, "v1", {"ndcg@10": 0.3}, model_type="bpr")
    assert registry.select_best_model("ndcg@10", model_type="als")["model_id"] == als
    assert registry.select_best_model("ndcg@10", model_type="bpr")["model_id"] == bpr
    assert registry.select_best_model("ndcg@10", model_type="bert_als") is None
    assert registry.get_current_best()["model_id"] == bpr


def test_archived_and_failed_models_are_not_candidates(registry: ModelRegistry, model_dir) -> None:
    keep = add(registry, model_dir, "keep", {"ndcg@10": 0.1})
    archived = add(registry, model_dir, "archived", {"ndcg@10": 0.5})
    failed = add(registry, model_dir, "failed", {"ndcg@10": 0.4})
    registry.archive_model(archived)
    registry.update_model_status(failed, "failed")
    assert registry.select_best_model("ndcg@10")["model_id"] == keep


@pytest.mark.parametrize(
    ("baseline", "eligible"),
    [
        ({"improvement_ndcg@10": 0.2}, True),
        ({"improvement_ndcg10": 0.2}, True),
        ({"improvement_ndcg10_pct": 20.0}, True),
        ({"improvement_ndcg@10_pct": 20.0}, True),
        ({"baseline_ndcg@10": 0.15}, True),  # (0.195 - 0.15) / 0.15 = 30%
        ({"baseline_ndcg10": 0.15}, True),
        ({"improvement_ndcg@10": 0.05}, False),
        ({"improvement_ndcg10": 0.05}, False),
        ({"improvement_ndcg10_pct": 5.0}, False),
        ({"baseline_ndcg@10": 0.19}, False),  # 2.6%
        ({"baseline_ndcg@10": 0.0}, False),  # no relative figure from a zero baseline
        ({"baseline_type": "popularity"}, False),
        ({"improvement_recall@10": 0.9}, False),  # another metric's figure does not count
        (None, False),
    ],
)
def test_min_improvement_reads_every_baseline_key_form(
    registry: ModelRegistry, model_dir, baseline: dict[str, Any] | None, eligible: bool
) -> None:
    candidate = add(registry, model_dir, "with_baseline", {"ndcg@10": 0.195}, baseline=baseline)
    add(registry, model_dir, "no_baseline_but_higher", {"ndcg@10": 0.5})
    best = registry.select_best_model("ndcg@10", min_improvement=0.1)
    if eligible:
        assert best is not None and best["model_id"] == candidate
    else:
        assert best is None
        assert registry.get_current_best() is None


def test_min_improvement_zero_ignores_baselines(registry: ModelRegistry, model_dir) -> None:
    add(registry, model_dir, "a", {"ndcg@10": 0.195}, baseline={"improvement_ndcg@10": 0.01})
    higher = add(registry, model_dir, "b", {"ndcg@10": 0.5})
    assert registry.select_best_model("ndcg@10", min_improvement=0.0)["model_id"] == higher


def test_min_improvement_picks_the_best_eligible(registry: ModelRegistry, model_dir) -> None:
    add(registry, model_dir, "ineligible_high", {"ndcg@10": 0.9}, baseline={"improvement_ndcg10": 0.01})
    winner = add(registry, model_dir, "eligible_mid", {"ndcg@10": 0.5}, baseline={"improvement_ndcg10": 0.5})
    add(registry, model_dir, "eligible_low", {"ndcg@10": 0.4}, baseline={"improvement_ndcg10": 0.5})
    assert registry.select_best_model("ndcg@10", min_improvement=0.1)["model_id"] == winner


def test_bad_selection_arguments_raise_value_error(registry: ModelRegistry, model_dir, subtests) -> None:
    add(registry, model_dir, "v1", {"ndcg@10": 0.2})
    before = snapshot(registry)
    for kwargs in [{"metric": 'a"."b'}, {"metric": ""}, {"metric": "x' OR 1=1 --"}, {"metric": None},
                   {"min_improvement": -0.1}, {"min_improvement": float("nan")}, {"min_improvement": "0.1"},
                   {"model_type": "a b"}, {"min_gain_over_current": -1}, {"min_gain_over_current": float("inf")}]:
        with subtests.test(kwargs=repr(kwargs)):
            with pytest.raises(InvalidArgumentError):
                registry.select_best_model(**kwargs)
            assert snapshot(registry) == before


def test_min_gain_over_current_never_demotes(registry: ModelRegistry, model_dir) -> None:
    current = add(registry, model_dir, "v1", {"ndcg@10": 0.20})
    registry.select_best_model("ndcg@10")
    add(registry, model_dir, "v2", {"ndcg@10": 0.21})  # +5%: not enough
    before = snapshot(registry)
    assert registry.select_best_model("ndcg@10", min_gain_over_current=0.1) is None
    assert snapshot(registry) == before
    bpr = add(registry, model_dir, "v1", {"ndcg@10": 0.10}, model_type="bpr")  # worse, via the type filter
    before = snapshot(registry)
    assert registry.select_best_model("ndcg@10", model_type="bpr", min_gain_over_current=0.0) is None
    assert snapshot(registry) == before
    assert registry.get_current_best()["model_id"] == current
    better = add(registry, model_dir, "v3", {"ndcg@10": 0.25})  # +25%
    assert registry.select_best_model("ndcg@10", min_gain_over_current=0.1)["model_id"] == better
    assert bpr != better


def test_min_gain_over_current_without_a_current_best_selects(registry: ModelRegistry, model_dir) -> None:
    model_id = add(registry, model_dir, "v1", {"ndcg@10": 0.2})
    assert registry.select_best_model("ndcg@10", min_gain_over_current=0.5)["model_id"] == model_id


def test_reselecting_the_current_best_writes_nothing(registry: ModelRegistry, model_dir) -> None:
    add(registry, model_dir, "v1", {"ndcg@10": 0.2})
    first = registry.select_best_model("ndcg@10")
    before = snapshot(registry)
    again = registry.select_best_model("ndcg@10")
    assert again["model_id"] == first["model_id"] and again["value"] == 0.2
    assert snapshot(registry) == before


def test_selection_by_another_metric_is_recorded(registry: ModelRegistry, model_dir) -> None:
    a = add(registry, model_dir, "a", {"ndcg@10": 0.3, "recall@10": 0.1})
    b = add(registry, model_dir, "b", {"ndcg@10": 0.2, "recall@10": 0.4})
    assert registry.select_best_model("ndcg@10")["model_id"] == a
    assert registry.select_best_model("recall@10")["model_id"] == b
    current = registry.get_current_best()
    assert current["selection_metric"] == "recall@10" and current["selection_value"] == 0.4
    assert exported(registry)["metadata"]["selection_criteria"] == "recall@10"


# ---------------------------------------------------------------------- promote / rollback / history


def test_rollback_after_two_selections(registry: ModelRegistry, model_dir) -> None:
    first = add(registry, model_dir, "v1", {"ndcg@10": 0.2})
    registry.select_best_model("ndcg@10")
    second = add(registry, model_dir, "v2", {"ndcg@10": 0.3})
    registry.select_best_model("ndcg@10")
    assert registry.get_current_best()["model_id"] == second
    result = registry.rollback()
    assert result["model_id"] == first
    current = registry.get_current_best()
    assert current["model_id"] == first and current["selected_by"] == "rollback"
    history = registry.get_selection_history()
    assert [h["model_id"] for h in history] == [first, second, first]  # newest first
    assert [h["is_current"] for h in history] == [True, False, False]
    assert history[0]["previous_model_id"] == second
    assert [(r["action"], r["target"]) for r in audit_rows(registry)][-1] == ("ROLLBACK", first)
    assert exported(registry)["current_best"]["model_id"] == first


def test_rollback_to_an_explicit_earlier_model(registry: ModelRegistry, model_dir) -> None:
    a = add(registry, model_dir, "a", {"ndcg@10": 0.1})
    b = add(registry, model_dir, "b", {"ndcg@10": 0.2})
    c = add(registry, model_dir, "c", {"ndcg@10": 0.3})
    for model_id in (a, b, c):
        registry.promote_model(model_id)
    result = registry.rollback(to=a)
    assert (result["model_id"], result["changed"], result["previous_model_id"]) == (a, True, c)
    assert registry.get_current_best()["model_id"] == a


def test_rollback_to_a_model_that_was_never_current_is_refused(registry: ModelRegistry, model_dir) -> None:
    a = add(registry, model_dir, "a", {"ndcg@10": 0.1})
    add(registry, model_dir, "b", {"ndcg@10": 0.2})
    c = add(registry, model_dir, "c", {"ndcg@10": 0.3})
    registry.promote_model(c)
    registry.select_best_model("ndcg@10")  # c again: no new state
    before = snapshot(registry)
    with pytest.raises(InvalidArgumentError, match=f"{a!r}: it is not an earlier current best.*promote_model") as raised:
        registry.rollback(to=a)
    assert "cfreg promote" in raised.value.cli_message()
    assert snapshot(registry) == before


def test_rollback_after_reselecting_the_same_model_by_another_metric(registry: ModelRegistry, model_dir) -> None:
    first = add(registry, model_dir, "v1", {"ndcg@10": 0.2, "recall@10": 0.1})
    registry.select_best_model("ndcg@10")
    second = add(registry, model_dir, "v2", {"ndcg@10": 0.3, "recall@10": 0.2})
    registry.select_best_model("ndcg@10")
    registry.select_best_model("recall@10")  # same model, new selection row
    assert registry.get_current_best()["model_id"] == second
    assert registry.rollback()["model_id"] == first


def test_rollback_without_history_is_refused(registry: ModelRegistry, model_dir) -> None:
    add(registry, model_dir, "v1", {"ndcg@10": 0.2})
    registry.select_best_model("ndcg@10")
    before = snapshot(registry)
    with pytest.raises(InvalidArgumentError, match="nothing to roll back"):
        registry.rollback()
    assert snapshot(registry) == before


def test_rollback_to_an_archived_model_is_refused(registry: ModelRegistry, model_dir) -> None:
    first = add(registry, model_dir, "v1", {"ndcg@10": 0.2})
    registry.select_best_model("ndcg@10")
    add(registry, model_dir, "v2", {"ndcg@10": 0.3})
    registry.select_best_model("ndcg@10")
    registry.archive_model(first)
    with pytest.raises(ModelInUseError, match="archived"):
        registry.rollback()


def test_promote_model_is_manual_and_audited(registry: ModelRegistry, model_dir) -> None:
    low = add(registry, model_dir, "low", {"ndcg@10": 0.1})
    add(registry, model_dir, "high", {"ndcg@10": 0.3})
    registry.select_best_model("ndcg@10")
    result = registry.promote_model(low, reason="canary won")
    assert result["model_id"] == low and result["changed"] is True
    # Recorded as manual, not under the previous selection's metric.
    assert result["metric"] is None and result["value"] is None
    current = registry.get_current_best()
    assert current["model_id"] == low and current["selected_by"] == "manual"
    assert current["selection_metric"] is None and current["selection_value"] is None
    assert registry.get_selection_history()[0]["reason"] == "canary won"
    assert audit_rows(registry)[-1]["action"] == "PROMOTE"


def test_promote_refuses_unknown_and_inactive_models(registry: ModelRegistry, model_dir) -> None:
    archived = add(registry, model_dir, "a", {"ndcg@10": 0.1})
    registry.archive_model(archived)
    with pytest.raises(ModelNotFoundError):
        registry.promote_model("als_missing")
    with pytest.raises(ModelInUseError, match="archived"):
        registry.promote_model(archived)
    assert registry.get_current_best() is None


# ---------------------------------------------------------------------- lifecycle


def test_archive_current_best_returns_false(registry: ModelRegistry, model_dir) -> None:
    best = add(registry, model_dir, "v1", {"ndcg@10": 0.2})
    registry.select_best_model("ndcg@10")
    before = snapshot(registry)
    assert registry.archive_model(best) is False
    assert snapshot(registry) == before
    assert registry.get_model(best)["status"] == "active"


def test_archive_other_model(registry: ModelRegistry, model_dir) -> None:
    add(registry, model_dir, "v1", {"ndcg@10": 0.2})
    registry.select_best_model("ndcg@10")
    other = add(registry, model_dir, "v2", {"ndcg@10": 0.1})
    assert registry.archive_model(other) is True
    assert registry.get_model(other)["status"] == "archived"
    assert exported(registry)["models"][other]["status"] == "archived"
    assert registry.archive_model(other) is True  # already archived: still True, nothing written


def test_delete_current_best_raises_model_in_use(registry: ModelRegistry, model_dir, tmp_path: Path) -> None:
    best = add(registry, model_dir, "v1", {"ndcg@10": 0.2})
    registry.select_best_model("ndcg@10")
    before = snapshot(registry, tmp_path)
    for delete_files in (False, True):
        with pytest.raises(ModelInUseError) as caught:
            registry.delete_model(best, delete_files=delete_files)
        assert isinstance(caught.value, ValueError)
        assert best in str(caught.value)
    assert snapshot(registry, tmp_path) == before


def test_delete_model_keeps_files_by_default(registry: ModelRegistry, model_dir, tmp_path: Path) -> None:
    keep = add(registry, model_dir, "v1", {"ndcg@10": 0.2})
    gone = add(registry, model_dir, "v2", {"ndcg@10": 0.1})
    assert registry.delete_model(gone) is True
    assert registry.get_model(gone) is None
    assert registry.get_model(keep) is not None
    assert (tmp_path / "artifacts/cf/als/v2/als_U.npy").exists()
    assert gone not in exported(registry)["models"]
    assert list(registry.list_models()["model_id"]) == [keep]


def test_delete_model_with_files_removes_only_its_folder(registry: ModelRegistry, model_dir, tmp_path: Path) -> None:
    keep = add(registry, model_dir, "v1", {"ndcg@10": 0.2})
    gone = add(registry, model_dir, "v2", {"ndcg@10": 0.1})
    assert registry.delete_model(gone, delete_files=True) is True
    assert not (tmp_path / "artifacts/cf/als/v2").exists()
    assert (tmp_path / "artifacts/cf/als/v1/als_U.npy").exists()
    assert registry.get_model(keep) is not None


def test_update_model_status(registry: ModelRegistry, model_dir) -> None:
    model_id = add(registry, model_dir, "v1", {"ndcg@10": 0.2})
    assert registry.update_model_status(model_id, "failed") is True
    assert registry.get_model(model_id)["status"] == "failed"
    assert registry.update_model_status(model_id, "active") is True
    assert registry.get_model(model_id)["status"] == "active"
    assert set(MODEL_STATUS) == {"active", "archived", "failed"}


@pytest.mark.parametrize("status", ["archived", "failed"])
def test_update_status_of_current_best_is_refused(registry: ModelRegistry, model_dir, status: str) -> None:
    best = add(registry, model_dir, "v1", {"ndcg@10": 0.2})
    registry.select_best_model("ndcg@10")
    before = snapshot(registry)
    with pytest.raises(ModelInUseError, match=best):
        registry.update_model_status(best, status)
    assert snapshot(registry) == before


def test_unknown_status_raises_value_error(registry: ModelRegistry, model_dir, subtests) -> None:
    model_id = add(registry, model_dir, "v1", {"ndcg@10": 0.2})
    before = snapshot(registry)
    for status in ["deleted", "ACTIVE", "", None, ["active"]]:
        with subtests.test(status=repr(status)):
            with pytest.raises(ValueError, match="status"):
                registry.update_model_status(model_id, status)
            with pytest.raises(ValueError, match="status"):
                registry.list_models(status=status or "nope")
            assert snapshot(registry) == before


UNKNOWN_ID_CALLS = {
    "archive_model": lambda r: r.archive_model("als_nope"),
    "delete_model": lambda r: r.delete_model("als_nope"),
    "delete_model(files)": lambda r: r.delete_model("als_nope", delete_files=True),
    "update_model_status": lambda r: r.update_model_status("als_nope", "archived"),
    "promote_model": lambda r: r.promote_model("als_nope"),
    "rollback(to)": lambda r: r.rollback(to="als_nope"),
    "compare_models": lambda r: r.compare_models(["als_v1", "als_nope"]),
    "get_model_files": lambda r: r.get_model_files("als_nope"),
}


def test_unknown_ids_raise_model_not_found(registry: ModelRegistry, model_dir, subtests) -> None:
    add(registry, model_dir, "v1", {"ndcg@10": 0.2})
    registry.select_best_model("ndcg@10")
    before = snapshot(registry)
    for name, call in UNKNOWN_ID_CALLS.items():
        with subtests.test(call=name):
            with pytest.raises(ModelNotFoundError) as caught:
                call(registry)
            assert isinstance(caught.value, KeyError)
            assert "als_nope" in str(caught.value)
            assert snapshot(registry) == before


def test_get_model_of_unknown_id_is_none(registry: ModelRegistry) -> None:
    assert registry.get_model("als_nope") is None


MALFORMED_ID_CALLS = {
    "get_model": lambda r, i: r.get_model(i),
    "archive_model": lambda r, i: r.archive_model(i),
    "delete_model": lambda r, i: r.delete_model(i, delete_files=True),
    "update_model_status": lambda r, i: r.update_model_status(i, "archived"),
    "promote_model": lambda r, i: r.promote_model(i),
    "rollback": lambda r, i: r.rollback(to=i),
    "compare_models": lambda r, i: r.compare_models([i]),
}


def test_malformed_ids_raise_value_error(registry: ModelRegistry, model_dir, tmp_path: Path, subtests) -> None:
    add(registry, model_dir, "v1", {"ndcg@10": 0.2})
    before = snapshot(registry, tmp_path)
    for bad_id in ["als/v1", "als|v1", "als v1", "als\nv1", "../als", "", "als_v1\x00", 7]:
        for name, call in MALFORMED_ID_CALLS.items():
            with subtests.test(call=name, model_id=repr(bad_id)):
                with pytest.raises(InvalidArgumentError):
                    call(registry, bad_id)
    assert snapshot(registry, tmp_path) == before


# ---------------------------------------------------------------------- queries


def test_list_models_columns_and_values(registry: ModelRegistry, model_dir) -> None:
    add(registry, model_dir, "v1", {"ndcg@10": 0.2, "recall@10": 0.3, "coverage": 0.31})
    add(registry, model_dir, "v2", {"ndcg@10": 0.25})
    frame = registry.list_models()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == ["model_id", "model_type", "version", "status", "created_at",
                                   "coverage", "ndcg@10", "recall@10", "training_time", "tags"]
    row = frame.set_index("model_id").loc["als_v2"]
    assert math.isnan(row["recall@10"]) and row["ndcg@10"] == 0.25 and row["training_time"] == 1.5
    assert list(frame.index) == list(range(len(frame)))


def test_list_models_has_the_same_columns_when_empty(registry: ModelRegistry, model_dir) -> None:
    expected = ["model_id", "model_type", "version", "status", "created_at", "training_time", "tags"]
    assert list(registry.list_models().columns) == expected
    add(registry, model_dir, "v1", {"ndcg@10": 0.2})
    assert list(registry.list_models(model_type="bpr").columns) == expected
    assert registry.list_models(model_type="bpr").empty


def test_list_models_default_order_is_newest_first(registry: ModelRegistry, model_dir) -> None:
    ids = [add(registry, model_dir, f"v{i}", {"ndcg@10": 0.1 * i}) for i in range(1, 4)]
    assert list(registry.list_models()["model_id"]) == ids[::-1]
    assert list(registry.list_models(sort_by="created_at", ascending=True)["model_id"]) == ids


@pytest.mark.parametrize("ascending", [True, False])
def test_list_models_sorts_by_metric_with_nan_last(registry: ModelRegistry, model_dir, ascending: bool) -> None:
    add(registry, model_dir, "missing", {"recall@10": 0.5})
    add(registry, model_dir, "low", {"ndcg@10": -0.1})
    add(registry, model_dir, "high", {"ndcg@10": 0.3})
    order = list(registry.list_models(sort_by="ndcg@10", ascending=ascending)["model_id"])
    assert order == (["als_low", "als_high", "als_missing"] if ascending else ["als_high", "als_low", "als_missing"])


def test_list_models_filters(registry: ModelRegistry, model_dir) -> None:
    als = add(registry, model_dir, "v1", {"ndcg@10": 0.2})
    archived = add(registry, model_dir, "v2", {"ndcg@10": 0.1})
    bpr = add(registry, model_dir, "v1", {"ndcg@10": 0.3}, model_type="bpr")
    registry.archive_model(archived)
    assert set(registry.list_models(model_type="als")["model_id"]) == {als, archived}
    assert list(registry.list_models(status="archived")["model_id"]) == [archived]
    assert list(registry.list_models(model_type="als", status="active")["model_id"]) == [als]
    assert list(registry.list_models(model_type="bpr", sort_by="ndcg@10")["model_id"]) == [bpr]


def test_list_model_records_are_the_list_models_rows_in_the_same_order(registry: ModelRegistry, model_dir, subtests) -> None:
    """The pandas-free rows ``cfreg list`` prints: same values, same order, ties and missing values included."""
    for i, metrics in enumerate([{"ndcg@10": 0.2}, {"recall@10": 0.5}, {"ndcg@10": 0.2, "recall@10": 0.1},
                                 {"ndcg@10": 0.3}, {"ndcg@10": 0.2}, {}]):
        add(registry, model_dir, f"v{i}", metrics, model_type="bpr" if i % 2 else "als")
    registry.archive_model("als_v2")

    def frame_rows(frame: pd.DataFrame) -> list[dict]:
        return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
                for row in frame.to_dict(orient="records")]

    for sort_by in ["created_at", "ndcg@10", "recall@10", "model_id", "status", "training_time"]:
        for ascending in (True, False):
            with subtests.test(sort_by=sort_by, ascending=ascending):
                records = registry.list_model_records(sort_by=sort_by, ascending=ascending)
                assert records == frame_rows(registry.list_models(sort_by=sort_by, ascending=ascending))
    assert registry.list_model_records(model_type="bpr", status="active") == frame_rows(
        registry.list_models(model_type="bpr", status="active"))
    with pytest.raises(ValueError, match="sort_by"):
        registry.list_model_records(sort_by="nope")


def test_unknown_sort_by_raises_value_error(registry: ModelRegistry, model_dir, subtests) -> None:
    add(registry, model_dir, "v1", {"ndcg@10": 0.2})
    before = snapshot(registry)
    for sort_by in ["nope", "ndcg@10; DROP TABLE models", 'a"."b', "__class__", "_created", "", None, 3]:
        with subtests.test(sort_by=repr(sort_by)):
            with pytest.raises(ValueError, match="sort_by"):
                registry.list_models(sort_by=sort_by)
    assert snapshot(registry) == before  # the tables are all still there
    assert list(registry.list_models(sort_by="ndcg@10")["model_id"]) == ["als_v1"]


def test_compare_models(registry: ModelRegistry, model_dir) -> None:
    a = add(registry, model_dir, "v1", {"recall@10": 0.2, "ndcg@10": 0.1, "coverage": 0.3})
    b = registry.register_model(model_dir("bpr/v1", model_type="bpr"), "bpr", {}, {"ndcg@10": 0.15}, {}, version="v1")
    frame = registry.compare_models([b, a])
    assert list(frame.columns) == ["model_id", "model_type", "factors", "recall@10", "ndcg@10", "coverage", "training_time"]
    assert list(frame["model_id"]) == [b, a]  # in the order asked
    rows = frame.set_index("model_id")
    assert rows.loc[a, "factors"] == 8 and rows.loc[b, "factors"] == "N/A"
    assert rows.loc[a, "coverage"] == 0.3 and pd.isna(rows.loc[b, "coverage"])
    only = registry.compare_models([a], metrics=["ndcg@10"])
    assert list(only.columns) == ["model_id", "model_type", "factors", "ndcg@10", "training_time"]


def test_get_registry_stats_counts_every_status(registry: ModelRegistry, model_dir) -> None:
    best = add(registry, model_dir, "v1", {"ndcg@10": 0.3})
    archived = add(registry, model_dir, "v2", {"ndcg@10": 0.2})
    failed = add(registry, model_dir, "v3", {"ndcg@10": 0.1})
    add(registry, model_dir, "v1", {"ndcg@10": 0.1}, model_type="bpr")
    registry.select_best_model("ndcg@10")
    registry.archive_model(archived)
    registry.update_model_status(failed, "failed")
    stats = registry.get_registry_stats()
    assert stats["total_models"] == 4 and stats["active_models"] == 2
    assert stats["archived_models"] == 1 and stats["failed_models"] == 1
    assert stats["by_type"] == {"als": 3, "bpr": 1}
    assert stats["current_best"] == best
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+00:00", stats["last_updated"])


def test_models_and_registry_properties_are_fresh_copies(registry: ModelRegistry, model_dir) -> None:
    model_id = add(registry, model_dir, "v1", {"ndcg@10": 0.2})
    registry.models[model_id]["status"] = "hacked"
    assert registry.get_model(model_id)["status"] == "active"
    assert registry.registry["models"][model_id]["path"] == "artifacts/cf/als/v1"
    assert registry.registry.get("current_best") is None


# ---------------------------------------------------------------------- audit


def test_audit_lines_in_the_documented_format(registry: ModelRegistry, model_dir) -> None:
    old = add(registry, model_dir, "v1", {"ndcg@10": 0.189})
    registry.select_best_model("ndcg@10")
    new = add(registry, model_dir, "v2", {"ndcg@10": 0.195})
    registry.select_best_model("ndcg@10")
    registry.archive_model(old)
    registry.update_model_status(old, "failed")
    registry.delete_model(old)
    lines = [(m["action"], m["target"], m["details"]) for m in log_lines(registry)]
    assert lines == [
        ("REGISTER", old, "ndcg@10=0.189"),
        ("SELECT_BEST", old, "ndcg@10=0.1890"),
        ("REGISTER", new, "ndcg@10=0.195"),
        ("SELECT_BEST", new, "ndcg@10=0.1950 improvement=+3.2%"),
        ("ARCHIVE", old, "reason=manual"),
        ("UPDATE_STATUS", old, "status=failed"),
        ("DELETE", old, "delete_files=False"),
    ]
    rows = audit_rows(registry)
    assert [(r["action"], r["target"], r["summary"]) for r in rows] == lines


def test_a_drop_is_rendered_with_a_minus_sign(registry: ModelRegistry, model_dir) -> None:
    add(registry, model_dir, "v1", {"ndcg@10": 0.3})
    registry.select_best_model("ndcg@10")
    bpr = add(registry, model_dir, "v1", {"ndcg@10": 0.1}, model_type="bpr")
    registry.select_best_model("ndcg@10", model_type="bpr")
    last = log_lines(registry)[-1]
    assert (last["action"], last["target"]) == ("SELECT_BEST", bpr)
    assert last["details"] == "ndcg@10=0.1000 improvement=-66.7%"


def test_each_successful_mutation_writes_one_audit_row_and_failures_none(registry: ModelRegistry, model_dir) -> None:
    a = add(registry, model_dir, "a", {"ndcg@10": 0.2})
    b = add(registry, model_dir, "b", {"ndcg@10": 0.1})
    registry.select_best_model("ndcg@10")
    counts = len(audit_rows(registry)), len(log_lines(registry))
    assert counts == (3, 3)
    failing = [
        lambda: registry.delete_model(a),
        lambda: registry.update_model_status(a, "failed"),
        lambda: registry.register_model("artifacts/cf/als/nowhere", "als", {}, {}, {}),
        lambda: registry.promote_model("als_nope"),
        lambda: registry.select_best_model("ndcg@10", min_gain_over_current=0.5),
    ]
    for call in failing:
        try:
            call()
        except RegistryError:
            pass
    assert registry.archive_model(a) is False
    assert (len(audit_rows(registry)), len(log_lines(registry))) == counts
    registry.promote_model(b)
    registry.rollback()
    assert [r["action"] for r in audit_rows(registry)][-2:] == ["PROMOTE", "ROLLBACK"]
    assert len(log_lines(registry)) == counts[1] + 2


def test_audit_fields_cannot_break_the_line_format(registry: ModelRegistry, model_dir) -> None:
    model_id = add(registry, model_dir, "v1", {"ndcg@10": 0.2})
    with pytest.raises(InvalidArgumentError, match="reason"):
        registry.promote_model(model_id, reason="first | of\nmany")
    line = audit.format_line(datetime(2025, 1, 16, 14, 30), "REGISTER", "a|b", "x=1\nFORGED | LINE")
    assert line == "2025-01-16 14:30:00 | REGISTER | a/b | x=1 FORGED / LINE"


def test_audit_log_line_escapes_control_characters(registry: ModelRegistry, model_dir) -> None:
    """ESC, NUL, BEL and bidi overrides reach the log as visible escapes; the database keeps the value."""
    line = audit.format_line(datetime(2025, 1, 16, 14, 30), "REGISTER", "a\x1b[2Jb", "v=\x1b[31mred\x00\x07 \u202eabc")
    assert line == "2025-01-16 14:30:00 | REGISTER | a\\x1b[2Jb | v=\\x1b[31mred\\x00\\x07 \\u202eabc"
    assert line.isprintable()
    model_id = add(registry, model_dir, "v1", {"ndcg@10": 0.2})
    registry.promote_model(model_id, reason="ok \x1b]0;owned\x07 done")
    logged = registry.audit_log_path.read_bytes()
    assert b"\x1b" not in logged and b"\x07" not in logged
    assert b"ok \\x1b]0;owned\\x07 done" in logged
    stored = [e for e in audit_rows(registry) if e["action"] == "PROMOTE"][-1]
    assert "ok \x1b]0;owned\x07 done" in stored["summary"] + str(stored["details"])


def test_audit_log_path_does_not_depend_on_the_working_directory(
    registry: ModelRegistry, model_dir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    add(registry, model_dir, "v1", {"ndcg@10": 0.2})
    assert Path(registry.audit_log_path) == tmp_path / "logs" / "registry_audit.log"
    assert (tmp_path / "logs" / "registry_audit.log").exists()
    assert not (elsewhere / "logs").exists()


def test_default_root_is_stored_so_a_later_process_in_another_directory_resolves_paths(
    registry_path: Path, database_url: str, tmp_path: Path, model_dir, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    first = ModelRegistry(registry_path, database_url=database_url, audit_log_path="audit/cf.log")
    add(first, model_dir, "v1", {"ndcg@10": 0.2})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    from registry import db

    db.forget_databases()
    second = ModelRegistry(registry_path, database_url=database_url, audit_log_path="audit/cf.log")
    assert second.root == tmp_path
    assert second.validate_artifacts("artifacts/cf/als/v1", "als") == (True, [])
    add(second, model_dir, "v2", {"ndcg@10": 0.3})
    assert len((tmp_path / "audit" / "cf.log").read_text().splitlines()) == 2
    assert not (elsewhere / "audit").exists()


def test_archive_records_the_previous_status(registry: ModelRegistry, model_dir) -> None:
    model_id = add(registry, model_dir, "v1", {"ndcg@10": 0.2})
    registry.update_model_status(model_id, "failed")
    registry.archive_model(model_id)
    assert audit_rows(registry)[-1]["details"] == {"previous_status": "failed"}


# ---------------------------------------------------------------------- module-level API and helpers


def test_module_level_register_and_select(
    workdir: Path, database_url: str, model_dir, monkeypatch: pytest.MonkeyPatch
) -> None:
    from registry import register_model, select_best_model

    monkeypatch.setenv("CFREG_DATABASE_URL", database_url)
    first = register_model(model_dir("als/a"), "als", {}, {"ndcg@10": 0.1}, {}, version="a")
    second = register_model(model_dir("als/b"), "als", {}, {"ndcg@10": 0.3}, {}, version="b")
    assert select_best_model("ndcg@10")["model_id"] == second
    assert get_registry().get_current_best()["model_id"] == second and first == "als_a"
    assert json.loads((workdir / "artifacts/cf/registry.json").read_text())["current_best"]["model_id"] == second


def test_registry_document_helpers(registry: ModelRegistry, model_dir) -> None:
    from registry import create_empty_registry, generate_model_id, generate_version_id, validate_registry_schema

    empty = create_empty_registry()
    assert empty["current_best"] is None and empty["models"] == {} and empty["metadata"]["num_models"] == 0
    assert validate_registry_schema(empty)
    add(registry, model_dir, "v1", {"ndcg@10": 0.2})
    registry.select_best_model("ndcg@10")
    assert validate_registry_schema(exported(registry)) and validate_registry_schema(registry.registry)
    for bad in ({}, [], {"current_best": None, "models": [], "metadata": {}},
                {"current_best": 5, "models": {}, "metadata": {}}):
        assert not validate_registry_schema(bad)
    assert re.fullmatch(r"v_\d{8}_\d{6}", generate_version_id())
    assert re.fullmatch(r"v_\d{8}_\d{6}", ModelRegistry.generate_version_id(prefix="v"))
    assert generate_model_id("als", "v2_20250116_141500") == "als_v2_20250116_141500"
    assert ModelRegistry.generate_model_id("bpr", "v1") == "bpr_v1"


def test_min_improvement_can_replace_a_current_best_without_baseline_unless_guarded(
    registry: ModelRegistry, model_dir
) -> None:
    current = add(registry, model_dir, "no_baseline", {"ndcg@10": 0.3})
    registry.select_best_model("ndcg@10")
    eligible = add(registry, model_dir, "with_baseline", {"ndcg@10": 0.2}, baseline={"improvement_ndcg@10": 0.5})
    assert registry.select_best_model("ndcg@10", min_improvement=0.1, min_gain_over_current=0.0) is None
    assert registry.get_current_best()["model_id"] == current
    assert registry.select_best_model("ndcg@10", min_improvement=0.1)["model_id"] == eligible


# ---------------------------------------------------------------------- selection history semantics


def test_selecting_the_current_best_again_records_nothing(registry: ModelRegistry, model_dir) -> None:
    best = add(registry, model_dir, "v1", {"ndcg@10": 0.3, "recall@10": 0.5})
    first = registry.select_best_model_outcome("ndcg@10")
    assert (first["model_id"], first["changed"], first["previous_model_id"]) == (best, True, None)
    before = snapshot(registry)
    for metric in ("ndcg@10", "recall@10"):  # same model, same or another metric
        again = registry.select_best_model_outcome(metric)
        assert (again["model_id"], again["changed"], again["previous_model_id"]) == (best, False, best)
        assert set(registry.select_best_model(metric)) == {"model_id", "model_info", "metric", "value"}
    assert snapshot(registry) == before  # no X -> X history row, no audit event, no generation bump
    assert [(h["model_id"], h["previous_model_id"]) for h in registry.get_selection_history()] == [(best, None)]


def test_promoting_the_current_best_records_nothing(registry: ModelRegistry, model_dir) -> None:
    best = add(registry, model_dir, "v1", {"ndcg@10": 0.3})
    registry.promote_model(best)
    before = snapshot(registry)
    result = registry.promote_model(best, reason="again")
    assert (result["changed"], result["previous_model_id"]) == (False, best)
    assert snapshot(registry) == before


def test_a_manual_promotion_after_a_selection_is_recorded_as_manual(registry: ModelRegistry, model_dir) -> None:
    add(registry, model_dir, "hi", {"ndcg@10": 0.3})
    low = add(registry, model_dir, "lo", {"ndcg@10": 0.1})
    registry.select_best_model("ndcg@10")
    registry.promote_model(low)
    latest = registry.get_selection_history(limit=1)[0]
    assert (latest["model_id"], latest["selected_by"], latest["metric"], latest["value"]) == (low, "manual", None, None)
    with_metric = registry.promote_model(add(registry, model_dir, "mid", {"ndcg@10": 0.2}), metric="ndcg@10")
    assert (with_metric["metric"], with_metric["value"]) == ("ndcg@10", 0.2)


def test_rollback_walks_back_through_history_instead_of_toggling(registry: ModelRegistry, model_dir) -> None:
    a, b, c = (add(registry, model_dir, name, {"ndcg@10": value}) for name, value in (("a", 0.1), ("b", 0.2), ("c", 0.3)))
    registry.promote_model(a)
    registry.promote_model(b)
    registry.select_best_model("ndcg@10")  # c
    first = registry.rollback()
    assert (first["model_id"], first["changed"], first["previous_model_id"]) == (b, True, c)
    second = registry.rollback()
    assert (second["model_id"], second["previous_model_id"]) == (a, b)  # the original toggled back to c
    before = snapshot(registry)
    with pytest.raises(InvalidArgumentError, match="nothing to roll back to"):
        registry.rollback()
    assert snapshot(registry) == before
    history = registry.get_selection_history()
    assert [(h["model_id"], h["selected_by"]) for h in history] == [
        (a, "rollback"), (b, "rollback"), (c, "auto"), (b, "manual"), (a, "manual")]


def test_rollback_steps_goes_several_states_back_and_records_the_restored_selection(
    registry: ModelRegistry, model_dir
) -> None:
    ids = [add(registry, model_dir, f"m{n}", {"ndcg@10": n / 10}) for n in range(1, 5)]
    for model_id in ids:
        registry.promote_model(model_id)
    # A -> B -> C -> D; two steps back from D is B.
    result = registry.rollback(steps=2)
    assert (result["model_id"], result["previous_model_id"]) == (ids[1], ids[3])
    assert registry.rollback()["model_id"] == ids[0]  # then one more step: A (not C, not D)
    history = registry.get_selection_history()
    promoted_b = next(h for h in history if h["model_id"] == ids[1] and h["selected_by"] == "manual")
    assert history[1]["restored_selection_id"] == promoted_b["id"]


def test_rollback_steps_finds_the_right_state_when_a_model_appears_twice(registry: ModelRegistry, model_dir) -> None:
    a, b, c, d = (add(registry, model_dir, n, {"ndcg@10": 0.1}) for n in "abcd")
    for model_id in (a, b, c, b, d):
        registry.promote_model(model_id)
    assert registry.rollback(steps=3)["model_id"] == b  # the older b (A, B | C, B, D)
    assert registry.rollback()["model_id"] == a  # so one more step is A, not C
    registry.promote_model(d)  # a new line: A, D
    assert registry.rollback()["model_id"] == a


def test_rollback_refuses_bad_steps_and_both_arguments(registry: ModelRegistry, model_dir) -> None:
    a, b = add(registry, model_dir, "a", {"ndcg@10": 0.1}), add(registry, model_dir, "b", {"ndcg@10": 0.2})
    registry.promote_model(a)
    registry.promote_model(b)
    before = snapshot(registry)
    with pytest.raises(InvalidArgumentError, match="only 1 earlier"):
        registry.rollback(steps=2)
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(InvalidArgumentError):
            registry.rollback(steps=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="not both"):
        registry.rollback(to=a, steps=2)
    assert snapshot(registry) == before


def test_rollback_to_the_current_model_changes_nothing(registry: ModelRegistry, model_dir) -> None:
    a, b = add(registry, model_dir, "a", {"ndcg@10": 0.1}), add(registry, model_dir, "b", {"ndcg@10": 0.2})
    registry.promote_model(a)
    registry.promote_model(b)
    before = snapshot(registry)
    result = registry.rollback(to=b)
    assert (result["model_id"], result["changed"]) == (b, False)
    assert snapshot(registry) == before

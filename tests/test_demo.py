"""The end-to-end demo (`cfreg demo` / tools/demo.py) in a temporary folder, on both backends."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from registry import ModelRegistry, validate_artifacts, validate_registry_schema
from registry import demo as demo_module
from registry.cli.run import render_demo_result
from registry.demo import QUICK_CONFIG, run_demo
from registry.demo.training import ALSParams, BPRParams, fit_model, generate_interactions
from registry.utils import compute_data_version

REPO = Path(__file__).resolve().parents[1]
FOLDER_NAME = re.compile(r"v(\d+)_\d{8}_\d{6}")


@pytest.fixture
def demo_url(backend: str, database_url: str) -> str | None:
    """None on SQLite (the demo's embedded default), the test schema's URL on PostgreSQL."""
    return None if backend == "sqlite" else database_url


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One quick demo on the embedded SQLite default, shared by the read-only checks."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("CFREG_DATABASE_URL", "CFREG_ROOT"):
            patch.delenv(name, raising=False)
        return run_demo(tmp_path_factory.mktemp("demo"), quick=True, show_progress=False)


def _open(workdir: Path, url: str | None) -> ModelRegistry:
    return ModelRegistry(workdir / "artifacts" / "cf" / "registry.json", auto_create=False, database_url=url)


def _train_items(workdir: Path) -> dict[str, set[str]]:
    seen: dict[str, set[str]] = {}
    with (workdir / "data" / "demo" / "interactions.csv").open() as handle:
        for row in csv.DictReader(handle):
            if row["split"] == "train":
                seen.setdefault(row["user_id"], set()).add(row["item_id"])
    return seen


def _holdout_ndcg_at_10(workdir: Path, U: np.ndarray, V: np.ndarray, user_ids: list[str], item_ids: list[str]) -> float:
    """ndcg@10 on the demo's holdout, written here with plain numpy (not the library's evaluate).

    Binary gains; the user's training items are never recommended; users without held-out
    items are skipped; the ideal DCG counts min(10, held out) hits.
    """
    user_row = {user: row for row, user in enumerate(user_ids)}
    item_row = {item: row for row, item in enumerate(item_ids)}
    train: dict[int, list[int]] = {}
    holdout: dict[int, set[int]] = {}
    with (workdir / "data" / "demo" / "interactions.csv").open() as handle:
        for record in csv.DictReader(handle):
            user, item = user_row[record["user_id"]], item_row[record["item_id"]]
            if record["split"] == "train":
                train.setdefault(user, []).append(item)
            else:
                holdout.setdefault(user, set()).add(item)
    discounts = 1.0 / np.log2(np.arange(2, 12))
    total = 0.0
    for user, held in holdout.items():
        scores = (U[user] @ V.T).astype(np.float64)
        scores[train.get(user, [])] = -np.inf
        top = np.argsort(-scores, kind="stable")[:10]
        dcg = sum(discounts[rank] for rank, item in enumerate(top) if item in held)
        total += dcg / discounts[: min(10, len(held))].sum()
    return total / len(holdout)


def _independent_ndcg(workdir: Path, model_path: str, model_type: str) -> float:
    folder = workdir / model_path
    U = np.load(folder / f"{model_type}_U.npy")
    V = np.load(folder / f"{model_type}_V.npy")
    users = json.loads((folder / f"{model_type}_user_ids.json").read_text())
    items = json.loads((folder / f"{model_type}_item_ids.json").read_text())
    return _holdout_ndcg_at_10(workdir, U, V, users, items)


def _independent_popularity_ndcg(workdir: Path) -> float:
    """The popularity baseline: every user scores an item by its number of training users."""
    mapping = json.loads((workdir / "data" / "demo" / "user_item_mappings.json").read_text())
    users, items = mapping["user_ids"], mapping["item_ids"]
    counts = dict.fromkeys(items, 0)
    with (workdir / "data" / "demo" / "interactions.csv").open() as handle:
        for record in csv.DictReader(handle):
            if record["split"] == "train":
                counts[record["item_id"]] += 1
    V = np.array([[counts[item]] for item in items], dtype=np.float64)
    return _holdout_ndcg_at_10(workdir, np.ones((len(users), 1)), V, users, items)


def _expected_winner(workdir: Path, models: dict[str, dict]) -> tuple[str, float]:  # type: ignore[type-arg]
    """The model the doc's rule must select, from the saved arrays and data alone.

    Eligible: ndcg@10 at least 5% over the popularity baseline (the demo's
    min_improvement=0.05); the highest ndcg@10 wins, ties to the earliest registered.
    """
    baseline = _independent_popularity_ndcg(workdir)
    scores = {model_id: _independent_ndcg(workdir, entry["path"], entry["model_type"]) for model_id, entry in models.items()}
    for model_id, entry in models.items():
        assert entry["metrics"]["ndcg@10"] == pytest.approx(scores[model_id], rel=1e-5), model_id
    eligible = [(score, entry["created_at"], model_id) for model_id, entry in models.items()
                if (score := scores[model_id]) >= 1.05 * baseline]
    assert eligible, "no model beats the popularity baseline by 5%"
    best_score = max(score for score, _, _ in eligible)
    winner = min((created, model_id) for score, created, model_id in eligible if score == best_score)[1]
    return winner, best_score


def test_quick_demo_leaves_a_complete_registry(tmp_path: Path, demo_url: str | None) -> None:
    result = run_demo(tmp_path, quick=True, show_progress=False, database_url=demo_url)
    registry = _open(tmp_path, demo_url)
    models = registry.models

    expected_count = len(QUICK_CONFIG.als) + len(QUICK_CONFIG.bpr)
    assert len(result.model_ids) == expected_count
    assert sorted(models) == sorted(result.model_ids)
    assert {m["model_type"] for m in models.values()} == {"als", "bpr"}

    # every model beats popularity, and the current best has the highest ndcg@10 among those passing the threshold
    baseline = result.baseline_metrics["ndcg@10"]
    for model_id, entry in models.items():
        assert entry["metrics"]["ndcg@10"] > baseline, model_id
        assert entry["baseline_comparison"]["baseline_type"] == "popularity"
        assert entry["baseline_comparison"]["baseline_ndcg@10"] == pytest.approx(baseline, abs=1e-6)
        assert set(entry["metrics"]) == {"recall@10", "recall@20", "ndcg@10", "ndcg@20", "coverage"}
        assert all(0.0 <= value <= 1.0 for value in entry["metrics"].values())
    # the winner recomputed from the saved arrays and data with plain numpy (not the library's metrics)
    best, best_ndcg = _expected_winner(tmp_path, models)
    current = registry.get_current_best()
    assert current["model_id"] == best == result.best_model_id
    assert current["selection_metric"] == "ndcg@10" and current["selection_value"] == pytest.approx(best_ndcg, rel=1e-5)

    # data version of the written data files, on every model
    assert [p.name for p in result.data_files] == ["interactions.csv", "user_item_mappings.json"]
    assert result.data_version == compute_data_version(result.data_files)
    assert {m["data_version"] for m in models.values()} == {result.data_version}

    # A/B test between the best and the runner-up of the run
    test = registry.get_ab_test()
    runner_up = max((m for m in result.models if m.model_id != best), key=lambda m: m.metrics["ndcg@10"])
    assert test is not None and test["test_id"] == result.ab_test_id
    assert (test["control_model"], test["treatment_model"], test["traffic_split"]) == (best, runner_up.model_id, 0.1)

    # registry.json is complete and valid
    document = json.loads(result.registry_path.read_text())
    assert result.registry_path == tmp_path / "artifacts" / "cf" / "registry.json"
    assert validate_registry_schema(document)
    assert sorted(document["models"]) == sorted(result.model_ids)
    assert document["current_best"]["model_id"] == best
    assert document["ab_test"]["test_id"] == result.ab_test_id and document["ab_test"]["status"] == "running"

    # the best was loaded through get_loader(); recommendations exclude what the user already has
    assert result.served_model_id == best
    seen = _train_items(tmp_path)
    assert len(result.recommendations) == QUICK_CONFIG.sample_users
    for user_id, items in result.recommendations.items():
        assert len(items) == 10
        scores = [item["score"] for item in items]
        assert scores == sorted(scores, reverse=True)
        assert not {item["item_id"] for item in items} & seen[user_id]
        assert result.routing[user_id] in (test["control_model"], test["treatment_model"])

    audit = (tmp_path / "logs" / "registry_audit.log").read_text()
    assert audit.count("| REGISTER |") == expected_count
    assert f"| SELECT_BEST | {best} |" in audit and "| AB_START |" in audit


def test_artifacts_follow_the_documented_layout(quick_run) -> None:  # type: ignore[no-untyped-def]
    result = quick_run
    tmp_path = result.workdir

    for model in result.models:
        folder = tmp_path / model.path
        assert folder.parent == tmp_path / "artifacts" / "cf" / model.model_type
        assert FOLDER_NAME.fullmatch(folder.name), folder.name
        assert model.model_id == f"{model.model_type}_{folder.name}"
        prefix = model.model_type
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            f"{prefix}_{suffix}" for suffix in ("U.npy", "V.npy", "params.json", "metadata.json", "user_ids.json",
                                                "item_ids.json", "interactions.npz")
        )
        assert validate_artifacts(folder, prefix) == (True, [])
        U = np.load(folder / f"{prefix}_U.npy")
        V = np.load(folder / f"{prefix}_V.npy")
        metadata = json.loads((folder / f"{prefix}_metadata.json").read_text())
        params = json.loads((folder / f"{prefix}_params.json").read_text())
        assert (metadata["num_users"], metadata["num_items"], metadata["factors"]) == (U.shape[0], V.shape[0], U.shape[1])
        assert metadata["metrics"] == model.metrics
        assert metadata["training_info"]["num_train_interactions"] == result.num_train_interactions
        assert metadata["training_info"]["library"].startswith("implicit ")
        assert params["algorithm"] == prefix and metadata["latent_factors"] == params["factors"]
        if prefix == "bpr":  # implicit's BPR: one more column, the item bias; U's is all ones
            assert U.shape[1] == params["factors"] + 1 and metadata["item_bias"] is True
            assert np.all(U[:, -1] == 1.0) and np.any(V[:, -1] != 0.0)
        else:
            assert U.shape[1] == params["factors"] and metadata["item_bias"] is False
        user_ids = json.loads((folder / f"{prefix}_user_ids.json").read_text())
        assert len(user_ids) == U.shape[0] and user_ids[0] == "u0001"
    assert not list((tmp_path / "artifacts" / "cf" / "als").glob(".staging*"))


def test_rerun_adds_new_versions_and_replaces_the_ab_test(tmp_path: Path, demo_url: str | None) -> None:
    first = run_demo(tmp_path, quick=True, show_progress=False, database_url=demo_url)
    second = run_demo(tmp_path, quick=True, show_progress=False, database_url=demo_url)
    registry = _open(tmp_path, demo_url)

    assert not set(first.model_ids) & set(second.model_ids)
    assert sorted(registry.models) == sorted(first.model_ids + second.model_ids)
    numbers = sorted(int(FOLDER_NAME.fullmatch(Path(p).name).group(1)) for p in (m.path for m in second.models if m.model_type == "als"))
    assert numbers == [len(QUICK_CONFIG.als) + 1, 2 * len(QUICK_CONFIG.als)]
    assert second.data_version == first.data_version  # same seed, same bytes
    # identical metrics: ties go to the earliest registered, so the first run's best stays current
    assert second.best_model_id == first.best_model_id
    tests = registry.list_ab_tests()
    assert [t["status"] for t in tests].count("running") == 1
    assert registry.get_ab_test()["test_id"] == second.ab_test_id != first.ab_test_id
    assert second.ab_test["treatment_model"] in second.model_ids


def test_a_rerun_in_the_same_process_serves_the_new_best(tmp_path: Path, demo_url: str | None) -> None:
    weak = dataclasses.replace(
        QUICK_CONFIG,
        als=(ALSParams(factors=4, iterations=5, seed=1), ALSParams(factors=3, iterations=5, seed=1)),
        bpr=(BPRParams(factors=4, iterations=5, seed=1),),
    )
    first = run_demo(tmp_path, config=weak, show_progress=False, database_url=demo_url)
    second = run_demo(tmp_path, quick=True, show_progress=False, database_url=demo_url)

    assert first.best_model_id in first.model_ids and first.served_model_id == first.best_model_id
    assert second.best_model_id in second.model_ids
    assert second.served_model_id == second.best_model_id  # the process's shared loader was reloaded
    # the weak run's A/B treatment was its runner-up; now the new best is control
    assert second.ab_test["control_model"] == second.best_model_id


def test_render_prints_leaderboard_selection_and_recommendations(quick_run) -> None:  # type: ignore[no-untyped-def]
    result = quick_run
    console = Console(file=io.StringIO(), width=120, color_system=None)
    render_demo_result(result, console)
    text = console.file.getvalue()

    for model_id in result.model_ids:
        assert model_id in text
    assert "popularity baseline" in text
    assert f"Current best: {result.best_model_id}" in text
    assert result.ab_test_id in text
    first_user, items = next(iter(result.recommendations.items()))
    assert first_user in text and items[0]["item_id"] in text

    leaderboard = result.leaderboard
    assert list(leaderboard["ndcg@10"]) == sorted(leaderboard["ndcg@10"], reverse=True)
    assert leaderboard["current_best"].sum() == 1
    assert leaderboard.iloc[-1]["model_type"] == "popularity"


def test_library_demo_module_never_prints() -> None:
    # Regression: registry.demo held render_demo_result, which printed through a rich Console
    # although library code never prints; the CLI (registry.cli.run) renders instead.
    import inspect

    from registry.demo import run as run_module
    from registry.demo import training as training_module

    assert not hasattr(demo_module, "render_demo_result") and "render_demo_result" not in demo_module.__all__
    for module in (demo_module, run_module, training_module):
        assert "print(" not in inspect.getsource(module), module.__name__
    assert not hasattr(demo_module, "_isnan")


def test_progress_display_is_optional(tmp_path: Path) -> None:
    quiet = Console(file=io.StringIO(), width=100)
    run_demo(tmp_path / "quiet", quick=True, show_progress=False, console=quiet)
    shown = Console(file=io.StringIO(), width=100)
    run_demo(tmp_path / "shown", quick=True, show_progress=True, console=shown)

    assert quiet.file.getvalue() == ""
    assert "done" in shown.file.getvalue()


@pytest.mark.slow
def test_tools_demo_script_runs_in_a_fresh_process(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    completed = subprocess.run(
        [sys.executable, str(REPO / "tools" / "demo.py"), "--workdir", str(workdir), "--quick", "--no-progress"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stderr
    assert "Leaderboard" in completed.stdout and "Current best" in completed.stdout
    assert (workdir / "artifacts" / "cf" / "registry.json").is_file()
    assert (workdir / "artifacts" / "cf" / "registry.db").is_file()


def test_the_demo_service_leaves_out_training_items(quick_run) -> None:  # type: ignore[no-untyped-def]
    # Regression: /recommend/u0001 returned items the user had in training (the demo filtered them itself).
    import warnings

    from starlette.exceptions import StarletteDeprecationWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StarletteDeprecationWarning)
        from fastapi.testclient import TestClient

    from registry.serving import create_app

    result = quick_run
    seen = _train_items(result.workdir)
    with TestClient(create_app(result.registry_path)) as client:
        assert client.get("/model").json()["has_interactions"] is True
        for user_id in list(seen)[:20]:
            body = client.get(f"/recommend/{user_id}", params={"k": 20}).json()
            assert body["seen_excluded"] is True
            assert not {item["item_id"] for item in body["items"]} & seen[user_id], user_id
        leaked = 0
        for user_id in list(seen)[:20]:
            body = client.get(f"/recommend/{user_id}", params={"k": 20, "include_seen": "true"}).json()
            assert body["seen_excluded"] is False
            leaked += len({item["item_id"] for item in body["items"]} & seen[user_id])
        assert leaked > 0  # without the exclusion the models do rank training items high


def test_served_recommendations_equal_implicits_own(tmp_path: Path) -> None:
    # The registry stores implicit's factors as they are (BPR: items x factors+1, the last column the
    # item bias, ones in U), and the service ranks by U @ V.T: its top 10 is implicit's model.recommend.
    import warnings

    import scipy.sparse as sp
    from starlette.exceptions import StarletteDeprecationWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StarletteDeprecationWarning)
        from fastapi.testclient import TestClient

    from registry.serving import create_app

    result = run_demo(tmp_path, quick=True, show_progress=False)
    registry = _open(tmp_path, None)
    registry.stop_ab_test(result.ab_test_id)  # a running test would route users to its arms
    config = QUICK_CONFIG
    data = generate_interactions(config.num_users, config.num_items, mean_interactions=config.mean_interactions,
                                 seed=config.seed)
    user_items = sp.csr_matrix(data.train)
    for params, model in zip((config.als[0], config.bpr[0]), (result.models[0], result.models[-1])):
        assert model.model_type == params.algorithm
        registry.set_alias(f"demo_{model.model_type}", model.model_id)
        fitted = fit_model(data.train, params)  # the same seed and data: the same model again
        assert np.array_equal(np.load(tmp_path / model.path / f"{model.model_type}_V.npy"), fitted.item_factors)
        with TestClient(create_app(result.registry_path, alias=f"demo_{model.model_type}")) as client:
            info = client.get("/model").json()
            assert info["model_id"] == model.model_id
            assert info["factors"] == params.factors + (model.model_type == "bpr")
            for row in (0, 1, 17, 200, 399):
                ids, scores = fitted.recommend(row, user_items[row], N=10, filter_already_liked_items=True)
                body = client.get(f"/recommend/{data.user_ids[row]}", params={"k": 10}).json()
                assert body["model_id"] == model.model_id and body["seen_excluded"] is True
                assert [item["item_id"] for item in body["items"]] == [data.item_ids[i] for i in ids], (model.model_type, row)
                assert [item["score"] for item in body["items"]] == pytest.approx(scores.tolist(), rel=1e-5)

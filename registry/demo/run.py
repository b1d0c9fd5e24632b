"""The main job end to end: train, evaluate, register, select, A/B test, load, recommend.

``cfreg demo`` and ``python tools/demo.py`` call :func:`run_demo` and print its
result with :func:`registry.cli.run.render_demo_result` (library code never
prints). The data, the training (the ``implicit`` library) and the metrics live
in :mod:`registry.demo.training`; this module only orchestrates the registry
workflow of the doc's "Integration with Training" section:

1. generate a deterministic implicit-feedback data set and write it under
   ``<workdir>/data/demo`` (its ``compute_data_version`` becomes each model's
   ``data_version``);
2. score the popularity baseline on the holdout;
3. train ALS and BPR (implicit) at several settings, evaluate each, save it in the doc's
   folder layout ``<workdir>/artifacts/cf/{type}/v{n}_{YYYYMMDD_HHMMSS}/`` with
   id maps, and register it with its metrics and ``baseline_comparison``;
4. ``select_best_model(metric="ndcg@10", min_improvement=0.05)``;
5. start an A/B test: the current best (control) against the best other
   model of this run (treatment), 10% traffic; a test left running by an
   earlier run is stopped first;
6. load the current best through ``get_loader()`` and recommend for a few users.

Running it again in the same workdir adds new versions next to the old ones.

Usage::

    result = run_demo(Path("demo-run"), quick=True)
    result.best_model_id, result.leaderboard      # what happened; `cfreg demo` prints it
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version as package_version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..timestamps import format_timestamp
from .config import (
    FULL_CONFIG,
    LEADERBOARD_METRICS,
    MIN_IMPROVEMENT,
    QUICK_CONFIG,
    SELECTION_METRIC,
    TOP_K,
    TRAFFIC_SPLIT,
    DemoConfig,
)
from .training import (
    ALSParams,
    BPRParams,
    InteractionData,
    baseline_comparison,
    evaluate,
    fit_model,
    generate_interactions,
    model_factors,
    popularity_factors,
    save_dataset,
)

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console
    from rich.progress import Progress

    from ..cf_registry import ModelRegistry

logger = logging.getLogger(__name__)

VERSION_FOLDER = re.compile(r"v(\d+)_\d{8}_\d{6}(?:_\d+)?")

__all__ = ["DemoResult", "TrainedModel", "run_demo"]


@dataclass
class TrainedModel:
    """One model of the run: its registry id, folder, settings and scores."""

    model_id: str
    model_type: str
    path: str
    hyperparameters: dict[str, Any]
    metrics: dict[str, float]
    baseline_comparison: dict[str, Any]
    training_time_seconds: float


@dataclass
class DemoResult:
    """What a demo run produced.

    Attributes:
        workdir: the run's base folder (artifact paths are relative to it).
        registry_path: ``<workdir>/artifacts/cf/registry.json``.
        database: the registry database URL (password hidden).
        data_files: the data set files whose hash is ``data_version``.
        data_version: ``compute_data_version(data_files)``.
        num_users, num_items, num_train_interactions, num_holdout_interactions: data size.
        baseline_metrics: the popularity baseline on the holdout.
        models: every model this run trained and registered, in training order.
        best_model_id: the current best after selection (may be from an earlier run).
        selection: what ``select_best_model`` returned (None: nothing passed the threshold).
        ab_test: the A/B test started by this run (the doc's ``ab_test`` dict), or None.
        served_model_id: the model ``get_loader()`` loaded and recommended with.
        leaderboard: this run's models and the baseline, best first.
        recommendations: external user id -> top-10 ``[{"item_id", "score", "held_out"}]``.
        routing: external user id -> the model id the A/B test routes that user to.
        elapsed_seconds: wall time of the run.
    """

    workdir: Path
    registry_path: Path
    database: str
    data_files: list[Path]
    data_version: str
    num_users: int
    num_items: int
    num_train_interactions: int
    num_holdout_interactions: int
    baseline_metrics: dict[str, float]
    models: list[TrainedModel]
    best_model_id: str | None
    selection: dict[str, Any] | None
    ab_test: dict[str, Any] | None
    served_model_id: str | None
    leaderboard: pd.DataFrame
    recommendations: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    routing: dict[str, str] = field(default_factory=dict)
    elapsed_seconds: float = 0.0

    @property
    def model_ids(self) -> list[str]:
        """Ids of the models this run registered."""
        return [model.model_id for model in self.models]

    @property
    def ab_test_id(self) -> str | None:
        """Id of the A/B test this run started, if any."""
        return self.ab_test["test_id"] if self.ab_test else None


def run_demo(
    workdir: str | os.PathLike[str],
    *,
    quick: bool = False,
    show_progress: bool = True,
    database_url: str | None = None,
    console: Console | None = None,
    config: DemoConfig | None = None,
) -> DemoResult:
    """Run the whole train -> register -> select -> A/B test -> serve workflow in ``workdir``.

    The process's working directory is not changed: the registry is opened with
    ``root=workdir``, so stored artifact paths are ``artifacts/cf/...`` relative to it.

    Args:
        workdir: base folder (created if missing); data, artifacts, registry and
            audit log go under it.
        quick: a much smaller data set and grid (a few seconds; for tests).
        show_progress: show a rich progress display.
        database_url: registry database (default: ``registry.db`` beside
            ``registry.json``, or ``$CFREG_DATABASE_URL``).
        console: rich console for the progress display.
        config: explicit data size and model grid (overrides ``quick``).

    Returns:
        A :class:`DemoResult`; the CLI prints it with :func:`registry.cli.run.render_demo_result`.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )
    from threadpoolctl import threadpool_limits

    from ..cf_registry import ModelRegistry
    from ..utils import compute_data_version

    started = time.perf_counter()
    config = config or (QUICK_CONFIG if quick else FULL_CONFIG)
    workdir = Path(workdir).expanduser().absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    registry_path = workdir / "artifacts" / "cf" / "registry.json"
    runs = [(params, "als") for params in config.als] + [(params, "bpr") for params in config.bpr]

    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, disable=not show_progress,
    )
    # One BLAS thread: at these sizes threading gains little, on a busy machine OpenBLAS
    # threads spin-wait (measured 3-20x slower with 2 cores shared), and implicit warns
    # when OpenBLAS runs its own threadpool.
    with progress, threadpool_limits(limits=1, user_api="blas"):
        overall = progress.add_task("demo", total=len(runs) + 4)
        progress.update(overall, description="generating data")
        data = generate_interactions(
            config.num_users, config.num_items, mean_interactions=config.mean_interactions, seed=config.seed
        )
        data_files = save_dataset(data, workdir / "data" / "demo")
        data_version = compute_data_version([str(path) for path in data_files])
        baseline = {name: round(value, 6) for name, value in evaluate(*popularity_factors(data.train), data.train, data.holdout).items()}
        logger.info("demo data: %d users x %d items, %d train / %d holdout interactions, data_version=%s",
                    data.num_users, data.num_items, data.num_train_interactions, data.num_holdout_interactions, data_version)
        progress.advance(overall)

        progress.update(overall, description="opening registry")
        registry = ModelRegistry(registry_path, database_url=database_url, root=workdir)
        git_commit = _code_commit(workdir)
        progress.advance(overall)

        models = []
        for params, model_type in runs:
            progress.update(overall, description=f"training {model_type} (factors={params.factors})")
            models.append(
                _train_and_register(registry, workdir, data, params, model_type, baseline, data_version, git_commit, progress)
            )
            progress.advance(overall)

        progress.update(overall, description="selecting best, starting A/B test")
        selection = registry.select_best_model(metric=SELECTION_METRIC, min_improvement=MIN_IMPROVEMENT)
        current = registry.get_current_best()
        best_model_id = current["model_id"] if current else None
        if selection is None:
            logger.warning("no model beats the popularity baseline by %.0f%% on %s; current best unchanged (%s)",
                           MIN_IMPROVEMENT * 100, SELECTION_METRIC, best_model_id)
        ab_test = _start_ab_test(registry, best_model_id, models)
        progress.advance(overall)

        progress.update(overall, description="loading best model, recommending")
        served_model_id: str | None = None
        recommendations: dict[str, list[dict[str, Any]]] = {}
        routing: dict[str, str] = {}
        if best_model_id is not None:
            served_model_id, recommendations = _recommend(registry_path, database_url, data, config.sample_users)
            routing = _routing(ab_test, list(recommendations))
        progress.advance(overall)
        progress.update(overall, description="done")

    return DemoResult(
        workdir=workdir,
        registry_path=registry_path,
        database=registry.database_url,
        data_files=data_files,
        data_version=data_version,
        num_users=data.num_users,
        num_items=data.num_items,
        num_train_interactions=data.num_train_interactions,
        num_holdout_interactions=data.num_holdout_interactions,
        baseline_metrics=baseline,
        models=models,
        best_model_id=best_model_id,
        selection=selection,
        ab_test=ab_test,
        served_model_id=served_model_id,
        leaderboard=_leaderboard(models, baseline, best_model_id, ab_test),
        recommendations=recommendations,
        routing=routing,
        elapsed_seconds=time.perf_counter() - started,
    )


# --------------------------------------------------------------------------- steps


def _code_commit(workdir: Path) -> str | None:
    """The commit of the code that trained the models: the workdir's repository, else this package's."""
    from ..utils.git import get_git_commit

    return get_git_commit(workdir) or get_git_commit(Path(__file__).resolve().parent)


def _train_and_register(
    registry: ModelRegistry,
    workdir: Path,
    data: InteractionData,
    params: ALSParams | BPRParams,
    model_type: str,
    baseline: dict[str, float],
    data_version: str,
    git_commit: str | None,
    progress: Progress,
) -> TrainedModel:
    task = progress.add_task(f"  {model_type} factors={params.factors}", total=params.iterations)

    def report(done: int, total: int) -> None:
        progress.update(task, completed=done)

    tick = time.perf_counter()
    user_factors, item_factors = model_factors(fit_model(data.train, params, progress=report))
    training_time = time.perf_counter() - tick
    metrics = {name: round(value, 6) for name, value in evaluate(user_factors, item_factors, data.train, data.holdout).items()}
    comparison = baseline_comparison(metrics, baseline)
    hyperparameters = params.as_dict()
    training_info: dict[str, Any] = {
        "training_time_seconds": round(training_time, 3),
        "num_users": data.num_users,
        "num_items": data.num_items,
        "num_train_interactions": data.num_train_interactions,
        "num_holdout_interactions": data.num_holdout_interactions,
        "data_seed": data.seed,
        "library": f"implicit {package_version('implicit')}",
    }
    folder = _save_artifacts(
        workdir / "artifacts" / "cf" / model_type, model_type, user_factors, item_factors, data,
        hyperparameters=hyperparameters,
        metadata={
            "num_users": data.num_users,
            "num_items": data.num_items,
            # the columns of U and V: BPR's are factors + 1, the last one its item bias (U's is ones)
            "factors": int(user_factors.shape[1]),
            "latent_factors": params.factors,
            "item_bias": isinstance(params, BPRParams),
            "model_type": model_type,
            "metrics": metrics,
            "baseline_comparison": comparison,
            "training_info": training_info,
            "data_version": data_version,
            "git_commit": git_commit,
            "score_range": _score_range(user_factors, item_factors),
        },
    )
    stored_path = folder.relative_to(workdir).as_posix()
    model_id = registry.register_model(
        artifacts_path=stored_path,
        model_type=model_type,
        hyperparameters=hyperparameters,
        metrics=metrics,
        training_info=training_info,
        data_version=data_version,
        git_commit=git_commit,
        baseline_comparison=comparison,
        version=folder.name,
    )
    progress.remove_task(task)
    logger.info("registered %s: %s=%.4f (popularity %.4f)", model_id, SELECTION_METRIC,
                metrics[SELECTION_METRIC], baseline[SELECTION_METRIC])
    return TrainedModel(model_id, model_type, stored_path, hyperparameters, metrics, comparison, training_info["training_time_seconds"])


def _score_range(user_factors: np.ndarray, item_factors: np.ndarray) -> list[float]:
    scores = user_factors @ item_factors.T
    return [round(float(scores.min()), 6), round(float(scores.max()), 6)]


def _save_artifacts(
    type_folder: Path,
    model_type: str,
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    data: InteractionData,
    *,
    hyperparameters: dict[str, Any],
    metadata: dict[str, Any],
) -> Path:
    """Write the model folder (with id maps and training interactions) as a new ``v{n}_{YYYYMMDD_HHMMSS}``; returns it.

    :func:`registry.write_model_folder` writes a hidden staging folder that is then
    renamed into place, so a crash never leaves a half-written version folder behind.
    """
    from ..model_folder import write_model_folder

    type_folder.mkdir(parents=True, exist_ok=True)
    staging = type_folder / f".staging-{os.getpid()}-{time.monotonic_ns()}"
    user_rows, item_rows = np.nonzero(data.train)
    try:
        write_model_folder(
            staging, model_type,
            np.ascontiguousarray(user_factors, dtype=np.float32), np.ascontiguousarray(item_factors, dtype=np.float32),
            params=hyperparameters,
            metadata={**metadata, "created_at": format_timestamp(datetime.now(UTC))},
            user_ids=data.user_ids, item_ids=data.item_ids,
            interactions=(user_rows, item_rows),  # the service leaves each user's training items out
        )
        return _publish_version_folder(staging, type_folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _publish_version_folder(staging: Path, type_folder: Path) -> Path:
    """Rename ``staging`` to the next free ``v{n}_{timestamp}`` name (n = 1 + the highest n there)."""
    taken = [int(match.group(1)) for path in type_folder.iterdir() if (match := VERSION_FOLDER.fullmatch(path.name))]
    number = max(taken, default=0) + 1
    stamp = datetime.now(UTC).strftime("%Y%m%d_%H%M%S")
    while True:
        target = type_folder / f"v{number}_{stamp}"
        try:
            # os.rename onto an existing non-empty directory fails, so two runs never share a folder
            staging.rename(target)
            return target
        except OSError:
            if not target.exists():
                raise
            number += 1


def _start_ab_test(registry: ModelRegistry, control: str | None, models: list[TrainedModel]) -> dict[str, Any] | None:
    """Canary: the current best (control) against the best other model of this run (treatment)."""
    if control is None:
        logger.warning("no current best model: A/B test not started")
        return None
    challengers = sorted(
        (m for m in models if m.model_id != control), key=lambda m: m.metrics[SELECTION_METRIC], reverse=True
    )
    if not challengers:
        logger.warning("no second model to test against %s: A/B test not started", control)
        return None
    running = registry.get_ab_test()
    if running is not None:
        logger.info("stopping A/B test %s left running by an earlier run", running["test_id"])
        registry.stop_ab_test(running["test_id"])
    return registry.start_ab_test(control, challengers[0].model_id, traffic_split=TRAFFIC_SPLIT)


def _recommend(
    registry_path: Path, database_url: str | None, data: InteractionData, sample_users: int
) -> tuple[str, dict[str, list[dict[str, Any]]]]:
    """Load the current best through ``get_loader()`` and recommend for the first users with held-out items.

    Items a user already interacted with in training are left out by the loaded model
    itself: the demo's folders carry their training interactions.
    """
    from ..serving.loader import get_loader

    loader = get_loader(registry_path, database_url=database_url)
    loader.reload_model()  # a loader shared in this process may predate this run's selection
    loader.load_current_best()
    state = loader.get_current_model()
    assert state is not None  # load_current_best raised otherwise
    users = np.flatnonzero(data.holdout.any(axis=1))[:sample_users]
    recommendations = {}
    for row in users.tolist():
        user_id = data.user_ids[row]
        item_ids, scores = state.recommend_for_user(user_id, k=TOP_K)
        held_out = {data.item_ids[i] for i in np.flatnonzero(data.holdout[row])}
        recommendations[user_id] = [
            {"item_id": item_id, "score": float(score), "held_out": item_id in held_out}
            for item_id, score in zip(item_ids, scores.tolist())
        ]
    return state.model_id, recommendations


def _routing(ab_test: dict[str, Any] | None, user_ids: list[str]) -> dict[str, str]:
    if ab_test is None:
        return {}
    from ..abtest import get_model_for_user

    return {user_id: get_model_for_user(user_id, ab_test) for user_id in user_ids}


def _leaderboard(
    models: list[TrainedModel], baseline: dict[str, float], best_model_id: str | None, ab_test: dict[str, Any] | None
) -> pd.DataFrame:
    import pandas as pd

    arms = {ab_test["control_model"]: "control", ab_test["treatment_model"]: "treatment"} if ab_test else {}
    rows: list[dict[str, Any]] = [
        {
            "model_id": model.model_id,
            "model_type": model.model_type,
            "factors": model.hyperparameters.get("factors"),
            **{name: model.metrics.get(name, math.nan) for name in LEADERBOARD_METRICS},
            f"improvement_{SELECTION_METRIC}": model.baseline_comparison.get(f"improvement_{SELECTION_METRIC}", math.nan),
            "training_time": model.training_time_seconds,
            "current_best": model.model_id == best_model_id,
            "ab_arm": arms.get(model.model_id, ""),
        }
        for model in models
    ]
    rows.append(
        {
            "model_id": "popularity baseline",
            "model_type": "popularity",
            "factors": None,
            **{name: baseline.get(name, math.nan) for name in LEADERBOARD_METRICS},
            f"improvement_{SELECTION_METRIC}": 0.0,
            "training_time": math.nan,
            "current_best": False,
            "ab_arm": "",
        }
    )
    frame = pd.DataFrame(rows)
    return frame.sort_values(SELECTION_METRIC, ascending=False, kind="stable").reset_index(drop=True)

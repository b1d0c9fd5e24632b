"""What the demo (``cfreg demo``) trains and measures: synthetic data, implicit ALS/BPR, ranking metrics.

The models come from the ``implicit`` library (the ``demo`` extra), CPU build, one
thread, seeded, so a run is deterministic. The data generator and the holdout
evaluation are plain numpy.

Usage::

    data = generate_interactions(num_users=3000, num_items=1500, seed=42)
    U, V = train_als(data.train, ALSParams(factors=32))
    metrics = evaluate(U, V, data.train, data.holdout)
    baseline = evaluate(*popularity_factors(data.train), data.train, data.holdout)

The interaction matrices are dense ``(num_users, num_items)`` arrays: at a few
thousand users and items that is a few megabytes and lets the evaluation run as
BLAS matrix products instead of Python loops (implicit gets a CSR copy).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from ..errors import RegistryError
from ..fsio import atomic_write_text

METRIC_KS = (10, 20)
COVERAGE_K = 10
# Progress callbacks receive (steps done, steps total).
ProgressCallback = Callable[[int, int], None]

__all__ = [
    "ALSParams",
    "BPRParams",
    "InteractionData",
    "baseline_comparison",
    "evaluate",
    "fit_model",
    "generate_interactions",
    "model_factors",
    "popularity_factors",
    "save_dataset",
    "train_als",
    "train_bpr",
]


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class InteractionData:
    """An implicit-feedback data set split into train and holdout.

    Attributes:
        user_ids: external user ids; row ``u`` of every matrix is ``user_ids[u]``.
        item_ids: external item ids; column ``i`` is ``item_ids[i]``.
        train: ``(num_users, num_items)`` float32 interaction counts (0 = none).
        holdout: ``(num_users, num_items)`` bool, the held-out interactions.
        seed: the seed the data was generated with.
    """

    user_ids: list[str]
    item_ids: list[str]
    train: np.ndarray
    holdout: np.ndarray
    seed: int

    @property
    def num_users(self) -> int:
        """Number of users (rows)."""
        return int(self.train.shape[0])

    @property
    def num_items(self) -> int:
        """Number of items (columns)."""
        return int(self.train.shape[1])

    @property
    def num_train_interactions(self) -> int:
        """Distinct (user, item) pairs in the training split."""
        return int(np.count_nonzero(self.train))

    @property
    def num_holdout_interactions(self) -> int:
        """Distinct (user, item) pairs held out for evaluation."""
        return int(np.count_nonzero(self.holdout))


def generate_interactions(
    num_users: int = 3000,
    num_items: int = 1500,
    *,
    rank: int = 8,
    mean_interactions: float = 30.0,
    min_interactions: int = 8,
    taste_strength: float = 2.5,
    popularity_exponent: float = 0.8,
    holdout_fraction: float = 0.2,
    seed: int = 42,
) -> InteractionData:
    """Sample a deterministic implicit-feedback data set with real latent structure.

    Users and items get ``rank``-dimensional taste vectors; a user picks items
    without replacement with probability proportional to
    ``exp(taste_strength * <user, item> / sqrt(rank) + log popularity)``, where item
    popularity follows a Zipf law with ``popularity_exponent``. So both a
    low-rank model and a popularity ranking carry signal, and a good
    factorisation should beat popularity. Each pick gets a count of
    ``1 + Poisson(1)`` (repeat consumption). A random ``holdout_fraction`` of each
    user's items (at least one) is held out.

    Args:
        num_users: rows; external ids ``u0001``...
        num_items: columns; external ids ``i0001``...
        rank: dimension of the true taste space.
        mean_interactions: mean number of distinct items per user (log-normal).
        min_interactions: fewest items per user.
        taste_strength: weight of the taste term against popularity.
        popularity_exponent: Zipf exponent of item popularity.
        holdout_fraction: share of each user's items held out.
        seed: everything is a function of this seed.

    Returns:
        The split data set.

    Raises:
        ValueError: sizes too small for top-20 evaluation, or fractions out of range.
    """
    if num_users < 2 or num_items < 4 * max(METRIC_KS):
        raise ValueError(f"need at least 2 users and {4 * max(METRIC_KS)} items, got {num_users} x {num_items}")
    if not 0 < holdout_fraction < 1:
        raise ValueError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
    if min_interactions < 2:
        raise ValueError(f"min_interactions must be >= 2 (one to train, one to hold out), got {min_interactions}")
    rng = np.random.default_rng(seed)
    user_taste = rng.standard_normal((num_users, rank))
    item_taste = rng.standard_normal((num_items, rank))
    log_popularity = -popularity_exponent * np.log(rng.permutation(num_items) + 1.0)
    affinity = taste_strength * (user_taste @ item_taste.T) / math.sqrt(rank) + log_popularity

    max_per_user = num_items // 2
    counts = np.clip(
        np.rint(rng.lognormal(math.log(mean_interactions), 0.5, num_users)), min_interactions, max_per_user
    ).astype(np.int64)
    # Gumbel-top-k: the k largest of (logit + Gumbel noise) are a sample without
    # replacement proportional to exp(logit).
    keys = affinity + rng.gumbel(size=affinity.shape)
    width = int(counts.max())
    chosen = np.argpartition(-keys, width - 1, axis=1)[:, :width]
    chosen = np.take_along_axis(chosen, np.argsort(-np.take_along_axis(keys, chosen, axis=1), axis=1), axis=1)
    picked = np.arange(width)[None, :] < counts[:, None]

    # Hold out a random subset of each user's picks.
    order = np.where(picked, rng.random(chosen.shape), np.inf).argsort(axis=1).argsort(axis=1)
    n_holdout = np.maximum(1, np.floor(holdout_fraction * counts)).astype(np.int64)
    is_holdout = picked & (order < n_holdout[:, None])

    rows = np.broadcast_to(np.arange(num_users)[:, None], chosen.shape)
    train = np.zeros((num_users, num_items), dtype=np.float32)
    holdout = np.zeros((num_users, num_items), dtype=bool)
    repeats = 1 + rng.poisson(1.0, size=chosen.shape)
    train_cells = picked & ~is_holdout
    train[rows[train_cells], chosen[train_cells]] = repeats[train_cells]
    holdout[rows[is_holdout], chosen[is_holdout]] = True
    return InteractionData(
        user_ids=_external_ids("u", num_users),
        item_ids=_external_ids("i", num_items),
        train=train,
        holdout=holdout,
        seed=seed,
    )


def _external_ids(prefix: str, count: int) -> list[str]:
    width = max(4, len(str(count)))
    return [f"{prefix}{index + 1:0{width}d}" for index in range(count)]


def save_dataset(data: InteractionData, folder: Path) -> list[Path]:
    """Write the data set as ``interactions.csv`` and ``user_item_mappings.json``.

    The CSV has one row per (user, item) pair: ``user_id,item_id,count,split``
    (``split`` is ``train`` or ``holdout``). The output is byte-for-byte a function
    of the data, so the same data gives the same ``compute_data_version``.
    Files are only rewritten when their content changed.

    Returns:
        The two file paths (interactions first).
    """
    folder.mkdir(parents=True, exist_ok=True)
    users = np.asarray(data.user_ids)
    items = np.asarray(data.item_ids)
    train_u, train_i = np.nonzero(data.train)
    hold_u, hold_i = np.nonzero(data.holdout)
    lines = ["user_id,item_id,count,split"]
    lines.extend(
        f"{u},{i},{c},train"
        for u, i, c in zip(users[train_u], items[train_i], data.train[train_u, train_i].astype(np.int64).tolist())
    )
    lines.extend(f"{u},{i},1,holdout" for u, i in zip(users[hold_u], items[hold_i]))
    interactions = folder / "interactions.csv"
    mappings = folder / "user_item_mappings.json"
    _write_if_changed(interactions, "\n".join(lines) + "\n")
    mapping_doc = {
        "seed": data.seed,
        "num_users": data.num_users,
        "num_items": data.num_items,
        "user_ids": data.user_ids,
        "item_ids": data.item_ids,
    }
    _write_if_changed(mappings, json.dumps(mapping_doc, separators=(",", ":")) + "\n")
    return [interactions, mappings]


def _write_if_changed(path: Path, text: str) -> None:
    data = text.encode("utf-8")
    if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return
    atomic_write_text(path, text)


# --------------------------------------------------------------------------- training


@dataclass(frozen=True)
class ALSParams:
    """Hyperparameters of ``implicit``'s ALS (Hu, Koren & Volinsky 2008), by its own names.

    Attributes:
        factors: embedding size (U and V have this many columns).
        regularization: L2 weight on both factor matrices.
        alpha: confidence scale: implicit weights a training pair by ``alpha * count``.
        iterations: alternating sweeps (users, then items; conjugate-gradient solver).
        seed: ``random_state`` of the initialisation.
    """

    factors: int = 32
    regularization: float = 0.05
    alpha: float = 5.0
    iterations: int = 8
    seed: int = 0
    algorithm: str = field(default="als", init=False)

    def as_dict(self) -> dict[str, Any]:
        """The hyperparameters as JSON-ready data (for ``als_params.json``)."""
        return asdict(self)


@dataclass(frozen=True)
class BPRParams:
    """Hyperparameters of ``implicit``'s BPR-MF (Rendle et al. 2009), by its own names.

    implicit appends an item-bias column: U and V have ``factors + 1`` columns, U's last one
    all ones and V's last one the item bias, so ``U @ V.T`` is BPR's score, bias included.

    Attributes:
        factors: latent factors (U and V have ``factors + 1`` columns).
        learning_rate: SGD step.
        regularization: L2 weight on the factors a sample touches.
        iterations: passes (epochs) over the training pairs.
        seed: ``random_state`` of the initialisation and the negative sampling.
    """

    factors: int = 32
    learning_rate: float = 0.01
    regularization: float = 0.01
    iterations: int = 100
    seed: int = 0
    algorithm: str = field(default="bpr", init=False)

    def as_dict(self) -> dict[str, Any]:
        """The hyperparameters as JSON-ready data (for ``bpr_params.json``)."""
        return asdict(self)


def fit_model(train: np.ndarray, params: ALSParams | BPRParams, *, progress: ProgressCallback | None = None) -> Any:
    """Train an ``implicit`` CPU model (ALS or BPR, by the type of ``params``) on the counts ``train``.

    One thread, so a seed gives the same factors every run (implicit's multi-threaded BPR is
    not deterministic); no progress bar; BLAS limited to one thread while implicit runs
    (``threadpool_limits(1, "blas")``, as implicit recommends: it warns otherwise).

    Args:
        train: ``(num_users, num_items)`` non-negative counts; BPR reads any count as a positive.
        params: hyperparameters.
        progress: called with ``(iterations done, iterations)`` after each iteration.

    Returns:
        The fitted ``implicit.cpu.als.AlternatingLeastSquares`` or
        ``implicit.cpu.bpr.BayesianPersonalizedRanking``; :func:`model_factors` gives its ``(U, V)``.

    Raises:
        RegistryError: implicit (the ``demo`` extra) is not installed.
        ValueError: factors or iterations below 1.
    """
    if params.factors < 1 or params.iterations < 1:
        raise ValueError(f"factors and iterations must be >= 1, got {params}")
    try:
        import scipy.sparse
        from implicit.cpu.als import AlternatingLeastSquares
        from implicit.cpu.bpr import BayesianPersonalizedRanking
    except ImportError as exc:
        raise RegistryError(f"the demo trains with implicit: pip install 'cf-model-registry[demo]' ({exc})") from exc

    def report(iteration: int, *_: Any) -> None:  # implicit passes a 0-based iteration, then timings
        if progress is not None:
            progress(iteration + 1, params.iterations)

    model: Any
    # after the imports: a limit covers only the BLAS libraries already loaded (scipy may bring its own)
    with threadpool_limits(limits=1, user_api="blas"):
        if isinstance(params, ALSParams):
            model = AlternatingLeastSquares(factors=params.factors, regularization=params.regularization,
                                            alpha=params.alpha, iterations=params.iterations,
                                            random_state=params.seed, num_threads=1)
        else:
            model = BayesianPersonalizedRanking(factors=params.factors, learning_rate=params.learning_rate,
                                                regularization=params.regularization, iterations=params.iterations,
                                                random_state=params.seed, num_threads=1)
        model.fit(scipy.sparse.csr_matrix(train, dtype=np.float32), show_progress=False, callback=report)
    return model


def model_factors(model: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(U, V)`` of a fitted implicit model as C-contiguous float32 arrays; ``U @ V.T`` is its score.

    For BPR both have ``factors + 1`` columns (U's last column ones, V's the item bias).
    """
    return (np.ascontiguousarray(model.user_factors, dtype=np.float32),
            np.ascontiguousarray(model.item_factors, dtype=np.float32))


def train_als(train: np.ndarray, params: ALSParams, *, progress: ProgressCallback | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fit ALS with implicit; returns ``(U, V)``, shapes ``(users, factors)`` and ``(items, factors)``."""
    return model_factors(fit_model(train, params, progress=progress))


def train_bpr(train: np.ndarray, params: BPRParams, *, progress: ProgressCallback | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fit BPR with implicit; returns ``(U, V)``, shapes ``(users, factors + 1)`` and ``(items, factors + 1)``."""
    return model_factors(fit_model(train, params, progress=progress))


# --------------------------------------------------------------------------- evaluation


def popularity_factors(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The popularity baseline as a rank-1 factorisation: every user scores items by train count.

    Returns:
        ``(U, V)``: ``U`` all ones ``(num_users, 1)``, ``V`` the number of training
        users of each item ``(num_items, 1)``; ``U @ V.T`` is the popularity ranking.
    """
    popularity = np.count_nonzero(train, axis=0).astype(np.float32)
    return np.ones((train.shape[0], 1), dtype=np.float32), popularity[:, None]


def evaluate(
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    train: np.ndarray,
    holdout: np.ndarray,
    *,
    ks: Sequence[int] = METRIC_KS,
    coverage_k: int = COVERAGE_K,
    batch_size: int = 1024,
) -> dict[str, float]:
    """Top-k ranking quality on the holdout, training items excluded.

    Scores are ``U @ V.T`` computed in user batches. Only users with at least
    one held-out item are evaluated. For each k: ``recall@k`` = held-out items
    in the top k / number held out; ``ndcg@k`` with binary gains, normalised by
    the ideal DCG of ``min(k, held out)`` hits. ``coverage`` is the share of the
    catalogue that appears in at least one user's top ``coverage_k``.

    Returns:
        ``{"recall@10", "recall@20", "ndcg@10", "ndcg@20", "coverage"}`` (for the
        default ks), each a float in [0, 1], averaged over evaluated users.
    """
    num_users, num_items = train.shape
    depth = max(max(ks), coverage_k)
    if depth >= num_items:
        raise ValueError(f"top-{depth} evaluation needs more than {depth} items, got {num_items}")
    held_out = holdout.sum(axis=1)
    users = np.flatnonzero(held_out)
    if users.size == 0:
        raise ValueError("the holdout set is empty: nothing to evaluate")
    discounts = 1.0 / np.log2(np.arange(2, depth + 2))
    ideal = np.cumsum(discounts)
    totals = {f"{name}@{k}": 0.0 for k in ks for name in ("recall", "ndcg")}
    covered = np.zeros(num_items, dtype=bool)
    for start in range(0, users.size, batch_size):
        batch = users[start:start + batch_size]
        scores = user_factors[batch] @ item_factors.T
        scores[train[batch] > 0] = -np.inf
        top = np.argpartition(-scores, depth - 1, axis=1)[:, :depth]
        # stable sort on (score desc): ties keep argpartition's order, deterministic per run
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable"), axis=1)
        hits = holdout[batch[:, None], top]
        count = held_out[batch]
        for k in ks:
            found = hits[:, :k]
            totals[f"recall@{k}"] += float((found.sum(axis=1) / count).sum())
            dcg = (found * discounts[:k]).sum(axis=1)
            totals[f"ndcg@{k}"] += float((dcg / ideal[np.minimum(count, k) - 1]).sum())
        covered[top[:, :coverage_k].ravel()] = True
    metrics = {name: total / users.size for name, total in sorted(totals.items())}
    metrics["coverage"] = float(covered.mean())
    return metrics


def baseline_comparison(metrics: dict[str, float], baseline: dict[str, float], baseline_type: str = "popularity") -> dict[str, Any]:
    """The ``baseline_comparison`` block the registry stores for a model.

    Returns:
        ``{"baseline_type": ..., "baseline_<metric>": value, "improvement_<metric>": fraction}``
        for every metric both dicts have; an improvement is
        ``(model - baseline) / baseline`` (omitted when the baseline is 0).
    """
    comparison: dict[str, Any] = {"baseline_type": baseline_type}
    for name in sorted(set(metrics) & set(baseline)):
        comparison[f"baseline_{name}"] = round(float(baseline[name]), 6)
        if baseline[name] > 0:
            comparison[f"improvement_{name}"] = round((float(metrics[name]) - float(baseline[name])) / float(baseline[name]), 6)
    return comparison

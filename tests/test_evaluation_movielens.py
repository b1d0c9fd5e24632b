"""Real data: two MovieLens-100k models trained with ``implicit``, compared per user.

Slow: the data set comes from the ``recbole`` wheel on the package index (tests/movielens.py)
and training takes a few seconds.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from scipy import sparse
from scipy import stats as scipy_stats

from registry import ModelRegistry, write_user_eval

pytestmark = pytest.mark.slow


def ndcg_at_10(user_factors: np.ndarray, item_factors: np.ndarray, train: sparse.csr_matrix,
               test: sparse.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Per-user NDCG@10 (binary gains, training items excluded) for users with test items."""
    users = np.flatnonzero(np.diff(test.indptr))
    scores = user_factors[users] @ item_factors.T
    scores[train[users].toarray() > 0] = -np.inf
    top = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    relevant = test[users].toarray() > 0
    hits = np.take_along_axis(relevant, top, axis=1)
    discounts = 1.0 / np.log2(np.arange(2, 12))
    ideal = np.cumsum(discounts)[np.minimum(relevant.sum(axis=1), 10) - 1]
    return users, (hits * discounts).sum(axis=1) / ideal


def test_movielens_als_vs_bpr_interval_agrees_with_scipy(tmp_path: Path) -> None:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    from movielens import load_ratings, train_test_split

    train_frame, test_frame = train_test_split(load_ratings(), seed=0)
    users = {u: i for i, u in enumerate(sorted(set(train_frame.user_id) | set(test_frame.user_id)))}
    items = {m: i for i, m in enumerate(sorted(set(train_frame.item_id) | set(test_frame.item_id)))}

    def matrix(frame):  # type: ignore[no-untyped-def]
        rows, cols = frame.user_id.map(users).to_numpy(), frame.item_id.map(items).to_numpy()
        return sparse.csr_matrix((np.ones(len(frame), dtype=np.float32), (rows, cols)), shape=(len(users), len(items)))

    train, test = matrix(train_frame), matrix(test_frame)
    user_names = np.array(sorted(users, key=users.get))
    registry = ModelRegistry(tmp_path / "artifacts" / "cf" / "registry.json", root=tmp_path)
    ids = {}
    for model_type, model in (
        ("als", AlternatingLeastSquares(factors=32, iterations=10, regularization=0.05, num_threads=1, random_state=0)),
        ("bpr", BayesianPersonalizedRanking(factors=32, iterations=60, num_threads=1, random_state=0)),
    ):
        model.fit(train, show_progress=False)
        U, V = np.asarray(model.user_factors), np.asarray(model.item_factors)
        evaluated, ndcg = ndcg_at_10(U, V, train, test)
        folder = tmp_path / "artifacts" / "cf" / model_type
        folder.mkdir(parents=True)
        np.save(folder / f"{model_type}_U.npy", U.astype(np.float32))
        np.save(folder / f"{model_type}_V.npy", V.astype(np.float32))
        (folder / f"{model_type}_params.json").write_text("{}")
        (folder / f"{model_type}_metadata.json").write_text("{}")
        write_user_eval(folder, model_type, user_names[evaluated], {"ndcg@10": ndcg})
        ids[model_type] = registry.register_model(folder, model_type, {}, {"ndcg@10": float(ndcg.mean())}, {}, version="ml100k")
        assert len(evaluated) > 900

    t_test = registry.compare_metrics(ids["bpr"], ids["als"], "ndcg@10", method="paired_t_test")
    # scipy on the same arrays, paired by user id
    from registry import read_user_eval

    a = read_user_eval(tmp_path / "artifacts/cf/bpr/bpr_user_eval.npz")
    b = read_user_eval(tmp_path / "artifacts/cf/als/als_user_eval.npz")
    common, ia, ib = np.intersect1d(a.user_ids.astype(str), b.user_ids.astype(str), return_indices=True)
    expected = scipy_stats.ttest_rel(b.metrics["ndcg@10"][ib], a.metrics["ndcg@10"][ia])
    interval = expected.confidence_interval(0.95)
    assert t_test["n_users"] == common.size
    assert t_test["p_value"] == pytest.approx(expected.pvalue, rel=1e-6, abs=1e-300)
    assert (t_test["ci_low"], t_test["ci_high"]) == pytest.approx((interval.low, interval.high), rel=1e-9)
    boot = registry.compare_metrics(ids["bpr"], ids["als"], "ndcg@10")
    width = interval.high - interval.low
    assert abs(boot["ci_low"] - interval.low) < 0.1 * width and abs(boot["ci_high"] - interval.high) < 0.1 * width
    print(f"\nMovieLens-100k ALS vs BPR ndcg@10: {t_test['mean_b']:.4f} vs {t_test['mean_a']:.4f}, "
          f"difference {t_test['difference']:+.4f} [{t_test['ci_low']:+.4f}, {t_test['ci_high']:+.4f}] "
          f"p={t_test['p_value']:.3g} (t-test), bootstrap [{boot['ci_low']:+.4f}, {boot['ci_high']:+.4f}] "
          f"p={boot['p_value']:.3g}, {t_test['n_users']} users")

"""The demo's training module: data generation, implicit ALS/BPR, the ranking metrics."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from registry.demo.training import (
    ALSParams,
    BPRParams,
    baseline_comparison,
    evaluate,
    fit_model,
    generate_interactions,
    model_factors,
    popularity_factors,
    save_dataset,
    train_als,
    train_bpr,
)


@pytest.fixture(scope="module")
def data():
    return generate_interactions(400, 200, mean_interactions=20, seed=7)


@pytest.fixture(scope="module")
def popularity(data):
    return evaluate(*popularity_factors(data.train), data.train, data.holdout)


# --------------------------------------------------------------------------- data


def test_generated_data_is_deterministic_per_seed(data):
    again = generate_interactions(400, 200, mean_interactions=20, seed=7)
    other = generate_interactions(400, 200, mean_interactions=20, seed=8)

    assert np.array_equal(again.train, data.train)
    assert np.array_equal(again.holdout, data.holdout)
    assert not np.array_equal(other.train, data.train)


def test_split_is_disjoint_and_every_user_has_train_and_holdout_items(data):
    assert data.train.shape == data.holdout.shape == (400, 200)
    assert not np.any((data.train > 0) & data.holdout)
    assert np.all((data.train > 0).sum(axis=1) >= 1)
    assert np.all(data.holdout.sum(axis=1) >= 1)
    share = data.num_holdout_interactions / (data.num_holdout_interactions + data.num_train_interactions)
    assert 0.15 < share < 0.3
    assert set(np.unique(data.train)) - {0.0} <= set(range(1, 50))


def test_external_ids_are_unique_and_ordered(data):
    assert data.user_ids[:2] == ["u0001", "u0002"]
    assert data.item_ids[-1] == "i0200"
    assert len(set(data.user_ids)) == data.num_users
    assert len(set(data.item_ids)) == data.num_items


def test_popularity_is_skewed(data):
    counts = np.sort(np.count_nonzero(data.train, axis=0))[::-1]
    top_decile = counts[: len(counts) // 10].sum() / counts.sum()
    assert top_decile > 0.2  # uniform would give 0.1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_items": 50}, "at least 2 users and 80 items"),
        ({"holdout_fraction": 1.0}, "holdout_fraction"),
        ({"min_interactions": 1}, "min_interactions"),
    ],
)
def test_generate_rejects_unusable_settings(kwargs, message):
    settings = {"num_users": 10, "num_items": 100, **kwargs}
    with pytest.raises(ValueError, match=message):
        generate_interactions(**settings)


def test_save_dataset_is_byte_stable_and_complete(data, tmp_path):
    first = save_dataset(data, tmp_path / "a")
    second = save_dataset(generate_interactions(400, 200, mean_interactions=20, seed=7), tmp_path / "b")

    assert [p.name for p in first] == ["interactions.csv", "user_item_mappings.json"]
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    with first[0].open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == data.num_train_interactions + data.num_holdout_interactions
    assert {r["split"] for r in rows} == {"train", "holdout"}
    mapping = json.loads(first[1].read_text())
    assert mapping["user_ids"] == data.user_ids and mapping["item_ids"] == data.item_ids


def test_save_dataset_leaves_unchanged_files_alone(data, tmp_path):
    files = save_dataset(data, tmp_path)
    before = [p.stat().st_mtime_ns for p in files]
    save_dataset(data, tmp_path)
    assert [p.stat().st_mtime_ns for p in files] == before


# --------------------------------------------------------------------------- metrics


def _ranking_case():
    """Two users, 30 items; item scores fall with the index (item 0 is ranked first)."""
    num_items = 30
    user_factors = np.ones((2, 1), dtype=np.float32)
    item_factors = np.arange(num_items, 0, -1, dtype=np.float32)[:, None]
    train = np.zeros((2, num_items), dtype=np.float32)
    holdout = np.zeros((2, num_items), dtype=bool)
    return user_factors, item_factors, train, holdout


def test_metrics_match_hand_computed_values():
    user_factors, item_factors, train, holdout = _ranking_case()
    train[0, 0] = 1  # excluded, so user 0's ranking starts at item 1
    holdout[0, [1, 12]] = True  # ranks 1 and 12
    holdout[1, [3]] = True  # rank 4
    metrics = evaluate(user_factors, item_factors, train, holdout)

    discount = [1 / math.log2(r + 1) for r in range(1, 21)]
    ideal_two = discount[0] + discount[1]
    assert metrics["recall@10"] == pytest.approx(((1 / 2) + 1) / 2)
    assert metrics["recall@20"] == pytest.approx((1 + 1) / 2)
    assert metrics["ndcg@10"] == pytest.approx((discount[0] / ideal_two + discount[3] / discount[0]) / 2)
    assert metrics["ndcg@20"] == pytest.approx(((discount[0] + discount[11]) / ideal_two + discount[3]) / 2)
    # user 0's top 10 is items 1..10, user 1's is items 0..9
    assert metrics["coverage"] == pytest.approx(11 / 30)


def test_users_without_holdout_items_are_not_averaged_in():
    user_factors, item_factors, train, holdout = _ranking_case()
    holdout[0, 0] = True
    assert evaluate(user_factors, item_factors, train, holdout)["recall@10"] == pytest.approx(1.0)


def test_training_items_are_never_recommended():
    user_factors, item_factors, train, holdout = _ranking_case()
    train[:, :10] = 1  # the ten best-scored items are already known
    holdout[:, 10] = True
    metrics = evaluate(user_factors, item_factors, train, holdout)
    assert metrics["recall@10"] == 1.0 and metrics["ndcg@10"] == pytest.approx(1.0)


def test_evaluate_refuses_an_empty_holdout():
    user_factors, item_factors, train, holdout = _ranking_case()
    with pytest.raises(ValueError, match="holdout set is empty"):
        evaluate(user_factors, item_factors, train, holdout)


def test_baseline_comparison_has_fractions_the_registry_reads():
    comparison = baseline_comparison({"ndcg@10": 0.3, "coverage": 0.5}, {"ndcg@10": 0.2, "coverage": 0.0, "x": 1.0})
    assert comparison == {
        "baseline_type": "popularity",
        "baseline_coverage": 0.0,
        "baseline_ndcg@10": 0.2,
        "improvement_ndcg@10": 0.5,
    }


# --------------------------------------------------------------------------- training (implicit)

QUICK_ALS = ALSParams(factors=8, regularization=0.05, alpha=5, iterations=5, seed=3)
QUICK_BPR = BPRParams(factors=16, learning_rate=0.01, regularization=0.01, iterations=100, seed=3)


def _in_unit_interval(metrics):
    return all(0.0 <= value <= 1.0 for value in metrics.values())


@pytest.mark.parametrize(
    ("train_fn", "params", "columns"),
    [(train_als, QUICK_ALS, 8), (train_bpr, QUICK_BPR, 17)],
    ids=["als", "bpr"],
)
def test_training_beats_popularity_by_a_wide_margin(data, popularity, train_fn, params, columns):
    user_factors, item_factors = train_fn(data.train, params)
    metrics = evaluate(user_factors, item_factors, data.train, data.holdout)

    # BPR: implicit's factors + 1 columns, the last one the item bias (ones in U)
    assert user_factors.shape == (400, columns) and item_factors.shape == (200, columns)
    assert user_factors.dtype == item_factors.dtype == np.float32
    assert user_factors.flags.c_contiguous and item_factors.flags.c_contiguous
    assert _in_unit_interval(metrics) and _in_unit_interval(popularity)
    assert metrics["ndcg@10"] > 1.5 * popularity["ndcg@10"]
    assert metrics["recall@20"] > 1.5 * popularity["recall@20"]
    assert metrics["coverage"] > 2 * popularity["coverage"]


def test_bpr_factors_end_in_the_item_bias_and_score_like_implicit(data):
    model = fit_model(data.train, QUICK_BPR)
    U, V = model_factors(model)
    assert np.array_equal(U[:, -1], np.ones(400, dtype=np.float32))
    assert np.abs(V[:, -1]).max() > 0  # a learnt bias, not a padding column
    # U @ V.T is the score implicit ranks by (bias included): its top items for a user, nothing filtered
    for user in (0, 7, 123):
        ids, scores = model.recommend(user, None, N=10, filter_already_liked_items=False)
        expected = np.argsort(-(V @ U[user]), kind="stable")[:10]
        assert list(ids) == list(expected)
        assert np.allclose(scores, (V @ U[user])[expected], rtol=1e-5)
    # without the bias column the ranking changes for some users: the column matters
    without = [np.argsort(-(V[:, :-1] @ U[u, :-1]))[:10].tolist() for u in range(50)]
    assert without != [np.argsort(-(V @ U[u]))[:10].tolist() for u in range(50)]


@pytest.mark.parametrize(
    ("train_fn", "params", "other"),
    [
        (train_als, ALSParams(factors=8, iterations=3, seed=1), ALSParams(factors=8, iterations=3, seed=2)),
        (train_bpr, BPRParams(factors=8, iterations=10, seed=1), BPRParams(factors=8, iterations=10, seed=2)),
    ],
    ids=["als", "bpr"],
)
def test_training_is_deterministic_for_a_seed(data, train_fn, params, other):
    first = train_fn(data.train, params)
    second = train_fn(data.train, params)
    third = train_fn(data.train, other)

    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    assert not np.array_equal(first[0], third[0])


def test_als_fit_improves_with_more_iterations(data, popularity):
    one = evaluate(*train_als(data.train, ALSParams(factors=8, iterations=1, seed=0)), data.train, data.holdout)
    six = evaluate(*train_als(data.train, ALSParams(factors=8, iterations=6, seed=0)), data.train, data.holdout)
    assert six["ndcg@10"] > one["ndcg@10"]


def test_training_is_quiet_and_limits_blas_threads(data, capfd, monkeypatch):
    import warnings

    import implicit.utils

    monkeypatch.setattr(implicit.utils, "_checked_blas_config", False)  # implicit warns once per process
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # implicit's OpenBLAS-threadpool RuntimeWarning would raise here
        train_als(data.train, ALSParams(factors=4, iterations=2))
        train_bpr(data.train, BPRParams(factors=4, iterations=2))
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # no progress bar


def test_progress_callbacks_report_every_step(data):
    seen = []
    train_als(data.train, ALSParams(factors=4, iterations=3), progress=lambda done, total: seen.append((done, total)))
    train_bpr(data.train, BPRParams(factors=4, iterations=2), progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 3), (2, 3), (3, 3), (1, 2), (2, 2)]


def test_bad_settings_are_refused_before_training(data):
    with pytest.raises(ValueError, match="factors and iterations must be >= 1"):
        train_als(data.train, ALSParams(factors=0))
    with pytest.raises(ValueError, match="factors and iterations must be >= 1"):
        train_bpr(data.train, BPRParams(iterations=0))


def test_params_serialise_with_their_algorithm():
    assert ALSParams(factors=8).as_dict()["algorithm"] == "als"
    assert json.loads(json.dumps(BPRParams().as_dict()))["learning_rate"] == 0.01

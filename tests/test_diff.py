"""Model diff: the correctness cases of the issue, storage, bad input, the max_churn policy and the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from factories import make_model_dir
from registry import (
    ChecksumMismatchError,
    ChurnLimitError,
    DiffReport,
    InvalidArgumentError,
    ModelNotFoundError,
    ModelRegistry,
)
from registry.audit import query_events
from registry.cli import app
from registry.diff import metrics as m
from registry.interactions import interactions_from_pairs, save_interactions
from registry.models import ModelDiff

# ---------------------------------------------------------------------- helpers


def write_model(root: Path, name: str, U: np.ndarray, V: np.ndarray, *, user_ids: list[Any] | None = None,
                item_ids: list[Any] | None = None, seen: tuple[np.ndarray, np.ndarray] | None = None,
                model_type: str = "als") -> str:
    """A model folder from explicit arrays (and optional id maps / interactions); returns its stored path."""
    folder = root / "artifacts" / "cf" / model_type / name
    make_model_dir(folder, model_type, num_users=U.shape[0], num_items=V.shape[0], factors=U.shape[1])
    np.save(folder / f"{model_type}_U.npy", U)
    np.save(folder / f"{model_type}_V.npy", V)
    if user_ids is not None:
        (folder / f"{model_type}_user_ids.json").write_text(json.dumps(user_ids))
    if item_ids is not None:
        (folder / f"{model_type}_item_ids.json").write_text(json.dumps(item_ids))
    if seen is not None:
        save_interactions(folder / f"{model_type}_interactions.npz",
                          interactions_from_pairs(seen[0], seen[1], U.shape[0], V.shape[0]))
    return f"artifacts/cf/{model_type}/{name}"


def factors(seed: int, users: int = 120, items: int = 60, dim: int = 8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((users, dim)), rng.standard_normal((items, dim))


def random_orthogonal(dim: int, seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((dim, dim)))
    return q * np.sign(np.diag(r))


def ids(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(count)]


def register(registry: ModelRegistry, path: str, version: str, **metrics: float) -> str:
    return registry.register_model(path, "als", {}, metrics or {"ndcg@10": 0.1}, version=version)


def brute_force_overlap(Ua, Va, Ub, Vb, users_a, users_b, k, seen_a=None, seen_b=None, item_key_b=None) -> np.ndarray:
    """Per-user top-k overlap with plain loops (no batching, no argpartition)."""
    values = []
    for ua, ub in zip(users_a, users_b, strict=True):
        sa, sb = Va @ Ua[ua], Vb @ Ub[ub]
        if seen_a is not None:
            sa[seen_a(ua)] = -np.inf
        if seen_b is not None:
            sb[seen_b(ub)] = -np.inf
        top_a = set(np.argsort(-sa, kind="stable")[:k].tolist())
        top_b = [int(j) for j in np.argsort(-sb, kind="stable")[:k]]
        keys_b = {item_key_b[j] if item_key_b is not None else j for j in top_b}
        values.append(len(top_a & keys_b) / k)
    return np.array(values)


# ---------------------------------------------------------------------- the numbers (pure functions)


def test_top_k_rows_matches_a_full_sort_and_marks_excluded_slots() -> None:
    scores = np.random.default_rng(0).standard_normal((50, 30))
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :5]
    assert np.array_equal(m.top_k_rows(scores, 5), expected)
    scores[:, 2:] = -np.inf
    top = m.top_k_rows(scores, 4)
    assert (top[:, 2:] == m.MISSING).all() and set(top[0, :2]) == {0, 1}


def test_overlap_and_rbo_on_known_lists() -> None:
    a = np.array([[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4]])
    b = np.array([[1, 2, 3, 4], [4, 3, 2, 1], [5, 6, 7, 8]])
    assert m.overlap(a, b, 4).tolist() == [1.0, 1.0, 0.0]
    rbo = m.rank_biased_overlap(a, b, p=0.9)
    assert rbo[0] == pytest.approx(1.0) and rbo[2] == 0.0
    # Reversed list: the agreement |a[:d] & b[:d]| / d at depths 1..4 is 0, 0, 2/3, 1.
    agreement = np.array([0, 0, 2 / 3, 1])
    assert rbo[1] == pytest.approx((1 - 0.9) / (1 - 0.9**4) * (0.9 ** np.arange(4) * agreement).sum())
    assert 0 < rbo[1] < 1
    missing = np.array([[m.MISSING, m.MISSING]])
    assert m.overlap(missing, missing, 2).tolist() == [0.0]


def test_gini_coverage_and_popularity_ranks() -> None:
    assert m.gini(np.array([5, 5, 5, 5])) == pytest.approx(0.0)
    assert m.gini(np.array([0, 0, 0, 10])) == pytest.approx(0.75)  # (n - 1) / n for one item
    assert m.coverage(np.array([[0, 1], [1, m.MISSING]]), 4) == 0.5
    assert m.popularity_ranks(np.array([10, 30, 10, 0])).tolist() == [2.5, 1.0, 2.5, 4.0]


def test_procrustes_undoes_a_rotation_raw_cosine_does_not() -> None:
    rng = np.random.default_rng(3)
    A = rng.standard_normal((200, 16))
    aligned, raw = m.procrustes_cosines(A, A @ random_orthogonal(16, 4))
    assert aligned.min() > 1 - 1e-9
    assert raw is not None and raw.mean() < 0.5


# ---------------------------------------------------------------------- the correctness cases


def test_a_model_against_itself(registry: ModelRegistry, tmp_path: Path) -> None:
    U, V = factors(1)
    a = register(registry, write_model(tmp_path, "v1", U, V), "v1")
    report = registry.diff_models(a, a)
    assert report.churn.churn == 0.0 and report.churn.top1_changed == 0.0 and report.churn.mean_rbo == pytest.approx(1.0)
    assert report.churn.overlap_histogram[-1] == report.churn.users_compared == 120
    assert report.neighbours.mean_overlap == 1.0
    assert report.drift.aligned["quantiles"]["p0"] == pytest.approx(1.0)
    assert report.drift.raw["mean"] == pytest.approx(1.0)
    assert report.coverage.a == report.coverage.b
    assert report.compatibility.warnings == [] or all("index" in w for w in report.compatibility.warnings)


def test_a_shared_rotation_changes_nothing_but_raw_cosines(registry: ModelRegistry, tmp_path: Path) -> None:
    U, V = factors(2)
    Q = random_orthogonal(8, 5)
    a = register(registry, write_model(tmp_path, "v1", U, V), "v1")
    b = register(registry, write_model(tmp_path, "v2", U @ Q, V @ Q), "v2")
    report = registry.diff_models(a, b)
    assert report.churn.churn == pytest.approx(0.0) and report.churn.top1_changed == 0.0
    assert report.neighbours.mean_overlap == pytest.approx(1.0)
    assert report.drift.aligned["quantiles"]["p0"] > 0.999999
    assert report.drift.raw["mean"] < 0.5, "raw cosine would call this a large drift"


def test_items_permuted_with_their_id_maps_are_identical(registry: ModelRegistry, tmp_path: Path) -> None:
    U, V = factors(3)
    perm = np.random.default_rng(9).permutation(V.shape[0])
    item_ids, user_ids = ids("i", V.shape[0]), ids("u", U.shape[0])
    a = register(registry, write_model(tmp_path, "v1", U, V, user_ids=user_ids, item_ids=item_ids), "v1")
    b = register(registry, write_model(tmp_path, "v2", U, V[perm], user_ids=user_ids,
                                       item_ids=[item_ids[p] for p in perm]), "v2")
    report = registry.diff_models(a, b)
    assert report.compatibility.items_matched_by == "ids" and report.catalogue.items.kept == 60
    assert report.churn.churn == 0.0 and report.neighbours.mean_overlap == 1.0
    assert report.drift.aligned["mean"] == pytest.approx(1.0)
    assert report.coverage.a.gini == pytest.approx(report.coverage.b.gini)

    # The same arrays without id maps: compared by index, and the report says so.
    c = register(registry, write_model(tmp_path, "v3", U, V), "v3")
    d = register(registry, write_model(tmp_path, "v4", U, V[perm]), "v4")
    by_index = registry.diff_models(c, d)
    assert by_index.compatibility.items_matched_by == "index" == by_index.catalogue.items.matched_by
    assert any("items compared by index" in w for w in by_index.compatibility.warnings)
    assert by_index.churn.churn > 0.5


def test_disjoint_catalogues_are_flagged_without_crashing(registry: ModelRegistry, tmp_path: Path) -> None:
    U, V = factors(4)
    user_ids = ids("u", U.shape[0])
    a = register(registry, write_model(tmp_path, "v1", U, V, user_ids=user_ids, item_ids=ids("old", 60)), "v1")
    b = register(registry, write_model(tmp_path, "v2", U, V, user_ids=user_ids, item_ids=ids("new", 60)), "v2")
    report = registry.diff_models(a, b)
    assert report.catalogue.disjoint_items and report.catalogue.items.kept == 0
    assert report.catalogue.items.added == report.catalogue.items.removed == 60
    assert report.catalogue.items.added_sample[:2] == ["new0", "new1"]
    assert any("disjoint items" in w for w in report.compatibility.warnings)
    assert report.churn.churn == 1.0, "no item can stay when every item is new"
    assert report.neighbours.mean_overlap is None and report.neighbours.note == "no shared items"
    assert report.drift.items_compared == 0 and report.drift.note == "no shared items"
    assert "disjoint items" in report.summary()
    json.dumps(report.to_dict(), allow_nan=False)


def test_mismatched_factor_dimensions(registry: ModelRegistry, tmp_path: Path) -> None:
    U, V = factors(5)
    a = register(registry, write_model(tmp_path, "v1", U, V), "v1")
    # The same model with 4 zero columns appended: other dimensions, identical scores.
    b = register(registry, write_model(tmp_path, "v2", np.pad(U, ((0, 0), (0, 4))), np.pad(V, ((0, 0), (0, 4)))), "v2")
    report = registry.diff_models(a, b)
    assert not report.compatibility.same_factors and report.compatibility.factors == [8, 12]
    assert any("factor dimensions differ" in w for w in report.compatibility.warnings)
    assert report.churn.churn == 0.0 and report.neighbours.mean_overlap == 1.0
    assert report.drift.padded and report.drift.raw["mean"] is None
    assert report.drift.aligned["mean"] == pytest.approx(1.0)
    # A genuinely different model of another size still gets a churn figure.
    U2, V2 = factors(6, dim=5)
    c = register(registry, write_model(tmp_path, "v3", U2, V2), "v3")
    other = registry.diff_models(a, c)
    assert 0.3 < other.churn.churn <= 1.0


def test_churn_matches_brute_force_with_seen_items_excluded(registry: ModelRegistry, tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    Ua, Va = factors(10, users=300, items=80)
    Ub, Vb = Ua + 0.5 * rng.standard_normal(Ua.shape), Va + 0.5 * rng.standard_normal(Va.shape)
    perm = rng.permutation(80)
    pairs = (rng.integers(0, 300, 3000), rng.integers(0, 80, 3000))
    item_ids = ids("i", 80)
    a = register(registry, write_model(tmp_path, "v1", Ua, Va, user_ids=ids("u", 300), item_ids=item_ids, seen=pairs), "v1")
    # B: items permuted, no interactions of its own: A's seen items are mapped through the item ids.
    b = register(registry, write_model(tmp_path, "v2", Ub, Vb[perm], user_ids=ids("u", 300),
                                       item_ids=[item_ids[p] for p in perm]), "v2")
    report = registry.diff_models(a, b, k=10, users=150, seed=3)
    assert report.churn.seen_excluded == "a" and report.churn.users_compared == 150

    sample = np.sort(np.random.default_rng(np.random.SeedSequence(3).spawn(2)[0]).choice(300, 150, replace=False))
    seen = {u: pairs[1][pairs[0] == u] for u in range(300)}
    inverse = np.argsort(perm)  # A item -> B row
    expected = brute_force_overlap(Ua, Va, Ub, Vb[perm], sample, sample, 10, seen_a=lambda u: seen[u],
                                   seen_b=lambda u: inverse[seen[u]], item_key_b=perm)
    assert report.churn.mean_overlap == pytest.approx(expected.mean(), abs=1e-12)
    assert report.churn.churn == pytest.approx(1 - expected.mean(), abs=1e-12)
    assert report.coverage.a.mean_popularity_rank is not None and report.coverage.b.mean_popularity_rank is not None


def test_full_mode_covers_every_shared_user(registry: ModelRegistry, tmp_path: Path) -> None:
    U, V = factors(11, users=500)
    a = register(registry, write_model(tmp_path, "v1", U, V), "v1")
    b = register(registry, write_model(tmp_path, "v2", *factors(12, users=450)), "v2")
    sampled = registry.diff_models(a, b, users=100)
    full = registry.diff_models(a, b, users=100, full=True)
    assert sampled.churn.users_compared == 100 and not sampled.churn.full
    assert full.churn.users_compared == 450 and full.churn.full
    assert full.catalogue.users.removed == 50
    expected = brute_force_overlap(U, V, *factors(12, users=450), np.arange(450), np.arange(450), 10)
    assert full.churn.mean_overlap == pytest.approx(expected.mean(), abs=1e-12)


def test_popularity_bias_shows_in_coverage_gini_and_rank(registry: ModelRegistry, tmp_path: Path) -> None:
    users, items = 200, 50
    popular = np.arange(5)
    U, V = factors(14, users=users, items=items)
    user_ids, item_ids = ids("u", users), ids("i", items)
    a = register(registry, write_model(tmp_path, "v1", U, V, user_ids=user_ids, item_ids=item_ids,
                                       seen=(np.array([0]), np.array([49]))), "v1")
    # B has 10 extra users (not shared, so never in the sample) whose training made items 0-4 the
    # most popular, and it scores those items far above the rest for everyone.
    heavy = np.repeat(np.arange(users, users + 10), 5)
    pairs = (np.concatenate([heavy, np.full(45, users)]), np.concatenate([np.tile(popular, 10), np.arange(5, 50)]))
    Ub = np.vstack([U, np.zeros((10, U.shape[1]))])
    Ub[:, 0] = 1.0
    Vb = V.copy()
    Vb[popular] = 0
    Vb[popular, 0] = 50.0
    b = register(registry, write_model(tmp_path, "v2", Ub, Vb, user_ids=ids("u", users + 10), item_ids=item_ids,
                                       seen=pairs), "v2")
    report = registry.diff_models(a, b, k=5)
    a_side, b_side = report.coverage.a, report.coverage.b
    assert report.churn.seen_excluded == "both" and report.churn.users_compared == users
    assert b_side.distinct_items == 5 and b_side.coverage_at_k == pytest.approx(0.1)
    assert a_side.coverage_at_k > b_side.coverage_at_k and b_side.gini > a_side.gini
    assert b_side.mean_popularity_rank == pytest.approx(3.0) and a_side.mean_popularity_rank > 20
    assert b_side.mean_popularity_percentile == pytest.approx(3.0 / items)


def test_registered_metrics_side_by_side(registry: ModelRegistry, tmp_path: Path) -> None:
    a = register(registry, write_model(tmp_path, "v1", *factors(1)), "v1", **{"ndcg@10": 0.2, "recall@10": 0.3})
    b = register(registry, write_model(tmp_path, "v2", *factors(2)), "v2", **{"ndcg@10": 0.25, "coverage": 0.5})
    rows = {row.name: row for row in registry.diff_models(a, b).metrics}
    assert rows["ndcg@10"].diff == pytest.approx(0.05) and rows["ndcg@10"].relative == pytest.approx(0.25)
    assert rows["recall@10"].b is None and rows["recall@10"].diff is None
    assert rows["coverage"].a is None and rows["coverage"].b == 0.5


# ---------------------------------------------------------------------- storage


def stored_count(registry: ModelRegistry) -> int:
    return registry.context.read(lambda s: s.scalar(select(func.count()).select_from(ModelDiff)))


def test_reports_are_stored_by_checksums_and_parameters(registry: ModelRegistry, tmp_path: Path) -> None:
    a = register(registry, write_model(tmp_path, "v1", *factors(1)), "v1")
    path_b = write_model(tmp_path, "v2", *factors(2))
    b = register(registry, path_b, "v2")
    first = registry.diff_models(a, b)
    again = registry.diff_models(a, b)
    assert again == first and again.computed_at == first.computed_at
    assert stored_count(registry) == 1
    assert len(registry.context.read(lambda s: query_events(s, action="DIFF"))) == 1
    assert DiffReport.from_dict(json.loads(json.dumps(first.to_dict()))) == first

    registry.diff_models(a, b, k=5)
    registry.diff_models(b, a)
    assert stored_count(registry) == 3

    # New files under the same id: a new key, computed again.
    np.save(tmp_path / path_b / "als_V.npy", factors(3)[1])
    registry.register_model(path_b, "als", {}, {"ndcg@10": 0.1}, version="v2", overwrite=True)
    fresh = registry.diff_models(a, b)
    assert fresh.key != first.key and fresh.churn != first.churn and stored_count(registry) == 4


@pytest.mark.parametrize("kwargs", [{"k": 0}, {"k": 5000}, {"users": -1}, {"items": "10"}, {"seed": -3},
                                    {"seed": 1.5}, {"full": "yes"}])
def test_bad_parameters_are_refused_and_store_nothing(registry: ModelRegistry, tmp_path: Path, kwargs: dict) -> None:
    a = register(registry, write_model(tmp_path, "v1", *factors(1)), "v1")
    with pytest.raises(InvalidArgumentError):
        registry.diff_models(a, a, **kwargs)
    assert stored_count(registry) == 0


def test_unknown_model_and_changed_files_are_typed_errors(registry: ModelRegistry, tmp_path: Path) -> None:
    path = write_model(tmp_path, "v1", *factors(1))
    a = register(registry, path, "v1")
    with pytest.raises(ModelNotFoundError):
        registry.diff_models(a, "als_nope")
    V = np.load(tmp_path / path / "als_V.npy")
    V[0, 0] += 1
    np.save(tmp_path / path / "als_V.npy", V)  # same size, other bytes
    with pytest.raises(ChecksumMismatchError):
        registry.diff_models(a, a)
    assert stored_count(registry) == 0


# ---------------------------------------------------------------------- the max_churn policy


@pytest.fixture
def three(registry: ModelRegistry, tmp_path: Path) -> tuple[str, str, str]:
    """Current best ``v1``; ``v2`` nearly the same (small churn); ``v3`` unrelated (high churn), best metric."""
    U, V = factors(20, users=200, items=80)
    rng = np.random.default_rng(21)
    a = register(registry, write_model(tmp_path, "v1", U, V), "v1", **{"ndcg@10": 0.1})
    b = register(registry, write_model(tmp_path, "v2", U + 0.01 * rng.standard_normal(U.shape), V), "v2",
                 **{"ndcg@10": 0.2})
    c = register(registry, write_model(tmp_path, "v3", *factors(22, users=200, items=80)), "v3", **{"ndcg@10": 0.3})
    registry.promote_model(a)
    return a, b, c


def test_select_best_refuses_a_high_churn_winner(registry: ModelRegistry, three: tuple[str, str, str]) -> None:
    a, b, c = three
    generation = registry.get_registry_stats()["generation"]
    with pytest.raises(ChurnLimitError) as refused:
        registry.select_best_model(max_churn=0.6)
    assert "churn@10" in str(refused.value) and c in str(refused.value) and "top-1 changed" in str(refused.value)
    assert refused.value.report.churn.churn > 0.6
    assert registry.get_current_best()["model_id"] == a
    assert not registry.context.read(lambda s: query_events(s, action="SELECT_BEST"))
    # Only the stored diff was written.
    assert registry.get_registry_stats()["generation"] == generation + 1
    registry.update_model_status(c, "archived")
    result = registry.select_best_model(max_churn=0.6)
    assert result is not None and result["model_id"] == b
    event = registry.context.read(lambda s: query_events(s, action="SELECT_BEST"))[-1]
    check = event["details"]["churn_check"]
    assert check["against"] == a and check["churn"] <= 0.6 and check["forced"] is False
    assert "churn=" in event["summary"]


def test_promote_with_max_churn_and_forced_override(registry: ModelRegistry, three: tuple[str, str, str]) -> None:
    a, _, c = three
    with pytest.raises(ChurnLimitError):
        registry.promote_model(c, max_churn=0.6)
    assert registry.get_current_best()["model_id"] == a
    with pytest.raises(InvalidArgumentError, match="reason"):
        registry.promote_model(c, max_churn=0.6, force=True)
    with pytest.raises(InvalidArgumentError, match="max_churn"):
        registry.promote_model(c, force=True, reason="x")
    with pytest.raises(InvalidArgumentError):
        registry.promote_model(c, max_churn=1.5)
    registry.promote_model(c, reason="launch day", max_churn=0.6, force=True)
    assert registry.get_current_best()["model_id"] == c
    event = registry.context.read(lambda s: query_events(s, action="PROMOTE"))[-1]
    assert event["details"]["churn_check"]["forced"] is True and event["details"]["reason"] == "launch day"
    assert "FORCED" in event["summary"]


def test_no_current_best_means_no_churn_check(registry: ModelRegistry, tmp_path: Path) -> None:
    a = register(registry, write_model(tmp_path, "v1", *factors(1)), "v1")
    assert registry.select_best_model(max_churn=0.0)["model_id"] == a
    assert stored_count(registry) == 0


# ---------------------------------------------------------------------- CLI


def test_cfreg_diff_tables_and_json(registry: ModelRegistry, registry_path: Path, database_url: str,
                                    tmp_path: Path, workdir: Path) -> None:
    a = register(registry, write_model(tmp_path, "v1", *factors(1)), "v1")
    b = register(registry, write_model(tmp_path, "v2", *factors(2)), "v2")
    runner = CliRunner()
    base = ["--registry", str(registry_path), "--database-url", database_url]
    human = runner.invoke(app, [*base, "diff", a, b, "--users", "50"])
    assert human.exit_code == 0, human.stderr
    for text in ("Compatibility", "Catalogue", "churn@10", "neighbour overlap@10", "drift: aligned cosine",
                 "Coverage and popularity", "Registered metrics"):
        assert text in human.stdout
    as_json = runner.invoke(app, [*base, "diff", a, b, "--users", "50", "--json"])
    assert as_json.exit_code == 0
    assert json.loads(as_json.stdout) == registry.diff_models(a, b, users=50).to_dict()
    bad = runner.invoke(app, [*base, "diff", a, "als_missing"])
    assert bad.exit_code == 1 and bad.stderr.startswith("Error: ")
    refused = runner.invoke(app, [*base, "promote", b, "--max-churn", "0.01"])
    assert refused.exit_code == 0, "nothing is current yet: no check"
    refused = runner.invoke(app, [*base, "promote", a, "--max-churn", "0.01"])
    assert refused.exit_code == 1 and "churn@10" in refused.stderr


# ---------------------------------------------------------------------- a real pair: MovieLens-100k, ALS vs BPR


@pytest.mark.slow
def test_movielens_als_vs_bpr_churn_matches_brute_force(tmp_path: Path) -> None:
    import scipy.sparse as sp
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.cpu.bpr import BayesianPersonalizedRanking
    from threadpoolctl import threadpool_limits

    from movielens import load_ratings, train_test_split

    train, _ = train_test_split(load_ratings(), seed=0)
    user_ids = sorted(train["user_id"].unique(), key=int)
    item_ids = sorted(train["item_id"].unique(), key=int)
    users = train["user_id"].map({u: i for i, u in enumerate(user_ids)}).to_numpy()
    items = train["item_id"].map({v: i for i, v in enumerate(item_ids)}).to_numpy()
    matrix = sp.csr_matrix((np.ones(users.size, dtype=np.float32), (users, items)), shape=(len(user_ids), len(item_ids)))
    als = AlternatingLeastSquares(factors=32, iterations=8, regularization=0.05, num_threads=1, random_state=0)
    bpr = BayesianPersonalizedRanking(factors=32, iterations=30, num_threads=1, random_state=0)
    with threadpool_limits(1, "blas"):
        als.fit(matrix, show_progress=False)
        bpr.fit(matrix, show_progress=False)
    # BPR's user factors end in a column of ones and its item factors in the item bias: U @ V.T is its score.
    assert bpr.user_factors.shape[1] == bpr.item_factors.shape[1] == 33

    registry = ModelRegistry(tmp_path / "artifacts" / "cf" / "registry.json", root=tmp_path, export_json=False)
    ids_ = {}
    for name, model, model_type in (("als", als, "als"), ("bpr", bpr, "bpr")):
        path = write_model(tmp_path, "ml100k", np.asarray(model.user_factors), np.asarray(model.item_factors),
                           user_ids=user_ids, item_ids=item_ids, seen=(users, items), model_type=model_type)
        ids_[name] = registry.register_model(path, model_type, {"factors": 32}, {"ndcg@10": 0.1}, version="ml100k")
    report = registry.diff_models(ids_["als"], ids_["bpr"], k=10, users=300, items=500, seed=1)
    assert report.compatibility.factors == [32, 33] and report.churn.seen_excluded == "both"
    assert report.catalogue.items.kept == len(item_ids) and report.churn.users_compared == 300

    U_a, V_a = np.asarray(als.user_factors), np.asarray(als.item_factors)
    U_b, V_b = np.asarray(bpr.user_factors), np.asarray(bpr.item_factors)
    sample = np.sort(np.random.default_rng(np.random.SeedSequence(1).spawn(2)[0]).choice(len(user_ids), 300, replace=False))

    def seen(u: int) -> np.ndarray:
        return matrix[u].indices

    expected = brute_force_overlap(U_a, V_a, U_b, V_b, sample, sample, 10, seen_a=seen, seen_b=seen)
    assert report.churn.mean_overlap == pytest.approx(expected.mean(), abs=1e-9)
    assert 0 < report.churn.churn < 1, "two different algorithms agree on some items, not all"
    assert report.neighbours.items_compared == 500 and 0 < report.neighbours.mean_overlap < 1
    assert report.drift.padded and -1 <= report.drift.aligned["mean"] <= 1
    assert report.coverage.a.mean_popularity_rank is not None

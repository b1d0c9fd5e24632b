"""Per-user evaluation files, compare_metrics, and select_best_model(confidence=...)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats

from registry import (
    ChecksumMismatchError,
    InvalidArgumentError,
    InvalidArtifactsError,
    NoUserEvaluationError,
    audit,
    read_user_eval,
    stats,
    write_user_eval,
)
from registry_snapshot import snapshot

USERS = [f"u{i}" for i in range(300)]


def per_user(seed: int, shift: float = 0.0, n: int = 300) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.random.default_rng(0).random(n) * 0.4  # shared user difficulty: the pairing matters
    return np.clip(base + shift + rng.normal(0, 0.05, n), 0, 1)


def evaluated_model(registry, model_dir, tmp_path: Path, version: str, values: np.ndarray,
                    users: list = USERS, register: bool = True):  # type: ignore[no-untyped-def]
    relative = model_dir(f"als/{version}", seed=len(version))
    write_user_eval(tmp_path / relative, "als", users, {"ndcg@10": values})
    if not register:
        return relative
    return registry.register_model(relative, "als", {"factors": 8}, {"ndcg@10": float(values.mean())}, {}, version=version)


# --------------------------------------------------------------------------- the file


def test_write_read_round_trip(tmp_path: Path) -> None:
    path = write_user_eval(tmp_path / "m", "als", [3, 1, 2], {"ndcg@10": [0.1, 0.2, 0.3], "recall@20": np.array([1, 0, 1])})
    assert path.name == "als_user_eval.npz"
    evaluation = read_user_eval(path)
    assert evaluation.user_ids.tolist() == [3, 1, 2]
    assert evaluation.metrics["recall@20"].dtype == np.float64
    assert evaluation.metrics["ndcg@10"].tolist() == [0.1, 0.2, 0.3]
    assert not list(path.parent.glob(".*"))  # no temp file left behind


@pytest.mark.parametrize("user_ids, metrics, message", [
    (["a", "a"], {"ndcg@10": [0.1, 0.2]}, "duplicate"),
    (["a", "b"], {"ndcg@10": [0.1, float("nan")]}, "NaN or infinite"),
    (["a", "b"], {"ndcg@10": [0.1]}, "1 values for 2 users"),
    (["a", "b"], {"ndcg 10": [0.1, 0.2]}, "invalid metric name"),
    (["a", "b"], {}, "no metric arrays"),
    ([], {"ndcg@10": []}, "non-empty 1-D"),
    ([[1, 2]], {"ndcg@10": [0.1]}, "non-empty 1-D"),
    (["a", "b"], {"ndcg@10": ["x", "y"]}, "1-D numeric"),
])
def test_bad_evaluations_are_refused_and_nothing_is_written(tmp_path: Path, user_ids, metrics, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidArgumentError, match=message):
        write_user_eval(tmp_path, "als", user_ids, metrics)
    assert not list(tmp_path.iterdir())


def test_read_refuses_pickles_and_oversized_files(tmp_path: Path) -> None:
    path = tmp_path / "als_user_eval.npz"
    np.savez(path, user_ids=np.array([{"a": 1}, {"b": 2}], dtype=object), ndcg=np.array([0.1, 0.2]))
    with pytest.raises(InvalidArtifactsError, match="not a readable"):
        read_user_eval(path)
    write_user_eval(tmp_path, "als", USERS, {"ndcg@10": per_user(1)})
    with pytest.raises(InvalidArtifactsError, match="exceeds the limit"):
        read_user_eval(path, max_bytes=1000)
    path.write_bytes(b"not a zip")
    with pytest.raises(InvalidArtifactsError, match="not a readable"):
        read_user_eval(path)


# --------------------------------------------------------------------------- registration


def test_registration_records_the_file_with_its_checksum(registry, model_dir, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model_id = evaluated_model(registry, model_dir, tmp_path, "a", per_user(1))
    files = {f["file_name"]: f for f in registry.get_model_files(model_id)}
    assert "als_user_eval.npz" in files and len(files["als_user_eval.npz"]["sha256"]) == 64
    ok, problems = registry.validate_artifacts("artifacts/cf/als/a", "als")
    assert ok and problems == []


def test_invalid_or_inconsistent_file_refuses_registration(registry, model_dir, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    relative = evaluated_model(registry, model_dir, tmp_path, "a", per_user(1), register=False)
    before = snapshot(registry, tmp_path)
    with pytest.raises(InvalidArtifactsError, match="the registered ndcg@10 is 0.5"):
        registry.register_model(relative, "als", {}, {"ndcg@10": 0.5}, {}, version="a")
    assert snapshot(registry, tmp_path) == before
    (tmp_path / relative / "als_user_eval.npz").write_bytes(b"garbage")
    before = snapshot(registry, tmp_path)
    with pytest.raises(InvalidArtifactsError, match="als_user_eval.npz"):
        registry.register_model(relative, "als", {}, {"ndcg@10": 0.2}, {}, version="a")
    assert snapshot(registry, tmp_path) == before


# --------------------------------------------------------------------------- compare_metrics


def test_compare_metrics_pairs_users_in_both(registry, model_dir, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a_values, b_values = per_user(1), per_user(2, shift=0.01)
    a = evaluated_model(registry, model_dir, tmp_path, "a", a_values)
    # b was evaluated on the first 250 users plus 20 others, in another order
    users_b = USERS[:250][::-1] + [f"x{i}" for i in range(20)]
    values_b = np.concatenate([b_values[:250][::-1], np.full(20, 0.9)])
    b = evaluated_model(registry, model_dir, tmp_path, "b", values_b, users=users_b)
    result = registry.compare_metrics(a, b, "ndcg@10", method="paired_t_test")
    expected = scipy_stats.ttest_rel(b_values[:250], a_values[:250])
    assert result["n_users"] == 250 and result["model_a"] == a and result["model_b"] == b
    assert result["p_value"] == pytest.approx(expected.pvalue, rel=1e-9)
    assert result["difference"] == pytest.approx((b_values[:250] - a_values[:250]).mean())
    boot = registry.compare_metrics(a, b, "ndcg@10", seed=3, confidence=0.9)
    order = np.argsort(np.array(USERS[:250]))  # users are paired in id order
    direct = stats.paired_bootstrap(a_values[:250][order], b_values[:250][order], seed=3, confidence=0.9)
    assert (boot["ci_low"], boot["ci_high"], boot["p_value"]) == pytest.approx((direct.ci_low, direct.ci_high, direct.p_value))
    assert boot["method"] == "paired_bootstrap" and boot["resamples"] == 2000


def test_compare_metrics_errors(registry, model_dir, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a = evaluated_model(registry, model_dir, tmp_path, "a", per_user(1))
    b = evaluated_model(registry, model_dir, tmp_path, "b", per_user(2))
    plain = registry.register_model(model_dir("als/plain", seed=9), "als", {}, {"ndcg@10": 0.1}, {}, version="plain")
    with pytest.raises(NoUserEvaluationError, match="has no per-user evaluation"):
        registry.compare_metrics(a, plain)
    with pytest.raises(NoUserEvaluationError, match="not 'recall@20'"):
        registry.compare_metrics(a, b, "recall@20")
    with pytest.raises(InvalidArgumentError, match="method"):
        registry.compare_metrics(a, b, method="magic")
    with pytest.raises(InvalidArgumentError, match="confidence"):
        registry.compare_metrics(a, b, confidence=1.5)
    other = evaluated_model(registry, model_dir, tmp_path, "c", per_user(3)[:1], users=["nobody"])
    with pytest.raises(InvalidArgumentError, match="share 0 evaluated user"):
        registry.compare_metrics(a, other)
    # A file changed after registration is caught by its recorded checksum.
    write_user_eval(tmp_path / "artifacts/cf/als/b", "als", USERS, {"ndcg@10": per_user(2) * 0.5})
    with pytest.raises(ChecksumMismatchError):
        registry.compare_metrics(a, b)


# --------------------------------------------------------------------------- select_best_model(confidence=...)


def selections(registry):  # type: ignore[no-untyped-def]
    return registry.get_selection_history()


def test_confident_selection_replaces_only_on_a_clear_improvement(registry, model_dir, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    current = evaluated_model(registry, model_dir, tmp_path, "a", per_user(1))
    assert registry.select_best_model("ndcg@10", confidence=0.95)["comparison"] is None  # nothing to compare with
    # Higher average, but by noise only: not selected, nothing written.
    noisy = evaluated_model(registry, model_dir, tmp_path, "b", per_user(2, shift=0.002))
    before = snapshot(registry, tmp_path)
    assert registry.select_best_model("ndcg@10", confidence=0.95) is None
    assert snapshot(registry, tmp_path) == before
    # Without the interval the same call would have switched.
    assert registry.select_best_model("ndcg@10")["model_id"] == noisy
    registry.promote_model(current)
    clear = evaluated_model(registry, model_dir, tmp_path, "c", per_user(3, shift=0.03))
    # +~15%: above a 5% bar, not above a 50% bar
    assert registry.select_best_model("ndcg@10", min_improvement=0.5, confidence=0.95) is None
    result = registry.select_best_model("ndcg@10", min_improvement=0.05, confidence=0.95)
    assert result["model_id"] == clear
    comparison = result["comparison"]
    assert comparison["model_a"] == current and comparison["relative_ci_low"] > 0.05
    latest = selections(registry)[0]
    assert latest["model_id"] == clear and "CI" in latest["reason"] and current in latest["reason"]
    event = registry.context.read(lambda s: audit.query_events(s, action="SELECT_BEST"))[-1]
    assert event["details"]["comparison"]["relative_ci_low"] == pytest.approx(comparison["relative_ci_low"])
    assert "ci=[" in event["summary"]


def test_confident_selection_without_evaluation(registry, model_dir, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    current = evaluated_model(registry, model_dir, tmp_path, "a", per_user(1))
    registry.select_best_model("ndcg@10")
    plain = registry.register_model(model_dir("als/plain", seed=9), "als", {}, {"ndcg@10": 0.9}, {}, version="plain")
    before = snapshot(registry, tmp_path)
    with pytest.raises(NoUserEvaluationError, match="require_evaluation=False"):
        registry.select_best_model("ndcg@10", confidence=0.95)
    assert snapshot(registry, tmp_path) == before
    result = registry.select_best_model("ndcg@10", confidence=0.95, require_evaluation=False)
    assert result["model_id"] == plain and "has no per-user evaluation" in result["fallback"]
    assert registry.get_current_best()["model_id"] == plain != current
    with pytest.raises(InvalidArgumentError, match="not both"):
        registry.select_best_model("ndcg@10", confidence=0.95, min_gain_over_current=0.1)
    with pytest.raises(InvalidArgumentError, match="require_evaluation"):
        registry.select_best_model("ndcg@10", confidence=0.95, require_evaluation="no")

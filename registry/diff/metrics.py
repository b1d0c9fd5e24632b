"""Vectorised numbers of a model diff (numpy only): top-k, overlap, RBO, coverage, Gini, Procrustes.

Every function works on a batch of rows at a time, so memory stays bounded by
``batch x items`` scores; nothing here builds a full users x items matrix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

# Scores of one batch stay under this many bytes (float32): 2,000 rows x 4,000 items.
SCORE_BATCH_BYTES = 32 << 20
MISSING = -1  # key of an empty slot (fewer than k eligible items); never matches anything
QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)

SeenFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def batch_rows(num_items: int, factors: int = 0) -> int:
    """Rows per scoring batch so one batch of float32 scores stays within :data:`SCORE_BATCH_BYTES`."""
    return max(1, SCORE_BATCH_BYTES // (4 * max(num_items + factors, 1)))


def batches(count: int, size: int) -> Iterator[slice]:
    """Consecutive slices covering ``range(count)``."""
    for start in range(0, count, size):
        yield slice(start, min(start + size, count))


def top_k_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` highest scores of each row, best first (``argpartition``).

    Entries scored ``-inf`` (excluded) come back as :data:`MISSING`.
    """
    rows, columns = scores.shape
    k = min(k, columns)
    if k <= 0:
        return np.full((rows, 0), MISSING, dtype=np.int64)
    if k < columns:
        part = np.argpartition(scores, columns - k, axis=1)[:, columns - k:]
    else:
        part = np.broadcast_to(np.arange(columns), (rows, columns)).copy()
    picked = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-picked, axis=1, kind="stable")
    top = np.take_along_axis(part, order, axis=1).astype(np.int64)
    top[np.take_along_axis(picked, order, axis=1) == -np.inf] = MISSING
    return top


def recommend(U: np.ndarray, V: np.ndarray, rows: np.ndarray, k: int, seen: SeenFn | None = None) -> np.ndarray:
    """Top-``k`` item indices for the users ``rows`` of ``U``, scored ``U @ V.T`` in batches.

    Args:
        seen: ``seen(batch_positions) -> (row_in_batch, item)`` pairs to exclude, where
            ``batch_positions`` index into ``rows``.
    """
    dtype = np.result_type(U.dtype, V.dtype, np.float32)
    items = np.asarray(V, dtype=dtype).T
    out = np.empty((rows.size, min(k, V.shape[0])), dtype=np.int64)
    for part in batches(rows.size, batch_rows(V.shape[0], U.shape[1])):
        scores = np.asarray(U[rows[part]], dtype=dtype) @ items
        if seen is not None:
            batch_row, item = seen(np.arange(part.start, part.stop))
            if batch_row.size:
                scores[batch_row, item] = -np.inf
        out[part] = top_k_rows(scores, k)
    return out


def normalise_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), as float32 (float64 when given float64)."""
    array = np.asarray(matrix, dtype=np.result_type(matrix.dtype, np.float32))
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return array / np.where(norms > 0, norms, 1.0)


def neighbours(V: np.ndarray, rows: np.ndarray, k: int, unit: np.ndarray | None = None) -> np.ndarray:
    """Top-``k`` cosine neighbours of items ``rows`` of ``V`` (the item itself excluded), best first."""
    unit = normalise_rows(V) if unit is None else unit
    out = np.empty((rows.size, min(k, max(V.shape[0] - 1, 0))), dtype=np.int64)
    for part in batches(rows.size, batch_rows(V.shape[0], V.shape[1])):
        picked = rows[part]
        scores = unit[picked] @ unit.T
        scores[np.arange(picked.size), picked] = -np.inf
        out[part] = top_k_rows(scores, k)
    return out


def overlap(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """Per row, ``|a ∩ b| / k`` of two ``(n, k)`` arrays of distinct keys (:data:`MISSING` never counts)."""
    if a.shape[1] == 0 or b.shape[1] == 0:
        return np.zeros(a.shape[0])
    same = (a[:, :, None] == b[:, None, :]) & (a[:, :, None] != MISSING)
    return same.any(axis=2).sum(axis=1) / float(k)


def rank_biased_overlap(a: np.ndarray, b: np.ndarray, p: float = 0.9) -> np.ndarray:
    """Per row, RBO of two ranked lists truncated at their depth ``k``, normalised so identical lists give 1.

    ``RBO = (1 - p) / (1 - p^k) * sum_{d=1..k} p^(d-1) * |a[:d] ∩ b[:d]| / d`` (Webber et al. 2010,
    truncated); ``p`` weights the top: with ``p = 0.9`` the first 10 ranks carry ~86% of the weight.
    """
    depth = min(a.shape[1], b.shape[1])
    if depth == 0:
        return np.zeros(a.shape[0])
    a, b = a[:, :depth], b[:, :depth]
    same = ((a[:, :, None] == b[:, None, :]) & (a[:, :, None] != MISSING)).astype(np.int32)
    prefix = same.cumsum(axis=1).cumsum(axis=2)
    diagonal = prefix[:, np.arange(depth), np.arange(depth)]  # |a[:d] ∩ b[:d]| for d = 1..depth
    d = np.arange(1, depth + 1)
    weights = p ** (d - 1) / d
    return (diagonal * weights).sum(axis=1) * (1 - p) / (1 - p**depth)


def coverage(top: np.ndarray, num_items: int) -> float:
    """Share of the catalogue that appears in at least one list."""
    valid = top[top != MISSING]
    return float(np.unique(valid).size / num_items) if num_items else 0.0


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative counts (0: all equal; -> 1: all on one item)."""
    values = np.sort(np.asarray(counts, dtype=np.float64))
    n, total = values.size, values.sum()
    if n == 0 or total == 0:
        return 0.0
    index = np.arange(1, n + 1)
    return float((2 * (index * values).sum()) / (n * total) - (n + 1) / n)


def popularity_ranks(item_counts: np.ndarray) -> np.ndarray:
    """Rank of every item by training interactions: 1 = most popular (ties share their mean rank)."""
    counts = np.asarray(item_counts, dtype=np.float64)
    order = np.argsort(-counts, kind="stable")
    ranks = np.empty(counts.size, dtype=np.float64)
    ranks[order] = np.arange(1, counts.size + 1)
    # Average the ranks of tied counts.
    _, inverse, tie_sizes = np.unique(-counts, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / tie_sizes[inverse]


def procrustes_cosines(A: np.ndarray, B: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Cosine similarity of matched rows of ``A`` and ``B`` after the best rotation of ``A`` onto ``B``.

    Solves the orthogonal Procrustes problem ``min_R ||A R - B||_F`` with ``R`` orthogonal
    (``R = W Z^T`` from the SVD ``A^T B = W S Z^T``). Factorizations are only defined up to
    such a rotation, so this measures real change, not an arbitrary basis change. When the
    factor counts differ, the smaller side is padded with zero columns (an exact embedding).

    Returns:
        ``(aligned cosines, raw cosines or None when the factor counts differ)``.
    """
    a = np.asarray(A, dtype=np.float64)
    b = np.asarray(B, dtype=np.float64)
    raw = None
    if a.shape[1] == b.shape[1]:
        raw = _row_cosines(a, b)
    width = max(a.shape[1], b.shape[1])
    a = np.pad(a, ((0, 0), (0, width - a.shape[1])))
    b = np.pad(b, ((0, 0), (0, width - b.shape[1])))
    w, _, zt = np.linalg.svd(a.T @ b)
    return _row_cosines(a @ (w @ zt), b), raw


def _row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dots = np.einsum("ij,ij->i", a, b)
    return np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), 0.0)


def distribution(values: np.ndarray) -> dict[str, Any]:
    """``{"mean", "quantiles": {"p0": ..., "p5": ..., ..., "p100": ...}}`` of a 1-D sample (empty: None)."""
    if values.size == 0:
        return {"mean": None, "quantiles": {}}
    points = np.quantile(values, QUANTILES)
    return {
        "mean": float(values.mean()),
        "quantiles": {f"p{round(q * 100)}": float(v) for q, v in zip(QUANTILES, points, strict=True)},
    }


def histogram(values: np.ndarray, k: int) -> list[int]:
    """How many rows have 0, 1, ..., k shared items (``values`` are overlaps in [0, 1] of ``k``)."""
    counts = np.rint(values * k).astype(np.int64)
    return np.bincount(counts, minlength=k + 1)[: k + 1].tolist()

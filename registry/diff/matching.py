"""Matching the users or items of two models: by their id maps, else by row index."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

SAMPLE_SIZE = 10


@dataclass(frozen=True)
class Matching:
    """Rows of A and B that are the same user (or item), and the rows only one side has.

    ``a_rows[i]`` and ``b_rows[i]`` are the same entity; ``b_to_a[j]`` is the A row of
    B's row ``j`` (-1 when only B has it), and ``a_to_b`` the other way round.
    """

    by: str  # "ids" or "index"
    a_rows: np.ndarray
    b_rows: np.ndarray
    a_to_b: np.ndarray
    b_to_a: np.ndarray
    only_a: np.ndarray
    only_b: np.ndarray

    @property
    def kept(self) -> int:
        """How many rows both sides share."""
        return int(self.a_rows.size)

    def keys_of_b(self, size_a: int) -> np.ndarray:
        """A key for every row of B in A's numbering: the A row when shared, else ``size_a + j``."""
        return np.where(self.b_to_a >= 0, self.b_to_a, size_a + np.arange(self.b_to_a.size))


def match(ids_a: list[Any] | None, ids_b: list[Any] | None, size_a: int, size_b: int) -> Matching:
    """Match by id when both sides have an id map, else by row index."""
    a_to_b = np.full(size_a, -1, dtype=np.int64)
    b_to_a = np.full(size_b, -1, dtype=np.int64)
    if ids_a is not None and ids_b is not None:
        if ids_a == ids_b:  # the common case: the same id map, row for row
            a_to_b[:] = np.arange(size_a)
        else:
            a_to_b[:] = _lookup_rows(ids_a, ids_b)
        by = "ids"
    else:
        shared = min(size_a, size_b)
        a_to_b[:shared] = np.arange(shared)
        by = "index"
    a_rows = np.flatnonzero(a_to_b >= 0)
    b_rows = a_to_b[a_rows]
    b_to_a[b_rows] = a_rows
    return Matching(by, a_rows, b_rows, a_to_b, b_to_a, np.flatnonzero(a_to_b < 0), np.flatnonzero(b_to_a < 0))


def sample_labels(rows: np.ndarray, ids: list[Any] | None) -> list[Any]:
    """The first :data:`SAMPLE_SIZE` of ``rows`` as ids (or row indices without an id map)."""
    picked = rows[:SAMPLE_SIZE].tolist()
    return picked if ids is None else [ids[row] for row in picked]


def _lookup_rows(ids_a: list[Any], ids_b: list[Any]) -> list[int]:
    """For each id of A, its row in B (-1 when B lacks it)."""
    try:
        lookup = {value: row for row, value in enumerate(ids_b)}
        return [lookup.get(value, -1) for value in ids_a]
    except TypeError:  # unhashable ids (JSON lists/objects): compare their canonical JSON
        lookup = {_hashable(value): row for row, value in enumerate(ids_b)}
        return [lookup.get(_hashable(value), -1) for value in ids_a]


def _hashable(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return json.dumps(value, sort_keys=True)

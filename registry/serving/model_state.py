"""One loaded model as the loader serves it: :class:`ModelState` and its recommendations.

A state is immutable and its arrays are read-only, so any number of threads can
score with it while the loader swaps in another one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InvalidArgumentError, ModelNotFoundError
from ..interactions import Interactions
from ..validation import positive_int

# (model_id, ((file_name, sha256), ...)): a model's identity including its file contents.
CacheKey = tuple[str, tuple[tuple[str, str], ...]]
# (file_name, size, mtime_ns, ctime_ns, inode): what a reload check compares on disk.
FileStamp = tuple[str, int, int, int, int]


@dataclass(frozen=True, eq=False)
class ModelState:
    """One loaded model. Immutable; ``U`` and ``V`` are read-only arrays (copy before editing).

    The first nine fields are the original documentation's; ``metadata`` is the
    artifact's ``{type}_metadata.json`` plus ``model_id``, ``model_type``,
    ``version`` and ``path``. ``user_ids``/``item_ids`` come from
    ``{type}_user_ids.json``/``{type}_item_ids.json`` when the folder has them;
    ``interactions`` the training interactions of ``{type}_interactions.npz``
    (which items each user was trained on), used to leave seen items out.
    """

    model_id: str
    model_type: str
    version: str
    U: np.ndarray = field(repr=False)
    V: np.ndarray = field(repr=False)
    params: dict[str, Any] = field(repr=False)
    metadata: dict[str, Any] = field(repr=False)
    loaded_at: str
    path: str
    user_ids: list[Any] | None = field(default=None, repr=False)
    item_ids: list[Any] | None = field(default=None, repr=False)
    folder: str = ""
    checksums: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    file_stamps: tuple[FileStamp, ...] = field(default=(), repr=False)
    interactions: Interactions | None = field(default=None, repr=False)
    _user_lookup: dict[Any, int] | None = field(default=None, init=False, repr=False)
    _item_lookup: dict[Any, int] | None = field(default=None, init=False, repr=False)

    @property
    def key(self) -> CacheKey:
        """``(model_id, recorded checksums)``: the cache identity of this model's content."""
        return (self.model_id, self.checksums)

    @property
    def nbytes(self) -> int:
        """Bytes held by ``U``, ``V`` and the interactions arrays (what the cache budget counts)."""
        seen = self.interactions
        extra = 0 if seen is None else int(seen.indptr.nbytes + seen.indices.nbytes)
        return int(self.U.nbytes + self.V.nbytes) + extra

    def seen_items(self, user_index: int) -> np.ndarray:
        """Item indices the user interacted with in training (empty without an interactions file)."""
        row = _index_argument(user_index, self.num_users, "user_index")
        if self.interactions is None:
            return np.empty(0, dtype=np.int64)
        return np.asarray(self.interactions.seen(row), dtype=np.int64)

    @property
    def num_users(self) -> int:
        """Rows of ``U``: the users the model scores."""
        return int(self.U.shape[0])

    @property
    def num_items(self) -> int:
        """Rows of ``V``: the items the model ranks."""
        return int(self.V.shape[0])

    @property
    def factors(self) -> int:
        """Columns of ``U`` and ``V``: the embedding size."""
        return int(self.U.shape[1])

    def recommend(self, user_index: int, k: int = 10, exclude: Iterable[int] | None = None, *,
                  exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items for a user row: scores ``U[user_index] @ V.T``, best first.

        Args:
            user_index: row of ``U`` (0-based).
            k: how many items; fewer come back when fewer items are eligible.
            exclude: item indices never to return (e.g. already purchased).
            exclude_seen: also leave out the items the user interacted with in
                training, when the model has an interactions file (no effect otherwise).

        Returns:
            ``(item_indices, scores)`` as arrays of the same length.

        Raises:
            InvalidArgumentError: ``user_index``, ``k`` or an excluded index is not a
                valid non-negative integer in range.
        """
        row = _index_argument(user_index, self.num_users, "user_index")
        count = positive_int(k, "k")
        scores = self.V @ self.U[row]
        if scores.dtype.kind != "f":
            scores = scores.astype(np.float64)
        eligible = self.num_items
        excluded = _item_indices(exclude, self.num_items) if exclude is not None else np.empty(0, dtype=np.int64)
        if exclude_seen and self.interactions is not None:
            excluded = np.concatenate([excluded, self.seen_items(row)])
        if excluded.size:
            scores[excluded] = -np.inf
            eligible -= int(np.unique(excluded).size)
        count = min(count, eligible)
        if count <= 0:
            return np.empty(0, dtype=np.int64), scores[:0]
        if count < scores.shape[0]:
            top = np.argpartition(-scores, count - 1)[:count]
        else:
            top = np.arange(scores.shape[0])
        top = top[np.argsort(-scores[top], kind="stable")]
        return top.astype(np.int64, copy=False), scores[top]

    def recommend_for_user(self, user_id: Any, k: int = 10, exclude: Iterable[Any] | None = None, *,
                           exclude_seen: bool = True) -> tuple[list[Any], np.ndarray]:
        """Top-``k`` item ids for an external user id, through the model's id maps.

        Args:
            user_id: an id from ``{type}_user_ids.json``.
            k: how many items.
            exclude: item ids never to return; ids the model does not know are ignored.
            exclude_seen: also leave out the user's training items (see :meth:`recommend`).

        Returns:
            ``(item_ids, scores)``.

        Raises:
            ModelNotFoundError: the user id is not in the model's user ids.
            InvalidArgumentError: the model has no id maps, or ``k`` is invalid.
        """
        if self.user_ids is None or self.item_ids is None:
            raise InvalidArgumentError(
                f"model {self.model_id!r} has no id maps ({self.model_type}_user_ids.json and "
                f"{self.model_type}_item_ids.json); use recommend(user_index) instead"
            )
        users = self._lookup("_user_lookup", self.user_ids)
        try:
            row = users.get(user_id)
        except TypeError:
            row = None
        if row is None:
            raise ModelNotFoundError(f"user {user_id!r} is not among the {self.num_users} users of model {self.model_id!r}")
        excluded = None
        if exclude is not None:
            items = self._lookup("_item_lookup", self.item_ids)
            excluded = [items[item] for item in exclude if _hashable(item) and item in items]
        indices, scores = self.recommend(row, k, excluded, exclude_seen=exclude_seen)
        return [self.item_ids[i] for i in indices], scores

    def _lookup(self, name: str, ids: list[Any]) -> dict[Any, int]:
        lookup = getattr(self, name)
        if lookup is None:  # built on first use; two threads building it at once is harmless
            lookup = {value: index for index, value in enumerate(ids)}
            object.__setattr__(self, name, lookup)
        return lookup


def _index_argument(value: Any, size: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidArgumentError(f"{name} must be an integer, got {value!r}")
    if not 0 <= value < size:
        raise InvalidArgumentError(f"{name} {value} is out of range: the model has {size} rows (0..{size - 1})")
    return int(value)


def _item_indices(exclude: Iterable[int], num_items: int) -> np.ndarray:
    values = np.asarray(exclude if isinstance(exclude, np.ndarray) else list(exclude))
    if values.size == 0:
        return np.empty(0, dtype=np.int64)
    if values.dtype.kind not in "iu" or values.ndim != 1:
        raise InvalidArgumentError(f"exclude must be a flat collection of integer item indices, got {values!r}")
    if values.min() < 0 or values.max() >= num_items:
        raise InvalidArgumentError(f"exclude holds item indices outside 0..{num_items - 1}")
    return values.astype(np.int64, copy=False)


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True

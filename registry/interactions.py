"""Training interactions a model folder may carry: which items each user was trained on.

File: ``{model_type}_interactions.npz`` beside ``{model_type}_U.npy``, holding a CSR matrix of
users (rows of U) by items (rows of V) as two integer arrays:

- ``indptr``: ``num_users + 1`` non-decreasing offsets, starting at 0;
- ``indices``: the item index of every interaction, user after user.

numpy alone reads and writes it (no scipy needed); ``allow_pickle`` is always off. The loader and
the recommendation service use it to leave out items a user has already seen; the model diff uses
it for popularity. It is optional: folders without it work as before.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InvalidArtifactsError
from .fsio import open_regular_file

MAX_INTERACTIONS_BYTES = 2 << 30
_KEYS = ("indptr", "indices")


def interactions_file(model_type: str) -> str:
    """The optional interactions file name of a type, e.g. ``als_interactions.npz``."""
    return f"{model_type}_interactions.npz"


@dataclass(frozen=True)
class Interactions:
    """A users x items interaction matrix in CSR form (binary: which items each user saw)."""

    indptr: Any  # np.ndarray[int64], num_users + 1
    indices: Any  # np.ndarray[int], item index per interaction
    num_users: int
    num_items: int

    def seen(self, user_index: int) -> Any:
        """Item indices the user interacted with in training (may be empty)."""
        return self.indices[self.indptr[user_index]:self.indptr[user_index + 1]]

    def item_counts(self) -> Any:
        """Number of interactions per item (length ``num_items``)."""
        import numpy as np

        return np.bincount(self.indices, minlength=self.num_items)


def interactions_from_pairs(user_indices: Any, item_indices: Any, num_users: int, num_items: int) -> Interactions:
    """Build :class:`Interactions` from parallel user/item index arrays (duplicates removed)."""
    import numpy as np

    users = np.asarray(user_indices, dtype=np.int64).ravel()
    items = np.asarray(item_indices, dtype=np.int64).ravel()
    if users.shape != items.shape:
        raise InvalidArtifactsError(f"interactions: {users.size} user indices but {items.size} item indices")
    _check_range(users, num_users, "user")
    _check_range(items, num_items, "item")
    pairs = np.unique(users * max(num_items, 1) + items)
    users, items = np.divmod(pairs, max(num_items, 1))
    indptr = np.zeros(num_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(users, minlength=num_users), out=indptr[1:])
    return Interactions(indptr, items.astype(np.int32 if num_items < 2**31 else np.int64), num_users, num_items)


def save_interactions(path: str | os.PathLike[str], interactions: Interactions) -> Path:
    """Write ``interactions`` to ``path`` (a ``.npz``) through a temp file and an atomic rename."""
    import numpy as np

    target = Path(path)
    temp = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        with open(temp, "wb") as handle:
            np.savez(handle, indptr=interactions.indptr, indices=interactions.indices)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    return target


def read_interactions(path: Path, num_users: int, num_items: int, *, max_bytes: int = MAX_INTERACTIONS_BYTES,
                      within: Path | None = None) -> Interactions:
    """Read and validate an interactions file against the model's user and item counts.

    The file is opened by :func:`registry.fsio.open_regular_file` (regular file, bounded,
    confined to ``within`` when given: the model's folder).

    Raises:
        InvalidArtifactsError: not a regular file, too large, not an ``.npz`` of the two integer
            arrays, offsets that do not fit ``num_users``, or item indices outside ``num_items``.
    """
    import numpy as np

    try:
        with open_regular_file(path, max_bytes=max_bytes, within=within) as handle, \
                np.load(handle, allow_pickle=False) as archive:
            if sorted(archive.files) != sorted(_KEYS):
                raise InvalidArtifactsError(f"{path}: expected arrays {list(_KEYS)}, found {sorted(archive.files)}")
            indptr, indices = archive["indptr"], archive["indices"]
    except InvalidArtifactsError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise InvalidArtifactsError(f"{path}: unreadable interactions file ({exc})") from exc
    for name, array in (("indptr", indptr), ("indices", indices)):
        if array.ndim != 1 or array.dtype.kind not in "iu":
            raise InvalidArtifactsError(f"{path}: {name} must be a 1-D integer array")
    if indptr.shape[0] != num_users + 1:
        raise InvalidArtifactsError(f"{path}: indptr has {indptr.shape[0]} entries, expected num_users + 1 = {num_users + 1}")
    if indptr[0] != 0 or indptr[-1] != indices.shape[0] or bool(np.any(np.diff(indptr) < 0)):
        raise InvalidArtifactsError(f"{path}: indptr must rise from 0 to the number of interactions")
    _check_range(indices, num_items, "item", path)
    return Interactions(indptr.astype(np.int64, copy=False), indices, num_users, num_items)


def _check_range(values: Any, bound: int, what: str, path: Path | None = None) -> None:
    if values.size and (int(values.min()) < 0 or int(values.max()) >= bound):
        where = f"{path}: " if path else "interactions: "
        raise InvalidArtifactsError(f"{where}{what} indices must lie in [0, {bound})")

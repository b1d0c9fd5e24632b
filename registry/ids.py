"""Allocating the first free id: ``base``, then ``base_2``, ``base_3``...

Every automatic id in the registry (CF model versions, BERT embeddings versions, A/B test
ids) is a base built from the clock or the arguments, suffixed when that is taken. Writers
are serialised (the generation bump that opens every write transaction takes the write lock
first), so the id found here is still free at commit; the primary key is the backstop.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import InstrumentedAttribute, Session

from .errors import RegistryError

BATCH = 64
MAX_SUFFIX = 10_000

# (database, column, base) -> the last suffix this process allocated: only a starting point
# for the search, so a stale hint can never produce a duplicate.
_hints: dict[tuple[str, str, str], int] = {}


def first_free(session: Session, column: InstrumentedAttribute[str], base: str,
               name: Callable[[int], str] | None = None) -> tuple[str, int]:
    """The first id not yet in ``column``: ``name(1)``, ``name(2)``, ... and its suffix number.

    Args:
        column: the primary-key column the id goes into (``Model.model_id``...).
        base: what the ids are built from (the key of this process's hint).
        name: the id for a suffix number; default ``base`` for 1 and ``f"{base}_{n}"`` after.

    Raises:
        RegistryError: ``MAX_SUFFIX`` ids from ``base`` are all taken.
    """
    make = name or (lambda n: base if n == 1 else f"{base}_{n}")
    hint_key = (str(session.get_bind().engine.url), str(column), base)
    start = _hints.get(hint_key, 0) + 1
    ids = column.property.columns[0]  # the table's column: a Core statement skips the ORM layer
    # The likely id first (the base, or the one after this process's last): one exact lookup.
    if session.scalar(select(ids).where(ids == make(start))) is None:
        return _remember(hint_key, start, make(start))
    # Then exact-id lookups in batches (index equality; no collation-dependent range scans).
    for first in range(start + 1, MAX_SUFFIX, BATCH):
        candidates = {make(n): n for n in range(first, min(first + BATCH, MAX_SUFFIX))}
        taken = set(session.scalars(select(ids).where(ids.in_(list(candidates)))))
        for candidate, number in candidates.items():
            if candidate not in taken:
                return _remember(hint_key, number, candidate)
    raise RegistryError(f"more than {MAX_SUFFIX} ids from {base!r} are taken",
                        hint="pass an explicit id or version", cli_hint="pass --version")


def _remember(hint_key: tuple[str, str, str], number: int, candidate: str) -> tuple[str, int]:
    if number > 1:
        _hints.clear()  # one entry is enough: bases come from the clock, which only moves forward
        _hints[hint_key] = number
    return candidate, number

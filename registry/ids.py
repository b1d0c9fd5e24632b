"""Allocating the first free id: ``base``, then ``base_2``, ``base_3``...

Every automatic id in the registry (CF model versions, BERT embeddings versions, A/B test
ids) is a base built from the clock or the arguments, suffixed when that is taken. Writers
are serialised (the generation bump that opens every write transaction takes the write lock
first), so the id found here is still free at commit; the primary key is the backstop.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from sqlalchemy import Select, bindparam, select
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
    make = name or _default_name(base)
    hint_key, start = _likely(session, column, base)
    # The likely id first (the base, or the one after this process's last): one exact lookup.
    if session.scalar(_id_lookup(column), {"candidate": make(start)}) is None:
        return _remember(hint_key, start, make(start))
    return _search(session, column, make, hint_key, start + 1)


def insert_first_free(session: Session, column: InstrumentedAttribute[str], base: str,
                      insert_if_free: Callable[[str, int], bool],
                      name: Callable[[int], str] | None = None) -> tuple[str, int]:
    """Insert a row under the first free id; returns the id and its suffix number.

    ``insert_if_free(candidate, number)`` inserts the row unless ``candidate`` is taken
    (``INSERT ... ON CONFLICT DO NOTHING``) and says whether it did. The likely id is tried
    at once, so the usual case costs the insert alone; when it is taken, the first free id
    is looked up (as :func:`first_free` does) and the row inserted under it.

    Raises:
        RegistryError: ``MAX_SUFFIX`` ids from ``base`` are all taken, or the id found free
            was taken before the insert (writers are serialised, so this means a bug).
    """
    make = name or _default_name(base)
    hint_key, start = _likely(session, column, base)
    if insert_if_free(make(start), start):
        return _remember(hint_key, start, make(start))
    candidate, number = _search(session, column, make, hint_key, start + 1)
    if not insert_if_free(candidate, number):
        raise RegistryError(f"id {candidate!r} was taken between its lookup and its insert")
    return candidate, number


def _default_name(base: str) -> Callable[[int], str]:
    return lambda n: base if n == 1 else f"{base}_{n}"


def _likely(session: Session, column: InstrumentedAttribute[str], base: str) -> tuple[tuple[str, str, str], int]:
    """This process's hint key and the suffix number to try first."""
    hint_key = (str(session.get_bind().engine.url), str(column), base)
    return hint_key, _hints.get(hint_key, 0) + 1


def _search(session: Session, column: InstrumentedAttribute[str], make: Callable[[int], str],
            hint_key: tuple[str, str, str], first_number: int) -> tuple[str, int]:
    """Exact-id lookups in batches from ``first_number`` (index equality; no collation-dependent range scans)."""
    ids = column.property.columns[0]  # the table's column: a Core statement skips the ORM layer
    for first in range(first_number, MAX_SUFFIX, BATCH):
        candidates = {make(n): n for n in range(first, min(first + BATCH, MAX_SUFFIX))}
        taken = set(session.scalars(select(ids).where(ids.in_(list(candidates)))))
        for candidate, number in candidates.items():
            if candidate not in taken:
                return _remember(hint_key, number, candidate)
    raise RegistryError(f"more than {MAX_SUFFIX} ids from {hint_key[2]!r} are taken",
                        hint="pass an explicit id or version", cli_hint="pass --version")


@functools.cache
def _id_lookup(column: InstrumentedAttribute[str]) -> Select[tuple[str]]:
    """``SELECT id WHERE id = :candidate``, built once per column."""
    ids = column.property.columns[0]
    return select(ids).where(ids == bindparam("candidate"))


def _remember(hint_key: tuple[str, str, str], number: int, candidate: str) -> tuple[str, int]:
    if number > 1:
        _hints.clear()  # one entry is enough: bases come from the clock, which only moves forward
        _hints[hint_key] = number
    return candidate, number

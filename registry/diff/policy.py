"""The churn bound of promotion rules: ``select_best_model(max_churn=...)`` and ``promote_model(max_churn=...)``.

The diff is computed outside the write transaction (it reads model files), then the
selection runs in one transaction that looks up the stored report for the exact pair
it is about to switch between. If that pair has no stored report yet (the first try,
or the registry changed meanwhile), the transaction is abandoned, the diff computed
and stored, and the selection tried again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from ..context import RegistryContext
from ..errors import ChurnLimitError, RegistryBusyError
from . import compute, store
from .report import DiffReport

logger = logging.getLogger(__name__)

T = TypeVar("T")
MAX_ATTEMPTS = 3


class _NeedsDiff(Exception):
    """Internal: the guarded transaction needs the diff of ``(current, candidate)`` first."""

    def __init__(self, current: str, candidate: str) -> None:
        super().__init__(current, candidate)
        self.current, self.candidate = current, candidate


@dataclass(frozen=True)
class ChurnCheck:
    """What a passed (or forced) check adds to the selection's audit event."""

    text: str
    details: dict[str, Any]


@dataclass
class ChurnGuard:
    """Called by :mod:`registry.selection` inside its transaction before the current best moves.

    Args:
        max_churn: the bound on ``report.churn.churn`` (1 - mean top-k overlap), in [0, 1].
        force: let a candidate over the bound through anyway (audited as forced).
        params: the diff parameters (default: k=10, 2,000 users and items, seed 0).
    """

    max_churn: float
    force: bool = False
    params: compute.DiffParams = field(default_factory=compute.DiffParams)

    def __call__(self, session: Session, current: str, candidate: str) -> ChurnCheck:
        """Check ``candidate`` against ``current``; raises ChurnLimitError when over the bound."""
        key = compute.diff_key(compute.require_record(session, current), compute.require_record(session, candidate),
                               self.params)
        stored = store.find(session, key)
        if stored is None:
            raise _NeedsDiff(current, candidate)
        report = DiffReport.from_dict({**stored, "metrics": []})
        churn = report.churn.churn
        over = churn is None or churn > self.max_churn
        shown = "n/a" if churn is None else f"{churn:.3f}"
        if over and not self.force:
            raise ChurnLimitError(
                f"refused {candidate!r}: churn@{report.churn.k} against the current best {current!r} is {shown}, "
                f"above max_churn={self.max_churn:g} (force=True with a reason overrides). {report.summary()}",
                report,
            )
        details = {"diff_key": key, "against": current, "churn": churn, "max_churn": self.max_churn,
                   "forced": over, "top1_changed": report.churn.top1_changed, "summary": report.summary()}
        return ChurnCheck(f" churn={shown}{' FORCED over' if over else ' <='} max_churn={self.max_churn:g}", details)


def guarded(ctx: RegistryContext, guard: ChurnGuard, work: Callable[[ChurnGuard], T]) -> T:
    """Run ``work(guard)`` (one selection transaction), computing missing diffs between attempts."""
    for _ in range(MAX_ATTEMPTS):
        try:
            return work(guard)
        except _NeedsDiff as need:
            logger.info("computing the diff %s -> %s for max_churn", need.current, need.candidate)
            compute.diff_models(ctx, need.current, need.candidate, guard.params)
    raise RegistryBusyError(f"the current best or the candidate kept changing during {MAX_ATTEMPTS} churn checks; try again")

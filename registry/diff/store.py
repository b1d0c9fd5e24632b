"""Stored diff reports: one ``model_diffs`` row per (models' checksums, parameters) key."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import audit
from ..models import ModelDiff
from .report import DiffReport

logger = logging.getLogger(__name__)


def find(session: Session, key: str) -> dict[str, Any] | None:
    """The stored report (``DiffReport.to_dict()``) with this key, or None."""
    return session.scalar(select(ModelDiff.report).where(ModelDiff.key == key))


def save(session: Session, report: DiffReport) -> bool:
    """Store ``report`` with its audit event (``DIFF``); False when one with its key is already stored.

    Runs in a write transaction, which holds the registry's write lock on both backends,
    so two processes computing the same diff store it once.
    """
    if find(session, report.key) is not None:
        return False
    session.add(ModelDiff(key=report.key, model_a=report.model_a, model_b=report.model_b,
                          params=report.params, report=report.to_dict()))
    churn = report.churn.churn
    audit.record(
        session, "DIFF", report.model_b,
        f"against={report.model_a} churn={'n/a' if churn is None else f'{churn:.3f}'} k={report.churn.k}",
        {"model_a": report.model_a, "key": report.key, "params": report.params, "churn": churn},
    )
    return True


def list_reports(session: Session, model_a: str | None = None, model_b: str | None = None) -> list[dict[str, Any]]:
    """Stored reports (newest first), optionally for one pair: what a compare page can show without computing."""
    statement = select(ModelDiff).order_by(ModelDiff.id.desc())
    if model_a is not None:
        statement = statement.where(ModelDiff.model_a == model_a)
    if model_b is not None:
        statement = statement.where(ModelDiff.model_b == model_b)
    return [row.report for row in session.scalars(statement)]

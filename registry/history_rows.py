"""Rows of the pointer history (table ``selections``): one per move of the current best or of
a named alias, written with one Core ``INSERT`` (the hot path of selections and alias moves)."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, insert
from sqlalchemy.orm import Session

from . import audit
from .models import Selection, table

_INSERT_MOVE = insert(table(Selection))


def add_move(session: Session, *, alias: str, model_id: str | None, previous_model_id: str | None,
             selected_by: str, reason: str | None, metric: str | None = None, value: float | None = None,
             restored_selection_id: int | None = None) -> int:
    """Insert one history row (the acting identity recorded as ``actor``); returns its id."""
    result = cast(CursorResult[Any], session.execute(_INSERT_MOVE, {
        "alias": alias, "model_id": model_id, "previous_model_id": previous_model_id, "metric": metric,
        "value": value, "selected_by": selected_by, "reason": reason,
        "restored_selection_id": restored_selection_id, "actor": audit.current_actor(),
    }))
    key = result.inserted_primary_key
    assert key is not None, "an INSERT of one row has a primary key"
    return int(key[0])

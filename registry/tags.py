"""Tags and descriptions on models and embeddings versions.

Session-level functions, run inside the caller's transaction (the registry facades wrap
them in ``RegistryContext.mutate`` / ``read``). Keys follow the id rules; values are text
of at most 1,024 characters; a description is text of at most 10,000 characters. Every
change records an audit event (``TAG_SET``, ``TAG_DELETE``, ``DESCRIBE``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import audit
from .errors import InvalidArgumentError
from .models import TAG_VALUE_LENGTH, BertEmbedding, EmbeddingTag, Model, ModelTag
from .validation import free_text, optional_text, validate_identifier

DESCRIPTION_MAX_LENGTH = 10_000


def validate_tag(key: object, value: object = "") -> tuple[str, str]:
    """A checked ``(key, value)``: key by the id rules, value text up to 1,024 characters."""
    validate_identifier(key, "tag key")
    if not isinstance(value, str):
        raise InvalidArgumentError(f"tag value must be a string, got {type(value).__name__} {value!r}")
    return str(key), optional_text(value, "tag value", TAG_VALUE_LENGTH) or ""


def validate_description(description: object) -> str | None:
    """A checked description (None or empty clears it)."""
    return free_text(description, "description", DESCRIPTION_MAX_LENGTH) or None


def _owner(kind: str) -> tuple[Any, Any]:
    return (ModelTag, ModelTag.model_id) if kind == "model" else (EmbeddingTag, EmbeddingTag.version)


def set_tag(session: Session, kind: str, owner_id: str, key: str, value: str) -> bool:
    """Set one tag; False (and no audit event) when it already had that value."""
    table, column = _owner(kind)
    row = session.get(table, (owner_id, key))
    if row is not None and row.value == value:
        return False
    previous = row.value if row is not None else None
    if row is None:
        session.add(table(**{column.key: owner_id, "key": key, "value": value}))
    else:
        row.value = value
    audit.record(session, "TAG_SET", owner_id, f"{key}={value}", {"kind": kind, "key": key, "value": value, "previous": previous})
    return True


def delete_tag(session: Session, kind: str, owner_id: str, key: str) -> bool:
    """Remove one tag; False when it was not set."""
    table, _ = _owner(kind)
    row = session.get(table, (owner_id, key))
    if row is None:
        return False
    session.delete(row)
    audit.record(session, "TAG_DELETE", owner_id, key, {"kind": kind, "key": key, "previous": row.value})
    return True


def set_description(session: Session, owner: Model | BertEmbedding, owner_id: str, description: str | None) -> bool:
    """Set (or clear) a description; False when unchanged."""
    if owner.description == description:
        return False
    previous, owner.description = owner.description, description
    kind = "model" if isinstance(owner, Model) else "embeddings"
    audit.record(session, "DESCRIBE", owner_id, f"{len(description or '')} characters",
                 {"kind": kind, "description": description, "previous": previous})
    return True


def tags_of(session: Session, kind: str, owner_ids: Iterable[str] | None = None) -> dict[str, dict[str, str]]:
    """``{owner_id: {key: value}}`` in one query: the given owners, or all when None (no tags: absent)."""
    table, column = _owner(kind)
    statement = select(column, table.key, table.value).order_by(column, table.key)
    if owner_ids is not None:
        statement = statement.where(column.in_(list(owner_ids)))
    found: dict[str, dict[str, str]] = {}
    for owner_id, key, value in session.execute(statement):
        found.setdefault(owner_id, {})[key] = value
    return found

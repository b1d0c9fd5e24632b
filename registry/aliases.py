"""Named aliases: pointers at models with compare-and-set and a full history.

An alias is a name (the id rules) pointing at one active model. The current best is the alias
``current_best``: its pointer stays ``settings.current_model_id`` and moving it goes through the
promotion path (audit ``PROMOTE``), so everything documented about the current best holds.
Every other alias is a row of ``aliases``; each move or deletion adds a ``selections`` row with
the alias name (who, when, from, to, reason) and an audit event (``ALIAS_SET``/``ALIAS_DELETE``),
in the caller's transaction.

Compare-and-set: with ``expected`` (the model id the caller last saw, or None for "must not
exist") the move happens only when the alias still points there; otherwise
:class:`~registry.errors.AliasConflictError` names the current target. Writers are serialised by
the generation bump that opens every write transaction, so two racing movers cannot both win.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from . import ab_aliases, audit
from .errors import (
    AliasConflictError,
    AliasNotFoundError,
    InvalidArgumentError,
    InvalidStateError,
    ModelInUseError,
    ModelNotFoundError,
)
from .history_rows import add_move
from .models import CURRENT_BEST_ALIAS, Alias, Model, Selection, Settings, table, utcnow
from .settings_access import settings_view
from .timestamps import format_timestamp as iso
from .validation import validate_identifier

UNSET: Any = object()

_aliases = table(Alias)
_INSERT_ALIAS = insert(_aliases)
_UPDATE_ALIAS = update(_aliases).where(_aliases.c.name == bindparam("alias_name"))
_models = table(Model)
# A named alias's move reads, as one statement: its target (NULL: no such alias), the model's
# status (NULL: no such model), and whether a running A/B test arm follows the alias.
_MOVE_LOOKUP = select(
    select(_aliases.c.model_id).where(_aliases.c.name == bindparam("alias")).scalar_subquery(),
    select(_models.c.status).where(_models.c.model_id == bindparam("model_id")).scalar_subquery(),
    ab_aliases.RUNNING_TESTS_FOLLOWING.exists(),
)


def validate_alias_name(name: object) -> str:
    """An alias name: the id rules (``champion_als``, ``challenger``, ``current_best``)."""
    return validate_identifier(name, "alias")


def target_of(session: Session, name: str) -> str | None:
    """The model id an alias points at (None when the alias does not exist)."""
    if name == CURRENT_BEST_ALIAS:
        current: str | None = settings_view(session).current_model_id  # no statement in a write transaction
        return current
    row = session.get(Alias, name)  # from the session's identity map while a caller holds the row
    return row.model_id if row is not None else None


def check_expected(name: str, current: str | None, expected: Any) -> None:
    """AliasConflictError unless ``expected`` is UNSET or equals the alias's current target."""
    if expected is not UNSET and expected != current:
        raise AliasConflictError(name, current, expected)


def set_named(session: Session, name: str, model_id: str, *, expected: Any, reason: str | None) -> tuple[str | None, bool]:
    """``ModelRegistry.set_alias`` for a named alias (not ``current_best``): ``(previous target, changed)``.

    Everything the move has to know before it writes (the alias's target, the model's status,
    whether a running A/B test arm follows the alias) is one statement; then the history row,
    the alias row and the audit event.

    Raises:
        AliasConflictError: ``expected`` is not UNSET and not the current target.
        ModelNotFoundError: no such model. InvalidStateError: the model is not active.
    """
    previous, status, followed = session.execute(_MOVE_LOOKUP, {"alias": name, "model_id": model_id}).one()
    check_expected(name, previous, expected)
    if status is None:
        raise ModelNotFoundError.unknown_model(model_id)
    _require_active_status(model_id, status)
    if previous == model_id:
        return previous, False
    if followed:
        ab_aliases.follow_alias(session, name, model_id)
    _write_move(session, name, model_id, previous, reason=reason, selected_by="manual")
    audit.record(session, "ALIAS_SET", name, f"{previous or 'none'} -> {model_id}" + (f" reason={reason}" if reason else ""),
                 {"alias": name, "model_id": model_id, "previous_model_id": previous, "reason": reason,
                  "selected_by": "manual", "metric": None, "value": None})
    return previous, True


def require_active(model: Model) -> None:
    """InvalidStateError unless ``model`` is active (only active models can be given an alias)."""
    _require_active_status(model.model_id, model.status)


def _require_active_status(model_id: str, status: str) -> None:
    if status != "active":
        raise InvalidStateError(f"Model {model_id!r} is {status}; only active models can be given an alias")


def point(session: Session, name: str, model: Model, *, reason: str | None, selected_by: str,
          metric: str | None = None, value: float | None = None, restored_selection_id: int | None = None,
          followed: bool | None = None) -> int:
    """Move named alias ``name`` to ``model`` and add its history row; the caller records the audit event.

    Running A/B test arms that follow the alias move with it (:func:`registry.ab_aliases.follow_alias`;
    ``followed`` False: the caller read that none does). Returns the history row's id.
    """
    previous = target_of(session, name)
    if previous != model.model_id and followed is not False:
        ab_aliases.follow_alias(session, name, model.model_id)
    return _write_move(session, name, model.model_id, previous, reason=reason, selected_by=selected_by, metric=metric,
                       value=value, restored_selection_id=restored_selection_id)


def _write_move(session: Session, name: str, model_id: str, previous: str | None, *, reason: str | None,
                selected_by: str, metric: str | None = None, value: float | None = None,
                restored_selection_id: int | None = None) -> int:
    """The history row and the alias row of a move (Core statements); returns the history row's id.

    ``previous`` None: the alias has no row yet. An ``Alias`` object the session already holds is
    kept in step without a flush.
    """
    history_id = add_move(session, alias=name, model_id=model_id, previous_model_id=previous, metric=metric,
                          value=value, selected_by=selected_by, reason=reason,
                          restored_selection_id=restored_selection_id)
    values = {"model_id": model_id, "selection_id": history_id, "updated_at": utcnow()}
    if previous is None:
        session.execute(_INSERT_ALIAS, {"name": name, **values})
        return history_id
    session.execute(_UPDATE_ALIAS, {"alias_name": name, **values})
    held = session.identity_map.get(identity_key(Alias, name))
    if held is not None:
        for key, value_now in values.items():
            set_committed_value(held, key, value_now)  # the row already says so: nothing to flush
    return history_id


def delete(session: Session, name: str, expected: Any, reason: str | None) -> str:
    """Remove named alias ``name``; returns the model it pointed at."""
    if name == CURRENT_BEST_ALIAS:
        raise InvalidArgumentError("the current_best alias cannot be deleted; promote or roll back instead")
    row = session.get(Alias, name)
    current = row.model_id if row is not None else None
    check_expected(name, current, expected)
    if row is None:
        raise AliasNotFoundError(f"Alias {name!r} does not exist")
    ab_aliases.refuse_delete_if_arm(session, name)
    session.add(Selection(alias=name, model_id=None, previous_model_id=current, selected_by="delete",
                          reason=reason, actor=audit.current_actor()))
    session.delete(row)
    audit.record(session, "ALIAS_DELETE", name, f"was {current}" + (f" reason={reason}" if reason else ""),
                 {"alias": name, "previous_model_id": current, "reason": reason})
    return current  # type: ignore[return-value]


def aliases_of(session: Session, model_id: str) -> list[str]:
    """Every alias pointing at ``model_id`` (``current_best`` first)."""
    names = [CURRENT_BEST_ALIAS] if target_of(session, CURRENT_BEST_ALIAS) == model_id else []
    names.extend(session.scalars(select(Alias.name).where(Alias.model_id == model_id).order_by(Alias.name)))
    return names


def refuse_if_aliased(session: Session, model_id: str, verb: str) -> None:
    """ModelInUseError naming the alias when a named alias points at ``model_id``."""
    names = session.scalars(select(Alias.name).where(Alias.model_id == model_id).order_by(Alias.name)).all()
    if names:
        listed = ", ".join(repr(n) for n in names)
        raise ModelInUseError(f"cannot {verb} {model_id!r}: alias {listed} points at it; move or delete the alias first")


def listing(session: Session) -> list[dict[str, Any]]:
    """Every alias with its target, ``current_best`` first when set."""
    rows: list[dict[str, Any]] = []
    settings = session.get(Settings, 1)
    if settings is not None and settings.current_model_id is not None:
        selection = session.get(Selection, settings.current_selection_id) if settings.current_selection_id else None
        rows.append(_entry(session, CURRENT_BEST_ALIAS, settings.current_model_id, selection))
    statement = select(Alias, Selection).outerjoin(Selection, Selection.id == Alias.selection_id).order_by(Alias.name)
    for alias, selection in session.execute(statement):
        rows.append(_entry(session, alias.name, alias.model_id, selection))
    return rows


def _entry(session: Session, name: str, model_id: str, selection: Selection | None) -> dict[str, Any]:
    model = session.get(Model, model_id)
    return {
        "alias": name,
        "model_id": model_id,
        "model_type": model.model_type if model else None,
        "updated_at": iso(selection.selected_at) if selection else None,
        "updated_by": selection.actor if selection else None,
        "reason": selection.reason if selection else None,
    }


def history(session: Session, name: str, limit: int | None = None) -> list[dict[str, Any]]:
    """Moves of one alias, newest first: who, when, from, to, reason (``to`` None: deleted)."""
    statement = select(Selection).where(Selection.alias == name).order_by(Selection.id.desc())
    if limit:
        statement = statement.limit(limit)
    return [
        {
            "id": row.id, "alias": name, "at": iso(row.selected_at), "by": row.actor,
            "from": row.previous_model_id, "to": row.model_id, "reason": row.reason,
            "selected_by": row.selected_by, "metric": row.metric, "value": row.value,
        }
        for row in session.scalars(statement)
    ]

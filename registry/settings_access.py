"""The ``settings`` row inside a transaction: read it, change it, keep every copy in step.

Besides the database's row, a write transaction holds the values its generation bump
returned (:func:`registry.transactions.bumped_settings`, no statement) and, when some code
loaded it, the session's ORM ``Settings`` object (:func:`settings_row`, or any
``session.get(Settings, 1)``: the identity map has one object per row). Reads prefer the
ORM object when there is one (a writer may have changed it); :func:`update_settings`
writes the row with one Core ``UPDATE`` and updates both copies, so later reads in the
same transaction see the change without a flush.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from .models import Settings, table
from .transactions import bumped_settings

# session.info key: the ORM settings object of the current transaction (see settings_row).
_SETTINGS_OBJECT_KEY = "cfreg_settings_object"
_UPDATE_SETTINGS = update(table(Settings)).where(table(Settings).c.id == 1)
_SETTINGS_IDENTITY = identity_key(Settings, 1)


def settings_row(session: Session) -> Settings:
    """The single ``settings`` row, as an ORM object a writer can change (loaded once per transaction)."""
    settings = _loaded(session) or session.get(Settings, 1)
    assert settings is not None, "settings row missing (the migration creates it)"
    session.info[_SETTINGS_OBJECT_KEY] = settings  # the identity map holds objects weakly: keep it
    return settings


def settings_view(session: Session) -> Any:
    """The settings as this transaction sees them, for reading: the ORM object when one is loaded,
    else the values the write transaction's generation bump returned (no statement), else the
    ORM object (read transactions)."""
    loaded = _loaded(session)
    if loaded is not None:
        return loaded
    bumped = bumped_settings(session)
    return bumped if bumped is not None else settings_row(session)


def update_settings(session: Session, **changes: Any) -> None:
    """``UPDATE settings SET ...`` now (Core), and the same values in the transaction's copies."""
    session.execute(_UPDATE_SETTINGS, changes)  # SET from the parameters' keys: no statement built per call
    loaded = _loaded(session)
    bumped = bumped_settings(session)
    for name, value in changes.items():
        if loaded is not None:
            set_committed_value(loaded, name, value)  # the row already says so: nothing to flush
        if bumped is not None:
            setattr(bumped, name, value)


def _loaded(session: Session) -> Settings | None:
    """The session's ``Settings`` object if something loaded it (the identity map), else None."""
    loaded = session.identity_map.get(_SETTINGS_IDENTITY)
    return loaded if isinstance(loaded, Settings) else None

"""The ``settings`` row inside a transaction: read it, change it, keep every copy in step.

A write transaction holds up to two copies of the row besides the database's: the values its
generation bump returned (:func:`registry.transactions.bumped_settings`, no statement) and the
ORM ``Settings`` object a writer may load (:func:`settings_row`). :func:`update_settings` writes
the row with one Core ``UPDATE`` and updates both copies, so later reads in the same
transaction see the change without a flush.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from .models import Settings, table
from .transactions import bumped_settings

# session.info key: the ORM settings object of the current transaction (see settings_row).
_SETTINGS_OBJECT_KEY = "cfreg_settings_object"
_UPDATE_SETTINGS = update(table(Settings)).where(table(Settings).c.id == 1)


def settings_row(session: Session) -> Settings:
    """The single ``settings`` row, as an ORM object a writer can change (loaded once per transaction)."""
    settings = session.info.get(_SETTINGS_OBJECT_KEY)
    if settings is None:
        settings = session.get(Settings, 1)
        assert settings is not None, "settings row missing (the migration creates it)"
        session.info[_SETTINGS_OBJECT_KEY] = settings  # the identity map holds objects weakly
    return settings


def settings_view(session: Session) -> Any:
    """The settings as this transaction sees them, for reading: the ORM object when a writer loaded
    one, else the values the write transaction's generation bump returned (no statement), else the
    ORM object (read transactions)."""
    loaded = session.info.get(_SETTINGS_OBJECT_KEY)
    if loaded is not None:
        return loaded
    bumped = bumped_settings(session)
    return bumped if bumped is not None else settings_row(session)


def update_settings(session: Session, **changes: Any) -> None:
    """``UPDATE settings SET ...`` now (Core), and the same values in the transaction's copies."""
    session.execute(_UPDATE_SETTINGS.values(**changes))
    loaded = session.info.get(_SETTINGS_OBJECT_KEY)
    bumped = bumped_settings(session)
    for name, value in changes.items():
        if loaded is not None:
            set_committed_value(loaded, name, value)  # the row already says so: nothing to flush
        if bumped is not None:
            setattr(bumped, name, value)

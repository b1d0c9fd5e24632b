"""ISO timestamps in the reporting views; selections.restored_selection_id for rollbacks.

* The views show times as ISO 8601 text with the UTC offset (2026-12-02T09:40:52+00:00);
  the tables keep their native timestamp columns, so every output of the registry
  (API, registry.json, CLI, views) uses one format.
* ``selections.restored_selection_id``: on a rollback row, the earlier selection whose
  state it restored, so ``rollback(steps=N)`` walks back through history exactly.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 10:00:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | Sequence[str] | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# {when} is replaced by the dialect's "timestamp column as ISO text" expression.
ISO_VIEWS = {
    "v_model_metrics": """
        SELECT m.model_id, m.model_type, m.version, m.status, {created_at} AS created_at,
               mm.name AS metric, mm.value
        FROM models m JOIN model_metrics mm ON mm.model_id = m.model_id
    """,
    "v_current_best": """
        SELECT m.model_id, m.model_type, m.version, m.path, m.status,
               sel.metric AS selection_metric, sel.value AS selection_value,
               {selected_at} AS selected_at, sel.selected_by, s.generation
        FROM settings s
        JOIN models m ON m.model_id = s.current_model_id
        LEFT JOIN selections sel ON sel.id = s.current_selection_id
    """,
    "v_selection_history": """
        SELECT sel.id, {selected_at} AS selected_at, sel.model_id, m.model_type, sel.metric, sel.value,
               sel.previous_model_id, sel.selected_by, sel.reason
        FROM selections sel LEFT JOIN models m ON m.model_id = sel.model_id
    """,
}

# The views as revision 0001 created them (restored by downgrade).
RAW_COLUMNS = {"created_at": "m.created_at", "selected_at": "sel.selected_at"}


def _iso(column: str, dialect: str) -> str:
    if dialect == "postgresql":
        return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"+00:00"')"""
    # SQLite stores UTC as 'YYYY-MM-DD HH:MM:SS.ffffff' text.
    return f"strftime('%Y-%m-%dT%H:%M:%S+00:00', {column})"


def _drop_views() -> None:
    for name in ISO_VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {name}")


def _create_views(columns: dict[str, str]) -> None:
    for name, body in ISO_VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {body.strip().format(**columns)}")


def _current_selection() -> object:
    # SQLite's batch rebuild of `selections` fires ON DELETE SET NULL on this pointer: keep it.
    return op.get_bind().execute(sa.text("SELECT current_selection_id FROM settings WHERE id = 1")).scalar()


def _restore_current_selection(pointer: object) -> None:
    op.get_bind().execute(sa.text("UPDATE settings SET current_selection_id = :pointer WHERE id = 1"),
                          {"pointer": pointer})


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    _drop_views()  # SQLite cannot rebuild a table while views name it
    pointer = _current_selection()
    with op.batch_alter_table('selections', schema=None) as batch_op:
        batch_op.add_column(sa.Column('restored_selection_id', sa.Integer(), nullable=True))
    _restore_current_selection(pointer)
    _create_views({key: _iso(column, dialect) for key, column in RAW_COLUMNS.items()})


def downgrade() -> None:
    _drop_views()
    pointer = _current_selection()
    with op.batch_alter_table('selections', schema=None) as batch_op:
        batch_op.drop_column('restored_selection_id')
    _restore_current_selection(pointer)
    _create_views(RAW_COLUMNS)

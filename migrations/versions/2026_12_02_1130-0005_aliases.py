"""Named aliases: ``aliases`` pointers, alias history in ``selections``.

* ``aliases(name, model_id, selection_id, updated_at)``: one row per named alias (the current
  best stays ``settings.current_model_id`` and is the alias ``current_best``).
* ``selections.actor``: who moved the pointer.
* ``selections.alias``: which alias a history row moved; every existing row becomes
  ``current_best`` history. ``selections.model_id`` may be NULL: the row that deleted an alias.
* Views: ``v_selection_history`` keeps showing the current best's history only;
  ``v_alias_history`` shows every alias's; ``v_aliases`` lists the current targets,
  ``current_best`` included.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 11:30:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | Sequence[str] | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HISTORY_COLUMNS = """sel.id, {selected_at} AS selected_at, sel.model_id, m.model_type, sel.metric, sel.value,
               sel.previous_model_id, sel.selected_by, sel.reason"""
# The selection-history view before this revision, and after it (current best only).
OLD_HISTORY = f"SELECT {HISTORY_COLUMNS} FROM selections sel LEFT JOIN models m ON m.model_id = sel.model_id"
NEW_VIEWS = {
    "v_selection_history": OLD_HISTORY + " WHERE sel.alias = 'current_best'",
    "v_alias_history": f"SELECT sel.alias, {HISTORY_COLUMNS} FROM selections sel LEFT JOIN models m ON m.model_id = sel.model_id",
    "v_aliases": """
        SELECT 'current_best' AS alias, m.model_id, m.model_type, m.version, m.status
        FROM settings s JOIN models m ON m.model_id = s.current_model_id
        UNION ALL
        SELECT a.name AS alias, m.model_id, m.model_type, m.version, m.status
        FROM aliases a JOIN models m ON m.model_id = a.model_id
    """,
}


def _iso(column: str) -> str:
    if op.get_bind().dialect.name == "postgresql":
        return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"+00:00"')"""
    return f"strftime('%Y-%m-%dT%H:%M:%S+00:00', {column})"


def _view(body: str) -> str:
    return body.strip().format(selected_at=_iso("sel.selected_at"))


def _drop_views() -> None:
    # SQLite cannot rebuild `selections` while views name it.
    for name in (*NEW_VIEWS, "v_current_best", "v_model_metrics", "v_model_tags"):
        op.execute(f"DROP VIEW IF EXISTS {name}")


def _recreate_views_on_models() -> None:
    op.execute("""CREATE VIEW v_model_metrics AS
        SELECT m.model_id, m.model_type, m.version, m.status, {created_at} AS created_at,
               mm.name AS metric, mm.value
        FROM models m JOIN model_metrics mm ON mm.model_id = m.model_id""".format(created_at=_iso("m.created_at")))
    op.execute("""CREATE VIEW v_current_best AS
        SELECT m.model_id, m.model_type, m.version, m.path, m.status,
               sel.metric AS selection_metric, sel.value AS selection_value,
               {selected_at} AS selected_at, sel.selected_by, s.generation
        FROM settings s
        JOIN models m ON m.model_id = s.current_model_id
        LEFT JOIN selections sel ON sel.id = s.current_selection_id""".format(selected_at=_iso("sel.selected_at")))
    op.execute("""CREATE VIEW v_model_tags AS
        SELECT m.model_id, m.model_type, m.version, m.status, m.description,
               t.key AS tag_key, t.value AS tag_value
        FROM models m LEFT JOIN model_tags t ON t.model_id = m.model_id""")


def _current_selection() -> object:
    # SQLite's batch rebuild of `selections` fires ON DELETE SET NULL on this pointer: keep it.
    return op.get_bind().execute(sa.text("SELECT current_selection_id FROM settings WHERE id = 1")).scalar()


def _restore_current_selection(pointer: object) -> None:
    op.get_bind().execute(sa.text("UPDATE settings SET current_selection_id = :pointer WHERE id = 1"),
                          {"pointer": pointer})


def upgrade() -> None:
    _drop_views()
    pointer = _current_selection()
    with op.batch_alter_table('selections', schema=None) as batch_op:
        batch_op.add_column(sa.Column('alias', sa.String(length=160), server_default='current_best', nullable=False))
        batch_op.add_column(sa.Column('actor', sa.String(length=128), nullable=True))
        batch_op.alter_column('model_id', existing_type=sa.String(length=160), nullable=True)
        batch_op.create_index('ix_selections_alias_id', ['alias', 'id'], unique=False)
    _restore_current_selection(pointer)
    op.create_table('aliases',
    sa.Column('name', sa.String(length=160), nullable=False),
    sa.Column('model_id', sa.String(length=160), nullable=False),
    sa.Column('selection_id', sa.Integer(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['models.model_id'], name=op.f('fk_aliases_model_id_models'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['selection_id'], ['selections.id'], name=op.f('fk_aliases_selection_id_selections'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_aliases'))
    )
    with op.batch_alter_table('aliases', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_aliases_model_id'), ['model_id'], unique=False)
    _recreate_views_on_models()
    for name, body in NEW_VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {_view(body)}")


def downgrade() -> None:
    _drop_views()
    with op.batch_alter_table('aliases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_aliases_model_id'))
    op.drop_table('aliases')
    op.execute("DELETE FROM selections WHERE alias <> 'current_best'")
    pointer = _current_selection()
    with op.batch_alter_table('selections', schema=None) as batch_op:
        batch_op.drop_index('ix_selections_alias_id')
        batch_op.alter_column('model_id', existing_type=sa.String(length=160), nullable=False)
        batch_op.drop_column('alias')
        batch_op.drop_column('actor')
    _restore_current_selection(pointer)
    _recreate_views_on_models()
    op.execute(f"CREATE VIEW v_selection_history AS {_view(OLD_HISTORY)}")

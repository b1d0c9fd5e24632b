"""Tags and descriptions on models and embeddings versions.

* ``model_tags`` / ``embedding_tags``: key/value tags (cascade with their owner);
  ``ix_model_tags_key_value`` serves ``tags.<key> = '<value>'`` search filters.
* ``models.description`` / ``bert_embeddings.description``: free text.
* ``v_model_tags``: one row per (model, tag), models without tags included once.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 11:00:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | Sequence[str] | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TAG_VIEW = """
    SELECT m.model_id, m.model_type, m.version, m.status, m.description,
           t.key AS tag_key, t.value AS tag_value
    FROM models m LEFT JOIN model_tags t ON t.model_id = m.model_id
"""


def upgrade() -> None:
    op.add_column('models', sa.Column('description', sa.Text(), nullable=True))
    op.add_column('bert_embeddings', sa.Column('description', sa.Text(), nullable=True))
    op.create_table('model_tags',
    sa.Column('model_id', sa.String(length=160), nullable=False),
    sa.Column('key', sa.String(length=128), nullable=False),
    sa.Column('value', sa.String(length=1024), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['models.model_id'], name=op.f('fk_model_tags_model_id_models'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('model_id', 'key', name=op.f('pk_model_tags'))
    )
    with op.batch_alter_table('model_tags', schema=None) as batch_op:
        batch_op.create_index('ix_model_tags_key_value', ['key', 'value'], unique=False)
    op.create_table('embedding_tags',
    sa.Column('version', sa.String(length=128), nullable=False),
    sa.Column('key', sa.String(length=128), nullable=False),
    sa.Column('value', sa.String(length=1024), nullable=False),
    sa.ForeignKeyConstraint(['version'], ['bert_embeddings.version'], name=op.f('fk_embedding_tags_version_bert_embeddings'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('version', 'key', name=op.f('pk_embedding_tags'))
    )
    op.execute(f"CREATE VIEW v_model_tags AS {TAG_VIEW.strip()}")


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS v_model_tags")
    op.drop_table('embedding_tags')
    with op.batch_alter_table('model_tags', schema=None) as batch_op:
        batch_op.drop_index('ix_model_tags_key_value')
    op.drop_table('model_tags')
    # Plain DROP COLUMN (SQLite >= 3.35): a batch rebuild would trip over the views on models.
    op.execute("ALTER TABLE bert_embeddings DROP COLUMN description")
    op.execute("ALTER TABLE models DROP COLUMN description")

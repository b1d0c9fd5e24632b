"""Initial schema: every registry table, the settings row and the reporting views.

Revision ID: 0001
Revises:
Create Date: 2026-11-26 10:12:50.821654
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = '0001'
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VIEWS = {
    # One row per (model, metric): the long format reporting queries start from.
    "v_model_metrics": """
        SELECT m.model_id, m.model_type, m.version, m.status, m.created_at,
               mm.name AS metric, mm.value
        FROM models m JOIN model_metrics mm ON mm.model_id = m.model_id
    """,
    # The serving model with how it was selected (zero rows when none is selected).
    "v_current_best": """
        SELECT m.model_id, m.model_type, m.version, m.path, m.status,
               sel.metric AS selection_metric, sel.value AS selection_value,
               sel.selected_at, sel.selected_by, s.generation
        FROM settings s
        JOIN models m ON m.model_id = s.current_model_id
        LEFT JOIN selections sel ON sel.id = s.current_selection_id
    """,
    # Every current-best change, newest last; model columns are NULL once a model is deleted.
    "v_selection_history": """
        SELECT sel.id, sel.selected_at, sel.model_id, m.model_type, sel.metric, sel.value,
               sel.previous_model_id, sel.selected_by, sel.reason
        FROM selections sel LEFT JOIN models m ON m.model_id = sel.model_id
    """,
}


def _create_views() -> None:
    for name, body in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {body.strip()}")


def _drop_views() -> None:
    for name in VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {name}")


def upgrade() -> None:
    op.create_table('ab_tests',
    sa.Column('test_id', sa.String(length=160), nullable=False),
    sa.Column('control_model', sa.String(length=160), nullable=False),
    sa.Column('treatment_model', sa.String(length=160), nullable=False),
    sa.Column('traffic_split', sa.Float(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('start_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('end_time', sa.DateTime(timezone=True), nullable=True),
    sa.Column('promoted', sa.String(length=16), nullable=True),
    sa.CheckConstraint("status IN ('running', 'stopped')", name=op.f('ck_ab_tests_status_known')),
    sa.CheckConstraint('traffic_split >= 0 AND traffic_split <= 1', name=op.f('ck_ab_tests_split_range')),
    sa.PrimaryKeyConstraint('test_id', name=op.f('pk_ab_tests'))
    )
    with op.batch_alter_table('ab_tests', schema=None) as batch_op:
        batch_op.create_index('uq_ab_tests_one_running', ['status'], unique=True, sqlite_where=sa.text("status = 'running'"), postgresql_where=sa.text("status = 'running'"))

    op.create_table('audit_events',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('target', sa.String(length=160), nullable=False),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('actor', sa.String(length=128), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_events'))
    )
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index('ix_audit_events_action_at', ['action', 'at'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_events_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_events_target'), ['target'], unique=False)

    op.create_table('bert_embeddings',
    sa.Column('version', sa.String(length=128), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('model_name', sa.String(length=256), nullable=False),
    sa.Column('num_items', sa.Integer(), nullable=False),
    sa.Column('embedding_dim', sa.Integer(), nullable=False),
    sa.Column('data_version', sa.String(length=256), nullable=False),
    sa.Column('git_commit', sa.String(length=64), nullable=True),
    sa.Column('generation_config', sa.JSON(), nullable=False),
    sa.Column('text_fields_used', sa.JSON(), nullable=False),
    sa.Column('file_name', sa.String(length=255), nullable=True),
    sa.Column('size_bytes', sa.BigInteger(), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('extra', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('version', name=op.f('pk_bert_embeddings'))
    )
    with op.batch_alter_table('bert_embeddings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_bert_embeddings_created_at'), ['created_at'], unique=False)

    op.create_table('models',
    sa.Column('model_id', sa.String(length=160), nullable=False),
    sa.Column('model_type', sa.String(length=64), nullable=False),
    sa.Column('version', sa.String(length=128), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('data_version', sa.String(length=256), nullable=False),
    sa.Column('git_commit', sa.String(length=64), nullable=True),
    sa.Column('hyperparameters', sa.JSON(), nullable=False),
    sa.Column('training_info', sa.JSON(), nullable=False),
    sa.Column('baseline_comparison', sa.JSON(), nullable=True),
    sa.Column('bert_integration', sa.JSON(), nullable=True),
    sa.Column('extra', sa.JSON(), nullable=True),
    sa.CheckConstraint("status IN ('active', 'archived', 'failed')", name=op.f('ck_models_status_known')),
    sa.PrimaryKeyConstraint('model_id', name=op.f('pk_models'))
    )
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.create_index('ix_models_created_at', ['created_at'], unique=False)
        batch_op.create_index('ix_models_path_created_at', ['path', 'created_at'], unique=False)
        batch_op.create_index('ix_models_type_status', ['model_type', 'status'], unique=False)

    op.create_table('selections',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('model_id', sa.String(length=160), nullable=False),
    sa.Column('metric', sa.String(length=64), nullable=True),
    sa.Column('value', sa.Float(), nullable=True),
    sa.Column('previous_model_id', sa.String(length=160), nullable=True),
    sa.Column('selected_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('selected_by', sa.String(length=32), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_selections'))
    )
    with op.batch_alter_table('selections', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_selections_model_id'), ['model_id'], unique=False)

    op.create_table('artifact_files',
    sa.Column('model_id', sa.String(length=160), nullable=False),
    sa.Column('file_name', sa.String(length=255), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('mtime_ns', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['model_id'], ['models.model_id'], name=op.f('fk_artifact_files_model_id_models'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('model_id', 'file_name', name=op.f('pk_artifact_files'))
    )
    op.create_table('embedding_links',
    sa.Column('embedding_version', sa.String(length=128), nullable=False),
    sa.Column('model_id', sa.String(length=160), nullable=False),
    sa.Column('linked_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['embedding_version'], ['bert_embeddings.version'], name=op.f('fk_embedding_links_embedding_version_bert_embeddings'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['model_id'], ['models.model_id'], name=op.f('fk_embedding_links_model_id_models'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('embedding_version', 'model_id', name=op.f('pk_embedding_links'))
    )
    with op.batch_alter_table('embedding_links', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_embedding_links_model_id'), ['model_id'], unique=False)

    op.create_table('model_metrics',
    sa.Column('model_id', sa.String(length=160), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.CheckConstraint('value > -1e308 AND value < 1e308', name=op.f('ck_model_metrics_value_finite')),
    sa.ForeignKeyConstraint(['model_id'], ['models.model_id'], name=op.f('fk_model_metrics_model_id_models'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('model_id', 'name', name=op.f('pk_model_metrics'))
    )
    with op.batch_alter_table('model_metrics', schema=None) as batch_op:
        batch_op.create_index('ix_model_metrics_name_value', ['name', 'value'], unique=False)

    op.create_table('settings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('generation', sa.Integer(), nullable=False),
    sa.Column('root', sa.Text(), nullable=True),
    sa.Column('current_model_id', sa.String(length=160), nullable=True),
    sa.Column('current_selection_id', sa.Integer(), nullable=True),
    sa.Column('current_embeddings_version', sa.String(length=128), nullable=True),
    sa.Column('selection_criteria', sa.String(length=64), nullable=False),
    sa.Column('registry_version', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_updated', sa.DateTime(timezone=True), nullable=False),
    sa.Column('extra', sa.JSON(), nullable=True),
    sa.CheckConstraint('id = 1', name=op.f('ck_settings_single_row')),
    sa.ForeignKeyConstraint(['current_embeddings_version'], ['bert_embeddings.version'], name=op.f('fk_settings_current_embeddings_version_bert_embeddings'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['current_model_id'], ['models.model_id'], name=op.f('fk_settings_current_model_id_models'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['current_selection_id'], ['selections.id'], name=op.f('fk_settings_current_selection_id_selections'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_settings'))
    )
    settings = sa.table(
        "settings",
        sa.column("id", sa.Integer),
        sa.column("generation", sa.Integer),
        sa.column("selection_criteria", sa.String),
        sa.column("registry_version", sa.String),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("last_updated", sa.DateTime(timezone=True)),
    )
    now = datetime.now(UTC)
    op.bulk_insert(settings, [{
        "id": 1, "generation": 0, "selection_criteria": "ndcg@10", "registry_version": "1.0",
        "created_at": now, "last_updated": now,
    }])
    _create_views()


def downgrade() -> None:
    _drop_views()
    op.drop_table('settings')
    with op.batch_alter_table('model_metrics', schema=None) as batch_op:
        batch_op.drop_index('ix_model_metrics_name_value')

    op.drop_table('model_metrics')
    with op.batch_alter_table('embedding_links', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_embedding_links_model_id'))

    op.drop_table('embedding_links')
    op.drop_table('artifact_files')
    with op.batch_alter_table('selections', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_selections_model_id'))

    op.drop_table('selections')
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.drop_index('ix_models_type_status')
        batch_op.drop_index('ix_models_path_created_at')
        batch_op.drop_index('ix_models_created_at')

    op.drop_table('models')
    with op.batch_alter_table('bert_embeddings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_bert_embeddings_created_at'))

    op.drop_table('bert_embeddings')
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_events_target'))
        batch_op.drop_index(batch_op.f('ix_audit_events_at'))
        batch_op.drop_index('ix_audit_events_action_at')

    op.drop_table('audit_events')
    with op.batch_alter_table('ab_tests', schema=None) as batch_op:
        batch_op.drop_index('uq_ab_tests_one_running', sqlite_where=sa.text("status = 'running'"), postgresql_where=sa.text("status = 'running'"))

    op.drop_table('ab_tests')

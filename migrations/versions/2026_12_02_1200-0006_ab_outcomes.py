"""A/B outcomes: per-batch counts and sums of each arm, the tests' minimum detectable effect, v_ab_arm_totals.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 09:00:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | Sequence[str] | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VIEWS = {
    # One row per (test, arm) with recorded outcomes: totals, rate and mean value per exposure.
    "v_ab_arm_totals": """
        SELECT t.test_id, t.status, o.arm,
               CASE WHEN o.arm = 'control' THEN t.control_model ELSE t.treatment_model END AS model_id,
               COUNT(*) AS batches,
               SUM(o.exposures) AS exposures,
               SUM(o.conversions) AS conversions,
               CAST(SUM(o.conversions) AS FLOAT)
                   / NULLIF(SUM(CASE WHEN o.conversions IS NOT NULL THEN o.exposures END), 0) AS conversion_rate,
               SUM(o.value_sum) AS value_sum,
               SUM(o.value_sum_squares) AS value_sum_squares,
               SUM(o.value_sum)
                   / NULLIF(SUM(CASE WHEN o.value_sum IS NOT NULL THEN o.exposures END), 0) AS mean_value,
               MAX(o.recorded_at) AS last_recorded_at
        FROM ab_tests t JOIN ab_outcomes o ON o.test_id = t.test_id
        GROUP BY t.test_id, t.status, o.arm, t.control_model, t.treatment_model
    """,
}


def upgrade() -> None:
    with op.batch_alter_table('ab_tests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('minimum_detectable_effect', sa.Float(), nullable=True))

    op.create_table('ab_outcomes',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('test_id', sa.String(length=160), nullable=False),
    sa.Column('arm', sa.String(length=16), nullable=False),
    sa.Column('batch_id', sa.String(length=160), nullable=False),
    sa.Column('exposures', sa.BigInteger(), nullable=False),
    sa.Column('conversions', sa.BigInteger(), nullable=True),
    sa.Column('value_sum', sa.Float(), nullable=True),
    sa.Column('value_sum_squares', sa.Float(), nullable=True),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("arm IN ('control', 'treatment')", name=op.f('ck_ab_outcomes_arm_known')),
    sa.CheckConstraint('conversions IS NULL OR (conversions >= 0 AND conversions <= exposures)', name=op.f('ck_ab_outcomes_conversions_range')),
    sa.CheckConstraint('exposures >= 0', name=op.f('ck_ab_outcomes_exposures_non_negative')),
    sa.CheckConstraint('value_sum_squares IS NULL OR value_sum_squares >= 0', name=op.f('ck_ab_outcomes_sum_squares_non_negative')),
    sa.ForeignKeyConstraint(['test_id'], ['ab_tests.test_id'], name=op.f('fk_ab_outcomes_test_id_ab_tests'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ab_outcomes')),
    sa.UniqueConstraint('test_id', 'arm', 'batch_id', name='uq_ab_outcomes_batch')
    )
    for name, body in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {body.strip()}")


def downgrade() -> None:
    for name in VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {name}")
    op.drop_table('ab_outcomes')
    with op.batch_alter_table('ab_tests', schema=None) as batch_op:
        batch_op.drop_column('minimum_detectable_effect')

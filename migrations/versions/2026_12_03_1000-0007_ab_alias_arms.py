"""A/B arms that follow an alias: ``ab_tests.control_alias`` and ``ab_tests.treatment_alias``.

An arm started as ``@NAME`` keeps the alias name here; ``control_model`` / ``treatment_model``
keep holding the model that serves the arm (the alias's current target). Existing tests have
model arms only (both columns NULL).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 10:00:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | Sequence[str] | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('ab_tests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('control_alias', sa.String(length=160), nullable=True))
        batch_op.add_column(sa.Column('treatment_alias', sa.String(length=160), nullable=True))


def downgrade() -> None:
    # A plain DROP COLUMN on both backends (SQLite >= 3.35): a batch rebuild of ab_tests would
    # trip over the views that read it (v_ab_arm_totals), which use neither column.
    op.drop_column('ab_tests', 'treatment_alias')
    op.drop_column('ab_tests', 'control_alias')

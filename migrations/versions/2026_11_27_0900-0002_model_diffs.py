"""Stored model diff reports (``model_diffs``), keyed by both models' checksums and the parameters.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 09:00:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "model_diffs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("model_a", sa.String(length=160), nullable=False),
        sa.Column("model_b", sa.String(length=160), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_diffs")),
        sa.UniqueConstraint("key", name=op.f("uq_model_diffs_key")),
    )
    with op.batch_alter_table("model_diffs", schema=None) as batch_op:
        batch_op.create_index("ix_model_diffs_models", ["model_a", "model_b"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("model_diffs", schema=None) as batch_op:
        batch_op.drop_index("ix_model_diffs_models")
    op.drop_table("model_diffs")

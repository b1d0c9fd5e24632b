"""Artifact stores: the registry's store URI, and where each recorded file's bytes live.

``settings.artifact_store`` is the store URI set at creation (``s3://bucket/cf``,
``file:///srv/cf``...); NULL keeps files on the local disk as before.
``artifact_files.uri`` and ``bert_embeddings.uri`` name the object holding a file's
bytes (a content-addressed object, or a file of a folder registered in place); NULL
means the file sits under the model's ``path`` on the local disk.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-10 10:00:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | Sequence[str] | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ADD/DROP COLUMN (SQLite >= 3.35 has both): no table rebuild, so the views on these
# tables and settings' ON DELETE SET NULL pointers are untouched.
def upgrade() -> None:
    op.add_column('settings', sa.Column('artifact_store', sa.Text(), nullable=True))
    op.add_column('artifact_files', sa.Column('uri', sa.Text(), nullable=True))
    op.create_index('ix_artifact_files_sha256', 'artifact_files', ['sha256'])
    op.add_column('bert_embeddings', sa.Column('uri', sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column('bert_embeddings', 'uri')
    op.drop_index('ix_artifact_files_sha256', table_name='artifact_files')
    op.drop_column('artifact_files', 'uri')
    op.drop_column('settings', 'artifact_store')

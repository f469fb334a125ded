"""trust chain: incidents by content, deleted versions, waivers that ended

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dataset_sha256s", sa.JSON(), nullable=True))
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("deleted_at", sa.DateTime(), nullable=True))
    with op.batch_alter_table("waivers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ended_handled_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("waivers", schema=None) as batch_op:
        batch_op.drop_column("ended_handled_at")
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.drop_column("deleted_at")
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.drop_column("dataset_sha256s")

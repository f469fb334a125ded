"""transient failures tracked on runs (they spend no attempt; re-queued after an outage)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 13:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("gate_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("transient_since", sa.DateTime(), nullable=True))
        batch_op.add_column(
            sa.Column("transient_failures", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("error_kind", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gate_runs", schema=None) as batch_op:
        batch_op.drop_column("error_kind")
        batch_op.drop_column("transient_failures")
        batch_op.drop_column("transient_since")

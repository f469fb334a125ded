"""sandbox mode on runs, admin-only diagnostics on gate results

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 12:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("gate_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sandbox", sa.String(length=16), nullable=True))
    with op.batch_alter_table("gate_results", schema=None) as batch_op:
        batch_op.add_column(sa.Column("diagnostics", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gate_results", schema=None) as batch_op:
        batch_op.drop_column("diagnostics")
    with op.batch_alter_table("gate_runs", schema=None) as batch_op:
        batch_op.drop_column("sandbox")

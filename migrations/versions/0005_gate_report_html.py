"""a gate result may keep an HTML report made in the sandbox (Giskard's scan)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 16:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("gate_results", schema=None) as batch_op:
        batch_op.add_column(sa.Column("report_html", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gate_results", schema=None) as batch_op:
        batch_op.drop_column("report_html")

"""integrity: where the alias was before a move, tamper events, signatures, incidents

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("model_promotions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("previous_version", sa.Integer(), nullable=False, server_default="0")
        )
    op.create_table(
        "tamper_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("model_name", sa.String(length=256), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("found", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_tamper_events_at", "tamper_events", ["at"], unique=False)
    op.create_index("ix_tamper_events_model_name", "tamper_events", ["model_name"], unique=False)
    op.create_table(
        "signatures",
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("model_name", sa.String(length=256), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("artifact_digest", sa.String(length=64), nullable=False),
        sa.Column("bundle", sa.Text(), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("mlflow_uri", sa.String(length=1024), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("run_id"),
    )
    op.create_index("ix_signatures_model_name", "signatures", ["model_name"], unique=False)
    op.create_table(
        "incidents",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("dataset", sa.String(length=1024), nullable=True),
        sa.Column("model_name", sa.String(length=256), nullable=True),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("affected", sa.JSON(), nullable=False),
        sa.Column("opened_by", sa.String(length=128), nullable=False),
        sa.Column("opened_at", sa.DateTime(), nullable=False),
        sa.Column("closed_by", sa.String(length=128), nullable=True),
        sa.Column("closed_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("incidents")
    op.drop_index("ix_signatures_model_name", table_name="signatures")
    op.drop_table("signatures")
    op.drop_index("ix_tamper_events_model_name", table_name="tamper_events")
    op.drop_index("ix_tamper_events_at", table_name="tamper_events")
    op.drop_table("tamper_events")
    with op.batch_alter_table("model_promotions", schema=None) as batch_op:
        batch_op.drop_column("previous_version")

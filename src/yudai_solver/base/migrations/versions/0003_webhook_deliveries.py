"""Webhook deliveries: one row per verified GitHub delivery, unique by its delivery id.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("delivery_id", sa.String(length=255), nullable=False),
        sa.Column("event", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=100), nullable=True),
        sa.Column("repo_url", sa.String(length=1000), nullable=True),
        sa.Column("issue_number", sa.Integer(), nullable=True),
        sa.Column("sender", sa.String(length=255), nullable=True),
        sa.Column("outcome", sa.String(length=50), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("solve_id", sa.String(length=64), nullable=True),
        sa.Column("comment_url", sa.String(length=1000), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["solve_id"], ["solves.id"], name="fk_webhook_deliveries_solve_id", ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name="webhook_deliveries_pkey"),
        sa.UniqueConstraint("delivery_id", name="uq_webhook_deliveries_delivery_id"),
    )
    op.create_index("ix_webhook_deliveries_solve_id", "webhook_deliveries", ["solve_id"])


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_solve_id", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")

"""Run owners: each in-process dispatcher registers itself with a heartbeat, and every run it executes names it,
so a second process on the same database recovers only the runs of a dead owner, never those of a live one.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04

Runs stored before this revision have no owner: the next dispatcher to start treats them as a dead process's.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dispatchers",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="dispatchers_pkey"),
    )
    with op.batch_alter_table("solve_runs") as batch:
        batch.add_column(sa.Column("owner", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("solve_runs") as batch:
        batch.drop_column("owner")
    op.drop_table("dispatchers")

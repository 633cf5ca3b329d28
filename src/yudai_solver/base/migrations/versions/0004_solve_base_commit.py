"""The commit every run of a solve starts from, pinned by the first run to check out.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("solves") as batch:
        batch.add_column(sa.Column("base_commit", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("solves") as batch:
        batch.drop_column("base_commit")

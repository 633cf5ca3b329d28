"""A solve's test-path globs and its verification (reproduction tests cross-checked against every candidate).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("solves") as batch:
        batch.add_column(sa.Column("test_paths", JSON, nullable=True))
        batch.add_column(sa.Column("verification", JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("solves") as batch:
        batch.drop_column("verification")
        batch.drop_column("test_paths")

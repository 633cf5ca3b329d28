"""Repository grants, issue texts per owner, and the event key that makes a webhook event start one solve.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03

Issue rows stored before this revision keep their text but get no owner (their author is unknown), so no solve
uses them: a GitHub issue is fetched again, a local repository's text is given again.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "repo_grants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("repo", sa.String(length=1000), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_repo_grants_user_id", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="repo_grants_pkey"),
        sa.UniqueConstraint("user_id", "repo", name="uq_repo_grants_user_id_repo"),
    )
    with op.batch_alter_table("issues") as batch:
        batch.add_column(sa.Column("user_id", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_issues_user_id", "users", ["user_id"], ["id"], ondelete="CASCADE")
        batch.drop_constraint("uq_issues_repo_url_number", type_="unique")
        batch.create_unique_constraint("uq_issues_user_id_repo_url_number", ["user_id", "repo_url", "number"])
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.add_column(sa.Column("event_key", sa.String(length=255), nullable=True))
        batch.create_unique_constraint("uq_webhook_deliveries_event_key", ["event_key"])


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.drop_constraint("uq_webhook_deliveries_event_key", type_="unique")
        batch.drop_column("event_key")
    # One text per repository and number again: the oldest row of each stays.
    op.execute("DELETE FROM issues WHERE id NOT IN (SELECT MIN(id) FROM issues GROUP BY repo_url, number)")
    with op.batch_alter_table("issues") as batch:
        batch.drop_constraint("uq_issues_user_id_repo_url_number", type_="unique")
        batch.create_unique_constraint("uq_issues_repo_url_number", ["repo_url", "number"])
        batch.drop_constraint("fk_issues_user_id", type_="foreignkey")
        batch.drop_column("user_id")
    op.drop_table("repo_grants")

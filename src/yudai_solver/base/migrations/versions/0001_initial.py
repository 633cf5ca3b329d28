"""Initial schema: the seed's six tables, with the seed's nine named indexes.

Revision ID: 0001
Revises:
Create Date: 2025-11-30

Types are spelled out here rather than imported from `yudai_solver.base.models`: a revision is a frozen record of
the schema at that point, and must not change when the models do.
"""

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _timestamp() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _created_updated() -> list[sa.Column[datetime]]:
    return [
        sa.Column("created_at", _timestamp(), server_default=sa.func.now(), nullable=True),
        sa.Column("updated_at", _timestamp(), nullable=True),
    ]


def _is_sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def upgrade() -> None:
    _create_users_sessions_issues()
    _create_ai_models()
    _create_solves_and_runs()


def _create_users_sessions_issues() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("token_hash", sa.String(length=128), nullable=False),
        sa.Column("is_admin", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        *_created_updated(),
        sa.PrimaryKeyConstraint("id", name="users_pkey"),
        sa.UniqueConstraint("name", name="uq_users_name"),
        sa.UniqueConstraint("token_hash", name="uq_users_token_hash"),
    )
    op.create_table(
        "chat_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=True),
        *_created_updated(),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_chat_sessions_user_id", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="chat_sessions_pkey"),
    )
    op.create_index("ix_chat_sessions_user_id", "chat_sessions", ["user_id"])
    op.create_table(
        "issues",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("repo_url", sa.String(length=1000), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("labels", JSON, nullable=True),
        sa.Column("state", sa.String(length=50), server_default="open", nullable=False),
        *_created_updated(),
        sa.PrimaryKeyConstraint("id", name="issues_pkey"),
        sa.UniqueConstraint("repo_url", "number", name="uq_issues_repo_url_number"),
    )


def _create_ai_models() -> None:
    op.create_table(
        "ai_models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("provider", sa.String(length=100), nullable=False),
        sa.Column("model_id", sa.String(length=255), nullable=False),
        sa.Column("config", JSON, nullable=True),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=True),
        *_created_updated(),
        sa.PrimaryKeyConstraint("id", name="ai_models_pkey"),
        sa.UniqueConstraint("name", name="uq_ai_models_name"),
    )
    op.create_index("idx_ai_models_is_active", "ai_models", ["is_active"])
    op.create_index("idx_ai_models_provider", "ai_models", ["provider"])


def _create_solves_and_runs() -> None:
    # solves.champion_run_id and solve_runs.solve_id reference each other. PostgreSQL gets the champion key
    # once both tables exist; SQLite cannot add a constraint later without rebuilding the table, and does not
    # check that a referenced table exists at CREATE time, so there it is declared inline.
    champion_fk = [sa.ForeignKeyConstraint(["champion_run_id"], ["solve_runs.id"], name="fk_solves_champion_run_id")]
    op.create_table(
        "solves",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("session_id", sa.Integer(), nullable=True),
        sa.Column("repo_url", sa.String(length=1000), nullable=False),
        sa.Column("issue_number", sa.Integer(), nullable=False),
        sa.Column("base_branch", sa.String(length=255), server_default="main", nullable=True),
        sa.Column("status", sa.String(length=50), server_default="pending", nullable=True),
        sa.Column("matrix", JSON, nullable=False),
        sa.Column("limits", JSON, nullable=True),
        sa.Column("requested_by", sa.String(length=255), nullable=True),
        sa.Column("champion_run_id", sa.String(length=64), nullable=True),
        sa.Column("max_parallel", sa.Integer(), nullable=True),
        sa.Column("time_budget_s", sa.Integer(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("started_at", _timestamp(), nullable=True),
        sa.Column("completed_at", _timestamp(), nullable=True),
        sa.Column("issue_title", sa.Text(), nullable=True),
        sa.Column("issue_body", sa.Text(), nullable=True),
        sa.Column("setup_command", sa.Text(), nullable=True),
        sa.Column("test_command", sa.Text(), nullable=True),
        sa.Column("create_pr", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("baseline", JSON, nullable=True),
        sa.Column("ranking", JSON, nullable=True),
        *_created_updated(),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_solves_user_id", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["session_id"], ["chat_sessions.id"], name="fk_solves_session_id"),
        *(champion_fk if _is_sqlite() else []),
        sa.PrimaryKeyConstraint("id", name="solves_pkey"),
    )
    op.create_index("idx_solves_user_id", "solves", ["user_id"])
    op.create_index("idx_solves_session_id", "solves", ["session_id"])
    op.create_index("idx_solves_status", "solves", ["status"])
    op.create_index("idx_solves_created_at", "solves", ["created_at"])
    op.create_table(
        "solve_runs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("solve_id", sa.String(length=64), nullable=True),
        sa.Column("model", sa.String(length=255), nullable=False),
        sa.Column("temperature", sa.Float(), nullable=False),
        sa.Column("max_edits", sa.Integer(), nullable=False),
        sa.Column("evolution", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=50), server_default="pending", nullable=True),
        sa.Column("sandbox_id", sa.String(length=255), nullable=True),
        sa.Column("pr_url", sa.String(length=1000), nullable=True),
        sa.Column("tests_passed", sa.Boolean(), nullable=True),
        sa.Column("loc_changed", sa.Integer(), nullable=True),
        sa.Column("files_changed", sa.Integer(), nullable=True),
        sa.Column("tokens", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=True),
        sa.Column("logs_url", sa.String(length=1000), nullable=True),
        sa.Column("diagnostics", JSON, nullable=True),
        sa.Column("trajectory_data", JSON, nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("started_at", _timestamp(), nullable=True),
        sa.Column("completed_at", _timestamp(), nullable=True),
        sa.Column("cost", sa.Float(), nullable=True),
        sa.Column("steps", sa.Integer(), nullable=True),
        sa.Column("heartbeat_at", _timestamp(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        *_created_updated(),
        sa.ForeignKeyConstraint(["solve_id"], ["solves.id"], name="fk_solve_runs_solve_id", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="solve_runs_pkey"),
    )
    op.create_index("idx_solve_runs_solve_id", "solve_runs", ["solve_id"])
    op.create_index("idx_solve_runs_status", "solve_runs", ["status"])
    op.create_index("idx_solve_runs_created_at", "solve_runs", ["created_at"])
    if not _is_sqlite():
        op.create_foreign_key("fk_solves_champion_run_id", "solves", "solve_runs", ["champion_run_id"], ["id"])


def downgrade() -> None:
    # Dropping a table drops its indexes. On PostgreSQL the circular key goes first; on SQLite the migration
    # runs with foreign keys off (see env.py), so the order there does not matter.
    if not _is_sqlite():
        op.drop_constraint("fk_solves_champion_run_id", "solves", type_="foreignkey")
    for table in ("solve_runs", "solves", "ai_models", "issues", "chat_sessions", "users"):
        op.drop_table(table)

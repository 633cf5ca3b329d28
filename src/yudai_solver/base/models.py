"""ORM models: the seed's six tables with the seed's names, types, defaults, keys and indexes.

Columns the seed does not name are additions this service needs; none of the seed's is renamed or dropped.
"""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

JSONType = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """TIMESTAMP WITH TIME ZONE that refuses naive datetimes and always returns aware UTC ones (SQLite too)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused; use datetime.now(UTC)")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    # Named constraints keep migrations, init.sql and the models comparable name for name.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_name)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s",
            "pk": "%(table_name)s_pkey",
        }
    )


class Timestamps:
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), server_default=func.now(), default=utcnow)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), onupdate=utcnow)


class User(Timestamps, Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), nullable=False, unique=True)
    token_hash: Mapped[str] = mapped_column(String(128), nullable=False, unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default=text("false"))


class ChatSession(Timestamps, Base):
    __tablename__ = "chat_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    title: Mapped[str | None] = mapped_column(String(500))


class Issue(Timestamps, Base):
    """An issue's text as one user gave it or had it fetched from the code host: each user keeps their own, so no
    user's text ever reaches another's solve (the seed's key on repository and number gained the owner)."""

    __tablename__ = "issues"
    __table_args__ = (UniqueConstraint("user_id", "repo_url", "number", name="uq_issues_user_id_repo_url_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    """The owner; NULL on rows stored before texts were per owner, whose author is unknown: no solve uses them."""
    repo_url: Mapped[str] = mapped_column(String(1000), nullable=False)
    number: Mapped[int] = mapped_column(Integer, nullable=False)
    title: Mapped[str] = mapped_column(Text, nullable=False)
    body: Mapped[str | None] = mapped_column(Text)
    labels: Mapped[list[str] | None] = mapped_column(JSONType)
    state: Mapped[str] = mapped_column(String(50), nullable=False, default="open", server_default="open")


class AIModel(Base):
    __tablename__ = "ai_models"
    __table_args__ = (
        Index("idx_ai_models_is_active", "is_active"),
        Index("idx_ai_models_provider", "provider"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), nullable=False, unique=True)
    provider: Mapped[str] = mapped_column(String(100), nullable=False)
    model_id: Mapped[str] = mapped_column(String(255), nullable=False)
    config: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    is_active: Mapped[bool | None] = mapped_column(Boolean, default=True, server_default=text("true"))
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), server_default=func.now(), default=utcnow)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), onupdate=utcnow)


class Solve(Timestamps, Base):
    __tablename__ = "solves"
    __table_args__ = (
        Index("idx_solves_user_id", "user_id"),
        Index("idx_solves_session_id", "session_id"),
        Index("idx_solves_status", "status"),
        Index("idx_solves_created_at", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    session_id: Mapped[int | None] = mapped_column(ForeignKey("chat_sessions.id"))
    repo_url: Mapped[str] = mapped_column(String(1000), nullable=False)
    issue_number: Mapped[int] = mapped_column(Integer, nullable=False)
    base_branch: Mapped[str | None] = mapped_column(String(255), default="main", server_default="main")
    status: Mapped[str | None] = mapped_column(String(50), default="pending", server_default="pending")
    matrix: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    limits: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    requested_by: Mapped[str | None] = mapped_column(String(255))
    champion_run_id: Mapped[str | None] = mapped_column(ForeignKey("solve_runs.id", use_alter=True))
    max_parallel: Mapped[int | None] = mapped_column(Integer)
    time_budget_s: Mapped[int | None] = mapped_column(Integer)
    error_message: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Additions: the task text and commands the runs need, and what the solve concluded.
    issue_title: Mapped[str | None] = mapped_column(Text)
    issue_body: Mapped[str | None] = mapped_column(Text)
    setup_command: Mapped[str | None] = mapped_column(Text)
    test_command: Mapped[str | None] = mapped_column(Text)
    create_pr: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default=text("false"))
    baseline: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    ranking: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    base_commit: Mapped[str | None] = mapped_column(String(64))
    """The commit all runs start from, so runs compare like with like: a local repository's branch tip when the solve
    starts; a remote's, the tip the first run fetched."""
    test_paths: Mapped[list[str] | None] = mapped_column(JSONType)
    """Globs naming the repository's test files (None: the defaults of `execution.testpaths`)."""
    verification: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    """Reproduction tests checked on the base and cross-checked against every candidate (see `verification`)."""


class SolveRun(Timestamps, Base):
    __tablename__ = "solve_runs"
    __table_args__ = (
        Index("idx_solve_runs_solve_id", "solve_id"),
        Index("idx_solve_runs_status", "status"),
        Index("idx_solve_runs_created_at", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    solve_id: Mapped[str | None] = mapped_column(ForeignKey("solves.id", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(String(255), nullable=False)
    temperature: Mapped[float] = mapped_column(Float, nullable=False)
    max_edits: Mapped[int] = mapped_column(Integer, nullable=False)
    evolution: Mapped[str] = mapped_column(String(255), nullable=False)
    status: Mapped[str | None] = mapped_column(String(50), default="pending", server_default="pending")
    sandbox_id: Mapped[str | None] = mapped_column(String(255))
    pr_url: Mapped[str | None] = mapped_column(String(1000))
    tests_passed: Mapped[bool | None] = mapped_column(Boolean)
    loc_changed: Mapped[int | None] = mapped_column(Integer)
    files_changed: Mapped[int | None] = mapped_column(Integer)
    tokens: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    logs_url: Mapped[str | None] = mapped_column(String(1000))
    diagnostics: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    trajectory_data: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    error_message: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Additions: cost beside tokens, progress while running, liveness for crash recovery.
    cost: Mapped[float | None] = mapped_column(Float)
    steps: Mapped[int | None] = mapped_column(Integer)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    job_id: Mapped[int | None] = mapped_column(BigInteger)
    """The run's procrastinate job, when runs are dispatched through the job queue (PostgreSQL)."""
    agent_exit: Mapped[str | None] = mapped_column(String(50))
    """How the agent's loop ended (also in `diagnostics`): a column, so a run's summary never reads diagnostics."""
    commands: Mapped[int | None] = mapped_column(Integer)
    """Commands the agent ran, kept current while it runs (`steps` counts its model calls)."""
    owner: Mapped[str | None] = mapped_column(String(64))
    """The in-process dispatcher (`Dispatcher.id`) that executes the run; only it, or whoever finds it dead,
    recovers the run. NULL for job-queue runs (procrastinate's workers own those) and runs stored before owners."""


class Dispatcher(Base):
    """An in-process dispatcher (a process executing runs in its threads): it beats while it lives and removes its
    row when it stops, so its runs are taken over only once it is gone."""

    __tablename__ = "dispatchers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    host: Mapped[str] = mapped_column(String(255), nullable=False)
    """Where it runs (host name, boot and PID namespace): a dead PID there is known dead before its beat is stale."""
    pid: Mapped[int] = mapped_column(Integer, nullable=False)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)


class RepoGrant(Timestamps, Base):
    """A repository, or every repository under a root (a directory, or an https URL prefix such as
    `https://github.com/acme`), that a user may solve; admins may solve all without grants."""

    __tablename__ = "repo_grants"
    __table_args__ = (UniqueConstraint("user_id", "repo", name="uq_repo_grants_user_id_repo"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    repo: Mapped[str] = mapped_column(String(1000), nullable=False)


class WebhookDelivery(Timestamps, Base):
    """One verified GitHub webhook delivery: its id is unique, so a redelivery starts nothing twice."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    delivery_id: Mapped[str] = mapped_column(String(255), nullable=False, unique=True)
    event: Mapped[str] = mapped_column(String(100), nullable=False)
    action: Mapped[str | None] = mapped_column(String(100))
    repo_url: Mapped[str | None] = mapped_column(String(1000))
    issue_number: Mapped[int | None] = mapped_column(Integer)
    sender: Mapped[str | None] = mapped_column(String(255))
    outcome: Mapped[str] = mapped_column(String(50), nullable=False)
    reason: Mapped[str | None] = mapped_column(Text)
    solve_id: Mapped[str | None] = mapped_column(ForeignKey("solves.id", ondelete="SET NULL"), index=True)
    comment_url: Mapped[str | None] = mapped_column(String(1000))
    event_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    """The event a started solve answers (`issue_comment:<comment id>`): a redelivery under a new id starts none."""

"""Read-only figures over a user's solves for the web page: each session's latest solve, and how each model fared."""

from dataclasses import dataclass
from datetime import datetime
from statistics import median
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from yudai_solver.base import statuses
from yudai_solver.base.models import ChatSession, Solve, SolveRun, User


@dataclass(frozen=True)
class SessionOverview:
    """A session with its latest solve: the issue, the repository, where it stands and who won."""

    id: int
    title: str | None
    created_at: datetime | None
    solves: int
    solve_id: str | None = None
    repo_url: str | None = None
    issue_number: int | None = None
    issue_title: str | None = None
    status: str | None = None
    champion_run_id: str | None = None
    champion_model: str | None = None


@dataclass(frozen=True)
class ModelStats:
    """One model / temperature / strategy over all of a user's solves. `pass_rate` is over runs that ended
    (completed or failed); medians are over the runs that report the figure, None when none does."""

    model: str
    temperature: float
    evolution: str
    runs: int
    runs_ended: int
    runs_passed: int
    pass_rate: float | None
    champions: int
    median_cost: float | None
    median_latency_ms: float | None
    median_tokens: float | None


def session_overviews(session: Session, *, user: User) -> list[SessionOverview]:
    """The user's sessions, newest first, each with its latest solve (if any): one query."""
    latest = (
        select(
            Solve.id,
            Solve.session_id,
            Solve.repo_url,
            Solve.issue_number,
            Solve.issue_title,
            Solve.status,
            Solve.champion_run_id,
            func.count().over(partition_by=Solve.session_id).label("solves"),
            func.row_number()
            .over(partition_by=Solve.session_id, order_by=(Solve.created_at.desc(), Solve.id.desc()))
            .label("position"),
        )
        .where(Solve.user_id == user.id)
        .subquery()
    )
    champion = aliased(SolveRun)
    query = (
        select(
            ChatSession.id,
            ChatSession.title,
            ChatSession.created_at,
            func.coalesce(latest.c.solves, 0).label("solves"),
            latest.c.id.label("solve_id"),
            latest.c.repo_url,
            latest.c.issue_number,
            latest.c.issue_title,
            latest.c.status,
            latest.c.champion_run_id,
            champion.model.label("champion_model"),
        )
        .outerjoin(latest, (latest.c.session_id == ChatSession.id) & (latest.c.position == 1))
        .outerjoin(champion, champion.id == latest.c.champion_run_id)
        .where(ChatSession.user_id == user.id)
        .order_by(ChatSession.id.desc())
    )
    return [SessionOverview(**row) for row in session.execute(query).mappings()]


def model_stats(session: Session, *, user: User) -> list[ModelStats]:
    """Per model / temperature / strategy: runs, the share that passed their tests, champions won, medians."""
    query = (
        select(
            SolveRun.model,
            SolveRun.temperature,
            SolveRun.evolution,
            SolveRun.status,
            SolveRun.tests_passed,
            SolveRun.cost,
            SolveRun.latency_ms,
            SolveRun.tokens,
            (Solve.champion_run_id == SolveRun.id).label("champion"),
        )
        .join(Solve, Solve.id == SolveRun.solve_id)
        .where(Solve.user_id == user.id)
    )
    groups: dict[tuple[str, float, str], list[Any]] = {}
    for row in session.execute(query):
        groups.setdefault((row.model, row.temperature, row.evolution), []).append(row)
    return [_stats(key, rows) for key, rows in sorted(groups.items())]


def _stats(key: tuple[str, float, str], rows: list[Any]) -> ModelStats:
    ended = [r for r in rows if r.status in (statuses.COMPLETED, statuses.FAILED)]
    passed = sum(1 for r in ended if r.status == statuses.COMPLETED and r.tests_passed is True)
    return ModelStats(
        model=key[0],
        temperature=key[1],
        evolution=key[2],
        runs=len(rows),
        runs_ended=len(ended),
        runs_passed=passed,
        pass_rate=passed / len(ended) if ended else None,
        champions=sum(1 for r in rows if r.champion),
        median_cost=_median([r.cost for r in ended]),
        median_latency_ms=_median([r.latency_ms for r in ended]),
        median_tokens=_median([r.tokens for r in ended]),
    )


def _median(values: list[float | int | None]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return median(present) if present else None

"""Budgets that stop spending: a solve's time budget and its cost budget, enforced on every unfinished run."""

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from yudai_solver.base import statuses
from yudai_solver.base.db import transaction
from yudai_solver.base.models import Solve, SolveRun, utcnow
from yudai_solver.solving.reducer import expire_unfinished_runs, finish_if_done

TIME_EXCEEDED = "time budget exceeded"
COST_EXCEEDED = "cost budget exceeded"


def expire_over_budget(factory: sessionmaker[Session]) -> list[str]:
    """Fail the unfinished runs of every running solve past its time or cost budget, and settle each such solve.

    Returns their ids, so the caller can kill the commands still running. Idempotent: any number of workers may
    call it at once (the runs are locked and re-checked).
    """
    over = _over_time(factory) | _over_cost(factory)
    for solve_id, reason in over.items():
        with transaction(factory) as session:
            expire_unfinished_runs(session, solve_id, reason)
            finish_if_done(session, solve_id, stop_verification=reason)
    return list(over)


def _over_time(factory: sessionmaker[Session]) -> dict[str, str]:
    now = utcnow()
    with factory() as session:
        rows = session.execute(
            select(Solve.id, Solve.started_at, Solve.time_budget_s).where(
                Solve.status == statuses.RUNNING, Solve.time_budget_s.is_not(None), Solve.started_at.is_not(None)
            )
        ).all()
    # The query left out the solves without a start or a budget; the checks only tell the types so.
    return {
        sid: TIME_EXCEEDED
        for sid, started, budget in rows
        if started is not None and budget is not None and (now - started).total_seconds() >= budget
    }


def _over_cost(factory: sessionmaker[Session]) -> dict[str, str]:
    # `limits` is JSON; reading it in Python keeps the query the same on SQLite and PostgreSQL.
    with factory() as session:
        running = session.execute(select(Solve.id, Solve.limits).where(Solve.status == statuses.RUNNING)).all()
        budgets = {
            sid: limits["cost_budget_usd"]
            for sid, limits in running
            if limits and limits.get("cost_budget_usd") is not None
        }
        if not budgets:
            return {}
        spent = dict(
            session.execute(
                select(SolveRun.solve_id, func.coalesce(func.sum(SolveRun.cost), 0.0))
                .where(SolveRun.solve_id.in_(budgets))
                .group_by(SolveRun.solve_id)
            ).all()
        )
    return {sid: COST_EXCEEDED for sid, budget in budgets.items() if spent.get(sid, 0.0) >= budget}

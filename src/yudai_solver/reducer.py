"""The solve's final step: once no run is unfinished, rank the runs, name the champion, end the solve."""

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import statuses
from .models import Solve, SolveRun, utcnow
from .ranking import Outcome, rank

OUTCOME_COLUMNS = [SolveRun.id, SolveRun.model, SolveRun.status, SolveRun.tests_passed, SolveRun.loc_changed,
                   SolveRun.files_changed, SolveRun.tokens, SolveRun.latency_ms, SolveRun.error_message]


def finish_if_done(session: Session, solve_id: str) -> bool:
    """End the solve if all its runs have ended; exactly once, since the solve row is locked and re-checked."""
    solve = session.scalar(select(Solve).where(Solve.id == solve_id).with_for_update())
    if solve is None or solve.status in statuses.FINISHED:
        return False
    rows = session.execute(select(*OUTCOME_COLUMNS).where(SolveRun.solve_id == solve_id)).all()
    if any(row.status in (statuses.PENDING, statuses.RUNNING) for row in rows):
        return False
    tests_ran = bool(solve.test_command) or any(row.tests_passed is not None for row in rows)
    ranking = rank([Outcome(*row[:8]) for row in rows], tests_ran=tests_ran)
    solve.ranking = ranking.as_json()
    solve.champion_run_id = ranking.champion.id if ranking.champion else None
    if ranking.champion:
        statuses.transition(solve, statuses.COMPLETED)
    else:
        statuses.transition(solve, statuses.FAILED, error=_failure(ranking.reason, rows))
    session.flush()
    return True


def _failure(reason: str, rows) -> str:
    errors = sorted({row.error_message for row in rows if row.error_message})
    return reason + (f"; run errors: {'; '.join(errors)[:2000]}" if errors else "")


def end_unfinished_runs(session: Session, solve_id: str, status: str, reason: str, *,
                        keep: str | None = None) -> list[str]:
    """Move every pending or running run of the solve (but `keep`) to `status` with `reason`; returns their ids.

    The rows are locked first, so a run finishing at the same moment is either ended here or finished there.
    """
    query = select(SolveRun).where(
        SolveRun.solve_id == solve_id, SolveRun.status.in_([statuses.PENDING, statuses.RUNNING])
    )
    if keep is not None:
        query = query.where(SolveRun.id != keep)
    runs = session.scalars(query.with_for_update()).all()
    now = utcnow()
    for run in runs:
        statuses.transition(run, status, error=reason, now=now)
    session.flush()
    return [run.id for run in runs]


def expire_unfinished_runs(session: Session, solve_id: str, reason: str) -> list[str]:
    """Fail every pending or running run of the solve with `reason` (a budget ran out); returns their ids."""
    return end_unfinished_runs(session, solve_id, statuses.FAILED, reason)


def cancel_other_runs(session: Session, solve_id: str, *, winner_id: str) -> list[str]:
    """Early stop: cancel the solve's other unfinished runs because `winner_id` passed."""
    return end_unfinished_runs(session, solve_id, statuses.CANCELLED, f"early stop: run {winner_id} passed the tests",
                               keep=winner_id)

"""The solve's final step: once no run is unfinished, rank the runs, name the champion, end the solve."""

from sqlalchemy import select
from sqlalchemy.orm import Session

from yudai_solver.base import statuses
from yudai_solver.base.models import Solve, SolveRun, utcnow
from yudai_solver.solving.agreement import groups
from yudai_solver.solving.evidence import RunFacts, gather
from yudai_solver.solving.ranking import Evidence, disqualification, rank, tied_at_top

FACT_COLUMNS = [
    SolveRun.id,
    SolveRun.model,
    SolveRun.status,
    SolveRun.tests_passed,
    SolveRun.loc_changed,
    SolveRun.files_changed,
    SolveRun.tokens,
    SolveRun.latency_ms,
    SolveRun.error_message,
    SolveRun.diagnostics,
]
VERIFYING = ("pending", "running", "judging")


def finish_if_done(session: Session, solve_id: str, *, stop_verification: str | None = None) -> bool:
    """End the solve if all its runs have ended; exactly once, since the solve row is locked and re-checked.

    Before it ends, a solve whose runs wrote reproduction tests (or that has a judge and a tie) is verified: the
    verification is marked pending here and run by whoever finished the last run (see `execution.verification`).
    `stop_verification` (a budget ran out) ends a verification in progress and ranks on what it found.
    """
    solve = session.scalar(select(Solve).where(Solve.id == solve_id).with_for_update())
    if solve is None or solve.status in statuses.FINISHED:
        return False
    rows = session.execute(select(*FACT_COLUMNS).where(SolveRun.solve_id == solve_id)).all()
    if any(row.status in (statuses.PENDING, statuses.RUNNING) for row in rows):
        return False
    facts = [RunFacts(*row) for row in rows]
    verification = solve.verification or {}
    state = verification.get("state")
    if state in VERIFYING and stop_verification:
        solve.verification = {**verification, "state": "stopped", "reason": stop_verification}
    elif state in VERIFYING:
        return False
    elif state is None and stop_verification is None and verification_needed(solve, facts):
        solve.verification = {"state": "pending", "heartbeat_at": utcnow().isoformat()}
        session.flush()
        return False
    _rank(solve, facts)
    session.flush()
    return True


def verification_needed(solve: Solve, facts: list[RunFacts]) -> bool:
    """Some completed run's own reproduction test passed with its fix, or a judge may have a tie to break."""
    completed = [f for f in facts if f.status == statuses.COMPLETED]
    if any(c.get("passes_with_fix") for f in completed for c in (f.diagnostics or {}).get("reproduction", [])):
        return True
    if not (solve.limits or {}).get("judge_model"):
        return False
    return len(tied_at_top(gather_evidence(solve, facts))) > 1


def gather_evidence(solve: Solve, facts: list[RunFacts]) -> list[Evidence]:
    """Every run's evidence; agreement counts only runs that qualify, so a disqualified run vouches for no one."""
    verification = solve.verification or {}
    judged = (verification.get("judge") or {}).get("run_id")
    first = gather(facts, baseline=solve.baseline, verification=verification, agreement={}, judged=judged)
    prints = {e.id: e.fingerprint for e in first if disqualification(e) is None}
    agreement = {run_id: max(size, 1) for run_id, size in groups(prints).items()}
    return gather(facts, baseline=solve.baseline, verification=verification, agreement=agreement, judged=judged)


def _rank(solve: Solve, facts: list[RunFacts]) -> None:
    ranking = rank(gather_evidence(solve, facts))
    solve.ranking = ranking.as_json()
    solve.champion_run_id = ranking.champion.id if ranking.champion else None
    if ranking.champion:
        statuses.transition(solve, statuses.COMPLETED)
    else:
        statuses.transition(solve, statuses.FAILED, error=_failure(ranking.reason, facts))


def _failure(reason: str, facts: list[RunFacts]) -> str:
    errors = sorted({f.error_message for f in facts if f.error_message})
    return reason + (f"; run errors: {'; '.join(errors)[:2000]}" if errors else "")


def end_unfinished_runs(
    session: Session, solve_id: str, status: str, reason: str, *, keep: str | None = None
) -> list[str]:
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
    return end_unfinished_runs(
        session, solve_id, statuses.CANCELLED, f"early stop: run {winner_id} passed the tests", keep=winner_id
    )

"""The status vocabulary of solves and runs and the one function allowed to change a status."""

from datetime import datetime

from yudai_solver.base.errors import InvalidTransition
from yudai_solver.base.models import Solve, SolveRun, utcnow

PENDING, RUNNING, COMPLETED, FAILED, CANCELLED = "pending", "running", "completed", "failed", "cancelled"
ALL = (PENDING, RUNNING, COMPLETED, FAILED, CANCELLED)
FINISHED = frozenset({COMPLETED, FAILED, CANCELLED})

RUN_TRANSITIONS: dict[str, frozenset[str]] = {
    PENDING: frozenset({RUNNING, CANCELLED, FAILED}),
    # running -> pending: a run whose worker died is queued again.
    RUNNING: frozenset({COMPLETED, FAILED, CANCELLED, PENDING}),
    COMPLETED: frozenset(),
    FAILED: frozenset(),
    CANCELLED: frozenset(),
}

SOLVE_TRANSITIONS: dict[str, frozenset[str]] = {
    # pending -> completed/failed: every run may end before the solve was marked running (e.g. all cancelled).
    PENDING: frozenset({RUNNING, COMPLETED, FAILED, CANCELLED}),
    RUNNING: frozenset({COMPLETED, FAILED, CANCELLED}),
    COMPLETED: frozenset(),
    FAILED: frozenset(),
    CANCELLED: frozenset(),
}


def can_transition(obj: Solve | SolveRun, new: str) -> bool:
    table = SOLVE_TRANSITIONS if isinstance(obj, Solve) else RUN_TRANSITIONS
    return new in table[obj.status or PENDING]


def transition(obj: Solve | SolveRun, new: str, *, error: str | None = None, now: datetime | None = None) -> None:
    """Move a solve or run to `new`, stamping started_at/completed_at; raises InvalidTransition if not allowed."""
    old = obj.status or PENDING
    if not can_transition(obj, new):
        kind = "solve" if isinstance(obj, Solve) else "run"
        raise InvalidTransition(f"{kind} {obj.id} cannot go from {old} to {new}")
    now = now or utcnow()
    obj.status = new
    if new == RUNNING and obj.started_at is None:
        obj.started_at = now
    if new == PENDING:
        obj.started_at = None
    if new in FINISHED:
        obj.completed_at = now
    if error is not None:
        obj.error_message = error

"""After a solve has ended — whoever ended it (last run, budget, lost worker) — its PR and issue comment."""

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from yudai_solver.base import statuses
from yudai_solver.base.models import Solve
from yudai_solver.base.settings import Settings


def after_solve(settings: Settings, factory: sessionmaker[Session], solve_id: str) -> None:
    """Run the solve's follow-up if it has ended (completed or failed). Idempotent: no second PR, no second
    comment, so every path that may have ended a solve can simply call it after its transaction committed."""
    with factory() as session:
        status = session.scalar(select(Solve.status).where(Solve.id == solve_id))
    if status not in (statuses.COMPLETED, statuses.FAILED):
        return
    from yudai_solver.scm.followup import on_solve_ended

    on_solve_ended(settings, factory, solve_id)

"""The one follow-up once a solve has ended: the champion's pull request, then the answer on the issue."""

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from yudai_solver.base import statuses
from yudai_solver.base.models import Solve
from yudai_solver.base.settings import Settings
from yudai_solver.scm.comments import report_on_issue
from yudai_solver.scm.git import Checkouts
from yudai_solver.scm.pr import PrOutcome, open_champion_pr, record_failure, retry

log = logging.getLogger(__name__)
ENDED = (statuses.COMPLETED, statuses.FAILED)


def on_solve_ended(
    settings: Settings, session_factory: sessionmaker[Session], solve_id: str, workspaces: Checkouts
) -> str | None:
    """If the solve has ended (completed or failed): open the champion's PR (if asked) and comment on the issue
    (if a webhook started the solve); else do nothing. Returns the PR's URL, if any.

    Idempotent (no second PR, no second comment) and it never raises: a failure is recorded on the run or logged.
    So whatever may have ended a solve (its last run, its verification, a budget, a lost worker) calls it once
    that transaction has committed.
    """
    with session_factory() as session:
        status = session.scalar(select(Solve.status).where(Solve.id == solve_id))
    if status not in ENDED:
        return None
    url = None
    try:
        url = open_champion_pr(settings, session_factory, solve_id, workspaces)
    except Exception as exc:
        log.exception("solve %s: opening the pull request failed", solve_id)
        try:
            record_failure(session_factory, solve_id, f"{type(exc).__name__}: {exc}")
        except Exception:
            log.exception("solve %s: recording the pull request's failure failed", solve_id)
    _report(settings, session_factory, solve_id)
    return url


def retry_pr(
    settings: Settings, session_factory: sessionmaker[Session], solve_id: str, workspaces: Checkouts
) -> PrOutcome:
    """The retry endpoint: open the champion's PR (asked for or not) and comment if none was made yet.

    Conflict when the solve has no champion; a push or API failure is in the outcome (and on the run).
    """
    outcome = retry(settings, session_factory, solve_id, workspaces)
    _report(settings, session_factory, solve_id)
    return outcome


def _report(settings: Settings, session_factory: sessionmaker[Session], solve_id: str) -> None:
    try:
        report_on_issue(settings, session_factory, solve_id)
    except Exception:
        log.exception("solve %s: commenting on the issue failed", solve_id)

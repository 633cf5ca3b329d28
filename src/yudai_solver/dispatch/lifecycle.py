"""What both dispatchers share around a run's life: the environment runs get, how often a lost run is tried again,
when a verification counts as stalled, and the one step once a solve may have ended."""

from sqlalchemy.orm import Session, sessionmaker

from yudai_solver.base.settings import Settings
from yudai_solver.execution.control import RunControl
from yudai_solver.execution.run import RunEnv
from yudai_solver.execution.verification import verify_pending
from yudai_solver.execution.workspace import workspaces_for
from yudai_solver.scm.followup import on_solve_ended

MAX_ATTEMPTS = 2
"""A run left `running` by a dead worker is run again until it has been claimed this often, then "worker lost"."""
STALE_VERIFICATION_S = 30
"""A verification whose heartbeat is older than this has nobody at work on it: it is started again."""


def run_env(settings: Settings, session_factory: sessionmaker[Session]) -> RunEnv:
    return RunEnv(settings, session_factory, workspaces_for(settings))


def settle_solve(env: RunEnv, solve_id: str, control: RunControl | None = None) -> None:
    """The solve may have ended (a run returned, runs were lost or expired, a verification was resumed): verify it
    if its verification is pending, then follow up (PR, issue comment) if it has ended.

    Idempotent and cheap when there is nothing to do, so a dispatcher calls it after anything that may have ended a
    solve, once that transaction has committed. `control` lets the dispatcher stop the verification like a run.
    """
    verify_pending(env, solve_id, control)
    on_solve_ended(env.settings, env.session_factory, solve_id, env.workspaces)

"""The one boundary between the API and whatever executes runs."""

from typing import Protocol

from sqlalchemy.orm import Session

from yudai_solver.base.models import Solve, SolveRun


class Dispatcher(Protocol):
    def start(self) -> None:
        """Begin executing: pick up pending runs and settle runs a dead process left running."""

    def dispatch(self, session: Session, solve: Solve, runs: list[SolveRun]) -> None:
        """Commit the session holding the solve's new pending runs, and have them executed within the solve's
        limits: whatever must go in that transaction (e.g. jobs) goes in before the commit, the rest after it."""

    def cancel(self, solve_id: str) -> None:
        """The solve was cancelled in the database; stop its running commands now."""

    def stop(self) -> None:
        """Stop executing; unfinished runs stay in the database for the next start."""


class NullDispatcher:
    """Executes nothing: for an API process whose runs are executed elsewhere."""

    def start(self) -> None: ...

    def dispatch(self, session: Session, solve: Solve, runs: list[SolveRun]) -> None:
        session.commit()

    def cancel(self, solve_id: str) -> None: ...

    def stop(self) -> None: ...

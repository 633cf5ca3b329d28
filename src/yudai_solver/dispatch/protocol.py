"""The one boundary between the API and whatever executes runs."""

from typing import Protocol


class Dispatcher(Protocol):
    def start(self) -> None:
        """Begin executing: pick up pending runs and settle runs a dead process left running."""

    def enqueue(self, session, solve, runs) -> None:
        """Inside the caller's transaction, before commit: make the new runs executable (e.g. defer jobs)."""

    def submit(self, solve_id: str) -> None:
        """The solve's runs were committed as pending; execute them within the solve's limits."""

    def cancel(self, solve_id: str) -> None:
        """The solve was cancelled in the database; stop its running commands now."""

    def stop(self) -> None:
        """Stop executing; unfinished runs stay in the database for the next start."""


class NullDispatcher:
    """Executes nothing: for an API process whose runs are executed elsewhere."""

    def start(self) -> None: ...

    def enqueue(self, session, solve, runs) -> None: ...

    def submit(self, solve_id: str) -> None: ...

    def cancel(self, solve_id: str) -> None: ...

    def stop(self) -> None: ...

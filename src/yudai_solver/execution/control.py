"""The handle a dispatcher keeps on a run in progress, to stop it from another thread."""

import threading
from dataclasses import dataclass, field

from yudai_solver.sandboxes.protocol import Sandbox


@dataclass
class RunControl:
    """A cancel flag the agent checks between steps, and the sandbox whose commands are killed at once."""

    run_id: str
    solve_id: str
    cancel_event: threading.Event = field(default_factory=threading.Event)
    reason: str | None = None
    requeue: bool = False
    """Set when the worker shuts down: the run goes back to the queue instead of failing."""
    _sandboxes: list[Sandbox] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def stop(self, reason: str) -> None:
        with self._lock:
            self.reason = self.reason or reason
            self.cancel_event.set()
            sandboxes = list(self._sandboxes)
        for sandbox in sandboxes:
            sandbox.kill()

    def attach(self, sandbox: Sandbox) -> None:
        """Remember a sandbox of the run; kill it right away if the run was stopped before it existed."""
        with self._lock:
            self._sandboxes.append(sandbox)
            stopped = self.cancel_event.is_set()
        if stopped:
            sandbox.kill()

    @property
    def stopped(self) -> bool:
        return self.cancel_event.is_set()

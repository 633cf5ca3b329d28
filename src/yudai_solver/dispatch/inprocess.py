"""The embedded-default dispatcher: runs execute in threads of this process; the database stays the truth.

A scheduler thread starts pending runs within `max_parallel` per solve and `max_concurrent_runs` overall, and
enforces time budgets. It assumes it is the only executor of its database (the embedded default): at start it
re-queues runs that a dead process left `running`, or fails them with "worker lost" after too many attempts.
"""

import logging
import threading
import time
from collections import Counter

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from yudai_solver.base import statuses
from yudai_solver.base.db import transaction
from yudai_solver.execution.control import RunControl
from yudai_solver.execution.followup import after_solve
from yudai_solver.execution.verification import stalled as stalled_verifications
from yudai_solver.execution.verification import verify_pending
from yudai_solver.base.models import Solve, SolveRun
from yudai_solver.solving.budgets import expire_over_budget
from yudai_solver.solving.reducer import finish_if_done
from yudai_solver.base.settings import Settings

log = logging.getLogger(__name__)
TICK_S = 0.5
MAX_ATTEMPTS = 2
SWEEP_EVERY = 20  # ticks: every 10 s
STALE_VERIFICATION_S = 30


class InProcessDispatcher:
    def __init__(self, settings: Settings, session_factory: sessionmaker[Session]):
        from yudai_solver.execution.run import RunEnv
        from yudai_solver.scm.hosts import workspaces_for

        self.env = RunEnv(settings, session_factory, workspaces_for(settings))
        self.settings, self.factory = settings, session_factory
        self._controls: dict[str, RunControl] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._scheduler: threading.Thread | None = None

    def start(self) -> None:
        for solve_id in recover_lost_runs(self.factory):
            after_solve(self.settings, self.factory, solve_id)
        for solve_id in stalled_verifications(self.factory, older_than_s=0):  # ours alone: none is alive
            self._launch_verification(solve_id)
        if self.settings.sandbox == "e2b":  # every run of this database is ours: none still runs elsewhere
            from yudai_solver.sandboxes.e2b import kill_orphans

            kill_orphans(self.settings)
        self._scheduler = threading.Thread(target=self._loop, name="yudai-scheduler", daemon=True)
        self._scheduler.start()

    def enqueue(self, session, solve, runs) -> None:
        """Nothing to do: the pending rows are this dispatcher's queue."""

    def submit(self, solve_id: str) -> None:
        self._wake.set()

    def cancel(self, solve_id: str) -> None:
        self._stop_runs([c for c in self._active() if c.solve_id == solve_id], "cancelled by user")

    def stop(self) -> None:
        """Stop scheduling, kill running commands and put their runs back in the queue for the next start."""
        self._stopping.set()
        self._wake.set()
        active = self._active()
        for control in active:
            control.requeue = True
            control.stop("server shutting down")
        for thread in list(self._threads.values()):
            thread.join(timeout=10)
        if self._scheduler:
            self._scheduler.join(timeout=5)

    def wait_idle(self, timeout: float) -> bool:
        """For tests and the embedded CLI: True once no run executes and none waits, within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while self._active() or self._pending_exists():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def _active(self) -> list[RunControl]:
        with self._lock:
            return list(self._controls.values())

    def _stop_runs(self, controls: list[RunControl], reason: str) -> None:
        for control in controls:
            control.stop(reason)

    def _loop(self) -> None:
        tick = 0
        while not self._stopping.is_set():
            tick += 1
            try:
                self._enforce_budgets()
                self._schedule()
                if tick % SWEEP_EVERY == 0:
                    self._resume_verifications()
            except Exception:  # noqa: BLE001 - a database hiccup must not kill the scheduler
                log.exception("scheduler tick failed")
            self._wake.wait(TICK_S)
            self._wake.clear()

    def _schedule(self) -> None:
        free = self.settings.max_concurrent_runs - len(self._active())
        if free <= 0:
            return
        for run_id, solve_id in self._startable(free):
            self._launch(run_id, solve_id)

    def _startable(self, free: int) -> list[tuple[str, str]]:
        running = Counter(c.solve_id for c in self._active())
        with self.factory() as session:
            rows = session.execute(
                _waiting(SolveRun.id, SolveRun.solve_id, Solve.max_parallel)
                .order_by(Solve.created_at, SolveRun.created_at, SolveRun.id)
            ).all()
        chosen = []
        for run_id, solve_id, max_parallel in rows:
            if len(chosen) >= free or run_id in self._controls:
                continue
            if max_parallel is None or running[solve_id] < max_parallel:
                running[solve_id] += 1
                chosen.append((run_id, solve_id))
        return chosen

    def _launch(self, run_id: str, solve_id: str) -> None:
        control = RunControl(run_id, solve_id)
        thread = threading.Thread(target=self._execute, args=(control,), name=f"run-{run_id[:8]}", daemon=True)
        with self._lock:
            self._controls[run_id], self._threads[run_id] = control, thread
        thread.start()

    def _execute(self, control: RunControl) -> None:
        from yudai_solver.execution.run import execute_run

        try:
            cancelled = execute_run(self.env, control)
            self._stop_runs([c for c in self._active() if c.run_id in cancelled], "early stop")
        except Exception:  # noqa: BLE001 - execute_run records failures; this guards the thread itself
            log.exception("run %s crashed outside its own error handling", control.run_id)
        finally:
            with self._lock:
                self._controls.pop(control.run_id, None)
                self._threads.pop(control.run_id, None)
            self._wake.set()

    def _launch_verification(self, solve_id: str) -> None:
        key = f"verify:{solve_id}"
        control = RunControl(key, solve_id)
        thread = threading.Thread(target=self._verify, args=(control,), name=f"verify-{solve_id[:8]}", daemon=True)
        with self._lock:
            self._controls[key], self._threads[key] = control, thread
        thread.start()

    def _verify(self, control: RunControl) -> None:
        try:
            verify_pending(self.env, control.solve_id, control)
            after_solve(self.settings, self.factory, control.solve_id)
        except Exception:  # noqa: BLE001 - guards the thread; the next start or sweep picks it up again
            log.exception("verification of solve %s crashed", control.solve_id)
        finally:
            with self._lock:
                self._controls.pop(control.run_id, None)
                self._threads.pop(control.run_id, None)

    def _resume_verifications(self) -> None:
        for solve_id in stalled_verifications(self.factory, older_than_s=STALE_VERIFICATION_S):
            if f"verify:{solve_id}" not in self._controls:
                self._launch_verification(solve_id)

    def _enforce_budgets(self) -> None:
        for solve_id in expire_over_budget(self.factory):
            self._stop_runs([c for c in self._active() if c.solve_id == solve_id], "budget exceeded")
            after_solve(self.settings, self.factory, solve_id)

    def _pending_exists(self) -> bool:
        with self.factory() as session:
            return session.scalar(_waiting(SolveRun.id).limit(1)) is not None


def _waiting(*columns):
    """Pending runs of solves still going: this dispatcher's queue."""
    return (select(*columns).join(Solve, Solve.id == SolveRun.solve_id)
            .where(SolveRun.status == statuses.PENDING, Solve.status.in_([statuses.PENDING, statuses.RUNNING])))


def recover_lost_runs(factory: sessionmaker[Session]) -> set[str]:
    """Runs left `running` by a dead process: queue them again, or fail them after MAX_ATTEMPTS.

    Returns the ids of the solves concerned."""
    with transaction(factory) as session:
        lost = session.scalars(select(SolveRun).where(SolveRun.status == statuses.RUNNING)).all()
        for run in lost:
            if run.attempts >= MAX_ATTEMPTS:
                statuses.transition(run, statuses.FAILED, error="worker lost")
            else:
                statuses.transition(run, statuses.PENDING)
        session.flush()
        for solve_id in {run.solve_id for run in lost}:
            finish_if_done(session, solve_id)
    return {run.solve_id for run in lost}

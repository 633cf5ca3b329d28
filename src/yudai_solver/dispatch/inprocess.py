"""The embedded-default dispatcher: runs execute in threads of this process; the database stays the truth.

A scheduler thread starts pending runs within `max_parallel` per solve and `max_concurrent_runs` overall, and
enforces time budgets. It assumes it is the only executor of its database (the embedded default): at start it
re-queues runs that a dead process left `running`, or fails them with "worker lost" after too many attempts.
Whatever may have ended a solve (a run returning, a budget, a lost run, a stalled verification) is followed by
`lifecycle.settle_solve`: in the run's thread after a run, in a thread of its own otherwise (budgets: inline).
"""

import logging
import threading
import time
from collections import Counter
from typing import TypeVarTuple

from sqlalchemy import Select, select
from sqlalchemy.orm import Session, sessionmaker

from yudai_solver.base import statuses
from yudai_solver.base.db import transaction
from yudai_solver.base.models import Solve, SolveRun
from yudai_solver.base.settings import Settings
from yudai_solver.dispatch.lifecycle import MAX_ATTEMPTS, STALE_VERIFICATION_S, run_env, settle_solve
from yudai_solver.execution.control import RunControl
from yudai_solver.execution.records import settle_lost
from yudai_solver.execution.run import execute_run
from yudai_solver.execution.verification import stalled as stalled_verifications
from yudai_solver.sandboxes.e2b import kill_orphans
from yudai_solver.solving.budgets import expire_over_budget
from yudai_solver.solving.reducer import finish_if_done

log = logging.getLogger(__name__)
_Ts = TypeVarTuple("_Ts")
TICK_S = 0.5
SWEEP_EVERY = 20  # ticks: every 10 s


class InProcessDispatcher:
    def __init__(self, settings: Settings, session_factory: sessionmaker[Session]) -> None:
        self.env = run_env(settings, session_factory)
        self.settings, self.factory = settings, session_factory
        self._controls: dict[str, RunControl] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._scheduler: threading.Thread | None = None

    def start(self) -> None:
        recovered = recover_lost_runs(self.factory)
        stalled = stalled_verifications(self.factory, older_than_s=0)  # ours alone: none is alive
        for solve_id in sorted(recovered.union(stalled)):
            self._launch_settle(solve_id)
        if self.settings.sandbox == "e2b":  # every run of this database is ours: none still runs elsewhere
            kill_orphans(self.settings)
        self._scheduler = threading.Thread(target=self._loop, name="yudai-scheduler", daemon=True)
        self._scheduler.start()

    def dispatch(self, session: Session, solve: Solve, runs: list[SolveRun]) -> None:
        """The committed pending rows are this dispatcher's queue: commit, then wake the scheduler."""
        session.commit()
        self.submit(solve.id)

    def submit(self, solve_id: str) -> None:
        """Pending runs were committed (by `dispatch`, or by a caller's own transaction): schedule them now."""
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
            except Exception:
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
                _waiting(
                    select(SolveRun.id, Solve.id, Solve.max_parallel)
                ).order_by(  # the join: Solve.id is the run's solve_id
                    Solve.created_at, SolveRun.created_at, SolveRun.id
                )
            ).all()
        chosen: list[tuple[str, str]] = []
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
        try:
            cancelled = execute_run(self.env, control)
            self._stop_runs([c for c in self._active() if c.run_id in cancelled], "early stop")
            settle_solve(self.env, control.solve_id)
        except Exception:
            log.exception("run %s crashed outside its own error handling", control.run_id)
        finally:
            self._forget(control)
            self._wake.set()

    def _launch_settle(self, solve_id: str) -> None:
        """Settle a solve in a thread of its own, which `cancel` and `stop` reach like a run's."""
        key = f"settle:{solve_id}"
        control = RunControl(key, solve_id)
        thread = threading.Thread(target=self._settle, args=(control,), name=f"settle-{solve_id[:8]}", daemon=True)
        with self._lock:
            self._controls[key], self._threads[key] = control, thread
        thread.start()

    def _settle(self, control: RunControl) -> None:
        try:
            settle_solve(self.env, control.solve_id, control)
        except Exception:
            log.exception("settling solve %s crashed", control.solve_id)
        finally:
            self._forget(control)

    def _forget(self, control: RunControl) -> None:
        with self._lock:
            self._controls.pop(control.run_id, None)
            self._threads.pop(control.run_id, None)

    def _resume_verifications(self) -> None:
        for solve_id in stalled_verifications(self.factory, older_than_s=STALE_VERIFICATION_S):
            if f"settle:{solve_id}" not in self._controls:
                self._launch_settle(solve_id)

    def _enforce_budgets(self) -> None:
        for solve_id in expire_over_budget(self.factory):
            self._stop_runs([c for c in self._active() if c.solve_id == solve_id], "budget exceeded")
            settle_solve(self.env, solve_id)

    def _pending_exists(self) -> bool:
        with self.factory() as session:
            return session.scalar(_waiting(select(SolveRun.id)).limit(1)) is not None


def _waiting(query: Select[*_Ts]) -> Select[*_Ts]:
    """`query` over the pending runs of solves still going: this dispatcher's queue."""
    return query.join(Solve, Solve.id == SolveRun.solve_id).where(
        SolveRun.status == statuses.PENDING, Solve.status.in_([statuses.PENDING, statuses.RUNNING])
    )


def recover_lost_runs(factory: sessionmaker[Session]) -> set[str]:
    """Runs left `running` by a dead process: queue them again, or fail them after MAX_ATTEMPTS (a baseline
    they were measuring is freed or failed with them, see `records.settle_lost`).

    Returns the ids of the solves concerned."""
    with transaction(factory) as session:
        lost = session.scalars(select(SolveRun).where(SolveRun.status == statuses.RUNNING)).all()
        for run in lost:
            settle_lost(session, run, max_attempts=MAX_ATTEMPTS)
        session.flush()
        # Every run has a solve: the seed's column is nullable, the filter only says so to the type checker.
        solve_ids = {run.solve_id for run in lost if run.solve_id is not None}
        for solve_id in solve_ids:
            finish_if_done(session, solve_id)
    return solve_ids

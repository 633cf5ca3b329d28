"""The embedded-default dispatcher: runs execute in threads of this process; the database stays the truth.

A scheduler thread starts pending runs within `max_parallel` per solve and `max_concurrent_runs` overall, and
enforces time budgets. Other processes may execute runs of the same database (`yudai serve` and a `yudai demo`
beside it): each dispatcher is an owner with a heartbeat (`owners`) and executes only the runs it owns. At start,
and every sweep, it takes over the runs of owners that are gone: re-queues those a dead process left `running`, or
fails them with "worker lost" after too many attempts; a live owner's runs are never touched.
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
from yudai_solver.base.models import Solve, SolveRun
from yudai_solver.base.settings import Settings
from yudai_solver.dispatch import owners
from yudai_solver.dispatch.lifecycle import STALE_VERIFICATION_S, run_env, settle_solve
from yudai_solver.dispatch.owners import recover_lost_runs
from yudai_solver.execution.control import RunControl
from yudai_solver.execution.records import running_sandbox_ids
from yudai_solver.execution.run import execute_run
from yudai_solver.execution.verification import stalled as stalled_verifications
from yudai_solver.sandboxes.e2b import kill_orphans
from yudai_solver.solving.budgets import expire_over_budget

__all__ = ["InProcessDispatcher", "recover_lost_runs"]
log = logging.getLogger(__name__)
_Ts = TypeVarTuple("_Ts")
TICK_S = 0.5
SWEEP_EVERY = 20  # ticks: every 10 s


class InProcessDispatcher:
    def __init__(self, settings: Settings, session_factory: sessionmaker[Session]) -> None:
        self.env = run_env(settings, session_factory)
        self.settings, self.factory = settings, session_factory
        self.id = owners.new_owner_id()
        """This dispatcher as the owner of the runs it executes (see `owners`)."""
        self._controls: dict[str, RunControl] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._scheduler: threading.Thread | None = None
        self._heart: threading.Thread | None = None

    def start(self) -> None:
        owners.register(self.factory, self.id)
        self._heart = threading.Thread(target=self._beat, name="yudai-heartbeat", daemon=True)
        self._heart.start()
        recovered = recover_lost_runs(self.factory, self.id)
        # A verification whose heartbeat is fresh may be another live process's: only stale ones are resumed.
        stalled = stalled_verifications(self.factory, older_than_s=STALE_VERIFICATION_S)
        for solve_id in sorted(recovered.union(stalled)):
            self._launch_settle(solve_id)
        if self.settings.sandbox == "e2b":  # the runs still running are live owners' (ours come back pending)
            kill_orphans(self.settings, keep=running_sandbox_ids(self.factory))
        self._scheduler = threading.Thread(target=self._loop, name="yudai-scheduler", daemon=True)
        self._scheduler.start()

    def dispatch(self, session: Session, solve: Solve, runs: list[SolveRun]) -> None:
        """The committed pending rows are this dispatcher's queue: own them, commit, then wake the scheduler."""
        for run in runs:
            run.owner = self.id
        session.commit()
        self.submit(solve.id)

    def submit(self, solve_id: str) -> None:
        """Pending runs were committed (by `dispatch`, or by a caller's own transaction): own those nobody owns,
        and schedule them now."""
        owners.adopt(self.factory, self.id, solve_id)
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
        if self._heart:
            self._heart.join(timeout=5)
        try:  # the requeued runs are the next dispatcher's to take, at once
            owners.unregister(self.factory, self.id)
        except Exception:
            log.exception("could not unregister dispatcher %s", self.id)

    def _beat(self) -> None:
        while not self._stopping.wait(owners.HEARTBEAT_S):
            try:
                owners.beat(self.factory, self.id)
            except Exception:
                log.exception("dispatcher heartbeat failed")

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
                    self._recover_lost_runs()
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
                self._waiting(
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

    def _recover_lost_runs(self) -> None:
        """Runs whose owner died while this dispatcher runs: ours now, re-run or failed; their solves settled."""
        for solve_id in sorted(recover_lost_runs(self.factory, self.id)):
            if f"settle:{solve_id}" not in self._controls:
                self._launch_settle(solve_id)

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
            return session.scalar(self._waiting(select(SolveRun.id)).limit(1)) is not None

    def _waiting(self, query: Select[*_Ts]) -> Select[*_Ts]:
        """`query` over the pending runs this dispatcher owns, of solves still going: its queue."""
        return query.join(Solve, Solve.id == SolveRun.solve_id).where(
            SolveRun.status == statuses.PENDING,
            SolveRun.owner == self.id,
            Solve.status.in_([statuses.PENDING, statuses.RUNNING]),
        )

"""`yudai worker`: a procrastinate worker executing runs, plus the upkeep every worker shares.

Any number of workers on any machines that reach the database. Each one also enforces time budgets and settles
runs whose worker died (SIGKILL, OOM): those are found by procrastinate's worker heartbeats and re-run, or failed
as "worker lost" after too many attempts. Both are idempotent, so it does not matter which worker does it.
A run's job settles its solve (`lifecycle.settle_solve`) after the run; the upkeep settles, in threads of their
own, the solves it may have ended and those whose verification stalled.
"""

import asyncio
import logging
import socket
import threading

from procrastinate import jobs as procrastinate_jobs
from procrastinate.app import WorkerOptions
from procrastinate.worker import Worker
from sqlalchemy.orm import Session, sessionmaker

from yudai_solver.base.settings import Settings
from yudai_solver.dispatch.jobtask import QUEUE, TASK_NAME, create_queue_app
from yudai_solver.dispatch.lifecycle import MAX_ATTEMPTS, STALE_VERIFICATION_S, run_env, settle_solve
from yudai_solver.execution import records
from yudai_solver.execution.verification import stalled as stalled_verifications
from yudai_solver.sandboxes.e2b import kill_orphans
from yudai_solver.solving.budgets import expire_over_budget

log = logging.getLogger(__name__)
HEARTBEAT_S = 2.0
STALLED_AFTER_S = 10.0
UPKEEP_S = 1.0
STALLED_EVERY = 3  # upkeep ticks
SILENT_AFTER_S = 60.0


class QueueWorker:
    def __init__(
        self,
        settings: Settings,
        session_factory: sessionmaker[Session],
        *,
        concurrency: int,
        graceful_timeout_s: float = 30,
        install_signal_handlers: bool = True,
    ) -> None:
        self.env = run_env(settings, session_factory)
        self.app = create_queue_app(settings)
        self.options = WorkerOptions(
            queues=[QUEUE],
            name=f"yudai-{socket.gethostname()}",
            concurrency=concurrency,
            fetch_job_polling_interval=0.5,
            abort_job_polling_interval=0.5,
            shutdown_graceful_timeout=graceful_timeout_s,
            additional_context={"env": self.env},
            install_signal_handlers=install_signal_handlers,
            update_heartbeat_interval=HEARTBEAT_S,
            stalled_worker_timeout=STALLED_AFTER_S,
        )
        self._worker: Worker | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def run(self) -> None:
        """Work in the foreground until SIGINT/SIGTERM (graceful: running runs get the grace period, then requeue)."""
        # Lazy on purpose: the agent stack (mini-swe-agent, litellm) takes seconds to import, which only a process
        # that executes runs should pay; here, before taking the first job rather than inside it.
        import yudai_solver.execution.agent  # noqa: F401

        asyncio.run(self._main())

    def start(self) -> None:
        """Work in a background thread (inside `yudai serve`)."""
        self.options["install_signal_handlers"] = False
        self._thread = threading.Thread(target=self.run, name="yudai-worker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._loop is not None and self._worker is not None:
            self._loop.call_soon_threadsafe(self._worker.stop)
        if self._thread is not None:
            self._thread.join(timeout=float(self.options["shutdown_graceful_timeout"]) + 10)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.env.settings.sandbox == "e2b":
            await asyncio.to_thread(self._kill_orphaned_sandboxes)
        async with self.app.open_async():
            self._worker = Worker(self.app, **self.options)
            upkeep = asyncio.create_task(self._upkeep())
            try:
                await self._worker.run()  # type: ignore[no-untyped-call]  # procrastinate leaves Worker.run unannotated
            finally:
                upkeep.cancel()

    async def _upkeep(self) -> None:
        tick = 0
        while True:
            await asyncio.sleep(UPKEEP_S)
            tick += 1
            try:
                for solve_id in await asyncio.to_thread(expire_over_budget, self.env.session_factory):
                    self._launch_settle(solve_id)
                if tick % STALLED_EVERY == 0:
                    await self._settle_stalled_jobs()
                    await self._settle_silent_runs()
                    await self._resume_verifications()
            except Exception:
                log.exception("worker upkeep failed")

    async def _settle_stalled_jobs(self) -> None:
        manager = self.app.job_manager
        for job in await manager.get_stalled_jobs(queue=QUEUE, seconds_since_heartbeat=STALLED_AFTER_S):
            # JSON values to procrastinate; the strings `JobQueueDispatcher.defer` gave the job.
            run_id, solve_id = str(job.task_kwargs["run_id"]), str(job.task_kwargs["solve_id"])
            outcome = await asyncio.to_thread(
                records.settle_lost_run, self.env.session_factory, run_id, max_attempts=MAX_ATTEMPTS
            )
            if outcome == "retry":
                await manager.retry_job(job)
            else:
                await manager.finish_job(job, status=procrastinate_jobs.Status.FAILED, delete_job=False)
                self._launch_settle(solve_id)
        await manager.prune_stalled_workers(seconds_since_heartbeat=STALLED_AFTER_S)

    async def _settle_silent_runs(self) -> None:
        """Runs `running` with a dead heartbeat whose job is no longer `doing` (e.g. it failed writing during a
        database outage): re-run them through a new job, or fail them as "worker lost"."""
        silent = await asyncio.to_thread(records.silent_runs, self.env.session_factory, older_than_s=SILENT_AFTER_S)
        for run_id, solve_id, job_id in silent:
            job = await self._job(job_id)
            if job is not None and job.status == procrastinate_jobs.Status.DOING.value:
                continue  # procrastinate's stalled-worker path owns it
            outcome = await asyncio.to_thread(
                records.settle_lost_run, self.env.session_factory, run_id, max_attempts=MAX_ATTEMPTS
            )
            if outcome == "retry":
                await self._defer_again(run_id, solve_id, lock=job.lock if job is not None else None)
            else:
                self._launch_settle(solve_id)

    async def _resume_verifications(self) -> None:
        """Verifications whose worker died (or never claimed them) start again here."""
        for solve_id in await asyncio.to_thread(
            stalled_verifications, self.env.session_factory, older_than_s=STALE_VERIFICATION_S
        ):
            self._launch_settle(solve_id)

    def _launch_settle(self, solve_id: str) -> None:
        """The solve may have ended: its verification and follow-up, in a thread of their own (a verification
        takes minutes; the upkeep must go on)."""
        threading.Thread(target=self._settle, args=(solve_id,), name=f"settle-{solve_id[:8]}", daemon=True).start()

    def _settle(self, solve_id: str) -> None:
        try:
            settle_solve(self.env, solve_id)
        except Exception:
            log.exception("settling solve %s crashed", solve_id)

    async def _job(self, job_id: int | None) -> procrastinate_jobs.Job | None:
        if job_id is None:
            return None
        found = await self.app.job_manager.list_jobs_async(id=job_id)
        return next(iter(found), None)

    async def _defer_again(self, run_id: str, solve_id: str, *, lock: str | None) -> None:
        """A new job for a run whose old one is gone or over, under the old one's lock (the solve's `max_parallel`)."""
        job_id = (
            await self.app.tasks[TASK_NAME]
            .configure(lock=lock, queue=QUEUE)
            .defer_async(run_id=run_id, solve_id=solve_id)
        )
        await asyncio.to_thread(records.set_job, self.env.session_factory, run_id, job_id)

    def _kill_orphaned_sandboxes(self) -> None:
        """E2B sandboxes this worker's owner left behind (a crash), sparing those of runs still running."""
        kill_orphans(self.env.settings, keep=records.running_sandbox_ids(self.env.session_factory))

"""`yudai worker`: a procrastinate worker executing runs, plus the upkeep every worker shares.

Any number of workers on any machines that reach the database. Each one also enforces time budgets and settles
runs whose worker died (SIGKILL, OOM): those are found by procrastinate's worker heartbeats and re-run, or failed
as "worker lost" after too many attempts. Both are idempotent, so it does not matter which worker does it.
"""

import asyncio
import logging
import socket
import threading

from procrastinate import jobs as procrastinate_jobs
from procrastinate.worker import Worker

from yudai_solver.execution import records
from yudai_solver.execution.followup import after_solve
from yudai_solver.execution.run import RunEnv
from yudai_solver.execution.verification import stalled as stalled_verifications
from yudai_solver.execution.verification import verify_pending
from yudai_solver.scm.hosts import workspaces_for
from yudai_solver.base.settings import Settings
from yudai_solver.solving.budgets import expire_over_budget
from yudai_solver.dispatch.inprocess import MAX_ATTEMPTS, STALE_VERIFICATION_S
from yudai_solver.dispatch.jobqueue import QUEUE, create_queue_app

log = logging.getLogger(__name__)
HEARTBEAT_S = 2.0
STALLED_AFTER_S = 10.0
UPKEEP_S = 1.0
STALLED_EVERY = 3  # upkeep ticks
SILENT_AFTER_S = 60.0


class QueueWorker:
    def __init__(self, settings: Settings, session_factory, *, concurrency: int, graceful_timeout_s: float = 30,
                 install_signal_handlers: bool = True):
        self.env = RunEnv(settings, session_factory, workspaces_for(settings))
        self.app = create_queue_app(settings)
        self.options = dict(
            queues=[QUEUE], name=f"yudai-{socket.gethostname()}", concurrency=concurrency,
            fetch_job_polling_interval=0.5, abort_job_polling_interval=0.5, shutdown_graceful_timeout=graceful_timeout_s,
            additional_context={"env": self.env}, install_signal_handlers=install_signal_handlers,
            update_heartbeat_interval=HEARTBEAT_S, stalled_worker_timeout=STALLED_AFTER_S,
        )
        self._worker: Worker | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def run(self) -> None:
        """Work in the foreground until SIGINT/SIGTERM (graceful: running runs get the grace period, then requeue)."""
        # The agent stack (mini-swe-agent, litellm) takes seconds to import: pay it before taking the first job.
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
                await self._worker.run()
            finally:
                upkeep.cancel()

    async def _upkeep(self) -> None:
        tick = 0
        while True:
            await asyncio.sleep(UPKEEP_S)
            tick += 1
            try:
                for solve_id in await asyncio.to_thread(expire_over_budget, self.env.session_factory):
                    await asyncio.to_thread(after_solve, self.env.settings, self.env.session_factory, solve_id)
                if tick % STALLED_EVERY == 0:
                    await self._settle_stalled_jobs()
                    await self._settle_silent_runs()
                    await self._resume_verifications()
            except Exception:  # noqa: BLE001 - e.g. the database restarting: the next tick tries again
                log.exception("worker upkeep failed")

    async def _settle_stalled_jobs(self) -> None:
        manager = self.app.job_manager
        for job in await manager.get_stalled_jobs(queue=QUEUE, seconds_since_heartbeat=STALLED_AFTER_S):
            outcome = await asyncio.to_thread(records.settle_lost_run, self.env.session_factory,
                                              job.task_kwargs["run_id"], max_attempts=MAX_ATTEMPTS)
            if outcome == "retry":
                await manager.retry_job(job)
            else:
                await manager.finish_job(job, status=procrastinate_jobs.Status.FAILED, delete_job=False)
                await asyncio.to_thread(after_solve, self.env.settings, self.env.session_factory,
                                        job.task_kwargs["solve_id"])
        await manager.prune_stalled_workers(seconds_since_heartbeat=STALLED_AFTER_S)

    async def _settle_silent_runs(self) -> None:
        """Runs `running` with a dead heartbeat whose job is no longer `doing` (e.g. it failed writing during a
        database outage): re-run them through a new job, or fail them as "worker lost"."""
        silent = await asyncio.to_thread(records.silent_runs, self.env.session_factory, older_than_s=SILENT_AFTER_S)
        for run_id, solve_id, job_id in silent:
            if job_id is not None and await self._job_status(job_id) == "doing":
                continue  # procrastinate's stalled-worker path owns it
            outcome = await asyncio.to_thread(records.settle_lost_run, self.env.session_factory, run_id,
                                              max_attempts=MAX_ATTEMPTS)
            if outcome == "retry":
                await self._defer_again(run_id, solve_id, job_id)
            else:
                await asyncio.to_thread(after_solve, self.env.settings, self.env.session_factory, solve_id)

    async def _resume_verifications(self) -> None:
        """Verifications whose worker died (or never claimed them) start again here, in a thread of their own."""
        for solve_id in await asyncio.to_thread(stalled_verifications, self.env.session_factory,
                                                older_than_s=STALE_VERIFICATION_S):
            threading.Thread(target=self._verify, args=(solve_id,), name=f"verify-{solve_id[:8]}", daemon=True).start()

    def _verify(self, solve_id: str) -> None:
        try:
            verify_pending(self.env, solve_id)
            after_solve(self.env.settings, self.env.session_factory, solve_id)
        except Exception:  # noqa: BLE001 - guards the thread; the next sweep picks it up again
            log.exception("verification of solve %s crashed", solve_id)

    async def _job_status(self, job_id: int) -> str | None:
        status = await self.app.job_manager.get_job_status_async(job_id)
        return status.value if status else None

    async def _defer_again(self, run_id: str, solve_id: str, old_job_id: int | None) -> None:
        from yudai_solver.dispatch.jobqueue import TASK_NAME

        lock = await self._job_lock(old_job_id)
        job_id = await self.app.tasks[TASK_NAME].configure(lock=lock, queue=QUEUE).defer_async(
            run_id=run_id, solve_id=solve_id)
        await asyncio.to_thread(records.set_job, self.env.session_factory, run_id, job_id)

    async def _job_lock(self, job_id: int | None) -> str | None:
        if job_id is None:
            return None
        rows = await self.app.connector.execute_query_all_async(
            "SELECT lock FROM procrastinate_jobs WHERE id = %(id)s", id=job_id)
        return rows[0]["lock"] if rows else None

    def _kill_orphaned_sandboxes(self) -> None:
        """E2B sandboxes this worker's owner left behind (a crash), sparing those of runs still running."""
        from yudai_solver.sandboxes.e2b import kill_orphans

        kill_orphans(self.env.settings, keep=records.running_sandbox_ids(self.env.session_factory))

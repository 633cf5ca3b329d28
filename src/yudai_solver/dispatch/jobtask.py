"""The procrastinate task that executes one run, and the watch that stops it from afar."""

import threading

from procrastinate import JobContext, RetryStrategy
from procrastinate.job_context import AbortReason

from yudai_solver.base import statuses
from yudai_solver.execution import records
from yudai_solver.execution.control import RunControl
from yudai_solver.dispatch.jobqueue import QUEUE, TASK_NAME

WATCH_INTERVAL_S = 0.25
HEARTBEAT_EVERY = 8  # watch ticks: the run's heartbeat is written every 2 s


class Requeue(Exception):
    """The worker is shutting down; the run was put back to pending and its job is retried elsewhere."""


def register(app) -> None:
    @app.task(name=TASK_NAME, queue=QUEUE, pass_context=True,
              retry=RetryStrategy(max_attempts=10, wait=0, retry_exceptions={Requeue}))
    def run_job(context: JobContext, run_id: str, solve_id: str) -> None:
        from yudai_solver.execution.run import execute_run

        env = context.additional_context["env"]
        control = RunControl(run_id, solve_id)
        with RunWatch(env.session_factory, context, control):
            execute_run(env, control)
        if control.requeue:
            raise Requeue(run_id)


class RunWatch:
    """While a run executes: stop it when its job is aborted or its row has ended elsewhere (cancel, budget,
    early stop), put it back in the queue when the worker shuts down, and keep its heartbeat fresh."""

    def __init__(self, factory, context: JobContext, control: RunControl):
        self.factory, self.context, self.control = factory, context, control
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"watch-{control.run_id[:8]}", daemon=True)

    def __enter__(self) -> "RunWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._done.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        tick = 0
        while not self._done.wait(WATCH_INTERVAL_S):
            self._check_abort()
            tick += 1
            if tick % 2 == 0:
                self._check_row(write_heartbeat=tick % HEARTBEAT_EVERY == 0)

    def _check_abort(self) -> None:
        reason = self.context.abort_reason()
        if reason == AbortReason.SHUTDOWN:
            self.control.requeue = True
            self.control.stop("worker shutting down")
        elif reason is not None:
            self.control.stop("cancelled by user")

    def _check_row(self, *, write_heartbeat: bool) -> None:
        try:
            status, error = records.watch(self.factory, self.control.run_id, heartbeat=write_heartbeat)
        except Exception:  # noqa: BLE001 - the database may be restarting; the next tick tries again
            return
        if status in statuses.FINISHED:
            self.control.stop(error or status)

"""The procrastinate app with its one task, which executes a run, and the watch that stops the run from afar."""

import threading

from procrastinate import App, JobContext, PsycopgConnector, RetryStrategy
from procrastinate.job_context import AbortReason
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from yudai_solver.base import statuses
from yudai_solver.base.settings import Settings
from yudai_solver.dispatch.lifecycle import settle_solve
from yudai_solver.execution import records
from yudai_solver.execution.control import RunControl
from yudai_solver.execution.run import RunEnv, execute_run

QUEUE = "runs"
TASK_NAME = "yudai.run"
WATCH_INTERVAL_S = 0.25
HEARTBEAT_EVERY = 8  # watch ticks: the run's heartbeat is written every 2 s


class Requeue(Exception):
    """The worker is shutting down; the run was put back to pending and its job is retried elsewhere."""


def conninfo(database_url: str) -> str:
    """libpq's form of a `postgresql+psycopg://` URL, for procrastinate's own connections."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def create_queue_app(settings: Settings) -> App:
    """The procrastinate app with our one task; opened by whoever uses it (API: sync, worker: async)."""
    app = App(connector=PsycopgConnector(conninfo=conninfo(settings.resolved_database_url)))
    register(app)
    return app


def register(app: App) -> None:
    @app.task(
        name=TASK_NAME,
        queue=QUEUE,
        pass_context=True,
        retry=RetryStrategy(max_attempts=10, wait=0, retry_exceptions={Requeue}),
    )
    def run_job(context: JobContext, run_id: str, solve_id: str) -> None:
        """Runs that early stop cancels are stopped by their own watches (their rows have ended)."""
        env: RunEnv = context.additional_context["env"]
        control = RunControl(run_id, solve_id)
        with RunWatch(env.session_factory, context, control):
            execute_run(env, control)
        if control.requeue:
            raise Requeue(run_id)
        settle_solve(env, solve_id)


class RunWatch:
    """While a run executes: stop it when its job is aborted or its row has ended elsewhere (cancel, budget,
    early stop), put it back in the queue when the worker shuts down, and keep its heartbeat fresh."""

    def __init__(self, factory: sessionmaker[Session], context: JobContext, control: RunControl) -> None:
        self.factory, self.context, self.control = factory, context, control
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"watch-{control.run_id[:8]}", daemon=True)

    def __enter__(self) -> "RunWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
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

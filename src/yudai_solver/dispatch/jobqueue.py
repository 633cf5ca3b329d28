"""Runs as procrastinate jobs on PostgreSQL: deferred in the start transaction, executed by any worker process.

A solve's `max_parallel` holds across workers through procrastinate locks: run i takes the lock
`solve:<id>:<i mod max_parallel>`, and jobs sharing a lock never run at the same time.
"""

import procrastinate
import psycopg
from psycopg.rows import TupleRow
from sqlalchemy import Select, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from yudai_solver.base.models import Solve, SolveRun
from yudai_solver.base.settings import Settings
from yudai_solver.dispatch.jobtask import QUEUE, TASK_NAME, create_queue_app
from yudai_solver.dispatch.worker import QueueWorker


def is_job_queue(settings: Settings) -> bool:
    return make_url(settings.resolved_database_url).get_backend_name() == "postgresql"


def run_lock(solve: Solve, index: int) -> str | None:
    if not solve.max_parallel:
        return None
    return f"solve:{solve.id}:{index % solve.max_parallel}"


def driver_connection(session: Session) -> psycopg.Connection[TupleRow]:
    """The psycopg connection under the session's transaction, so jobs commit or roll back with our rows."""
    connection = session.connection().connection.driver_connection
    assert isinstance(connection, psycopg.Connection)  # the job queue exists only on postgresql+psycopg
    return connection


class JobQueueDispatcher:
    """The API side: defers jobs in the caller's transaction and aborts them on cancel."""

    def __init__(
        self, settings: Settings, session_factory: sessionmaker[Session], *, worker: QueueWorker | None = None
    ) -> None:
        self.settings, self.factory = settings, session_factory
        self.app = create_queue_app(settings)
        self.worker = worker

    def start(self) -> None:
        if self.worker is not None:
            self.worker.start()

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()

    def dispatch(self, session: Session, solve: Solve, runs: list[SolveRun]) -> None:
        """Jobs and rows commit together; workers then hear of the jobs through LISTEN/NOTIFY (and poll)."""
        self.defer(session, solve, runs)
        session.commit()

    def defer(self, session: Session, solve: Solve, runs: list[SolveRun]) -> None:
        """One job per run, in the session's transaction: no row without a job, no job without a row. Deferred
        before the rows are flushed (jobs name runs by id only), so each row is inserted with its job id."""
        connection = driver_connection(session)
        task = self.app.tasks[TASK_NAME]
        jobs = [
            task.configure(lock=run_lock(solve, index), queue=QUEUE).make_new_job(run_id=run.id, solve_id=solve.id)
            for index, run in enumerate(runs)
        ]
        # One statement for all of them: a start answers without a round trip per run.
        deferred = self.app.job_manager.batch_defer_jobs(jobs=jobs, connection=connection)
        for run, job in zip(runs, deferred, strict=True):
            run.job_id = job.id

    def cancel(self, solve_id: str) -> None:
        with self.factory() as session, session.begin():
            abort_jobs(self.app, session, select(SolveRun.job_id).where(SolveRun.solve_id == solve_id))


def abort_jobs(app: procrastinate.App, session: Session, job_ids_query: Select[int | None]) -> None:
    """Queued jobs are cancelled unrun; running ones are asked to abort (their worker kills the command)."""
    connection = driver_connection(session)
    for job_id in session.scalars(job_ids_query):
        if job_id is not None:
            app.job_manager.cancel_job_by_id(job_id, abort=True, connection=connection)

"""Pick the dispatcher for a deployment: in-process on SQLite, the procrastinate job queue on PostgreSQL."""

from sqlalchemy.orm import Session, sessionmaker

from yudai_solver.base.settings import Settings
from yudai_solver.dispatch.inprocess import InProcessDispatcher
from yudai_solver.dispatch.jobqueue import JobQueueDispatcher, is_job_queue
from yudai_solver.dispatch.protocol import Dispatcher
from yudai_solver.dispatch.worker import QueueWorker


def create_dispatcher(settings: Settings, session_factory: sessionmaker[Session], *, worker: bool = True) -> Dispatcher:
    """On PostgreSQL, `worker` also runs a queue worker in this process (`yudai serve` without `--no-worker`)."""
    if not is_job_queue(settings):
        return InProcessDispatcher(settings, session_factory)
    queue_worker = QueueWorker(settings, session_factory, concurrency=settings.max_concurrent_runs) if worker else None
    return JobQueueDispatcher(settings, session_factory, worker=queue_worker)

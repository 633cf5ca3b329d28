"""Pick the dispatcher for a deployment: in-process on SQLite, the procrastinate job queue on PostgreSQL."""

from sqlalchemy.orm import Session, sessionmaker

from ..settings import Settings
from .protocol import Dispatcher


def create_dispatcher(settings: Settings, session_factory: sessionmaker[Session], *, worker: bool = True) -> Dispatcher:
    """On PostgreSQL, `worker` also runs a queue worker in this process (`yudai serve` without `--no-worker`)."""
    from .jobqueue import JobQueueDispatcher, is_job_queue

    if not is_job_queue(settings):
        from .inprocess import InProcessDispatcher

        return InProcessDispatcher(settings, session_factory)
    queue_worker = None
    if worker:
        from .worker import QueueWorker

        queue_worker = QueueWorker(settings, session_factory, concurrency=settings.max_concurrent_runs)
    return JobQueueDispatcher(settings, session_factory, worker=queue_worker)

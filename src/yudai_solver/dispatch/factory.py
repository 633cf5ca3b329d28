"""Pick the dispatcher for a deployment: in-process on SQLite, the procrastinate job queue on PostgreSQL."""

from sqlalchemy.orm import Session, sessionmaker

from yudai_solver.base.settings import Settings
from yudai_solver.dispatch.protocol import Dispatcher


def create_dispatcher(settings: Settings, session_factory: sessionmaker[Session], *, worker: bool = True) -> Dispatcher:
    """On PostgreSQL, `worker` also runs a queue worker in this process (`yudai serve` without `--no-worker`)."""
    from yudai_solver.dispatch.jobqueue import JobQueueDispatcher, is_job_queue

    if not is_job_queue(settings):
        from yudai_solver.dispatch.inprocess import InProcessDispatcher

        return InProcessDispatcher(settings, session_factory)
    queue_worker = None
    if worker:
        from yudai_solver.dispatch.worker import QueueWorker

        queue_worker = QueueWorker(settings, session_factory, concurrency=settings.max_concurrent_runs)
    return JobQueueDispatcher(settings, session_factory, worker=queue_worker)

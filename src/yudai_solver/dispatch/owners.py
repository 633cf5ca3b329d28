"""Who executes a run in-process: each dispatcher registers as an owner with a heartbeat, and its runs name it.

Several processes may share one database (`yudai serve`, and a `yudai demo` or `yudai solve --embedded` beside
it). Each executes only the runs it owns; a run is taken over only when its owner is gone: its row removed (a clean
stop), its heartbeat stale, or its process dead on this very host (a `kill -9` then a restart: known at once, no
wait for the heartbeat to age). Job-queue runs (`job_id` set) belong to procrastinate's workers and are never
touched here.
"""

import logging
import os
import socket
import uuid
from datetime import timedelta
from functools import cache
from pathlib import Path

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from yudai_solver.base import statuses
from yudai_solver.base.db import transaction
from yudai_solver.base.models import Dispatcher, SolveRun, utcnow
from yudai_solver.dispatch.lifecycle import MAX_ATTEMPTS
from yudai_solver.execution.records import settle_lost
from yudai_solver.solving.reducer import finish_if_done

log = logging.getLogger(__name__)
HEARTBEAT_S = 2.0
LOST_AFTER_S = 30.0
"""An owner whose heartbeat is older than this is gone (fifteen missed beats: a busy database is no death)."""


@cache
def this_host() -> str:
    """This host and PID namespace: where a PID names the same process as here (containers share a host name at
    most by accident, never a PID namespace)."""
    parts = [socket.gethostname()]
    for path in ("/proc/sys/kernel/random/boot_id", "/proc/self/ns/pid"):
        try:
            parts.append(os.readlink(path) if path.endswith("/pid") else Path(path).read_text().strip()[:8])
        except OSError:
            parts.append("-")
    return "|".join(parts)[:255]


def new_owner_id() -> str:
    return f"{os.getpid()}-{uuid.uuid4().hex}"


def register(factory: sessionmaker[Session], owner: str) -> None:
    with transaction(factory) as session:
        now = utcnow()
        session.add(Dispatcher(id=owner, host=this_host(), pid=os.getpid(), started_at=now, heartbeat_at=now))


def beat(factory: sessionmaker[Session], owner: str) -> None:
    """Mark the owner alive (registered again, should another process have given it up for dead meanwhile)."""
    with transaction(factory) as session:
        found = session.execute(update(Dispatcher).where(Dispatcher.id == owner).values(heartbeat_at=utcnow()))
        if getattr(found, "rowcount", 1) == 0:
            now = utcnow()
            session.add(Dispatcher(id=owner, host=this_host(), pid=os.getpid(), started_at=now, heartbeat_at=now))


def unregister(factory: sessionmaker[Session], owner: str) -> None:
    with transaction(factory) as session:
        session.execute(delete(Dispatcher).where(Dispatcher.id == owner))


def live_owners(session: Session) -> set[str]:
    """The owners alive now: a fresh heartbeat, and on this host a process that still exists."""
    cutoff = utcnow() - timedelta(seconds=LOST_AFTER_S)
    rows = session.execute(
        select(Dispatcher.id, Dispatcher.host, Dispatcher.pid).where(Dispatcher.heartbeat_at >= cutoff)
    ).all()
    return {owner for owner, host, pid in rows if host != this_host() or _process_exists(pid)}


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def adopt(factory: sessionmaker[Session], owner: str, solve_id: str) -> None:
    """The solve's pending in-process runs that nobody owns yet (committed by a caller's own transaction): ours."""
    with transaction(factory) as session:
        session.execute(
            update(SolveRun)
            .where(
                SolveRun.solve_id == solve_id,
                SolveRun.status == statuses.PENDING,
                SolveRun.owner.is_(None),
                SolveRun.job_id.is_(None),
            )
            .values(owner=owner)
        )


def recover_lost_runs(factory: sessionmaker[Session], owner: str | None = None) -> set[str]:
    """Runs whose owner is gone (or that have none): a `running` one is queued again, or failed after MAX_ATTEMPTS
    (a baseline it was measuring is freed or failed with it, see `records.settle_lost`); the pending ones, and
    those queued again, become `owner`'s. A live owner's runs are never touched.

    Returns the ids of the solves concerned."""
    with transaction(factory) as session:
        alive = live_owners(session)
        if owner is not None:
            alive.add(owner)
        orphaned = session.scalars(
            select(SolveRun).where(
                SolveRun.status.in_([statuses.PENDING, statuses.RUNNING]),
                SolveRun.job_id.is_(None),
                or_(SolveRun.owner.is_(None), SolveRun.owner.not_in(alive)),
            )
        ).all()
        lost = [run for run in orphaned if run.status == statuses.RUNNING]
        for run in lost:
            log.warning("run %s: its owner %s is gone, recovering it", run.id, run.owner)
            settle_lost(session, run, max_attempts=MAX_ATTEMPTS)
        for run in orphaned:
            run.owner = owner
        session.flush()
        # Every run has a solve: the seed's column is nullable, the filter only says so to the type checker.
        solve_ids = {run.solve_id for run in lost if run.solve_id is not None}
        for solve_id in solve_ids:
            finish_if_done(session, solve_id)
        session.execute(
            delete(Dispatcher).where(Dispatcher.id.not_in(alive))  # the dead ones' rows: nothing names them now
        )
    return solve_ids

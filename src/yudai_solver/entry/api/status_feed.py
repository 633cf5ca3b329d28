"""One status document per change per solve, shared by everyone watching that solve in this process.

A feed polls the solve's version (one query on indexed keys), builds the document only when the version moves, and
hands the same serialized text to every listener: fifty watchers of one solve cost what one does. Pollers of the
status endpoint share documents the same way, through `DocumentCache`.
"""

import asyncio
import json
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from yudai_solver.base import statuses
from yudai_solver.base.errors import NotFound
from yudai_solver.base.models import Solve
from yudai_solver.solving import solves

POLL_S = 0.5


@dataclass(frozen=True)
class Snapshot:
    version: str
    """The version of the document last sent: the stream's event id."""
    data: str
    """The status document as JSON."""
    status: str
    """The solve's status: the stream ends once it is finished, or `gone` if the solve was deleted."""
    pr_pending: bool = False
    """A pull request is still to come: a finished solve's stream waits for it."""

    @property
    def finished(self) -> bool:
        return (self.status in statuses.FINISHED and not self.pr_pending) or self.status == "gone"


class Feed:
    """The latest snapshot of one solve and a condition its listeners wait on."""

    def __init__(self, solve_id: str) -> None:
        self.solve_id = solve_id
        self.latest: Snapshot | None = None
        self.listeners = 0
        self.changed = asyncio.Condition()
        self.task: asyncio.Task[None] | None = None

    async def next_after(self, version: str | None, timeout_s: float) -> Snapshot | None:
        """The latest snapshot once its version differs from `version` or the solve has finished; None after
        `timeout_s` without one."""

        def news() -> bool:
            return self.latest is not None and (self.latest.version != version or self.latest.finished)

        async with self.changed:
            try:
                await asyncio.wait_for(self.changed.wait_for(news), timeout_s)
            except TimeoutError:
                return None
            return self.latest


class DocumentCache:
    """The serialized status document of the solves asked for lately, each under the version it was built at."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._documents: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def document(self, session: Session, solve_id: str, version: str) -> bytes:
        """The document of the solve at `version` (the caller checked who may see it), built only if no caller
        built it at that version yet."""
        with self._lock:
            cached = self._documents.get(solve_id)
        if cached is not None and cached[0] == version:
            return cached[1]
        solve = session.get(Solve, solve_id)
        if solve is None:  # deleted since its version was read
            raise NotFound(f"solve {solve_id} not found", field="solve_id")
        body = solves.status_of(session, solve, version).model_dump_json().encode()
        with self._lock:
            self._documents[solve_id] = (version, body)
            self._documents.move_to_end(solve_id)
            while len(self._documents) > self.size:
                self._documents.popitem(last=False)
        return body


class StatusFeeds:
    """The feeds of the solves someone watches in this process; a feed stops when its last listener leaves."""

    def __init__(self, factory: sessionmaker[Session], poll_s: float = POLL_S) -> None:
        self.factory, self.poll_s = factory, poll_s
        self.feeds: dict[str, Feed] = {}

    @asynccontextmanager
    async def listen(self, solve_id: str) -> AsyncIterator[Feed]:
        feed = self.feeds.get(solve_id)
        if feed is None:
            feed = self.feeds[solve_id] = Feed(solve_id)
            feed.task = asyncio.create_task(self._follow(feed), name=f"status-feed-{solve_id}")
        feed.listeners += 1
        try:
            yield feed
        finally:
            feed.listeners -= 1
            if feed.listeners == 0 and self.feeds.get(solve_id) is feed:
                del self.feeds[solve_id]
                if feed.task is not None:
                    feed.task.cancel()

    async def _follow(self, feed: Feed) -> None:
        version: str | None = None
        content: Any = None
        while True:
            current = await run_in_threadpool(self._version, feed.solve_id)
            if current != version:
                version = current
                snapshot, new_content = await run_in_threadpool(self._snapshot, feed.solve_id)
                # A write that changes nothing a watcher sees (a heartbeat, the elapsed time) is no news.
                if new_content != content or snapshot.finished:
                    content = new_content
                    async with feed.changed:
                        feed.latest = snapshot
                        feed.changed.notify_all()
                if snapshot.finished:
                    return
            await asyncio.sleep(self.poll_s)

    def _version(self, solve_id: str) -> str | None:
        with self.factory() as session:
            return solves.status_version(session, solve_id)

    def _snapshot(self, solve_id: str) -> tuple[Snapshot, Any]:
        with self.factory() as session:
            solve = session.get(Solve, solve_id)
            if solve is None:  # deleted with its owner while watched
                return Snapshot(version="gone", data=json.dumps({"status": "gone"}), status="gone"), None
            document = solves.status_of(session, solve)
        data = document.model_dump_json()
        content = document.model_dump(mode="json", exclude={"version"})
        content["progress"]["elapsed_s"] = None
        snapshot = Snapshot(
            version=document.version, data=data, status=document.status or "", pr_pending=document.pr.state == "pending"
        )
        return snapshot, content

"""A solve's progress as a Server-Sent Events stream: one `status` event per change, `end` when it finishes."""

import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse

from yudai_solver.entry.api.deps import CurrentUser, DbDep, EntityId, RowId
from yudai_solver.entry.api.status_feed import StatusFeeds
from yudai_solver.solving import solves

router = APIRouter(prefix="/sessions/{session_id}", tags=["solves"])
KEEP_ALIVE_S = 15.0


@router.get("/solve/{solve_id}/events")
def events(
    session_id: RowId,
    solve_id: EntityId,
    request: Request,
    db: DbDep,
    user: CurrentUser,
    last_event_id: Annotated[str | None, Header(max_length=200)] = None,
) -> StreamingResponse:
    """`text/event-stream` of the status document (the same as the status endpoint's), sent when it changes; each
    event's id is the document's version, so a client reconnecting with `Last-Event-ID` gets only what is new."""
    solves.get_owned_solve(db, user=user, session_id=session_id, solve_id=solve_id)  # 404 before streaming
    db.rollback()  # hold no transaction for the life of the stream
    feeds: StatusFeeds = request.app.state.status_feeds
    return StreamingResponse(
        _stream(feeds, solve_id, last_event_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _stream(feeds: StatusFeeds, solve_id: str, last_event_id: str | None) -> AsyncIterator[str]:
    # Starlette cancels this generator when the client disconnects, which leaves the feed.
    sent = last_event_id
    async with feeds.listen(solve_id) as feed:
        while True:
            snapshot = await feed.next_after(sent, KEEP_ALIVE_S)
            if snapshot is None:
                yield ": keep-alive\n\n"  # a comment: proxies see traffic, clients see nothing
                continue
            if snapshot.version != sent and snapshot.status != "gone":
                yield f"id: {snapshot.version}\nevent: status\ndata: {snapshot.data}\n\n"
            sent = snapshot.version
            if snapshot.finished:
                yield f"event: end\ndata: {json.dumps({'status': snapshot.status})}\n\n"
                return

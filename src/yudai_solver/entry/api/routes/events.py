"""A solve's progress as a Server-Sent Events stream: one `status` event per change, `end` when it finishes."""

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from yudai_solver.base import statuses
from yudai_solver.base.errors import NotFound
from yudai_solver.entry.api.deps import CurrentUser, DbDep, EntityId, RowId
from yudai_solver.solving import solves

router = APIRouter(prefix="/sessions/{session_id}", tags=["solves"])
POLL_S = 0.5


@router.get("/solve/{solve_id}/events")
def events(session_id: RowId, solve_id: EntityId, request: Request, db: DbDep, user: CurrentUser) -> StreamingResponse:
    """`text/event-stream` of the status document (the same as the status endpoint's), sent when it changes."""
    solves.get_owned_solve(db, user=user, session_id=session_id, solve_id=solve_id)  # 404 before streaming
    factory, user_id = request.app.state.session_factory, user.id
    db.rollback()  # hold no transaction (on SQLite: the write lock) for the life of the stream
    return StreamingResponse(
        _stream(request, factory, user_id, session_id, solve_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _stream(
    request: Request, factory: sessionmaker[Session], user_id: int, session_id: int, solve_id: str
) -> AsyncIterator[str]:
    last: dict[str, Any] | None = None
    while not await request.is_disconnected():
        document = await run_in_threadpool(_status, factory, user_id, session_id, solve_id)
        change = {**document, "progress": {**document["progress"], "elapsed_s": None}}  # time alone is no news
        if change != last:
            last = change
            yield f"event: status\ndata: {json.dumps(document)}\n\n"
        if document["status"] in statuses.FINISHED:
            yield f"event: end\ndata: {json.dumps({'status': document['status']})}\n\n"
            return
        await asyncio.sleep(POLL_S)


def _status(factory: sessionmaker[Session], user_id: int, session_id: int, solve_id: str) -> dict[str, Any]:
    from yudai_solver.base.models import User

    with factory() as session:
        user = session.get(User, user_id)
        if user is None:  # deleted while streaming: its sessions (and their solves) went with it
            raise NotFound(f"session {session_id} not found", field="session_id")
        return solves.status(session, user=user, session_id=session_id, solve_id=solve_id).model_dump(mode="json")

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from yudai_solver.base.models import SolveRun
from yudai_solver.base.schemas import (
    MAX_DB_INT,
    CancelOut,
    Page,
    PullRequestOut,
    RunBrief,
    RunDetail,
    SolveListItem,
    SolveStart,
    SolveStarted,
    SolveStatus,
)
from yudai_solver.entry.api.deps import CurrentUser, DbDep, DispatcherDep, EntityId, RowId, SettingsDep, session_for
from yudai_solver.entry.api.status_feed import DocumentCache
from yudai_solver.execution.workspace import workspaces_for
from yudai_solver.scm import followup
from yudai_solver.solving import solves
from yudai_solver.solving.users import authenticate

router = APIRouter(prefix="/sessions/{session_id}", tags=["solves"])


@router.post("/solve/start", status_code=201, response_model=SolveStarted)
def start(
    session_id: RowId, body: SolveStart, db: DbDep, user: CurrentUser, settings: SettingsDep, dispatcher: DispatcherDep
) -> Response:
    solve, rows = solves.start_solve(db, user=user, session_id=session_id, request=body, settings=settings)
    dispatcher.dispatch(db, solve, rows)
    runs = [RunBrief.model_validate(r, from_attributes=True) for r in rows]
    started = SolveStarted(solve_id=solve.id, status=solve.status, runs=runs)
    # Serialized here: returned as a model, FastAPI would validate it again on one more trip to the thread pool.
    return Response(started.model_dump_json(), status_code=201, media_type="application/json")


@router.get("/solve/status/{solve_id}", response_model=SolveStatus, responses={304: {"description": "Not modified"}})
async def status(
    session_id: RowId,
    solve_id: EntityId,
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    if_none_match: Annotated[str | None, Header(max_length=1000)] = None,
) -> Response:
    """The solve's status document with its version as a weak `ETag`: asked again with `If-None-Match`, an
    unchanged solve answers 304 without the document being built.

    Every watcher polls this, so its whole answer (session, token, version, document) is worked out in one trip to
    the thread pool. With `DbDep` and `CurrentUser` it took four, and each is a thread switch and a wait for the
    GIL, which cost more than a 304's own work."""
    return await run_in_threadpool(_status, request, authorization, session_id, solve_id, if_none_match)


def _status(
    request: Request, authorization: str | None, session_id: int, solve_id: str, if_none_match: str | None
) -> Response:
    with session_for(request) as db:
        user = authenticate(db, authorization)
        version = solves.owned_status_version(db, user=user, session_id=session_id, solve_id=solve_id)
        headers = {"ETag": _etag(version)}
        if if_none_match is not None and headers["ETag"] in _etags(if_none_match):
            return Response(status_code=304, headers=headers)
        # Built, validated and serialized once per version, whoever polls: fifty pollers of a solve cost one.
        documents: DocumentCache = request.app.state.status_documents
        return Response(documents.document(db, solve_id, version), media_type="application/json", headers=headers)


def _etag(version: str) -> str:
    return f'W/"{version}"'


def _etags(header: str) -> list[str]:
    # Clients may send the strong form back, or several tags separated by commas.
    tags = [tag.strip() for tag in header.split(",")]
    return [tag if tag.startswith("W/") else f"W/{tag}" for tag in tags]


@router.get("/solve/{solve_id}/runs/{run_id}", response_model=RunDetail)
def run_detail(session_id: RowId, solve_id: EntityId, run_id: EntityId, db: DbDep, user: CurrentUser) -> SolveRun:
    return solves.get_run(db, user=user, session_id=session_id, solve_id=solve_id, run_id=run_id)


@router.get("/solves", response_model=Page)
def list_solves(
    session_id: RowId,
    db: DbDep,
    user: CurrentUser,
    limit: Annotated[int, Query(gt=0, le=200)] = 20,
    offset: Annotated[int, Query(ge=0, le=MAX_DB_INT)] = 0,
) -> Page:
    items, total = solves.list_solves(db, user=user, session_id=session_id, limit=limit, offset=offset)
    return Page(items=[SolveListItem.model_validate(s) for s in items], total=total, limit=limit, offset=offset)


@router.post("/solve/cancel/{solve_id}", response_model=CancelOut)
def cancel(session_id: RowId, solve_id: EntityId, db: DbDep, user: CurrentUser, dispatcher: DispatcherDep) -> CancelOut:
    solve = solves.cancel(db, user=user, session_id=session_id, solve_id=solve_id)
    db.commit()
    dispatcher.cancel(solve.id)
    return CancelOut(solve_id=solve.id, status=solve.status)


@router.post("/solve/{solve_id}/pr", response_model=PullRequestOut)
def pull_request(
    session_id: RowId, solve_id: EntityId, request: Request, db: DbDep, user: CurrentUser, settings: SettingsDep
) -> PullRequestOut:
    """Open the champion's PR now, or again after a failure; a PR already open is answered, not repeated."""
    solves.get_pushable_solve(db, user=user, session_id=session_id, solve_id=solve_id)
    db.rollback()  # no transaction held open (SQLite: no write lock) while git and GitHub work
    outcome = followup.retry_pr(settings, request.app.state.session_factory, solve_id, workspaces_for(settings))
    return PullRequestOut(solve_id=solve_id, run_id=outcome.run_id, pr_url=outcome.pr_url, pr_error=outcome.pr_error)

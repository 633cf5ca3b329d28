"""Solve lifecycle as the API sees it: start, status, one run, list, cancel."""

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from yudai_solver.base import statuses
from yudai_solver.base.errors import Conflict, NotFound
from yudai_solver.base.models import ChatSession, Solve, SolveRun, User, utcnow
from yudai_solver.base.schemas import Progress, RunSummary, SolveStart, SolveStatus
from yudai_solver.base.settings import Settings
from yudai_solver.scm.pr import pr_state
from yudai_solver.solving import grants, intake
from yudai_solver.solving import matrix as matrix_mod
from yudai_solver.solving.chat_sessions import get_owned_session
from yudai_solver.solving.reducer import end_unfinished_runs
from yudai_solver.solving.repos import base_of, check_branch, is_local, resolve_repo, verify_repo
from yudai_solver.solving.sandbox_policy import refuse_shared_local
from yudai_solver.solving.testpaths import validate_globs

# Never the big columns (diagnostics, trajectory_data): a status read costs the same whatever the runs hold.
SUMMARY_COLUMNS = [getattr(SolveRun, name) for name in RunSummary.model_fields]


def start_solve(
    session: Session, *, user: User, session_id: int, request: SolveStart, settings: Settings
) -> tuple[Solve, list[SolveRun]]:
    """Validate everything first, then write the solve and add one pending run per experiment to `session`: the
    caller's commit writes the runs, with whatever its dispatcher set on them (no update after the insert)."""
    chat = get_owned_session(session, user=user, session_id=session_id)
    refuse_shared_local(session, settings)
    repo = resolve_repo(request.repo_url, settings)
    grants.require_may_solve(session, user, repo)  # before the repository is looked at: no probing of others'
    if not is_local(repo):
        verify_repo(repo, settings)  # a local one is looked at once, by base_of below
    branch = check_branch(request.base_branch) if request.base_branch is not None else None
    experiments = matrix_mod.expand(
        request.matrix, default_max_edits=settings.default_max_edits, max_experiments=settings.max_experiments
    )
    models = matrix_mod.resolve_models(session, request.matrix, experiments)
    test_paths = validate_globs(request.test_paths) if request.test_paths is not None else None
    if request.limits.judge_model is not None:
        matrix_mod.resolve_model(session, request.limits.judge_model, field="limits.judge_model")
    # Last: these may ask the code host.
    branch, base_commit = base_of(repo, branch, settings)
    title, body = intake.issue_text(session, settings, request, repo, user)
    limits = request.limits.model_dump(exclude_none=True)
    solve = Solve(
        id=_new_id(),
        user_id=user.id,
        session_id=chat.id,
        repo_url=repo,
        issue_number=request.issue_number,
        base_branch=branch,
        status=statuses.PENDING,
        matrix={"experiments": [e.as_json() for e in experiments]},
        limits=limits,
        requested_by=request.requested_by or user.name,
        max_parallel=request.limits.max_parallel,
        time_budget_s=request.limits.time_budget_s,
        issue_title=title,
        issue_body=body,
        setup_command=request.setup_command,
        test_command=request.test_command,
        create_pr=request.create_pr,
        test_paths=test_paths,
        base_commit=base_commit,
    )
    session.add(solve)
    # The solve row first, alone: it and its runs name each other (`champion_run_id`), and a caller that crowns a
    # run before its runs are written must find the solve written without one.
    session.flush()
    # Runs are listed by created_at, then id: stamped a microsecond apart they keep the matrix's order (stamped in
    # one flush, two could share a microsecond and their random ids decided).
    now = utcnow()
    runs = [
        SolveRun(
            id=e.run_id,
            solve_id=solve.id,
            model=models[e.model].name,
            temperature=e.temperature,
            max_edits=e.max_edits,
            evolution=e.evolution,
            status=statuses.PENDING,
            created_at=now + timedelta(microseconds=index),
        )
        for index, e in enumerate(experiments)
    ]
    session.add_all(runs)
    return solve, runs


def _new_id() -> str:
    return uuid.uuid4().hex


def get_owned_solve(session: Session, *, user: User, session_id: int, solve_id: str) -> Solve:
    """The user's own solve within that session; anything else answers like a missing one."""
    get_owned_session(session, user=user, session_id=session_id)
    solve = session.get(Solve, solve_id)
    if solve is None or solve.user_id != user.id or solve.session_id != session_id:
        raise NotFound(f"solve {solve_id} not found", field="solve_id")
    return solve


def get_pushable_solve(session: Session, *, user: User, session_id: int, solve_id: str) -> Solve:
    """The user's own solve, if they may still solve its repository (a revoked grant pushes nothing more)."""
    solve = get_owned_solve(session, user=user, session_id=session_id, solve_id=solve_id)
    grants.require_may_solve(session, user, solve.repo_url)
    return solve


def run_summaries(session: Session, solve_id: str) -> list[RunSummary]:
    """Run rows without trajectory_data or diagnostics: only the summary columns are selected."""
    rows = session.execute(
        select(*SUMMARY_COLUMNS).where(SolveRun.solve_id == solve_id).order_by(SolveRun.created_at, SolveRun.id)
    )
    return [RunSummary.model_validate(row._asdict()) for row in rows]


def status(session: Session, *, user: User, session_id: int, solve_id: str) -> SolveStatus:
    return status_of(session, get_owned_solve(session, user=user, session_id=session_id, solve_id=solve_id))


def status_version(session: Session, solve_id: str) -> str | None:
    """The version of the solve's status document (None: no such solve), from one query on indexed keys: cheap
    enough to answer `If-None-Match` or to poll for changes without building the document."""
    row = session.execute(_version_query(solve_id)).first()
    return None if row is None else _version(row)


def owned_status_version(session: Session, *, user: User, session_id: int, solve_id: str) -> str:
    """The version of the user's own solve's status document, its ownership checked in the same query: a poller's
    unchanged solve costs one statement and no ORM object."""
    row = session.execute(
        _version_query(solve_id)
        .join(ChatSession, ChatSession.id == Solve.session_id)
        .where(Solve.session_id == session_id, Solve.user_id == user.id, ChatSession.user_id == user.id)
    ).first()
    if row is None:
        get_owned_solve(session, user=user, session_id=session_id, solve_id=solve_id)  # the precise 404
        raise NotFound(f"solve {solve_id} not found", field="solve_id")
    return _version(row)


def _version_query(solve_id: str) -> Select[tuple[datetime | None, datetime, datetime | None, int]]:
    of_solve = SolveRun.solve_id == solve_id
    return select(
        Solve.updated_at,
        Solve.created_at,
        select(func.max(SolveRun.updated_at)).where(of_solve).scalar_subquery(),
        select(func.count(SolveRun.id)).where(of_solve).scalar_subquery(),
    ).where(Solve.id == solve_id)


def _version(row: Sequence[Any]) -> str:
    return "-".join([_micros(row[0] or row[1]), _micros(row[2]), str(row[3])])


def _micros(moment: datetime | None) -> str:
    return "0" if moment is None else str(round(moment.timestamp() * 1_000_000))


def status_of(session: Session, solve: Solve, version: str | None = None) -> SolveStatus:
    """The status document of `solve`, whoever asks (callers check the asker's right to see it); `version` is
    the one the caller just read, if it did."""
    version = version or status_version(session, solve.id) or ""
    runs = run_summaries(session, solve.id)
    return SolveStatus(
        version=version,
        solve_id=solve.id,
        status=solve.status,
        progress=progress(solve, runs),
        runs=runs,
        champion_run_id=solve.champion_run_id,
        error_message=solve.error_message,
        baseline=solve.baseline,
        ranking=solve.ranking,
        verification=solve.verification,
        created_at=solve.created_at,
        started_at=solve.started_at,
        completed_at=solve.completed_at,
        pr=pr_state(session, solve),
    )


def progress(solve: Solve, runs: list[RunSummary]) -> Progress:
    counts = {name: sum(1 for r in runs if r.status == name) for name in statuses.ALL}
    finished = sum(counts[name] for name in statuses.FINISHED)
    elapsed = 0.0
    if solve.started_at is not None:
        elapsed = ((solve.completed_at or utcnow()) - solve.started_at).total_seconds()
    return Progress(
        runs_total=len(runs),
        runs_pending=counts["pending"],
        runs_running=counts["running"],
        runs_completed=counts["completed"],
        runs_failed=counts["failed"],
        runs_cancelled=counts["cancelled"],
        percent_complete=round(100.0 * finished / len(runs), 1) if runs else 100.0,
        elapsed_s=round(elapsed, 3),
        time_budget_s=solve.time_budget_s,
        tokens_total=sum(r.tokens or 0 for r in runs),
        cost_total=sum(r.cost or 0.0 for r in runs) + _judge_cost(solve),
    )


def _judge_cost(solve: Solve) -> float:
    return ((solve.verification or {}).get("judge") or {}).get("cost") or 0.0


def get_run(session: Session, *, user: User, session_id: int, solve_id: str, run_id: str) -> SolveRun:
    get_owned_solve(session, user=user, session_id=session_id, solve_id=solve_id)
    run = session.get(SolveRun, run_id)
    if run is None or run.solve_id != solve_id:
        raise NotFound(f"run {run_id} not found", field="run_id")
    return run


def list_solves(session: Session, *, user: User, session_id: int, limit: int, offset: int) -> tuple[list[Solve], int]:
    get_owned_session(session, user=user, session_id=session_id)
    where = (Solve.user_id == user.id, Solve.session_id == session_id)
    total = session.scalar(select(func.count(Solve.id)).where(*where))
    query = select(Solve).where(*where).order_by(Solve.created_at.desc(), Solve.id.desc()).limit(limit).offset(offset)
    return list(session.scalars(query)), total or 0


def cancel(session: Session, *, user: User, session_id: int, solve_id: str) -> Solve:
    """Cancel the solve and its unfinished runs; a second cancel is harmless, a finished solve is a Conflict."""
    solve = get_owned_solve(session, user=user, session_id=session_id, solve_id=solve_id)
    if solve.status == statuses.CANCELLED:
        return solve
    if solve.status in statuses.FINISHED:
        raise Conflict(f"solve {solve.id} has already ended: it is {solve.status}", field="status")
    cancel_solve(session, solve, reason="cancelled by user")
    return solve


def cancel_solve(session: Session, solve: Solve, *, reason: str) -> None:
    """Mark every unfinished run and the solve cancelled (running commands are killed by the dispatcher)."""
    end_unfinished_runs(session, solve.id, statuses.CANCELLED, reason)
    statuses.transition(solve, statuses.CANCELLED, error=reason)
    session.flush()

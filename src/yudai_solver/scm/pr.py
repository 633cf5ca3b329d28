"""The champion's pull request: branch built on the worker from the mirror, pushed, opened; its URL on the run.

Idempotent: a champion that has a `pr_url` gets no second PR, a retried commit is the same commit (fixed dates),
and GitHub's "already exists" answer is resolved to the open PR. A failure is recorded on the champion run
(`diagnostics.pr_error`) without touching the run's or the solve's status.
"""

import logging
import threading
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from yudai_solver.base import statuses
from yudai_solver.base.db import storable, transaction
from yudai_solver.base.errors import Conflict, NotFound
from yudai_solver.base.models import Solve, SolveRun, utcnow
from yudai_solver.base.run_results import RunDiagnostics
from yudai_solver.base.schemas import PrState
from yudai_solver.base.settings import Settings
from yudai_solver.scm import pr_body
from yudai_solver.scm.git import Checkouts, Commit, build_branch
from yudai_solver.scm.hosts import host_for
from yudai_solver.scm.protocol import ScmError

log = logging.getLogger(__name__)
_LOCKS = [threading.Lock() for _ in range(64)]


@dataclass(frozen=True)
class PrOutcome:
    run_id: str | None
    pr_url: str | None
    pr_error: str | None


@dataclass(frozen=True)
class _Plan:
    """Everything the PR needs, read in one short transaction (plain values, no live ORM objects)."""

    solve_id: str
    run_id: str
    repo: str
    base_branch: str
    base_commit: str
    branch: str
    patch: str
    title: str
    body: str
    commit: Commit


def pr_state(session: Session, solve: Solve) -> PrState:
    """The solve's pull request as a client sees it: `pending` until the PR it asked for is opened or has failed,
    even for a moment after the solve completed (the PR is made once the solve has ended)."""
    champion = None
    if solve.champion_run_id:
        champion = session.execute(
            select(SolveRun.pr_url, SolveRun.diagnostics["pr_error"].as_string().label("pr_error")).where(
                SolveRun.id == solve.champion_run_id
            )
        ).first()
    if champion is not None and champion.pr_url:
        return PrState(state="opened", url=champion.pr_url)
    if champion is not None and champion.pr_error:
        return PrState(state="failed", error=champion.pr_error)
    if not solve.create_pr:
        return PrState(state="none")
    if solve.status in (statuses.PENDING, statuses.RUNNING) or (
        solve.status == statuses.COMPLETED and champion is not None
    ):
        return PrState(state="pending")
    return PrState(state="none", error=f"the solve is {solve.status} without a champion: there is nothing to propose")


def open_champion_pr(
    settings: Settings, session_factory: sessionmaker[Session], solve_id: str, workspaces: Checkouts
) -> str | None:
    """Open the PR of a solve that asked for one (`create_pr`) and has a champion; returns its URL, else None.

    Call it once a solve has ended (after `reducer.finish_if_done` returned True), outside its transaction.
    Never raises for a push or API failure: the reason goes on the champion run as `diagnostics.pr_error`.
    """
    return attempt(settings, session_factory, solve_id, workspaces).pr_url


def retry(
    settings: Settings, session_factory: sessionmaker[Session], solve_id: str, workspaces: Checkouts
) -> PrOutcome:
    """Open (or re-try) the champion's PR whether or not the solve asked for one; Conflict without a champion."""
    return attempt(settings, session_factory, solve_id, workspaces, force=True)


def attempt(
    settings: Settings,
    session_factory: sessionmaker[Session],
    solve_id: str,
    workspaces: Checkouts,
    *,
    force: bool = False,
) -> PrOutcome:
    with _solve_lock(solve_id):
        plan = _plan(settings, session_factory, solve_id, force=force)
        if isinstance(plan, PrOutcome):
            return plan
        url, error = None, None
        try:
            url = _publish(settings, plan, workspaces)
        except Exception as exc:  # noqa: BLE001 - recorded on the run: a PR never fails the solve
            error = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        _record(session_factory, plan.run_id, branch=plan.branch, url=url, error=error)
        if url:
            log.info("solve %s: pull request %s", solve_id, url)
        else:
            log.warning("solve %s: no pull request: %s", solve_id, error)
        return PrOutcome(plan.run_id, url, error)


@contextmanager
def _solve_lock(solve_id: str) -> Iterator[None]:
    """One PR attempt per solve at a time in this process (dispatcher and retry endpoint may meet)."""
    with _LOCKS[zlib.crc32(solve_id.encode()) % len(_LOCKS)]:
        yield


def _plan(settings: Settings, factory: sessionmaker[Session], solve_id: str, *, force: bool) -> "_Plan | PrOutcome":
    with transaction(factory) as session:
        solve = session.get(Solve, solve_id)
        if solve is None:
            raise NotFound(f"solve {solve_id} not found", field="solve_id")
        champion = session.get(SolveRun, solve.champion_run_id) if solve.champion_run_id else None
        if not (solve.create_pr or force):
            return PrOutcome(champion.id if champion else None, None, None)
        if solve.status != statuses.COMPLETED or champion is None:
            if force:
                raise Conflict(
                    f"solve {solve_id} is {solve.status} without a champion: there is nothing to propose",
                    field="status",
                )
            return PrOutcome(None, None, None)
        if champion.pr_url:
            return PrOutcome(champion.id, champion.pr_url, None)
        diagnostics = RunDiagnostics.from_json(champion.diagnostics)
        problem = _unusable(diagnostics)
        if problem:
            _set_pr_error(champion, problem)
            return PrOutcome(champion.id, None, problem)
        return _plan_of(settings, session, solve, champion, diagnostics)


def _unusable(diagnostics: RunDiagnostics) -> str | None:
    if diagnostics.patch_truncated:
        return "the champion's patch is over 1 MB and was stored truncated: no pull request"
    if not diagnostics.patch:
        return "the champion changed nothing: no pull request"
    if not diagnostics.base_commit:
        return "the champion's base commit was not recorded: no pull request"
    return None


def _plan_of(
    settings: Settings, session: Session, solve: Solve, champion: SolveRun, diagnostics: RunDiagnostics
) -> _Plan:
    runs = list(
        session.scalars(
            select(SolveRun).where(SolveRun.solve_id == solve.id).order_by(SolveRun.created_at, SolveRun.id)
        )
    )
    assert diagnostics.base_commit is not None  # `_unusable` refused a champion without one
    body = pr_body.body(solve, runs, champion)
    message = pr_body.commit_message(solve, champion)
    host = host_for(settings, solve.repo_url)
    if host is not None and host.name == "local":  # no pull request page keeps the body: the commit keeps it
        subject = message.split("\n", 1)[0]
        message = f"{subject}\n\n{body.rstrip()}\n\nYudai-Solve: {solve.id}\nYudai-Run: {champion.id}\n"
    commit = Commit(
        message=message,
        author_name=settings.pr_author_name,
        author_email=settings.pr_author_email,
        when=champion.completed_at or solve.completed_at or utcnow(),
    )
    return _Plan(
        solve.id,
        champion.id,
        solve.repo_url,
        solve.base_branch or "main",
        diagnostics.base_commit,
        pr_body.branch_name(solve),
        diagnostics.patch,
        pr_body.title(solve),
        body,
        commit,
    )


def _publish(settings: Settings, plan: _Plan, workspaces: Checkouts) -> str:
    host = host_for(settings, plan.repo)
    if host is None:
        raise ScmError(
            f"no code host known for {plan.repo}: pull requests are made on GitHub and for local "
            "repositories (pushed to their origin remote)"
        )
    scratch = settings.data_dir / "prs" / f"{plan.solve_id}-{uuid.uuid4().hex[:8]}"
    try:
        build_branch(
            workspaces,
            repo=plan.repo,
            base_branch=plan.base_branch,
            base_commit=plan.base_commit,
            branch=plan.branch,
            patch=plan.patch,
            commit=plan.commit,
            dest=scratch / "work",
        )
        host.push(plan.repo, scratch / "work", plan.branch)
        return host.open_pull_request(
            plan.repo, head=plan.branch, base=plan.base_branch, title=plan.title, body=plan.body
        )
    finally:
        workspaces.remove(scratch)


def _record(factory: sessionmaker[Session], run_id: str, *, branch: str, url: str | None, error: str | None) -> None:
    with transaction(factory) as session:
        run = session.scalars(select(SolveRun).where(SolveRun.id == run_id).with_for_update()).one()
        if url:
            run.pr_url = url
            run.diagnostics = {k: v for k, v in (run.diagnostics or {}).items() if k != "pr_error"} | {
                "pr_branch": branch
            }
        else:
            _set_pr_error(run, error or "unknown error")


def record_failure(factory: sessionmaker[Session], solve_id: str, error: str) -> None:
    """An attempt that failed outside `attempt`'s own handling: said on the champion, so the PR is not `pending`
    for ever."""
    with transaction(factory) as session:
        solve = session.get(Solve, solve_id)
        if solve is None or not solve.champion_run_id:
            return
        champion = session.scalars(select(SolveRun).where(SolveRun.id == solve.champion_run_id).with_for_update()).one()
        if not champion.pr_url:
            _set_pr_error(champion, error)


def _set_pr_error(run: SolveRun, error: str) -> None:
    # Reassigned, not mutated: JSON columns track assignment only.
    run.diagnostics = (run.diagnostics or {}) | {"pr_error": storable(error[-2000:])}

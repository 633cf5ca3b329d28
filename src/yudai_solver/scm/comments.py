"""The answer on the GitHub issue once a webhook-started solve has ended: the PR's link, or why there is none."""

from sqlalchemy import Select, select
from sqlalchemy.orm import Session, sessionmaker

from yudai_solver.base import statuses
from yudai_solver.base.db import transaction
from yudai_solver.base.models import Solve, SolveRun, WebhookDelivery
from yudai_solver.base.settings import Settings
from yudai_solver.scm.hosts import host_for


def report_on_issue(settings: Settings, session_factory: sessionmaker[Session], solve_id: str) -> str | None:
    """Comment once on the issue of a solve a webhook started; returns the comment's URL (None: nothing to do)."""
    with transaction(session_factory) as session:
        delivery = session.scalar(_started_by(solve_id))
        if delivery is None or delivery.comment_url:
            return None
        solve = session.get_one(Solve, solve_id)
        champion = session.get(SolveRun, solve.champion_run_id) if solve.champion_run_id else None
        repo, number, text = solve.repo_url, solve.issue_number, comment_text(solve, champion)
    host = host_for(settings, repo)
    url = host.comment(repo, number, text) if host else None
    if url:
        with transaction(session_factory) as session:
            session.scalars(_started_by(solve_id)).one().comment_url = url
    return url


def _started_by(solve_id: str) -> Select[WebhookDelivery]:
    return select(WebhookDelivery).where(WebhookDelivery.solve_id == solve_id, WebhookDelivery.outcome == "started")


def comment_text(solve: Solve, champion: SolveRun | None) -> str:
    where = f"\n\n<sub>yudai-solver · solve `{solve.id}`</sub>"
    if solve.status != statuses.COMPLETED or champion is None:
        why = solve.error_message or "no reason given"
        return f"yudai-solver found no fix for this issue ({solve.status}): {why}.{where}"
    who = f"**{champion.model}** (temperature {champion.temperature:g})"
    if champion.pr_url:
        return f"yudai-solver opened {champion.pr_url} for this issue: the change of {who}.{where}"
    why = (champion.diagnostics or {}).get("pr_error") or "no pull request was asked for"
    return f"yudai-solver found a fix by {who}, but opened no pull request: {why}{where}"

"""The answer on the GitHub issue once a webhook-started solve has ended: the PR's link, or why there is none."""

from datetime import datetime, timedelta

from sqlalchemy import Select, select
from sqlalchemy.orm import Session, sessionmaker

from yudai_solver.base import statuses
from yudai_solver.base.db import transaction
from yudai_solver.base.models import Solve, SolveRun, WebhookDelivery, utcnow
from yudai_solver.base.settings import Settings
from yudai_solver.scm.hosts import host_for


def report_on_issue(settings: Settings, session_factory: sessionmaker[Session], solve_id: str) -> str | None:
    """Comment once on the issue of a solve a webhook started; returns the comment's URL (None: nothing to do).

    Whatever ended the solve may call it at the same moment as another thread or worker: the delivery row is
    claimed first (locked, marked), so only one of them comments. A claim left by a process that died is
    taken over after `CLAIM_TTL`; a comment that fails releases the claim for the next try.
    """
    claim = f"{_CLAIMED}{utcnow().isoformat()}"
    with transaction(session_factory) as session:
        delivery = session.scalar(_started_by(solve_id).with_for_update())
        if delivery is None or not _free(delivery.comment_url):
            return None
        delivery.comment_url = claim
        solve = session.get_one(Solve, solve_id)
        champion = session.get(SolveRun, solve.champion_run_id) if solve.champion_run_id else None
        repo, number, text = solve.repo_url, solve.issue_number, comment_text(solve, champion)
    url = None
    try:
        host = host_for(settings, repo)
        url = host.comment(repo, number, text) if host else None
    finally:
        with transaction(session_factory) as session:
            delivery = session.scalars(_started_by(solve_id).with_for_update()).one()
            if delivery.comment_url == claim:
                delivery.comment_url = url
    return url


_CLAIMED = "claimed at "
CLAIM_TTL = timedelta(minutes=10)


def _free(comment_url: str | None) -> bool:
    if not comment_url:
        return True
    if not comment_url.startswith(_CLAIMED):
        return False
    try:
        return utcnow() - datetime.fromisoformat(comment_url.removeprefix(_CLAIMED)) > CLAIM_TTL
    except ValueError:
        return True


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

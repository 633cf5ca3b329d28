"""Issue intake at solve start: the issue's text from the request, the `issues` table, or the repository's host
(GitHub; kept fresh)."""

import logging
from datetime import timedelta

from sqlalchemy.orm import Session

from yudai_solver.base.db import storable
from yudai_solver.base.errors import InvalidInput
from yudai_solver.base.models import Issue, User, utcnow
from yudai_solver.base.schemas import MAX_ISSUE_BODY, MAX_ISSUE_TITLE, IssueUpsert, SolveStart
from yudai_solver.base.settings import Settings
from yudai_solver.scm.hosts import host_for
from yudai_solver.scm.protocol import IssueData, IssueNotFound, RepoNotFound, ScmError, ScmHost
from yudai_solver.solving.issues import find_issue, upsert_issue
from yudai_solver.solving.repos import is_local

log = logging.getLogger(__name__)


def issue_text(session: Session, settings: Settings, request: SolveStart, repo: str, user: User) -> tuple[str, str]:
    """(title, body) for the user's solve; InvalidInput naming the field when the issue cannot be solved.

    A title in the request is taken as is. Otherwise the user's own stored text is used: an issue of a host with
    issues (GitHub) missing from it, or stored longer ago than `issue_refresh_s`, is fetched and stored for the user
    (the caller's transaction); a stale copy serves when the host cannot be reached. Another user's text never
    serves. A closed issue is refused unless the request sets `allow_closed`.
    """
    if request.issue_title:
        return request.issue_title, request.issue_body or ""
    stored = find_issue(session, user=user, repo_url=repo, number=request.issue_number)
    host = host_for(settings, repo)
    if host is not None and host.has_issues and (stored is None or _stale(stored, settings.issue_refresh_s)):
        stored = _refresh(session, host, repo, request.issue_number, stored, user)
    if stored is None:
        where = "a local repository has no issue tracker" if is_local(repo) else "the issue is not in the issues table"
        raise InvalidInput(f"{where}: give issue_title (and issue_body) or POST /issues first", field="issue_title")
    if stored.state == "closed" and not request.allow_closed:
        raise InvalidInput(
            f"issue #{stored.number} is closed; set allow_closed to solve it anyway", field="issue_number"
        )
    return stored.title, stored.body or ""


def store_issue(session: Session, user: User, repo: str, data: IssueData) -> Issue:
    """Insert or update the user's issue row from the host's data, marking it fresh."""
    # The host's text is stored as the schema allows: NUL replaced, cut at the caps (GitHub's own, in practice).
    spec = IssueUpsert(
        repo_url=repo,
        number=data.number,
        title=storable(data.title)[:MAX_ISSUE_TITLE] or f"#{data.number}",
        body=storable(data.body)[:MAX_ISSUE_BODY],
        labels=[label[:255] for label in storable(data.labels) if label][:100],
        state="closed" if data.state == "closed" else "open",
    )
    row = upsert_issue(session, spec, user=user, repo_url=repo)
    row.updated_at = utcnow()  # also when nothing changed: the row was checked now
    session.flush()
    return row


def _stale(row: Issue, refresh_s: int) -> bool:
    checked = row.updated_at or row.created_at
    return checked is None or utcnow() - checked > timedelta(seconds=refresh_s)


def _refresh(session: Session, host: ScmHost, repo: str, number: int, stored: Issue | None, user: User) -> Issue | None:
    try:
        data = host.fetch_issue(repo, number)
    except (IssueNotFound, RepoNotFound) as exc:
        raise InvalidInput(exc.message, field=exc.field) from None
    except ScmError as exc:
        if stored is None:
            raise InvalidInput(f"could not read the issue from {host.title}: {exc.message}", field="repo_url") from None
        log.warning("using the stored copy of %s#%s: %s", repo, number, exc.message)
        return stored
    if data.is_pull_request:
        raise InvalidInput(f"#{number} of {repo} is a pull request, not an issue", field="issue_number")
    return store_issue(session, user, repo, data)

"""Issue texts kept per owner, repository and number, so a solve can name an issue without repeating it.

Each user keeps their own texts (written through the API or fetched from the code host for their solves): a text
one user wrote never reaches another user's solve, and a user sees and changes only texts of repositories they
may solve. Per owner rather than per solve, because naming a stored issue by number is what the table is for.
"""

from sqlalchemy import select
from sqlalchemy.orm import Session

from yudai_solver.base.models import Issue, User
from yudai_solver.base.schemas import IssueUpsert
from yudai_solver.base.settings import Settings
from yudai_solver.solving import grants
from yudai_solver.solving.repos import resolve_repo, verify_repo


def write_issue(session: Session, settings: Settings, user: User, spec: IssueUpsert) -> Issue:
    """The user's text of an issue of a repository they may solve, inserted or updated (caller commits)."""
    repo = resolve_repo(spec.repo_url, settings)
    grants.require_may_solve(session, user, repo)
    verify_repo(repo, settings)
    return upsert_issue(session, spec, user=user, repo_url=repo)


def upsert_issue(session: Session, spec: IssueUpsert, *, user: User, repo_url: str) -> Issue:
    row = find_issue(session, user=user, repo_url=repo_url, number=spec.number)
    if row is None:
        row = Issue(user_id=user.id, repo_url=repo_url, number=spec.number)
        session.add(row)
    row.title, row.body, row.labels, row.state = spec.title, spec.body, list(spec.labels), spec.state
    session.flush()
    return row


def find_issue(session: Session, *, user: User, repo_url: str, number: int) -> Issue | None:
    query = select(Issue).where(Issue.user_id == user.id, Issue.repo_url == repo_url, Issue.number == number)
    return session.scalar(query)


def list_issues(session: Session, *, user: User, repo_url: str | None) -> list[Issue]:
    """The user's own texts, of repositories they may (still) solve."""
    query = select(Issue).where(Issue.user_id == user.id).order_by(Issue.repo_url, Issue.number)
    if repo_url:
        query = query.where(Issue.repo_url == repo_url)
    rows = list(session.scalars(query))
    allowed = {repo for repo in {row.repo_url for row in rows} if grants.may_solve(session, user, repo)}
    return [row for row in rows if row.repo_url in allowed]

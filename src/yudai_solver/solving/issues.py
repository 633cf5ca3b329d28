"""Issue texts kept per repository and number, so a solve can name an issue without repeating it."""

from sqlalchemy import select
from sqlalchemy.orm import Session

from yudai_solver.base.models import Issue
from yudai_solver.base.schemas import IssueUpsert


def upsert_issue(session: Session, spec: IssueUpsert, *, repo_url: str) -> Issue:
    row = find_issue(session, repo_url=repo_url, number=spec.number)
    if row is None:
        row = Issue(repo_url=repo_url, number=spec.number)
        session.add(row)
    row.title, row.body, row.labels, row.state = spec.title, spec.body, list(spec.labels), spec.state
    session.flush()
    return row


def find_issue(session: Session, *, repo_url: str, number: int) -> Issue | None:
    return session.scalar(select(Issue).where(Issue.repo_url == repo_url, Issue.number == number))


def list_issues(session: Session, *, repo_url: str | None) -> list[Issue]:
    query = select(Issue).order_by(Issue.repo_url, Issue.number)
    if repo_url:
        query = query.where(Issue.repo_url == repo_url)
    return list(session.scalars(query))

from typing import Annotated

from fastapi import APIRouter, Query

from yudai_solver.base.models import Issue
from yudai_solver.base.schemas import IssueOut, IssueUpsert, Str
from yudai_solver.entry.api.deps import CurrentUser, DbDep, SettingsDep
from yudai_solver.solving import issues

router = APIRouter(prefix="/issues", tags=["issues"])


@router.post("", status_code=201, response_model=IssueOut)
def upsert_issue(body: IssueUpsert, db: DbDep, settings: SettingsDep, user: CurrentUser) -> Issue:
    """The caller's own text of an issue of a repository they may solve; other users' texts are never touched."""
    row = issues.write_issue(db, settings, user, body)
    db.commit()
    return row


@router.get("", response_model=list[IssueOut])
def list_issues(
    db: DbDep, user: CurrentUser, repo_url: Annotated[Str | None, Query(max_length=1000)] = None
) -> list[Issue]:
    """The caller's own issue texts, of repositories they may solve."""
    return issues.list_issues(db, user=user, repo_url=repo_url)

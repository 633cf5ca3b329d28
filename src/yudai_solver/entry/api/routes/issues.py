from fastapi import APIRouter

from yudai_solver.base.models import Issue
from yudai_solver.base.schemas import IssueOut, IssueUpsert
from yudai_solver.entry.api.deps import CurrentUser, DbDep, SettingsDep
from yudai_solver.solving import issues
from yudai_solver.solving.repos import resolve_repo

router = APIRouter(prefix="/issues", tags=["issues"])


@router.post("", status_code=201, response_model=IssueOut)
def upsert_issue(body: IssueUpsert, db: DbDep, settings: SettingsDep, _: CurrentUser) -> Issue:
    row = issues.upsert_issue(db, body, repo_url=resolve_repo(body.repo_url, settings.repo_roots))
    db.commit()
    return row


@router.get("", response_model=list[IssueOut])
def list_issues(db: DbDep, _: CurrentUser, repo_url: str | None = None) -> list[Issue]:
    return issues.list_issues(db, repo_url=repo_url)

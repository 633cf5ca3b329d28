from typing import Annotated

from fastapi import APIRouter, Query, Response

from yudai_solver.base.schemas import GrantCreate, GrantOut, Str
from yudai_solver.entry.api.deps import CurrentUser, DbDep, RowId
from yudai_solver.solving import grants

router = APIRouter(prefix="/grants", tags=["grants"])


@router.post("", status_code=201, response_model=GrantOut)
def add_grant(body: GrantCreate, db: DbDep, user: CurrentUser) -> GrantOut:
    """Admins: let a user solve a repository, or every repository under a root."""
    grant = grants.add_grant(db, user, body)
    db.commit()
    return grant


@router.get("", response_model=list[GrantOut])
def list_grants(
    db: DbDep, user: CurrentUser, user_name: Annotated[Str | None, Query(alias="user", max_length=255)] = None
) -> list[GrantOut]:
    """Every grant for an admin (of one user with `?user=`); a user's own grants for anyone else."""
    return grants.list_grants(db, user, user_name=user_name)


@router.delete("/{grant_id}", status_code=204)
def remove_grant(grant_id: RowId, db: DbDep, user: CurrentUser) -> Response:
    """Admins: revoke a grant (solves already started keep running; their pull requests are no longer retried)."""
    grants.remove_grant(db, user, grant_id)
    db.commit()
    return Response(status_code=204)

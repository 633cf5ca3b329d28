"""Who may solve which repositories: admins all of them, everyone else what an admin granted (a repository, or a
root: a directory, or an https URL prefix such as `https://github.com/acme`)."""

import re
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from yudai_solver.base.errors import Conflict, Forbidden, InvalidInput, NotFound
from yudai_solver.base.models import RepoGrant, User
from yudai_solver.base.schemas import GrantCreate, GrantOut
from yudai_solver.solving.users import require_admin

_HTTPS_PREFIX = re.compile(r"https://[A-Za-z0-9.-]+(:\d{1,5})?(/[A-Za-z0-9._~-]+)*/?")


def key(repo: str) -> str:
    """The form grants and repositories are compared in: GitHub's owner and repository names ignore case, and
    `.git` or a trailing slash name the same repository."""
    if repo.startswith("https://"):
        return repo.rstrip("/").lower().removesuffix(".git")
    return repo.rstrip("/") or "/"


def covers(grant: str, repo: str) -> bool:
    grant_key, repo_key = key(grant), key(repo)
    return repo_key == grant_key or repo_key.startswith(grant_key.rstrip("/") + "/")


def may_solve(session: Session, user: User, repo: str) -> bool:
    """Whether `user` may solve the canonical repository `repo` (see `repos.resolve_repo`)."""
    if user.is_admin:
        return True
    granted = session.scalars(select(RepoGrant.repo).where(RepoGrant.user_id == user.id))
    return any(covers(grant, repo) for grant in granted)


def require_may_solve(session: Session, user: User, repo: str) -> None:
    if not may_solve(session, user, repo):
        raise Forbidden(f"you may not solve {repo}: an admin can grant it (yudai grant add)", field="repo_url")


def canonical_grant(value: str) -> str:
    """A grant as stored: an https URL (prefix) in its compared form, or an absolute path resolved."""
    if value.startswith("https://"):
        if not _HTTPS_PREFIX.fullmatch(value) or "@" in value:
            raise InvalidInput("not an https URL prefix (https://host[/owner[/repo]])", field="repo")
        return key(value)
    raw = value.removeprefix("file://")
    if not raw.startswith("/"):
        raise InvalidInput("give an https:// URL (prefix) or an absolute directory", field="repo")
    return str(Path(raw).resolve())


def add_grant(session: Session, admin: User, spec: GrantCreate) -> GrantOut:
    require_admin(admin, "grant repositories")
    user = session.scalar(select(User).where(User.name == spec.user))
    if user is None:
        raise NotFound(f"no user named {spec.user!r}", field="user")
    repo = canonical_grant(spec.repo)
    if session.scalar(select(RepoGrant.id).where(RepoGrant.user_id == user.id, RepoGrant.repo == repo)) is not None:
        raise Conflict(f"{spec.user} may solve {repo} already", field="repo")
    grant = RepoGrant(user_id=user.id, repo=repo)
    try:
        with session.begin_nested():
            session.add(grant)
    except IntegrityError:  # the same grant, added by a concurrent request
        raise Conflict(f"{spec.user} may solve {repo} already", field="repo") from None
    return _out(grant, user.name)


def list_grants(session: Session, viewer: User, *, user_name: str | None = None) -> list[GrantOut]:
    """Every grant (of one user, if named) for an admin; a user's own grants for anyone else."""
    query = select(RepoGrant, User.name).join(User, User.id == RepoGrant.user_id).order_by(User.name, RepoGrant.repo)
    if not viewer.is_admin:
        query = query.where(RepoGrant.user_id == viewer.id)
    if user_name is not None:
        query = query.where(User.name == user_name)
    return [_out(grant, name) for grant, name in session.execute(query)]


def remove_grant(session: Session, admin: User, grant_id: int) -> None:
    require_admin(admin, "revoke grants")
    grant = session.get(RepoGrant, grant_id)
    if grant is None:
        raise NotFound(f"grant {grant_id} not found", field="grant_id")
    session.delete(grant)
    session.flush()


def find_grant(session: Session, *, user_name: str, repo: str) -> RepoGrant | None:
    query = select(RepoGrant).join(User, User.id == RepoGrant.user_id)
    return session.scalar(query.where(User.name == user_name, RepoGrant.repo == canonical_grant(repo)))


def _out(grant: RepoGrant, user_name: str) -> GrantOut:
    return GrantOut(id=grant.id, user=user_name, repo=grant.repo, created_at=grant.created_at)

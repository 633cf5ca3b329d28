"""Users and their API tokens. Tokens are shown once and stored only as a SHA-256 digest."""

import hashlib
import secrets

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from yudai_solver.base.errors import Conflict, Forbidden, Unauthorized
from yudai_solver.base.models import User

TOKEN_PREFIX = "yd_"


def hash_token(token: str) -> str:
    # Tokens carry 256 random bits, so a plain digest is enough; no slow KDF is needed to resist guessing.
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def create_user(session: Session, *, name: str, admin: bool = False) -> tuple[User, str]:
    """A new user and its clear token; the first user of a fresh database is an admin."""
    if session.scalar(select(User.id).where(User.name == name)) is not None:
        raise Conflict(f"a user named {name!r} exists already", field="name")
    first = session.scalar(select(func.count(User.id))) == 0
    token = new_token()
    user = User(name=name, token_hash=hash_token(token), is_admin=admin or first)
    session.add(user)
    session.flush()
    return user, token


def authenticate(session: Session, authorization: str | None) -> User:
    """The user whose token the `Authorization: Bearer` header carries, or Unauthorized."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized()
    user = session.scalar(select(User).where(User.token_hash == hash_token(token.strip())))
    if user is None:
        raise Unauthorized("the token is not valid")
    return user


def require_admin(user: User, action: str = "add or change models") -> None:
    if not user.is_admin:
        raise Forbidden(f"only an admin may {action}")


def operator() -> User:
    """The person at the command line: whoever can reach the database may do what an admin may (never stored)."""
    return User(name="operator", token_hash="", is_admin=True)

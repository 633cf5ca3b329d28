"""Chat sessions: the per-user containers that solves belong to."""

from sqlalchemy import select
from sqlalchemy.orm import Session

from yudai_solver.base.errors import NotFound
from yudai_solver.base.models import ChatSession, User


def create_session(session: Session, *, user: User, title: str | None) -> ChatSession:
    chat = ChatSession(user_id=user.id, title=title)
    session.add(chat)
    session.flush()
    return chat


def list_sessions(session: Session, *, user: User) -> list[ChatSession]:
    query = select(ChatSession).where(ChatSession.user_id == user.id).order_by(ChatSession.id.desc())
    return list(session.scalars(query))


def get_owned_session(session: Session, *, user: User, session_id: int) -> ChatSession:
    """The user's own session; someone else's answers exactly like a missing one."""
    chat = session.get(ChatSession, session_id)
    if chat is None or chat.user_id != user.id:
        raise NotFound(f"session {session_id} not found", field="session_id")
    return chat

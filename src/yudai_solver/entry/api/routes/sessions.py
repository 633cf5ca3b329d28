from fastapi import APIRouter

from yudai_solver.base.models import ChatSession
from yudai_solver.base.schemas import SessionCreate, SessionOut
from yudai_solver.entry.api.deps import CurrentUser, DbDep
from yudai_solver.solving import chat_sessions

router = APIRouter(prefix="/sessions", tags=["sessions"])


@router.post("", status_code=201, response_model=SessionOut)
def create_session(body: SessionCreate, db: DbDep, user: CurrentUser) -> ChatSession:
    chat = chat_sessions.create_session(db, user=user, title=body.title)
    db.commit()
    return chat


@router.get("", response_model=list[SessionOut])
def list_sessions(db: DbDep, user: CurrentUser) -> list[ChatSession]:
    return chat_sessions.list_sessions(db, user=user)

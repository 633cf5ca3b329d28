"""Request-scoped dependencies, as `Annotated` aliases so routes read like prose."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Path, Request
from sqlalchemy.orm import Session

from yudai_solver.base.models import User
from yudai_solver.base.schemas import MAX_DB_INT
from yudai_solver.base.settings import Settings
from yudai_solver.dispatch.protocol import Dispatcher
from yudai_solver.solving.users import authenticate, require_admin


def session_for(request: Request) -> Session:
    """A new session for `request`; routes that write call `commit()` themselves, anything else is rolled back.

    GET and HEAD requests only read: on SQLite their session never takes the write lock, so watchers never queue
    behind writers or each other."""
    reading = request.method in ("GET", "HEAD")
    factory = request.app.state.read_factory if reading else request.app.state.write_factory
    session: Session = factory()
    return session


def get_db(request: Request) -> Iterator[Session]:
    """A session per request (see `session_for`), closed when the request is done."""
    with session_for(request) as session:
        yield session


DbDep = Annotated[Session, Depends(get_db)]


# Dependencies that only read the app's state are `async def`: FastAPI runs a plain `def` dependency on the thread
# pool, and each such hop costs a request a thread switch and a wait for the GIL.
async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_dispatcher(request: Request) -> Dispatcher:
    dispatcher: Dispatcher = request.app.state.dispatcher
    return dispatcher


DispatcherDep = Annotated[Dispatcher, Depends(get_dispatcher)]


def current_user(db: DbDep, authorization: Annotated[str | None, Header()] = None) -> User:
    return authenticate(db, authorization)


CurrentUser = Annotated[User, Depends(current_user)]


async def admin_user(user: CurrentUser) -> User:
    require_admin(user)
    return user


AdminUser = Annotated[User, Depends(admin_user)]


RowId = Annotated[int, Path(ge=1, le=MAX_DB_INT)]
"""An integer id in a path: out-of-range numbers answer 422 before any query."""
EntityId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
"""A solve's or run's id in a path: anything else (a NUL, which PostgreSQL refuses) answers 422 before any query."""

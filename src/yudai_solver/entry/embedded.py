"""Everything in one process: migrate, serve the API with an in-process dispatcher on a free local port."""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from yudai_solver.base.db import create_db_engine, create_session_factory, transaction
from yudai_solver.base.migrate import upgrade
from yudai_solver.base.models import User
from yudai_solver.base.settings import Settings
from yudai_solver.dispatch.factory import create_dispatcher
from yudai_solver.entry.api import create_app
from yudai_solver.solving.users import create_user, hash_token, new_token

EMBEDDED_USER = "local"


@contextmanager
def embedded_server(settings: Settings) -> Iterator[tuple[str, str]]:
    """Yield (base URL, token of the local user) of an API served in a thread of this process."""
    upgrade(settings.resolved_database_url)
    factory = create_session_factory(create_db_engine(settings.resolved_database_url))
    token = _local_token(factory)
    app = create_app(settings, session_factory=factory, dispatcher=create_dispatcher(settings, factory))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, name="yudai-embedded", daemon=True)
    thread.start()
    try:
        yield _wait_started(server), token
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _wait_started(server: uvicorn.Server, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline or not getattr(server, "config", None):
            raise RuntimeError("the embedded server did not start")
        time.sleep(0.02)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    return f"http://{host}:{port}"


def _local_token(factory: sessionmaker[Session]) -> str:
    """A fresh token for the embedded user (created on first use); the old one stops working."""
    with transaction(factory) as session:
        user = session.scalar(select(User).where(User.name == EMBEDDED_USER))
        if user is None:
            return create_user(session, name=EMBEDDED_USER, admin=True)[1]
        token = new_token()
        user.token_hash = hash_token(token)
        return token

"""Everything in one process: migrate, serve the API with an in-process dispatcher on a free local port.

Several such processes (and a `yudai serve`) may share one data directory: each executes only its own runs (see
`dispatch.owners`), and all use the one token of the `local` user kept in the data directory, so none of them
replaces the token another one is using.
"""

import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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

log = logging.getLogger(__name__)
EMBEDDED_USER = "local"
TOKEN_FILE = "local-token"


@contextmanager
def embedded_server(settings: Settings) -> Iterator[tuple[str, str]]:
    """Yield (base URL, token of the local user) of an API served in a thread of this process."""
    upgrade(settings.resolved_database_url)
    pool_size = settings.db_pool_size(api=True, runs=settings.max_concurrent_runs)
    factory = create_session_factory(create_db_engine(settings.resolved_database_url, pool_size=pool_size))
    token = _local_token(factory, settings.data_dir)
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


def _local_token(factory: sessionmaker[Session], data_dir: Path) -> str:
    """The embedded user's token, kept in `data_dir/local-token` (mode 0600) for every process of this data
    directory: created with the user on first use, replaced only when the file is missing or no longer matches
    (then a process holding the old one must restart)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / TOKEN_FILE
    with open(data_dir / f"{TOKEN_FILE}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two processes starting together agree on one token
        saved = path.read_text().strip() if path.is_file() else None
        with transaction(factory) as session:
            user = session.scalar(select(User).where(User.name == EMBEDDED_USER))
            if user is not None and saved and user.token_hash == hash_token(saved):
                return saved
            if user is None:
                token = create_user(session, name=EMBEDDED_USER, admin=True)[1]
            else:
                log.warning("the %s user's token is not the one kept in %s: it is replaced", EMBEDDED_USER, path)
                token = new_token()
                user.token_hash = hash_token(token)
            _write_private(path, token)  # before the commit: a token in the database is one in the file too
        return token


def _write_private(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")
    os.replace(temporary, path)

"""Engine and session factory for SQLite (embedded default) and PostgreSQL, kept in lockstep."""

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar, overload

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

SQLITE_BUSY_TIMEOUT_MS = 30_000
"""How long a writer waits for SQLite's write lock, unless its session factory says otherwise."""
POOL_SIZE = 10
"""Connections a process keeps, when its caller does not size the pool to its threads (see `Settings.db_pool_size`)."""

# Execution options read by the SQLite "begin" hook; set per session factory (see `create_session_factory`).
_READ_ONLY = "yudai_read_only"
_BUSY_MS = "yudai_busy_timeout_ms"


def create_db_engine(url: str, *, pool_size: int = POOL_SIZE, pool_timeout_s: float = 30) -> Engine:
    """An engine for `url` whose pool holds `pool_size` connections, waiting at most `pool_timeout_s` for one.

    On SQLite: WAL, and transactions that write take the write lock when they begin (`BEGIN IMMEDIATE`), while
    read-only sessions begin a plain `BEGIN`: in WAL mode their snapshot never waits on the writer.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(
            url, pool_pre_ping=True, pool_size=pool_size, max_overflow=pool_size // 2, pool_timeout=pool_timeout_s
        )
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        pool_size=pool_size,
        max_overflow=pool_size // 2,
        pool_timeout=pool_timeout_s,
    )
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: sqlite3.Connection, record: ConnectionPoolEntry) -> None:
    dbapi_connection.isolation_level = None  # let the "begin" hook emit BEGIN itself
    cursor = dbapi_connection.cursor()
    # WAL is a property of the file, kept once set. Setting it again waits for the write lock: a connection opened
    # while runs write would keep its request waiting.
    if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    record.info[_BUSY_MS] = SQLITE_BUSY_TIMEOUT_MS
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    options = connection.get_execution_options()
    # Pooled connections serve every factory, so each transaction sets its own wait (when it differs from the
    # connection's last: a status read is two statements, one saved is noticeable).
    busy_ms = int(options.get(_BUSY_MS, SQLITE_BUSY_TIMEOUT_MS))
    if connection.info.get(_BUSY_MS) != busy_ms:
        connection.exec_driver_sql(f"PRAGMA busy_timeout={busy_ms}")
        connection.info[_BUSY_MS] = busy_ms
    # A writer takes the write lock at BEGIN: upgrading a read snapshot to a write fails at once in WAL mode
    # whenever another writer committed meanwhile ("database is locked" without any wait).
    connection.exec_driver_sql("BEGIN" if options.get(_READ_ONLY) else "BEGIN IMMEDIATE")


def create_session_factory(
    engine: Engine, *, read_only: bool = False, busy_timeout_s: float | None = None
) -> sessionmaker[Session]:
    """Sessions on `engine`. `read_only` sessions never take SQLite's write lock (a write in one may fail with
    "database is locked"); `busy_timeout_s` bounds a writer's wait for that lock (SQLite only)."""
    options: dict[str, object] = {}
    if read_only:
        options[_READ_ONLY] = True
    if busy_timeout_s is not None:
        options[_BUSY_MS] = round(busy_timeout_s * 1000)
    return sessionmaker(engine.execution_options(**options) if options else engine, expire_on_commit=False)


def is_contention(error: BaseException) -> bool:
    """True for errors that mean "the database is busy, ask again soon": SQLite's lock wait ran out, or no pooled
    connection came free in time. Never for a broken query."""
    if isinstance(error, PoolTimeout):
        return True
    if isinstance(error, OperationalError) and isinstance(error.orig, sqlite3.OperationalError):
        return "locked" in str(error.orig) or "busy" in str(error.orig)
    return False


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work is committed on success and rolled back on error: the caller owns the transaction."""
    with factory() as session, session.begin():
        yield session


_K = TypeVar("_K")
_V = TypeVar("_V")
_Scalar = TypeVar("_Scalar", bound=int | float | None)


@overload
def storable(value: str) -> str: ...
@overload
def storable(value: dict[_K, _V]) -> dict[_K, _V]: ...
@overload
def storable(value: list[_V] | tuple[_V, ...]) -> list[_V]: ...
@overload
def storable(value: _Scalar) -> _Scalar: ...
def storable(value: object) -> object:
    """`value` with NUL characters replaced: PostgreSQL text and JSONB refuse them, and commands print them."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    return value

"""Alembic environment, driven by `yudai_solver.base.migrate` (no alembic.ini, no logging configuration).

The engine comes from `db.create_db_engine`, so SQLite gets the same pragmas as the service. Revisions are
written for both databases: batch mode on SQLite, because SQLite cannot ALTER most things in place.
"""

import sqlite3
from typing import TypedDict

from alembic import context
from alembic.runtime.environment import IncludeNameFn, IncludeObjectFn
from sqlalchemy import MetaData, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.pool import ConnectionPoolEntry

from yudai_solver.base.db import create_db_engine
from yudai_solver.base.migrate import include_name, include_object
from yudai_solver.base.models import Base

target_metadata = Base.metadata


def _database_url() -> str:
    url: str | None = context.config.attributes.get("database_url")
    if not url:
        raise RuntimeError("run migrations through yudai_solver.base.migrate, which passes the database URL")
    return url


class _ConfigureOptions(TypedDict):
    target_metadata: MetaData
    render_as_batch: bool
    include_name: IncludeNameFn
    include_object: IncludeObjectFn
    compare_type: bool


def _configure_options(url: str) -> _ConfigureOptions:
    return {
        "target_metadata": target_metadata,
        "render_as_batch": make_url(url).get_backend_name() == "sqlite",
        "include_name": include_name,
        "include_object": include_object,
        "compare_type": True,
    }


def _foreign_keys_off(dbapi_connection: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
    # A batch migration copies a table and drops the original; with foreign keys on, that DROP deletes the
    # rows and cascades into the referencing tables (solves -> solve_runs). Consistency is checked at the end.
    dbapi_connection.execute("PRAGMA foreign_keys=OFF")


def _check_foreign_keys(connection: Connection) -> None:
    problems = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if problems:
        raise RuntimeError(f"migration left rows with dangling foreign keys: {problems[:10]}")


def run_migrations_offline() -> None:
    """`--sql` mode: print the DDL instead of running it."""
    url = _database_url()
    context.configure(url=url, literal_binds=True, **_configure_options(url))
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = _database_url()
    is_sqlite = make_url(url).get_backend_name() == "sqlite"
    engine = create_db_engine(url)
    if is_sqlite:
        event.listen(engine, "connect", _foreign_keys_off)  # runs after db.py's listener turned them on
    try:
        with engine.connect() as connection:
            context.configure(connection=connection, **_configure_options(url))
            with context.begin_transaction():
                context.run_migrations()
            if is_sqlite:
                _check_foreign_keys(connection)
                connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

"""Shared database fixtures: a test that asks for `database_url` runs on SQLite and on PostgreSQL, each time on a
fresh database migrated to head.

Migrating costs more than copying, so each pytest process migrates one template per database kind and every test
gets a copy: a file copy on SQLite, `CREATE DATABASE ... TEMPLATE` on PostgreSQL (about 20 ms).

PostgreSQL: the admin URL comes from `YUDAI_TEST_PG_URL` (a role allowed to create databases); set it to an empty
string to skip the PostgreSQL cases. Every database made here is named `yudai_test_<pid>_...`, so databases left
behind by a killed pytest are recognised and dropped by the next session.
"""

import os
import re
import shutil
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from yudai_solver.db import create_db_engine, create_session_factory
from yudai_solver.migrate import upgrade

DEFAULT_PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
TEST_DB_PREFIX = "yudai_test_"
_TEST_DB_PATTERN = re.compile(rf"^{TEST_DB_PREFIX}(\d+)_")


# --- PostgreSQL -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """SQLAlchemy URL of a PostgreSQL role that may create and drop databases; skips when set to ''."""
    url = os.environ.get("YUDAI_TEST_PG_URL", DEFAULT_PG_ADMIN_URL)
    if not url:
        pytest.skip("PostgreSQL tests disabled (YUDAI_TEST_PG_URL is empty)")
    return url


@pytest.fixture(scope="session")
def _pg_admin(pg_admin_url: str) -> Iterator[Engine]:
    # CREATE/DROP DATABASE cannot run inside a transaction block.
    engine = create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    _drop_orphaned_databases(engine)
    yield engine
    engine.dispose()


def _drop_orphaned_databases(admin: Engine) -> None:
    with admin.connect() as conn:
        query = f"SELECT datname FROM pg_database WHERE starts_with(datname, '{TEST_DB_PREFIX}')"
        for (name,) in conn.exec_driver_sql(query).fetchall():
            match = _TEST_DB_PATTERN.match(name)
            if match and not _process_alive(int(match.group(1))):
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _create_pg_database(admin: Engine, template: str = "template0", label: str = "") -> str:
    """URL of a new database copied from `template` (template0: empty)."""
    name = f"{TEST_DB_PREFIX}{os.getpid()}_{label}{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return admin.url.set(database=name).render_as_string(hide_password=False)


def _drop_pg_database(admin: Engine, url: str) -> None:
    # FORCE: a test may leave an engine undisposed; its connections must not keep the database alive.
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')


@contextmanager
def _pg_database(admin: Engine, template: str = "template0", label: str = "") -> Iterator[str]:
    url = _create_pg_database(admin, template, label)
    try:
        yield url
    finally:
        _drop_pg_database(admin, url)


class _TemplateCopies:
    """Copies of the migrated template, the next one made in the background while the current test runs.

    CREATE DATABASE costs 0.1-0.2 s here (fsync of every file it copies), more than most tests.
    """

    def __init__(self, admin: Engine, template: str):
        self._admin, self._template = admin, template
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pg-template-copy")
        self._next: Future[str] | None = None

    def take(self) -> str:
        current = self._next or self._submit()
        self._next = self._submit()
        return current.result()

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        if self._next is not None and self._next.exception() is None:
            _drop_pg_database(self._admin, self._next.result())

    def _submit(self) -> Future[str]:
        return self._executor.submit(_create_pg_database, self._admin, self._template)


@pytest.fixture(scope="session")
def _pg_template(_pg_admin: Engine) -> Iterator[str]:
    """Name of a PostgreSQL database migrated to head, the template of every test's database."""
    with _pg_database(_pg_admin, label="tpl_") as url:
        upgrade(url)  # disposes its engine: a template must have no open connections
        yield make_url(url).database


@pytest.fixture(scope="session")
def _pg_template_copies(_pg_admin: Engine, _pg_template: str) -> Iterator[_TemplateCopies]:
    copies = _TemplateCopies(_pg_admin, _pg_template)
    yield copies
    copies.close()


@pytest.fixture
def pg_database_factory(_pg_admin: Engine) -> Iterator[Callable[[], str]]:
    """Call it to get the URL of another EMPTY PostgreSQL database; all are dropped after the test."""
    with ExitStack() as stack:
        yield lambda: stack.enter_context(_pg_database(_pg_admin))


@pytest.fixture
def fresh_pg_database(pg_database_factory: Callable[[], str]) -> str:
    """URL of an EMPTY (unmigrated) PostgreSQL database, dropped after the test."""
    return pg_database_factory()


# --- SQLite -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head; the engine is disposed, so the WAL is checkpointed into the file."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


# --- What tests use ---------------------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """SQLAlchemy URL of a fresh database at the head revision, once per backend (ids `sqlite`, `postgresql`)."""
    if request.param == "sqlite":
        path = tmp_path / "yudai.db"
        shutil.copyfile(request.getfixturevalue("_sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    url = request.getfixturevalue("_pg_template_copies").take()
    try:
        yield url
    finally:
        _drop_pg_database(request.getfixturevalue("_pg_admin"), url)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """`create_db_engine(database_url)`, disposed before the database is dropped."""
    engine = create_db_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session_factory(engine: Engine) -> sessionmaker[Session]:
    return create_session_factory(engine)

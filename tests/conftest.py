"""Shared database fixtures: a test that asks for `database_url` runs on SQLite and on PostgreSQL, each time on a
fresh database migrated to head.

Migrating costs more than copying, so each pytest process migrates one template per database kind and every test
gets a copy: a file copy on SQLite, `CREATE DATABASE ... TEMPLATE` on PostgreSQL (emptied, renamed and handed out
again when the test left its schema untouched; see `_MigratedDatabases`).

PostgreSQL: the admin URL comes from `YUDAI_TEST_PG_URL` (a role allowed to create databases); set it to an empty
string to skip the PostgreSQL cases. Every database made here is named `yudai_test_<pid>_...`, so databases left
behind by a killed pytest are recognised and dropped by the next session.
"""

import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from yudai_solver.base.db import create_db_engine, create_session_factory
from yudai_solver.base.migrate import upgrade

DEFAULT_PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
TEST_DB_PREFIX = "yudai_test_"
_TEST_DB_PATTERN = re.compile(rf"^{TEST_DB_PREFIX}(\d+)_")

# Everything a test could change in a schema, as one hash; a recycled database must hash like the template.
_SCHEMA_FINGERPRINT = """
WITH user_ns AS (
    SELECT oid FROM pg_namespace WHERE NOT starts_with(nspname, 'pg_') AND nspname <> 'information_schema'
)
SELECT md5(string_agg(item, E'\\n' ORDER BY item)) FROM (
    SELECT 'namespace ' || nspname AS item FROM pg_namespace
    UNION ALL SELECT 'extension ' || extname || ' ' || extversion FROM pg_extension
    UNION ALL SELECT concat_ws(' ', 'column', table_schema, table_name, column_name, data_type, udt_name,
                               character_maximum_length, is_nullable, column_default)
        FROM information_schema.columns WHERE table_schema NOT IN ('pg_catalog', 'information_schema')
    UNION ALL SELECT 'index ' || schemaname || ' ' || indexdef FROM pg_indexes
        WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
    UNION ALL SELECT concat_ws(' ', 'constraint', conrelid::regclass, conname, pg_get_constraintdef(oid))
        FROM pg_constraint WHERE connamespace IN (SELECT oid FROM user_ns)
    UNION ALL SELECT concat_ws(' ', 'relation', oid::regclass, relkind)
        FROM pg_class WHERE relnamespace IN (SELECT oid FROM user_ns)
    UNION ALL SELECT concat_ws(' ', 'function', oid::regprocedure, md5(prosrc))
        FROM pg_proc WHERE pronamespace IN (SELECT oid FROM user_ns)
    UNION ALL SELECT concat_ws(' ', 'trigger', tgrelid::regclass, tgname) FROM pg_trigger WHERE NOT tgisinternal
    UNION ALL SELECT 'type ' || oid::regtype::text FROM pg_type WHERE typnamespace IN (SELECT oid FROM user_ns)
    UNION ALL SELECT 'revision ' || version_num FROM alembic_version
) AS schema_items
"""
_USER_TABLES = """
SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables
WHERE schemaname NOT IN ('pg_catalog', 'information_schema') AND tablename <> 'alembic_version'
"""


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
    engine = create_engine(pg_admin_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)  # survives a restart test
    _drop_orphaned_databases(engine)
    yield engine
    engine.dispose()


def _drop_orphaned_databases(admin: Engine) -> None:
    with admin.connect() as conn:
        query = text("SELECT datname FROM pg_database WHERE starts_with(datname, :prefix)")
        for name in conn.execute(query, {"prefix": TEST_DB_PREFIX}).scalars().all():
            match = _TEST_DB_PATTERN.match(name)
            if match and not _process_alive(int(match.group(1))):
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    return True


def _new_database_name(label: str = "") -> str:
    return f"{TEST_DB_PREFIX}{os.getpid()}_{label}{uuid.uuid4().hex[:12]}"


def _url_of(admin: Engine, name: str) -> str:
    return admin.url.set(database=name).render_as_string(hide_password=False)


def _create_pg_database(admin: Engine, template: str = "template0", label: str = "") -> str:
    """URL of a new database copied from `template` (template0: empty)."""
    name = _new_database_name(label)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return _url_of(admin, name)


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


def _fingerprint(conn: Connection) -> str:
    return conn.exec_driver_sql(_SCHEMA_FINGERPRINT).scalar_one()


class _MigratedDatabases:
    """Copies of the migrated template, one per test, recycled when the test left the schema as it found it.

    CREATE DATABASE costs 0.1-0.3 s here (the whole template goes through the WAL and is fsynced); emptying the
    tables costs ~30 ms. A database is recycled only if no connection to it is left and its schema fingerprint
    still equals the template's; otherwise it is dropped. A recycled database is renamed before it is handed out
    again, so no test sees a name an earlier test used. If a migration ever seeds rows, recycling is off
    (emptying the tables would lose them).
    """

    def __init__(self, admin: Engine, template: str):
        self._admin, self._template = admin, template
        self._idle: list[str] = []
        with _connect(_url_of(admin, template)) as conn:
            self._fingerprint = _fingerprint(conn)
            tables = conn.exec_driver_sql(_USER_TABLES).scalars().all()
            seeded = [t for t in tables if conn.exec_driver_sql(f"SELECT EXISTS (SELECT FROM {t})").scalar()]
        self._recyclable = not seeded

    def take(self) -> str:
        while self._idle:
            name, fresh_name = self._idle.pop(), _new_database_name()
            try:
                with self._admin.connect() as conn:
                    conn.exec_driver_sql(f'ALTER DATABASE "{name}" RENAME TO "{fresh_name}"')
                return _url_of(self._admin, fresh_name)
            except SQLAlchemyError:
                _drop_pg_database(self._admin, _url_of(self._admin, name))
        return _create_pg_database(self._admin, self._template)

    def give_back(self, url: str) -> None:
        if self._recyclable and self._emptied(url) and not self._in_use(url):
            self._idle.append(make_url(url).database)
        else:
            _drop_pg_database(self._admin, url)

    def close(self) -> None:
        for name in self._idle:
            _drop_pg_database(self._admin, _url_of(self._admin, name))

    def _emptied(self, url: str) -> bool:
        """Truncate every table (sequences restarted) if the schema is still the template's; False otherwise."""
        try:
            with _connect(url) as conn:
                if _fingerprint(conn) != self._fingerprint:
                    return False
                tables = conn.exec_driver_sql(_USER_TABLES).scalars().all()
                conn.exec_driver_sql(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY")
                conn.commit()
        except SQLAlchemyError:
            return False
        return True

    def _in_use(self, url: str) -> bool:
        with self._admin.connect() as conn:
            query = text("SELECT EXISTS (SELECT FROM pg_stat_activity WHERE datname = :name)")
            return conn.execute(query, {"name": make_url(url).database}).scalar()


@contextmanager
def _connect(url: str) -> Iterator[Connection]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def _pg_template(_pg_admin: Engine) -> Iterator[str]:
    """Name of a PostgreSQL database migrated to head, the template of every test's database."""
    with _pg_database(_pg_admin, label="tpl_") as url:
        upgrade(url)  # disposes its engine: a template must have no open connections
        yield make_url(url).database


@pytest.fixture(scope="session")
def _pg_migrated_databases(_pg_admin: Engine, _pg_template: str) -> Iterator[_MigratedDatabases]:
    databases = _MigratedDatabases(_pg_admin, _pg_template)
    yield databases
    databases.close()


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
    """SQLAlchemy URL of a fresh database at the head revision, once per backend (ids `sqlite`, `postgresql`).

    Dispose the engines you make from it before the test ends: a PostgreSQL database still connected at teardown
    is dropped (WITH FORCE) instead of recycled, which is correct but slower.
    """
    if request.param == "sqlite":
        path = tmp_path / "yudai.db"
        shutil.copyfile(request.getfixturevalue("_sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    databases: _MigratedDatabases = request.getfixturevalue("_pg_migrated_databases")
    url = databases.take()
    try:
        yield url
    finally:
        databases.give_back(url)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """`create_db_engine(database_url)`, disposed before the database is dropped."""
    engine = create_db_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session_factory(engine: Engine) -> sessionmaker[Session]:
    return create_session_factory(engine)

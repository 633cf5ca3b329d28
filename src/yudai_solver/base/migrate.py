"""Programmatic Alembic: the only way the schema changes, on SQLite and PostgreSQL alike.

The configuration is built in code (no alembic.ini): `script_location` is the `migrations/` directory shipped
inside the package, and the database URL travels in `Config.attributes`, not in the ini options, because
configparser would choke on the `%` of a URL-encoded password.
"""

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.environment import NameFilterParentNames, NameFilterType
from alembic.runtime.migration import MigrationContext
from sqlalchemy.schema import SchemaItem

from yudai_solver.base.db import create_db_engine

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

# Tables another library owns (procrastinate's queue schema, added by its own revision on PostgreSQL only):
# autogenerate must neither drop them nor report them as drift.
FOREIGN_TABLE_PREFIXES = ("procrastinate_",)


def alembic_config(database_url: str) -> Config:
    """An Alembic `Config` for `database_url`; what `env.py` reads is `attributes["database_url"]`."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Migrate the database at `database_url` up to `revision` (creating the schema from nothing if empty)."""
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    """Migrate down to `revision`; `"base"` drops every table the migrations made."""
    command.downgrade(alembic_config(database_url), revision)


def current(database_url: str) -> str | None:
    """The revision the database is at, or None if it has no schema yet (a missing SQLite file is created empty)."""
    engine = create_db_engine(database_url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def include_name(name: str | None, type_: NameFilterType, parent_names: NameFilterParentNames) -> bool:
    """Alembic `include_name` hook: reflect everything except tables owned by other libraries."""
    return not (type_ == "table" and name is not None and name.startswith(FOREIGN_TABLE_PREFIXES))


def include_object(
    obj: SchemaItem, name: str | None, type_: NameFilterType, reflected: bool, compare_to: SchemaItem | None
) -> bool:
    """Alembic `include_object` hook: the same filter for objects that reach comparison by another path."""
    table_name = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
    return not (table_name or "").startswith(FOREIGN_TABLE_PREFIXES)


def apply_queue_schema(database_url: str) -> None:
    """procrastinate's job-queue schema, for a PostgreSQL database created from init.sql instead of migrations."""
    from procrastinate.schema import SchemaManager
    from sqlalchemy.engine import make_url

    engine = create_db_engine(database_url)
    try:
        if make_url(database_url).get_backend_name() != "postgresql":
            raise ValueError("the job queue exists only on PostgreSQL")
        with engine.begin() as conn:
            driver_connection = conn.connection.driver_connection
            assert driver_connection is not None  # a checked-out connection always has its driver's
            driver_connection.execute(SchemaManager.get_schema())
    finally:
        engine.dispose()

"""Job queue: procrastinate's schema (PostgreSQL only) and the job id of each run.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30

procrastinate owns its tables, types and functions; its schema is taken from the installed (pinned) package at
migration time rather than copied here. On SQLite the embedded in-process dispatcher needs no queue.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DROP_PROCRASTINATE = """
DO $$
DECLARE item record;
BEGIN
    FOR item IN SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE 'procrastinate%' LOOP
        EXECUTE format('DROP TABLE IF EXISTS %I CASCADE', item.tablename);
    END LOOP;
    FOR item IN SELECT p.oid::regprocedure AS sig FROM pg_proc p
                WHERE p.pronamespace = 'public'::regnamespace AND p.proname LIKE 'procrastinate%' LOOP
        EXECUTE format('DROP FUNCTION IF EXISTS %s CASCADE', item.sig);
    END LOOP;
    FOR item IN SELECT typname FROM pg_type
                WHERE typnamespace = 'public'::regnamespace AND typname LIKE 'procrastinate%' AND typtype IN ('e', 'c') LOOP
        EXECUTE format('DROP TYPE IF EXISTS %I CASCADE', item.typname);
    END LOOP;
END $$;
"""


def _execute_on_driver(sql: str) -> None:
    """Run `sql` on the driver's own connection (psycopg's simple-query protocol takes many statements at once)."""
    driver_connection = op.get_bind().connection.driver_connection
    assert driver_connection is not None  # a checked-out connection always has its driver's
    driver_connection.execute(sql)


def _is_postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    with op.batch_alter_table("solve_runs") as batch:
        batch.add_column(sa.Column("job_id", sa.BigInteger(), nullable=True))
    if _is_postgresql():
        from procrastinate.schema import SchemaManager

        # The driver's simple-query protocol runs the many statements of the file as psql would.
        _execute_on_driver(SchemaManager.get_schema())


def downgrade() -> None:
    if _is_postgresql():
        _execute_on_driver(_DROP_PROCRASTINATE)
    with op.batch_alter_table("solve_runs") as batch:
        batch.drop_column("job_id")

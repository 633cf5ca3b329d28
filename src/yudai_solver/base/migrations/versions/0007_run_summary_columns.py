"""Run summaries read without touching a run's big columns.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03

A status read lists every run's summary. Two of its fields, `agent_exit` and `commands`, were read out of the
`diagnostics` JSON, which also holds the patch: each read parsed every run's diagnostics. They become columns of
their own, filled from the diagnostics of existing runs.

SQLite stores a row's columns in their declared order and reaches a column by walking the row from its start: a
summary column declared after a 1 MB trajectory costs a walk through that trajectory's overflow pages. On SQLite
the table is rebuilt with `diagnostics` and `trajectory_data` last. PostgreSQL keeps large values out of the row
(TOAST), so there the order does not matter and the table is left as it is.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_COLUMNS = ("diagnostics", "trajectory_data")


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    with op.batch_alter_table("solve_runs") as batch:
        batch.add_column(sa.Column("agent_exit", sa.String(length=50), nullable=True))
        batch.add_column(sa.Column("commands", sa.Integer(), nullable=True))
    if sqlite:
        op.execute(
            "UPDATE solve_runs SET agent_exit = json_extract(diagnostics, '$.agent_exit'), "
            "commands = json_extract(diagnostics, '$.commands') WHERE diagnostics IS NOT NULL"
        )
        _big_columns_last()
    else:
        op.execute(
            "UPDATE solve_runs SET agent_exit = diagnostics->>'agent_exit', "
            "commands = (diagnostics->>'commands')::integer WHERE diagnostics IS NOT NULL"
        )


def _big_columns_last() -> None:
    columns = [row[1] for row in op.get_bind().exec_driver_sql("PRAGMA table_info(solve_runs)")]
    order = [name for name in columns if name not in BIG_COLUMNS] + list(BIG_COLUMNS)
    with op.batch_alter_table("solve_runs", recreate="always", partial_reordering=[tuple(order)]):
        pass


def downgrade() -> None:
    with op.batch_alter_table("solve_runs") as batch:
        batch.drop_column("commands")
        batch.drop_column("agent_exit")

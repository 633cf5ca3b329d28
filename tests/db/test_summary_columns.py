"""Revision 0007: a run's summary is read from columns of its own, never from its big JSON columns, and the
runs stored before it keep everything they had."""

import json

import sqlalchemy as sa

from yudai_solver.base import migrate
from yudai_solver.base.db import create_db_engine, create_session_factory
from yudai_solver.solving.solves import run_summaries

BIG = "x" * 300_000


def _insert_old_rows(url: str) -> None:
    engine = create_db_engine(url)
    diagnostics = {"agent_exit": "step_limit", "commands": 7, "patch": BIG, "model_calls": 9}
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO solves (id, repo_url, issue_number, matrix, create_pr) "
                "VALUES ('s1', '/r', 1, :matrix, false)"
            ),
            {"matrix": json.dumps({"experiments": []})},
        )
        conn.execute(
            sa.text(
                "INSERT INTO solve_runs (id, solve_id, model, temperature, max_edits, evolution, status, steps, "
                "diagnostics, trajectory_data) VALUES ('r1', 's1', 'm', 0.1, 5, 'direct', 'completed', 9, :d, :t)"
            ),
            {"d": json.dumps(diagnostics), "t": json.dumps({"steps": [BIG]})},
        )
        conn.execute(
            sa.text(
                "INSERT INTO solve_runs (id, solve_id, model, temperature, max_edits, evolution, status) "
                "VALUES ('r2', 's1', 'm', 0.2, 5, 'direct', 'pending')"
            )
        )
    engine.dispose()


def test_existing_runs_get_their_summary_columns_and_keep_their_data(database_url):
    migrate.downgrade(database_url, "0006")
    _insert_old_rows(database_url)
    migrate.upgrade(database_url)

    engine = create_db_engine(database_url)
    try:
        with create_session_factory(engine)() as session:
            summaries = {run.id: run for run in run_summaries(session, "s1")}
            kept = session.execute(sa.text("SELECT diagnostics, trajectory_data FROM solve_runs WHERE id = 'r1'")).one()
        columns = [column["name"] for column in sa.inspect(engine).get_columns("solve_runs")]
    finally:
        engine.dispose()

    assert (summaries["r1"].agent_exit, summaries["r1"].commands, summaries["r1"].steps) == ("step_limit", 7, 9)
    assert (summaries["r2"].agent_exit, summaries["r2"].commands) == (None, None)
    diagnostics, trajectory = (value if isinstance(value, dict) else json.loads(value) for value in kept)
    assert diagnostics["patch"] == BIG and trajectory == {"steps": [BIG]}
    if database_url.startswith("sqlite"):
        # SQLite walks a row from its start: everything a summary reads comes before the big values.
        from yudai_solver.solving.solves import SUMMARY_COLUMNS

        read = {column.key for column in SUMMARY_COLUMNS} | {"solve_id", "created_at"}
        first_big = min(columns.index("diagnostics"), columns.index("trajectory_data"))
        assert max(columns.index(name) for name in read) < first_big


def test_summaries_select_no_big_column():
    from yudai_solver.solving.solves import SUMMARY_COLUMNS

    assert {column.key for column in SUMMARY_COLUMNS}.isdisjoint({"diagnostics", "trajectory_data"})

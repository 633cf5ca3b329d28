"""The schema has three sources — models, migrations, init.sql — and they must agree, on both databases."""

from pathlib import Path
from pprint import pformat

import psycopg
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

import yudai_solver
from yudai_solver.base import migrate
from yudai_solver.base.db import create_db_engine
from yudai_solver.base.models import Base

INIT_SQL = Path(yudai_solver.__file__).parent / "base" / "sql" / "init.sql"
HEAD = ScriptDirectory.from_config(migrate.alembic_config("sqlite://")).get_current_head()

SEED_INDEXES = {
    "idx_solves_user_id": ("solves", ["user_id"]),
    "idx_solves_session_id": ("solves", ["session_id"]),
    "idx_solves_status": ("solves", ["status"]),
    "idx_solves_created_at": ("solves", ["created_at"]),
    "idx_solve_runs_solve_id": ("solve_runs", ["solve_id"]),
    "idx_solve_runs_status": ("solve_runs", ["status"]),
    "idx_solve_runs_created_at": ("solve_runs", ["created_at"]),
    "idx_ai_models_is_active": ("ai_models", ["is_active"]),
    "idx_ai_models_provider": ("ai_models", ["provider"]),
}

postgresql_only = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def _drift(engine: sa.Engine) -> list:
    """What `alembic revision --autogenerate` would put in a new revision: empty when the DB matches the models."""
    opts = {
        "include_name": migrate.include_name,
        "include_object": migrate.include_object,
        "compare_type": True,
        "compare_server_default": True,
    }
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn, opts=opts), Base.metadata)


def _apply_init_sql(url: str) -> None:
    # Through libpq's simple protocol, so the file runs as psql would run it: many statements, its own BEGIN.
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(INIT_SQL.read_text())


# --- migrations == init.sql (PostgreSQL) ------------------------------------------------------------------------

_COLUMNS = """
    SELECT table_name || '.' || column_name,
           concat_ws(' | ', data_type, udt_name, character_maximum_length, numeric_precision,
                     datetime_precision, 'nullable=' || is_nullable, 'default=' || column_default)
    FROM information_schema.columns WHERE table_schema = 'public'
"""
_INDEXES = "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
_CONSTRAINTS = """
    SELECT conrelid::regclass::text || '.' || conname, contype::text || ' ' || pg_get_constraintdef(oid)
    FROM pg_constraint WHERE connamespace = 'public'::regnamespace
"""
_SEQUENCES = """
    SELECT sequence_name, concat_ws(' | ', data_type, start_value, increment, maximum_value)
    FROM information_schema.sequences WHERE sequence_schema = 'public'
"""


def _pg_catalog(url: str) -> dict[str, dict[str, str]]:
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            queries = {"column": _COLUMNS, "index": _INDEXES, "constraint": _CONSTRAINTS, "sequence": _SEQUENCES}
            return {kind: dict(conn.exec_driver_sql(sql).fetchall()) for kind, sql in queries.items()}
    finally:
        engine.dispose()


def _differences(migrated: dict[str, dict[str, str]], scripted: dict[str, dict[str, str]]) -> list[str]:
    lines = []
    for kind in migrated:
        a, b = migrated[kind], scripted[kind]
        lines += [f"{kind} {k}: only in migrations: {a[k]}" for k in sorted(a.keys() - b.keys())]
        lines += [f"{kind} {k}: only in init.sql: {b[k]}" for k in sorted(b.keys() - a.keys())]
        lines += [
            f"{kind} {k}:\n    migrations: {a[k]}\n    init.sql:   {b[k]}"
            for k in sorted(a.keys() & b.keys())
            if a[k] != b[k]
        ]
    return lines


def test_init_sql_builds_the_same_postgresql_schema_as_the_migrations(pg_database_factory):
    migrated_url, scripted_url = pg_database_factory(), pg_database_factory()
    migrate.upgrade(migrated_url)
    _apply_init_sql(scripted_url)
    migrate.apply_queue_schema(scripted_url)  # procrastinate's own tables, as init.sql's header says

    migrated, scripted = _pg_catalog(migrated_url), _pg_catalog(scripted_url)

    assert len(migrated["column"]) > 50 and len(migrated["index"]) > 9  # the catalog queries see the schema
    assert "procrastinate_jobs.id" in migrated["column"]
    differences = _differences(migrated, scripted)
    assert not differences, "init.sql and the migrations disagree:\n" + "\n".join(differences)


def test_init_sql_records_the_head_revision_so_alembic_can_take_over(fresh_pg_database):
    _apply_init_sql(fresh_pg_database)

    assert migrate.current(fresh_pg_database) == HEAD
    migrate.upgrade(fresh_pg_database)  # nothing to do, and no attempt to create existing tables
    assert migrate.current(fresh_pg_database) == HEAD


# --- migrations == models (both databases) ----------------------------------------------------------------------


def _assert_no_drift(engine: sa.Engine) -> None:
    drift = _drift(engine)
    assert drift == [], "the migrated database differs from models.py:\n" + pformat(drift)


def test_migrated_database_has_no_drift_from_the_models(engine):
    _assert_no_drift(engine)


def test_drift_check_notices_a_missing_index(engine):
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP INDEX idx_solves_status")

    assert [op[0] for op in _drift(engine)] == ["add_index"]


def test_procrastinate_tables_are_not_drift(engine):
    with engine.begin() as conn:
        # On PostgreSQL procrastinate's real tables exist already; a further one must not count as drift either.
        conn.exec_driver_sql("CREATE TABLE procrastinate_extra (id INTEGER PRIMARY KEY, queue_name TEXT)")
        conn.exec_driver_sql("CREATE INDEX procrastinate_extra_queue_idx ON procrastinate_extra (queue_name)")

    _assert_no_drift(engine)


def test_the_nine_seed_indexes_exist_on_the_seed_columns(engine):
    inspector = sa.inspect(engine)
    found = {
        index["name"]: (table, index["column_names"])
        for table in {table for table, _ in SEED_INDEXES.values()}
        for index in inspector.get_indexes(table)
    }

    assert {name: found.get(name) for name in SEED_INDEXES} == SEED_INDEXES


# --- behaviour the schema promises ------------------------------------------------------------------------------


def _insert_solve_with_runs(conn: sa.Connection, solve_id: str, run_ids: list[str]) -> None:
    conn.execute(
        sa.text("INSERT INTO solves (id, repo_url, issue_number, matrix) VALUES (:id, 'r', 1, :matrix)"),
        {"id": solve_id, "matrix": '{"experiments": []}'},
    )
    for run_id in run_ids:
        conn.execute(
            sa.text(
                "INSERT INTO solve_runs (id, solve_id, model, temperature, max_edits, evolution)"
                " VALUES (:id, :solve_id, 'm', 0.1, 5, 'baseline')"
            ),
            {"id": run_id, "solve_id": solve_id},
        )
    champion = sa.text("UPDATE solves SET champion_run_id = :run WHERE id = :id")
    conn.execute(champion, {"run": run_ids[0], "id": solve_id})


def _run_ids(conn: sa.Connection) -> list[str]:
    return list(conn.execute(sa.text("SELECT id FROM solve_runs ORDER BY id")).scalars())


def test_deleting_a_solve_deletes_its_runs_even_with_a_champion(engine):
    with engine.begin() as conn:
        _insert_solve_with_runs(conn, "s1", ["r1", "r2"])
        _insert_solve_with_runs(conn, "s2", ["r3"])

    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM solves WHERE id = 's1'"))

    with engine.connect() as conn:
        assert _run_ids(conn) == ["r3"]


def test_champion_must_be_an_existing_run(engine):
    with engine.begin() as conn:
        _insert_solve_with_runs(conn, "s1", ["r1"])

    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(sa.text("UPDATE solves SET champion_run_id = 'nope' WHERE id = 's1'"))


@postgresql_only
def test_json_columns_are_jsonb_on_postgresql(engine):
    json_columns = sorted(
        f"{table.name}.{column.name}"
        for table in Base.metadata.tables.values()
        for column in table.columns
        if isinstance(column.type, sa.JSON)
    )
    with engine.connect() as conn:
        types = dict(
            conn.exec_driver_sql(
                "SELECT table_name || '.' || column_name, udt_name FROM information_schema.columns"
                " WHERE table_schema = 'public'"
            ).fetchall()
        )

    assert {"solves.matrix", "solve_runs.diagnostics", "ai_models.config"} <= set(json_columns)
    assert {name: types[name] for name in json_columns} == {name: "jsonb" for name in json_columns}


def test_downgrade_to_base_then_upgrade_restores_the_schema(database_url, engine):
    with engine.begin() as conn:
        _insert_solve_with_runs(conn, "s1", ["r1"])  # the circular key must not block dropping the tables

    migrate.downgrade(database_url, "base")
    assert migrate.current(database_url) is None
    assert set(sa.inspect(engine).get_table_names()) <= {"alembic_version"}

    migrate.upgrade(database_url)
    assert migrate.current(database_url) == HEAD
    _assert_no_drift(engine)

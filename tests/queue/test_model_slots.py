"""A model's max_concurrency holds across worker processes sharing the PostgreSQL queue (advisory-lock slots)."""

import subprocess
import sys
import textwrap
import threading

import pytest

from yudai_solver.base.db import create_db_engine, create_session_factory, transaction
from yudai_solver.base.models import AIModel
from yudai_solver.execution import model_slots
from yudai_solver.testing.scripted import Step

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)]


@pytest.mark.parametrize("limit", [1, None])
def test_two_workers_keep_a_one_slot_model_to_one_request_at_a_time(cluster, limit):
    name = f"slots-{limit}"
    cluster.server.scripts[name] = [Step("true", delay_s=0.5), Step("echo fixed > fix.txt", delay_s=0.5)]
    config = {"api_base": cluster.server.url, "action_format": "tool_call"}
    with transaction(cluster.factory) as session:
        session.add(AIModel(name=name, provider="openai", model_id=name, config=config | {"max_concurrency": limit}))
    cluster.worker()
    cluster.worker()
    solve_id = cluster.start(
        matrix={"models": [name], "temperatures": [0, 0.2, 0.4, 0.6]}, test_command="test -f fix.txt"
    )
    solve = cluster.wait(solve_id, timeout=120)

    assert solve.status == "completed", solve.error_message
    assert len({r.diagnostics["worker"] for r in cluster.runs(solve_id)}) == 2
    assert len(cluster.server.requests) == 12
    # Each worker runs one run at a time: without the shared slots, the two workers overlap at the server.
    assert cluster.server.peak_in_flight == 1 if limit == 1 else cluster.server.peak_in_flight == 2


def test_slots_are_shared_on_postgresql_only(session_factory, tmp_path):
    assert model_slots.shared_slots(session_factory) is model_slots.shared_slots(session_factory)
    engine = create_db_engine(f"sqlite:///{tmp_path / 'one.db'}")
    try:
        assert model_slots.shared_slots(create_session_factory(engine)) is None
    finally:
        engine.dispose()


def test_a_process_holding_a_slot_that_dies_frees_it(database_url):
    url = create_db_engine(database_url).url  # the password, if any, kept
    holder = textwrap.dedent(
        f"""
        import threading, time
        from sqlalchemy import make_url
        from yudai_solver.execution.model_slots import SharedSlots
        slots = SharedSlots(make_url({url.render_as_string(hide_password=False)!r}))
        assert slots.acquire("m", "http://s", 1, threading.Event()) is not None
        print("holding", flush=True)
        time.sleep(600)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    mine = model_slots.SharedSlots(url)
    try:
        assert process.stdout.readline().strip() == "holding"
        assert mine.acquire("m", "http://s", 1, cancel_after(0.5)) is None  # taken by the other process
        release = mine.acquire("m", "http://s", 2, threading.Event())  # a second slot is free
        assert release is not None
        release()
        process.kill()
        process.wait(10)
        release = mine.acquire("m", "http://s", 1, cancel_after(10))  # the dead process's slot came free
        assert release is not None
        release()
    finally:
        process.kill()
        process.wait(10)


def cancel_after(seconds: float) -> threading.Event:
    event = threading.Event()
    threading.Timer(seconds, event.set).start()
    return event

"""A setup command plants files the worker would trip over (finding 3 of issue 10): each run still ends normally,
promptly and in bounded memory, and a cancel frees its worker slot."""

import os
import resource
import time

import pytest
from sqlalchemy import select

from tests.helpers import wait_for
from yudai_solver.base.db import transaction
from yudai_solver.base.models import SolveRun, User
from yudai_solver.solving.solves import cancel
from yudai_solver.testing.scripted import Step

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]  # the worker's side alone

MIB = 1024 * 1024
ATTACKS = {
    "kmsg-link": "ln -s /proc/kmsg pytest.ini",
    "fifo": "mkfifo setup.cfg pyproject.toml package.json",
    "sparse-gigabyte": "printf '[tool:pytest]\\n' > setup.cfg && truncate -s 1G setup.cfg",
    "root-link": "ln -s / tests",
    "fifo-gitignore": "mkfifo .gitignore",
}


def max_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def only_run(pipeline, solve_id: str) -> SolveRun:
    with pipeline.factory() as session:
        return session.scalars(select(SolveRun).where(SolveRun.solve_id == solve_id)).one()


@pytest.mark.parametrize("attack", ATTACKS)
def test_a_planted_file_leaves_the_run_to_end_normally(pipeline, attack):
    pipeline.add_model("scripted-minimal-fix")
    rss_before, started = max_rss(), time.monotonic()

    # No test command: the worker detects one in the checkout the setup command prepared.
    solve_id = pipeline.start(matrix={"models": ["scripted-minimal-fix"]}, setup_command=ATTACKS[attack])
    solve = pipeline.wait(solve_id, timeout=60)
    run = only_run(pipeline, solve_id)

    assert (run.status, run.tests_passed) == ("completed", True), run.error_message
    assert run.diagnostics["test"]["command"] == "python3 -m unittest discover"
    assert solve.status == "completed" and solve.baseline["state"] == "measured"
    assert time.monotonic() - started < 30
    assert max_rss() - rss_before < 256 * MIB


def test_cancel_frees_the_worker_slot_of_a_run_whose_setup_planted_a_kmsg_link(pipeline, scripts):
    scripts["sleeper"] = [Step("sleep 600")]
    pipeline.add_model("sleeper")
    solve_id = pipeline.start(matrix={"models": ["sleeper"]}, setup_command="ln -s /proc/kmsg pytest.ini")
    run_id = wait_for(lambda: only_run(pipeline, solve_id).id)
    planted = pipeline.settings.data_dir / "runs" / run_id / "work" / "pytest.ini"
    wait_for(lambda: os.path.lexists(planted), timeout=30)
    # Past the setup, the worker detects a test command, then its agent asks the model: blocked on /proc/kmsg, it
    # never gets there. Cancel once it did, or after a while in any case.
    deadline = time.monotonic() + 20
    while not pipeline.server.requests and time.monotonic() < deadline:
        time.sleep(0.05)

    with transaction(pipeline.factory) as session:
        cancel(session, user=session.get(User, pipeline.user_id), session_id=pipeline.session_id, solve_id=solve_id)
    pipeline.dispatcher.cancel(solve_id)

    assert pipeline.dispatcher.wait_idle(10), "the run's thread is still blocked"
    assert only_run(pipeline, solve_id).status == "cancelled"
    assert not (pipeline.settings.data_dir / "runs" / run_id).exists()

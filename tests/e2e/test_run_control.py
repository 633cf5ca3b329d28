"""Stopping runs: cancel, time budget, early stop, failures that still let the solve finish, crash recovery."""

import time

import pytest
from sqlalchemy import func, select

from tests.helpers import pids_where, wait_for
from yudai_solver.base.db import transaction
from yudai_solver.base.models import AIModel, Solve, SolveRun, User
from yudai_solver.dispatch.inprocess import InProcessDispatcher
from yudai_solver.solving.solves import cancel
from yudai_solver.testing.scripted import Step

from .test_solve_pipeline import runs_by_model

pytestmark = pytest.mark.slow

SLEEPER = [Step("echo started; sleep 600")]


def run_status(pipeline, solve_id: str) -> list[str]:
    with pipeline.factory() as session:
        return list(session.scalars(select(SolveRun.status).where(SolveRun.solve_id == solve_id)))


def pinned_commit(pipeline, solve_id: str) -> str | None:
    with pipeline.factory() as session:
        return session.get(Solve, solve_id).base_commit


def sleep_pids() -> set[int]:
    return pids_where(lambda cmdline: cmdline == b"sleep\x00600\x00")


def test_cancel_kills_a_long_command_within_two_seconds(pipeline, scripts):
    scripts["sleeper"] = SLEEPER
    pipeline.add_model("sleeper")
    before = sleep_pids()
    solve_id = pipeline.start(matrix={"models": ["sleeper"]}, test_command="true")
    wait_for(lambda: sleep_pids() - before)
    started = time.monotonic()
    with transaction(pipeline.factory) as session:
        user = session.get(User, pipeline.user_id)
        cancel(session, user=user, session_id=pipeline.session_id, solve_id=solve_id)
    pipeline.dispatcher.cancel(solve_id)
    wait_for(lambda: not (sleep_pids() - before), timeout=5)
    assert time.monotonic() - started < 2.0
    solve = pipeline.wait(solve_id)
    assert solve.status == "cancelled" and run_status(pipeline, solve_id) == ["cancelled"]


def test_time_budget_fails_unfinished_runs_and_ends_the_solve(pipeline, scripts):
    scripts["sleeper"] = SLEEPER
    pipeline.add_model("sleeper")
    started = time.monotonic()
    solve_id = pipeline.start(
        matrix={"models": ["sleeper"], "temperatures": [0.0, 0.5, 1.0]},
        limits={"time_budget_s": 2, "max_parallel": 2},
        test_command="true",
    )
    solve = pipeline.wait(solve_id, timeout=20)
    assert time.monotonic() - started < 6
    assert solve.status == "failed" and "time budget exceeded" in solve.error_message
    with pipeline.factory() as session:
        runs = session.scalars(select(SolveRun).where(SolveRun.solve_id == solve_id)).all()
        assert {(r.status, r.error_message) for r in runs} == {("failed", "time budget exceeded")}


def test_max_parallel_is_respected(pipeline, scripts):
    scripts["slow"] = [Step("sleep 0.5", delay_s=0.2), Step("echo done > done.txt")]
    pipeline.add_model("slow")
    solve_id = pipeline.start(
        matrix={"models": ["slow"], "temperatures": [0.0, 0.2, 0.4, 0.6]},
        limits={"max_parallel": 2},
        test_command="test -f done.txt",
    )
    peak = 0
    while True:
        statuses = run_status(pipeline, solve_id)
        peak = max(peak, statuses.count("running"))
        if all(s in ("completed", "failed", "cancelled") for s in statuses):
            break
        time.sleep(0.02)
    solve = pipeline.wait(solve_id)
    assert peak == 2 and solve.status == "completed"


def test_early_stop_cancels_the_others_once_one_passes(pipeline, scripts):
    scripts["quick"] = [Step("echo fixed > fix.txt")]
    scripts["sleeper"] = SLEEPER
    pipeline.add_model("quick")
    pipeline.add_model("sleeper")
    solve_id = pipeline.start(
        matrix={"models": ["quick", "sleeper"]}, limits={"early_stop": True}, test_command="test -f fix.txt"
    )
    solve = pipeline.wait(solve_id, timeout=20)
    runs = runs_by_model(pipeline.factory, solve_id)
    assert solve.status == "completed" and solve.champion_run_id == runs["quick"].id
    assert runs["sleeper"].status == "cancelled" and "early stop" in runs["sleeper"].error_message


def test_model_server_error_fails_the_run_with_the_reason_and_the_solve_ends(pipeline, scripts):
    scripts["broken"] = [Step("ls", status=500)]
    scripts["quick"] = [Step("echo fixed > fix.txt")]
    pipeline.add_model("broken")
    pipeline.add_model("quick")
    solve_id = pipeline.start(matrix={"models": ["broken", "quick"]}, test_command="test -f fix.txt")
    solve = pipeline.wait(solve_id)
    runs = runs_by_model(pipeline.factory, solve_id)
    assert runs["broken"].status == "failed" and runs["broken"].error_message.startswith("model_error: ")
    assert "500" in runs["broken"].error_message or "Error" in runs["broken"].error_message
    assert solve.status == "completed" and solve.champion_run_id == runs["quick"].id


def test_failing_setup_fails_the_run_with_its_output(pipeline, scripts):
    scripts["quick"] = [Step("echo fixed > fix.txt")]
    pipeline.add_model("quick")
    solve_id = pipeline.start(
        matrix={"models": ["quick"]}, setup_command="echo cannot-install >&2; exit 3", test_command="test -f fix.txt"
    )
    solve = pipeline.wait(solve_id)
    run = runs_by_model(pipeline.factory, solve_id)["quick"]
    assert run.status == "failed" and "exited with 3" in run.error_message and "cannot-install" in run.error_message
    assert solve.status == "failed" and "setup command exited with 3" in solve.error_message


def test_setup_output_stays_out_of_the_diff(pipeline, scripts):
    scripts["quick"] = [Step("echo fixed > fix.txt && python3 -c 'import calc'")]
    pipeline.add_model("quick")
    solve_id = pipeline.start(
        matrix={"models": ["quick"]},
        setup_command="mkdir -p .venv/lib && touch .venv/lib/x",
        test_command="test -f fix.txt",
    )
    pipeline.wait(solve_id)
    run = runs_by_model(pipeline.factory, solve_id)["quick"]
    assert (run.status, run.tests_passed, run.loc_changed, run.files_changed) == ("completed", True, 1, 1)
    assert run.diagnostics["setup"]["returncode"] == 0


def test_a_command_printing_50_mb_is_capped(pipeline, scripts):
    scripts["loud"] = [Step("head -c 50000000 /dev/zero | tr '\\0' 'x'; echo; echo tail-marker")]
    pipeline.add_model("loud")
    solve_id = pipeline.start(matrix={"models": ["loud"]}, test_command="true")
    pipeline.wait(solve_id)
    run = runs_by_model(pipeline.factory, solve_id)["loud"]
    assert run.status == "completed", run.error_message
    assert len(str(run.trajectory_data)) < 500_000
    assert "tail-marker" in run.trajectory_data["steps"][0]["output"]


def test_progress_is_visible_while_a_run_works(pipeline, scripts):
    scripts["sleeper"] = [Step("echo one"), Step("sleep 600")]
    pipeline.add_model("sleeper")
    solve_id = pipeline.start(matrix={"models": ["sleeper"]}, test_command="true")

    def steps_so_far():
        with pipeline.factory() as session:
            run = session.scalar(select(SolveRun).where(SolveRun.solve_id == solve_id))
            return run.trajectory_data and run.trajectory_data["steps"]

    steps = wait_for(steps_so_far)
    assert steps[0]["action"] == "echo one" and "one" in steps[0]["output"]
    with transaction(pipeline.factory) as session:
        cancel(session, user=session.get(User, pipeline.user_id), session_id=pipeline.session_id, solve_id=solve_id)
    pipeline.dispatcher.cancel(solve_id)
    pipeline.wait(solve_id)


def test_runs_left_running_by_a_dead_process_are_rerun_or_failed(pipeline, scripts, session_factory):
    scripts["quick"] = [Step("echo fixed > fix.txt")]
    pipeline.add_model("quick")
    pipeline.dispatcher.stop()
    solve_id = pipeline.start(matrix={"models": ["quick"], "temperatures": [0.0, 1.0]}, test_command="test -f fix.txt")
    with transaction(session_factory) as session:  # what a process killed mid-run leaves behind
        solve = session.get(Solve, solve_id)
        solve.status = "running"
        first, second = session.scalars(select(SolveRun).where(SolveRun.solve_id == solve_id)).all()
        first.status, first.attempts = "running", 1
        second.status, second.attempts = "running", 2
    fresh = InProcessDispatcher(pipeline.settings, session_factory)
    fresh.start()
    try:
        pipeline.dispatcher = fresh
        solve = pipeline.wait(solve_id)
    finally:
        fresh.stop()
    with session_factory() as session:
        rerun, lost = session.get(SolveRun, first.id), session.get(SolveRun, second.id)
    assert (rerun.status, rerun.tests_passed, rerun.attempts) == ("completed", True, 2)
    assert (lost.status, lost.error_message) == ("failed", "worker lost")
    assert solve.status == "completed" and solve.champion_run_id == rerun.id


def test_without_a_test_command_one_is_detected_and_recorded(pipeline, scripts):
    pipeline.add_model("scripted-minimal-fix")
    solve_id = pipeline.start(matrix={"models": ["scripted-minimal-fix"]})
    solve = pipeline.wait(solve_id)
    run = runs_by_model(pipeline.factory, solve_id)["scripted-minimal-fix"]
    assert run.diagnostics["test"]["detected"] is True
    assert "unittest" in run.diagnostics["test"]["command"] and run.tests_passed is True
    assert solve.baseline["tests_passed"] is False and solve.status == "completed"


def test_max_concurrent_runs_caps_the_process_over_all_solves(pipeline, scripts, session_factory):
    scripts["slow"] = [Step("sleep 0.4", delay_s=0.1), Step("echo done > done.txt")]
    pipeline.add_model("slow")
    pipeline.dispatcher.stop()
    capped = InProcessDispatcher(pipeline.settings.model_copy(update={"max_concurrent_runs": 1}), session_factory)
    capped.start()
    pipeline.dispatcher = capped
    try:
        solves = [
            pipeline.start(matrix={"models": ["slow"], "temperatures": [0.0, 1.0]}, test_command="true")
            for _ in range(2)
        ]
        peak = 0
        while True:
            with pipeline.factory() as session:
                running = session.scalar(select(func.count()).select_from(SolveRun).where(SolveRun.status == "running"))
                unfinished = session.scalar(
                    select(func.count()).select_from(SolveRun).where(SolveRun.status.in_(["pending", "running"]))
                )
            peak = max(peak, running)
            if unfinished == 0:
                break
            time.sleep(0.02)
        assert peak == 1 and all(pipeline.wait(s).status == "completed" for s in solves)
    finally:
        capped.stop()


def test_every_run_of_a_solve_starts_from_the_same_pinned_commit(pipeline, scripts):
    import subprocess

    scripts["slow"] = [Step("sleep 0.5")]
    pipeline.add_model("slow")
    original = subprocess.run(
        ["git", "-C", str(pipeline.repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    solve_id = pipeline.start(
        matrix={"models": ["slow"], "temperatures": [0.0, 1.0]}, limits={"max_parallel": 1}, test_command="true"
    )
    assert pinned_commit(pipeline, solve_id) == original  # pinned as the solve starts, before any run checks out
    (pipeline.repo / "later.txt").write_text("pushed while the solve runs\n")
    subprocess.run(["git", "-C", str(pipeline.repo), "add", "later.txt"], check=True)
    subprocess.run(
        ["git", "-C", str(pipeline.repo), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "later"],
        check=True,
    )
    solve = pipeline.wait(solve_id)
    with pipeline.factory() as session:
        bases = {
            r.diagnostics["base_commit"] for r in session.scalars(select(SolveRun).where(SolveRun.solve_id == solve_id))
        }
    assert solve.base_commit == original and bases == {original}


def test_a_cost_budget_stops_the_runs_once_spent(pipeline, scripts):
    # 10 prompt + 5 completion tokens an answer at $0.001 a token: every answer costs $0.015.
    scripts["pricey"] = [Step("sleep 0.3")] * 40
    with transaction(pipeline.factory) as session:
        session.add(
            AIModel(
                name="pricey",
                provider="openai",
                model_id="pricey",
                config={"api_base": pipeline.server.url, "input_cost_per_token": 0.001, "output_cost_per_token": 0.001},
            )
        )
    solve_id = pipeline.start(
        matrix={"models": ["pricey"], "temperatures": [0.0, 1.0]}, limits={"cost_budget_usd": 0.1}, test_command="true"
    )
    solve = pipeline.wait(solve_id, timeout=60)
    with pipeline.factory() as session:
        runs = session.scalars(select(SolveRun).where(SolveRun.solve_id == solve_id)).all()
    assert solve.status == "failed" and "cost budget exceeded" in solve.error_message
    assert {(r.status, r.error_message) for r in runs} == {("failed", "cost budget exceeded")}
    spent = sum(r.cost for r in runs)
    assert 0.1 <= spent < 0.1 + 2 * 0.015 * 4  # stopped within a few answers per run of the budget

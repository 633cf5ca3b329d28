"""Worker processes on the PostgreSQL job queue: spread, crash, shutdown, cancel, budget, final-step race."""

import os
import signal
import threading
import time
import uuid

import pytest
from sqlalchemy import func, select, text

from tests.helpers import free_port, pids_where, wait_for
from yudai_solver.base.db import transaction
from yudai_solver.base.models import Solve, SolveRun
from yudai_solver.dispatch.jobqueue import JobQueueDispatcher
from yudai_solver.solving.reducer import finish_if_done
from yudai_solver.testing.scripted import Step

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)]


def sleeping_pids(marker: str) -> set[int]:
    """Processes whose command line carries `marker` (our sleeps are `sleep 600; echo <marker>`: bash stays, with
    the marker in its command line)."""
    return pids_where(lambda cmdline: marker.encode() in cmdline)


def once_then_fix(flag) -> str:
    """Sleeps (long) the first time it runs, fixes at once on a re-run: tells a crash apart from a re-run."""
    return f"if [ ! -e {flag} ]; then touch {flag}; exec sleep 600; fi; echo fixed > fix.txt"


def job_statuses(cluster, solve_id) -> list[str]:
    with cluster.factory() as session:
        return list(
            session.scalars(
                text(
                    "SELECT j.status::text FROM procrastinate_jobs j JOIN solve_runs r ON r.job_id = j.id "
                    "WHERE r.solve_id = :s ORDER BY j.id"
                ),
                {"s": solve_id},
            )
        )


def test_runs_spread_over_two_workers(cluster):
    cluster.server.scripts["slowfix"] = [Step("sleep 1 && echo fixed > fix.txt")]
    cluster.add_model("slowfix")
    cluster.worker()
    cluster.worker()
    solve_id = cluster.start(
        matrix={"models": ["slowfix"], "temperatures": [0, 0.2, 0.4, 0.6]}, test_command="test -f fix.txt"
    )
    solve = cluster.wait(solve_id)
    runs = cluster.runs(solve_id)
    assert solve.status == "completed", solve.error_message
    assert len({r.diagnostics["worker"] for r in runs}) == 2
    # The job is marked after its task returns, a moment after the run (and so the solve) was stored.
    wait_for(lambda: job_statuses(cluster, solve_id) == ["succeeded"] * 4, timeout=10)


def test_max_parallel_holds_across_workers(cluster):
    cluster.server.scripts["slowfix"] = [Step("sleep 1 && echo fixed > fix.txt")]
    cluster.add_model("slowfix")
    cluster.worker(concurrency=2)
    cluster.worker(concurrency=2)
    solve_id = cluster.start(
        matrix={"models": ["slowfix"], "temperatures": [0, 0.2, 0.4, 0.6]},
        limits={"max_parallel": 2},
        test_command="test -f fix.txt",
    )
    peak = 0
    while True:
        statuses = [r.status for r in cluster.runs(solve_id)]
        peak = max(peak, statuses.count("running"))
        if all(s in ("completed", "failed", "cancelled") for s in statuses):
            break
        time.sleep(0.05)
    assert cluster.wait(solve_id).status == "completed" and peak == 2


def test_a_worker_killed_mid_run_is_replaced_and_the_solve_ends(cluster, tmp_path):
    flag = tmp_path / "crashed-once"
    cluster.server.scripts["crashy"] = [Step(once_then_fix(flag))]
    cluster.add_model("crashy")
    victim = cluster.worker()
    solve_id = cluster.start(matrix={"models": ["crashy"]}, test_command="test -f fix.txt")
    wait_for(flag.exists, timeout=60)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_at = time.monotonic()
    for pid in sleeping_pids("sleep"):  # the dead worker's orphaned command (a sandbox left behind)
        if str(flag) in open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace"):
            os.kill(pid, signal.SIGKILL)
    cluster.worker()
    solve = cluster.wait(solve_id, timeout=90)
    run = cluster.runs(solve_id)[0]
    assert time.monotonic() - killed_at < 60
    assert solve.status == "completed" and (run.status, run.attempts, run.tests_passed) == ("completed", 2, True)


def test_sigterm_gives_a_grace_period_then_requeues(cluster, tmp_path):
    flag = tmp_path / "interrupted-once"
    cluster.server.scripts["slow"] = [Step(once_then_fix(flag))]
    cluster.add_model("slow")
    first = cluster.worker(graceful=1)
    solve_id = cluster.start(matrix={"models": ["slow"]}, test_command="test -f fix.txt")
    wait_for(flag.exists, timeout=60)
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=20) is not None
    wait_for(lambda: cluster.runs(solve_id)[0].status == "pending", timeout=10)
    cluster.worker()
    solve = cluster.wait(solve_id)
    run = cluster.runs(solve_id)[0]
    assert solve.status == "completed" and run.attempts == 2 and run.tests_passed is True


def test_cancel_kills_the_running_command_and_cancels_queued_jobs(cluster):
    marker = f"cancel-{uuid.uuid4().hex}"
    cluster.server.scripts["sleeper"] = [Step(f"sleep 600; echo {marker}")]
    cluster.add_model("sleeper")
    cluster.worker(concurrency=1)
    solve_id = cluster.start(matrix={"models": ["sleeper"], "temperatures": [0, 1]}, test_command="true")
    wait_for(lambda: sleeping_pids(marker), timeout=60)
    started = time.monotonic()
    cluster.cancel(solve_id)
    wait_for(lambda: not sleeping_pids(marker), timeout=5, interval=0.02)
    assert time.monotonic() - started < 2.0
    assert cluster.wait(solve_id).status == "cancelled"
    wait_for(
        lambda: sorted(job_statuses(cluster, solve_id)) in (["aborted", "cancelled"], ["cancelled", "succeeded"]),
        timeout=10,
    )


def test_time_budget_holds_across_workers(cluster):
    marker = f"budget-{uuid.uuid4().hex}"
    cluster.server.scripts["sleeper"] = [Step(f"sleep 600; echo {marker}")]
    cluster.add_model("sleeper")
    cluster.worker()
    cluster.worker()
    solve_id = cluster.start(
        matrix={"models": ["sleeper"], "temperatures": [0, 1, 2]}, limits={"time_budget_s": 3}, test_command="true"
    )
    solve = cluster.wait(solve_id, timeout=60)
    assert solve.status == "failed" and "time budget exceeded" in solve.error_message
    # Counted from the solve's start (its first run claimed), as the budget is: the workers' start-up, mostly
    # importing the agent stack (~9 s here), is no part of it.
    assert (solve.completed_at - solve.started_at).total_seconds() < 3 + 5
    assert {(r.status, r.error_message) for r in cluster.runs(solve_id)} == {("failed", "time budget exceeded")}
    wait_for(lambda: not sleeping_pids(marker), timeout=5)


def test_a_failed_start_leaves_no_job_behind(cluster):
    cluster.add_model("any")
    dispatcher = JobQueueDispatcher(cluster.settings, cluster.factory)
    solve_id = cluster.start(matrix={"models": ["any"], "temperatures": [0, 1]})
    with cluster.factory() as session:
        jobs_before = session.scalar(text("SELECT count(*) FROM procrastinate_jobs"))
        runs = session.scalars(select(SolveRun).where(SolveRun.solve_id == solve_id)).all()
        solve = session.get(Solve, solve_id)
        dispatcher.defer(session, solve, runs)  # jobs deferred in this transaction...
        assert session.scalar(text("SELECT count(*) FROM procrastinate_jobs")) == jobs_before + 2
        session.rollback()  # ...which then fails: the jobs go with it
    with cluster.factory() as session:
        assert session.scalar(text("SELECT count(*) FROM procrastinate_jobs")) == jobs_before == 2


def test_the_final_step_happens_exactly_once_under_a_race(cluster):
    cluster.add_model("any")
    for _ in range(10):
        solve_id = cluster.start(matrix={"models": ["any"], "temperatures": [0, 1]})
        with transaction(cluster.factory) as session:
            for run in session.scalars(select(SolveRun).where(SolveRun.solve_id == solve_id)):
                run.status, run.tests_passed, run.loc_changed, run.files_changed = "completed", True, 1, 1
        barrier, wins = threading.Barrier(2), []

        def finish():
            with transaction(cluster.factory) as session:
                barrier.wait()
                wins.append(finish_if_done(session, solve_id))

        threads = [threading.Thread(target=finish) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(wins) == [False, True]
        with cluster.factory() as session:
            assert session.get(Solve, solve_id).status == "completed"
    with cluster.factory() as session:
        assert session.scalar(select(func.count()).select_from(Solve).where(Solve.status == "completed")) == 10


def _restart_postgresql() -> None:
    import subprocess
    from pathlib import Path

    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart", "-m", "fast"], check=True, timeout=60
    )


@pytest.mark.skipif(not os.path.isdir("/etc/postgresql") or os.geteuid() != 0, reason="needs the local cluster")
def test_postgresql_restarting_mid_solve_loses_nothing(cluster):
    cluster.server.scripts["steady"] = [Step("sleep 2"), Step("sleep 2"), Step("echo fixed > fix.txt")]
    cluster.add_model("steady")
    cluster.worker(concurrency=2)
    solve_id = cluster.start(matrix={"models": ["steady"], "temperatures": [0, 1]}, test_command="test -f fix.txt")
    wait_for(lambda: any(r.status == "running" for r in cluster.runs(solve_id)), timeout=60)
    _restart_postgresql()
    solve = cluster.wait(solve_id, timeout=120)
    assert solve.status == "completed", (solve.error_message, cluster.logs())
    assert [r.tests_passed for r in cluster.runs(solve_id)] == [True, True]
    status = cluster.client.get(f"/sessions/{cluster.session_id}/solve/status/{solve_id}", headers=cluster.headers)
    assert status.status_code == 200 and status.json()["status"] == "completed"


def test_serve_on_postgresql_executes_runs_in_process(cluster):
    import subprocess
    import sys

    import httpx

    cluster.server.scripts["quick"] = [Step("echo fixed > fix.txt")]
    cluster.add_model("quick")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("YUDAI_")}
    env |= {
        "YUDAI_DATABASE_URL": cluster.url,
        "YUDAI_DATA_DIR": str(cluster.tmp / "serve"),
        "YUDAI_LOCAL_REPO_ROOTS": str(cluster.repo.parent),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "yudai_solver", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _healthy(httpx, base), timeout=60, interval=0.2)
        body = {
            "repo_url": str(cluster.repo),
            "issue_number": 1,
            "issue_title": "t",
            "matrix": {"models": ["quick"]},
            "test_command": "test -f fix.txt",
        }
        started = httpx.post(f"{base}/sessions/{cluster.session_id}/solve/start", json=body, headers=cluster.headers)
        assert started.status_code == 201, started.text
        solve = cluster.wait(started.json()["solve_id"], timeout=60)
        assert solve.status == "completed"
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


def _healthy(httpx, base: str) -> bool:
    try:
        return httpx.get(f"{base}/health").status_code == 200
    except httpx.TransportError:
        return False


def test_each_run_is_written_with_its_own_job(cluster):
    # Jobs are deferred before the rows are flushed, so each row goes in holding its job's id: no job without its
    # row, none pointing at another run, whatever order the two were written in.
    cluster.add_model("idle")
    solve_id = cluster.start(matrix={"models": ["idle"], "temperatures": [0, 0.2, 0.4]}, limits={"max_parallel": 2})
    with cluster.factory() as session:
        jobs = session.execute(
            text(
                "SELECT r.id, j.args->>'run_id', j.args->>'solve_id', j.status::text, j.lock FROM solve_runs r "
                "JOIN procrastinate_jobs j ON j.id = r.job_id WHERE r.solve_id = :s ORDER BY r.created_at"
            ),
            {"s": solve_id},
        ).all()
        all_jobs = session.scalar(
            text("SELECT count(*) FROM procrastinate_jobs WHERE args->>'solve_id' = :s"), {"s": solve_id}
        )
    assert len(jobs) == 3 and all_jobs == 3
    assert all(
        run == job_run and job_solve == solve_id and status == "todo" for run, job_run, job_solve, status, _ in jobs
    )
    assert [lock for *_, lock in jobs] == [f"solve:{solve_id}:0", f"solve:{solve_id}:1", f"solve:{solve_id}:0"]

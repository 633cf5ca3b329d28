"""`kill -9` of a `yudai worker` (PostgreSQL job queue) in the middle of a solve's baseline, then a new worker on the
same host with the same data directory (finding 6 of issue 10): the run is re-run from a clean run directory and
completes, and the baseline is measured again rather than left "measuring"."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.acceptance.test_crash_recovery import LEFTOVERS, kill_marked, once_then_test
from tests.helpers import wait_for
from yudai_solver.base.models import Solve
from yudai_solver.testing.scripted import Step

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)]


def same_host_worker(cluster, data_dir: Path) -> subprocess.Popen:
    """A worker like `cluster.worker()`, but on the data directory given: a restart on the same machine."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("YUDAI_")}
    env |= {
        "YUDAI_DATABASE_URL": cluster.url,
        "YUDAI_DATA_DIR": str(data_dir),
        "YUDAI_COMMAND_TIMEOUT_S": "900",
        # `local` named explicitly (one user): the attempts tell each other apart through a flag file on the host.
        "YUDAI_SANDBOX": "local",
    }
    log = open(cluster.tmp / f"worker{len(cluster.workers)}.log", "w")
    command = [sys.executable, "-m", "yudai_solver", "worker", "--concurrency", "1"]
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    cluster.workers.append(process)
    return process


def baseline(cluster, solve_id: str) -> dict | None:
    with cluster.factory() as session:
        return session.get(Solve, solve_id).baseline


def test_a_worker_killed_during_the_baseline_is_rerun_cleanly_by_its_successor_on_the_same_host(cluster, tmp_path):
    flag, marker = tmp_path / "baseline-hung-once", f"crash-{os.getpid()}-{time.monotonic_ns()}"
    data_dir = tmp_path / "worker-data"
    cluster.server.scripts["fixer"] = [Step("echo fixed > fix.txt")]
    cluster.add_model("fixer")
    victim = same_host_worker(cluster, data_dir)
    solve_id = cluster.start(
        matrix={"models": ["fixer"]}, setup_command=LEFTOVERS, test_command=once_then_test(flag, marker)
    )

    wait_for(flag.exists, timeout=90)
    assert baseline(cluster, solve_id)["state"] == "measuring"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    kill_marked(marker)
    run_dirs = list((data_dir / "runs").iterdir())
    assert run_dirs and (run_dirs[0] / "work" / "ro" / "sub").is_dir()  # what broke re-runs

    same_host_worker(cluster, data_dir)
    solve = cluster.wait(solve_id, timeout=150)

    run = cluster.runs(solve_id)[0]
    assert (run.status, run.attempts, run.tests_passed) == ("completed", 2, True), (run.error_message, cluster.logs())
    assert solve.status == "completed"
    assert solve.baseline["state"] == "measured" and solve.baseline["tests_passed"] is False
    assert [p.name for p in (data_dir / "runs").iterdir()] == []

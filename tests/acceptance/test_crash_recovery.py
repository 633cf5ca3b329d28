"""`kill -9` of `yudai serve` (SQLite, runs in its own threads) in the middle of a solve's baseline, then a restart
on the same host with the same data directory (finding 6 of issue 10): the run is re-run from a clean run directory
and completes, and the baseline is measured again rather than left "measuring"."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from tests.helpers import free_port, pids_where, wait_for
from yudai_solver.base.db import create_db_engine, create_session_factory
from yudai_solver.base.models import SolveRun
from yudai_solver.entry.demo import create_repository
from yudai_solver.testing.scripted import ScriptedChatServer, Step

pytestmark = pytest.mark.slow

YUDAI = [sys.executable, "-m", "yudai_solver"]
# What a sandbox leaves in a run directory that a plain delete trips over or must not follow.
LEFTOVERS = "mkdir -p ro/sub && touch ro/sub/f && chmod 555 ro/sub ro && ln -s / root-link && ln -s .. up-link"


def once_then_test(flag: Path, marker: str) -> str:
    """A test command that hangs the first time it runs (the baseline of the first attempt), then tests the fix."""
    return f"if [ ! -e {flag} ]; then touch {flag}; sleep 600; echo {marker}; fi; test -f fix.txt"


def kill_marked(marker: str) -> None:
    """The dead server's orphaned test command (its own process group, as every sandboxed command)."""
    for pid in pids_where(lambda cmdline: marker.encode() in cmdline):
        try:
            os.killpg(os.getpgid(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


class Serve:
    def __init__(self, data_dir: Path, env: dict[str, str], log: Path):
        self.port, self.env, self.log = free_port(), env, log
        self.base = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "a") as log:
            self.process = subprocess.Popen(
                [*YUDAI, "serve", "--port", str(self.port)], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        wait_for(self._healthy, timeout=90, interval=0.2)

    def _healthy(self) -> bool:
        assert self.process is not None and self.process.poll() is None, self.log.read_text()[-3000:]
        try:
            return httpx.get(f"{self.base}/health").status_code == 200
        except httpx.TransportError:
            return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)


@pytest.fixture
def setup(tmp_path: Path):
    repo = create_repository(tmp_path / "repos" / "calc")
    env = {k: v for k, v in os.environ.items() if not k.startswith("YUDAI_")}
    # `local` named explicitly (one user): the attempts tell each other apart through a flag file on the host.
    env |= {
        "YUDAI_DATA_DIR": str(tmp_path / "data"),
        "YUDAI_LOCAL_REPO_ROOTS": str(tmp_path / "repos"),
        "YUDAI_SANDBOX": "local",
    }
    user = subprocess.run([*YUDAI, "user", "create", "ci"], env=env, capture_output=True, text=True, timeout=120)
    assert user.returncode == 0, user.stderr
    token = user.stdout.strip().splitlines()[-1]
    chat = ScriptedChatServer({"fixer": [Step("echo fixed > fix.txt")]})
    added = subprocess.run(
        [*YUDAI, "model", "add", "fixer", "--provider", "openai", "--model-id", "fixer", "--api-base", chat.start()],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert added.returncode == 0, added.stderr
    serve = Serve(tmp_path / "data", env, tmp_path / "serve.log")
    yield serve, repo, {"Authorization": f"Bearer {token}"}
    serve.kill()
    chat.stop()


def test_a_serve_killed_during_the_baseline_reruns_the_run_cleanly_after_a_restart(setup, tmp_path):
    serve, repo, headers = setup
    flag, marker = tmp_path / "baseline-hung-once", f"crash-{os.getpid()}-{time.monotonic_ns()}"
    serve.start()
    session_id = httpx.post(f"{serve.base}/sessions", json={}, headers=headers).json()["id"]
    body = {
        "repo_url": str(repo),
        "issue_number": 1,
        "issue_title": "add subtracts",
        "matrix": {"models": ["fixer"]},
        "setup_command": LEFTOVERS,
        "test_command": once_then_test(flag, marker),
    }
    started = httpx.post(f"{serve.base}/sessions/{session_id}/solve/start", json=body, headers=headers)
    assert started.status_code == 201, started.text
    solve_id = started.json()["solve_id"]
    status_url = f"{serve.base}/sessions/{session_id}/solve/status/{solve_id}"

    wait_for(flag.exists, timeout=90)
    assert httpx.get(status_url, headers=headers).json()["baseline"]["state"] == "measuring"
    serve.kill()
    kill_marked(marker)
    run_dirs = list((tmp_path / "data" / "runs").iterdir())
    assert [path.name for path in run_dirs] and (run_dirs[0] / "work" / "ro" / "sub").is_dir()  # what broke re-runs

    serve.start()
    solve = wait_for(
        lambda: (s := httpx.get(status_url, headers=headers).json())["status"] in ("completed", "failed") and s,
        timeout=120,
        interval=0.2,
    )

    engine = create_db_engine(f"sqlite:///{tmp_path / 'data' / 'yudai.db'}")
    try:
        with create_session_factory(engine)() as session:
            run = session.scalars(select(SolveRun).where(SolveRun.solve_id == solve_id)).one()
    finally:
        engine.dispose()
    assert (run.status, run.attempts, run.tests_passed) == ("completed", 2, True), run.error_message
    assert solve["status"] == "completed"
    assert solve["baseline"]["state"] == "measured" and solve["baseline"]["tests_passed"] is False
    assert not any(path.exists() for path in run_dirs)
    assert [p.name for p in (tmp_path / "data" / "runs").iterdir()] == []

"""Two real processes on one SQLite data directory (issue 11, item 3): a second `yudai solve --embedded` started
while the first one's run is running neither re-queues that run (it is a live owner's) nor replaces the `local`
user's token the first one is using; both solves complete."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.helpers import pids_where, wait_for
from yudai_solver.base.db import create_db_engine, create_session_factory
from yudai_solver.base.models import Dispatcher, SolveRun
from yudai_solver.entry.demo import create_repository
from yudai_solver.testing.scripted import ScriptedChatServer, Step

pytestmark = pytest.mark.slow

YUDAI = [sys.executable, "-m", "yudai_solver"]


def _run_rows(data_dir: Path) -> list[SolveRun]:
    engine = create_db_engine(f"sqlite:///{data_dir / 'yudai.db'}")
    try:
        with create_session_factory(engine)() as session:
            return list(session.scalars(select(SolveRun).order_by(SolveRun.created_at)))
    finally:
        engine.dispose()


def _owners(data_dir: Path) -> list[str]:
    engine = create_db_engine(f"sqlite:///{data_dir / 'yudai.db'}")
    try:
        with create_session_factory(engine)() as session:
            return list(session.scalars(select(Dispatcher.id)))
    finally:
        engine.dispose()


@pytest.fixture
def shared(tmp_path: Path):
    flag = tmp_path / "go"
    # The slow model's one command waits for the test's flag: its run stays `running` as long as the test likes.
    scripts = {
        "slow": [Step(f"while [ ! -e {flag} ]; do sleep 0.1; done; echo fixed > fix.txt")],
        "quick": [Step("echo fixed > fix.txt")],
    }
    chat = ScriptedChatServer(scripts)
    api_base = chat.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("YUDAI_")}
    env |= {"YUDAI_DATA_DIR": str(tmp_path / "data"), "YUDAI_SANDBOX": "local", "OPENAI_API_KEY": "sk-unused"}
    for name in scripts:
        added = subprocess.run(
            [*YUDAI, "model", "add", name, "--provider", "openai", "--model-id", name, "--api-base", api_base],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert added.returncode == 0, added.stderr
    yield env, tmp_path, flag
    chat.stop()


def _solve(env: dict[str, str], repo: Path, model: str, log: Path) -> subprocess.Popen[bytes]:
    command = [
        *YUDAI,
        "solve",
        str(repo),
        "--embedded",
        "--model",
        model,
        "--issue-title",
        "add subtracts",
        "--test-command",
        "test -f fix.txt",
    ]
    with open(log, "wb") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)


def test_a_second_embedded_process_neither_steals_running_runs_nor_replaces_the_token(shared):
    env, tmp_path, flag = shared
    data_dir = tmp_path / "data"
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = _solve(env, create_repository(tmp_path / "repos" / "one"), "slow", first_log)
    try:
        wait_for(lambda: pids_where(lambda cmdline: str(flag).encode() in cmdline), timeout=120, interval=0.2)
        (slow_run,) = _run_rows(data_dir)
        assert slow_run.status == "running" and slow_run.owner
        assert first.poll() is None, first_log.read_text()

        second = _solve(env, create_repository(tmp_path / "repos" / "two"), "quick", second_log)
        assert second.wait(timeout=180) == 0, second_log.read_text()[-3000:]

        again = {r.id: r for r in _run_rows(data_dir)}[slow_run.id]
        assert (again.status, again.attempts, again.owner) == ("running", 1, slow_run.owner)
        assert first.poll() is None, first_log.read_text()[-3000:]  # its token still works: it still polls
        flag.touch()
        assert first.wait(timeout=180) == 0, first_log.read_text()[-3000:]
    finally:
        flag.touch()
        if first.poll() is None:
            first.kill()
    runs = _run_rows(data_dir)
    assert [(r.model, r.status, r.attempts, r.tests_passed) for r in runs] == [
        ("slow", "completed", 1, True),
        ("quick", "completed", 1, True),
    ]
    assert _owners(data_dir) == []  # both unregistered on their way out
    assert (data_dir / "local-token").stat().st_mode & 0o077 == 0

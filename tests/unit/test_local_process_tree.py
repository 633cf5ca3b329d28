"""The local sandbox kills a command's whole process tree, not only its process group: what a command detaches
with `setsid` or a daemon's double fork dies with it (at its end, on timeout, on kill, when the worker dies).

Real processes; each attack leaves a `sleep 600` behind and checks that it is gone.
"""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from yudai_solver.sandboxes import LocalSandbox, SandboxKilled

DETACH = "setsid sleep 600 >/dev/null 2>&1 < /dev/null & echo $! > detached.pid"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def sandbox(tmp_path: Path, workspace: Path):
    box = LocalSandbox(workspace=workspace, home=tmp_path / "home", command_timeout=10)
    yield box
    box.close()


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def gone(pid: int, seconds: float = 3) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def read_pid(path: Path, seconds: float = 10) -> int:
    deadline = time.monotonic() + seconds
    while not (path.exists() and path.read_text().strip()):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)
    return int(path.read_text())


@pytest.fixture
def leftovers():
    """Pids the test saw; any still alive at the end is killed, so a failing test leaves no sleep behind."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_a_setsid_child_is_gone_when_its_command_ends(sandbox: LocalSandbox, workspace: Path, leftovers):
    started = time.monotonic()

    output = sandbox.execute({"command": f"{DETACH}; echo done"})
    leftovers.append(pid := read_pid(workspace / "detached.pid"))

    assert output["returncode"] == 0 and output["output"] == "done\n"
    assert time.monotonic() - started < 3
    assert gone(pid), "the setsid sleep outlived its command"


def test_a_setsid_child_is_gone_after_the_sandbox_closes(sandbox: LocalSandbox, workspace: Path, leftovers):
    sandbox.run(DETACH, timeout=10, network=True)
    leftovers.append(pid := read_pid(workspace / "detached.pid"))
    sandbox.close()

    assert gone(pid), "the setsid sleep outlived the sandbox"


def test_a_double_forked_daemon_is_gone_too(sandbox: LocalSandbox, workspace: Path, leftovers):
    # The classic daemon: fork, setsid, fork again, the middle process exits at once (the daemon's parent is init).
    # The command waits for the daemon's pid: on a loaded machine a fixed sleep ended it before the daemon had started.
    daemon = (
        "( setsid sh -c 'sleep 600 >/dev/null 2>&1 < /dev/null & echo $! > daemon.pid' & ) ;"
        " while [ ! -s daemon.pid ]; do sleep 0.02; done"
    )

    assert sandbox.execute({"command": daemon})["returncode"] == 0
    leftovers.append(pid := read_pid(workspace / "daemon.pid"))

    assert gone(pid), "the double-forked sleep outlived its command"


def test_a_timeout_takes_the_detached_children_with_it(sandbox: LocalSandbox, workspace: Path, leftovers):
    output = sandbox.execute({"command": f"{DETACH}; sleep 600"}, timeout=1)
    leftovers.append(pid := read_pid(workspace / "detached.pid"))

    assert output["returncode"] == -1 and "timed out" in output["exception_info"]
    assert gone(pid)


def test_kill_from_another_thread_takes_the_detached_children_with_it(
    sandbox: LocalSandbox, workspace: Path, leftovers
):
    raised = []

    def run() -> None:
        try:
            sandbox.execute({"command": f"{DETACH}; sleep 600"})
        except SandboxKilled as exc:
            raised.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    leftovers.append(pid := read_pid(workspace / "detached.pid"))
    started = time.monotonic()
    sandbox.kill()
    thread.join(5)

    assert len(raised) == 1 and time.monotonic() - started < 2
    assert gone(pid)


def test_the_detached_children_die_when_the_worker_is_killed(tmp_path: Path, workspace: Path, leftovers):
    worker = textwrap.dedent(
        f"""
        from pathlib import Path
        from yudai_solver.sandboxes import LocalSandbox

        box = LocalSandbox(workspace=Path({str(workspace)!r}), home=Path({str(tmp_path / "home")!r}))
        box.execute({{"command": {DETACH + "; sleep 600"!r}}}, timeout=600)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", worker])
    try:
        leftovers.append(pid := read_pid(workspace / "detached.pid", seconds=30))
    finally:
        process.kill()
        process.wait()

    assert gone(pid, seconds=5), "the setsid sleep outlived the worker killed with SIGKILL"


def test_exit_codes_and_deaths_by_signal_are_the_commands(sandbox: LocalSandbox):
    assert sandbox.execute({"command": "exit 3"})["returncode"] == 3
    assert sandbox.run("kill -TERM $$", timeout=5).returncode == -signal.SIGTERM


def test_background_output_written_soon_after_the_command_ends_is_kept(sandbox: LocalSandbox):
    output = sandbox.execute({"command": "(sleep 0.1; echo late) & echo early"})

    assert output["output"] == "early\nlate\n"

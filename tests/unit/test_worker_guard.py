"""A worker running as an ordinary user: its commands cannot read the worker's own start-up environment."""

import os
import subprocess
import sys
import textwrap

import pytest

CANARY = "sk-canary-worker-environ-4f1c"
# The worker runs as uid 65534 and starts a Python itself (the local sandbox's reaper): a venv whose interpreter
# lives under a closed home (pyenv in /root) is not one that user can start, so the system's own 3.11 is used.
SYSTEM_PYTHON = "/usr/bin/python3.11"
PYTHON = SYSTEM_PYTHON if os.path.exists(SYSTEM_PYTHON) and sys.version_info[:2] == (3, 11) else sys.executable
WORKER = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from yudai_solver.sandboxes.local import LocalSandbox
    from yudai_solver.sandboxes.worker_guard import protect_worker_environment
    if sys.argv[1] == "guarded":
        protect_worker_environment()
    tmp = Path(sys.argv[2])
    sandbox = LocalSandbox(workspace=tmp, home=tmp / "home")
    result = sandbox.run(f"cat /proc/{os.getpid()}/environ | tr '\\\\0' '\\\\n'", timeout=10)
    print(result.output)
""")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start the worker as another user")
@pytest.mark.parametrize("mode", ["guarded", "unguarded"])
def test_commands_cannot_read_the_worker_environment(mode):
    import shutil
    import tempfile
    from pathlib import Path

    tmp_path = Path(tempfile.mkdtemp(prefix="yudai-guard-"))  # pytest's own tmp dirs are closed to other users
    tmp_path.chmod(0o777)
    try:
        _check(tmp_path, mode)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def _check(tmp_path, mode):
    env = {
        "PATH": os.environ["PATH"],
        "OPENAI_API_KEY": CANARY,
        "HOME": str(tmp_path),
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    done = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            PYTHON,
            "-c",
            WORKER,
            mode,
            str(tmp_path),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    if mode == "guarded":
        assert CANARY not in done.stdout and "Permission denied" in done.stdout
    else:  # the control: without the guard the same command finds the key, so the test above can fail
        assert CANARY in done.stdout

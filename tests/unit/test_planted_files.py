"""What the worker itself reads from a checkout, after a real sandboxed command planted files there (finding 3 of
issue 10): no link is followed, only regular files are opened and only up to a cap, a listing is bounded, and
git is never left waiting on a FIFO. Each attack is planted by a command of the `local` sandbox (and of
`bubblewrap` where it runs), as a repository's setup command would."""

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from yudai_solver.base.settings import Settings
from yudai_solver.entry.demo import create_repository
from yudai_solver.execution.validation import (
    detect_test_command,
    diff_stats,
    read_regular,
    remove_tree,
    untracked_patterns,
)
from yudai_solver.execution.workspace import WorkspaceCache
from yudai_solver.sandboxes import create_sandbox

UNITTEST = "python3 -m unittest discover"
BACKENDS = ["local", "bubblewrap"]
MIB = 1024 * 1024


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "bubblewrap" and (shutil.which("bwrap") is None or os.geteuid() != 0):
        pytest.skip("needs bubblewrap and a root worker")
    return request.param


@pytest.fixture
def checkout(tmp_path: Path) -> tuple[Path, str]:
    """A run's checkout of the demo repository (calc.py, test_calc.py), made as the worker makes it."""
    repo = create_repository(tmp_path / "repos" / "calc")
    workspace = tmp_path / "data" / "runs" / "r1" / "work"
    return workspace, WorkspaceCache(tmp_path / "data" / "mirrors").checkout(str(repo), "main", workspace)


@pytest.fixture
def plant(checkout: tuple[Path, str], backend: str, tmp_path: Path) -> Callable[[str], Path]:
    """Run a command in a real sandbox over the checkout, as its setup command; returns the workspace."""
    workspace, _ = checkout

    def run(command: str) -> Path:
        settings = Settings(data_dir=tmp_path / "data")
        sandbox = create_sandbox(
            backend, workspace=workspace, home=workspace.parent / "home", command_timeout=30, settings=settings
        )
        try:
            done = sandbox.run(command, timeout=30)
        finally:
            sandbox.close()
        assert done.returncode == 0, done.output
        return workspace

    return run


def in_thread(call: Callable[[], object], timeout: float) -> tuple[bool, object, float]:
    """(finished within `timeout`, its result, seconds taken); a call still blocked is left behind (daemon)."""
    result: list[object] = []
    started = time.monotonic()
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()
    thread.join(timeout)
    return not thread.is_alive(), result[0] if result else None, time.monotonic() - started


def test_a_link_to_proc_kmsg_is_not_followed(plant):
    workspace = plant("ln -s /proc/kmsg pytest.ini && ln -s /proc/kmsg package.json && ln -s /proc/kmsg go.mod")

    finished, command, seconds = in_thread(lambda: detect_test_command(workspace), timeout=10)

    assert finished, "detection blocked on /proc/kmsg"
    assert command == UNITTEST and seconds < 2


def test_a_fifo_is_never_opened(plant):
    workspace = plant("mkfifo setup.cfg pyproject.toml package.json tox.ini && ln -s setup.cfg pytest.ini")

    finished, command, _ = in_thread(lambda: detect_test_command(workspace), timeout=10)

    assert finished and command == UNITTEST
    assert read_regular(workspace, "setup.cfg", MIB) is None


def test_a_sparse_gigabyte_config_is_not_read_into_memory(plant):
    workspace = plant("printf '[tool:pytest]\\n' > setup.cfg && truncate -s 1G setup.cfg")
    # VmHWM, the peak of this process's own memory (getrusage's maxrss would carry over pytest's through exec).
    probe = (
        "import re, sys\n"
        "from pathlib import Path\n"
        "from yudai_solver.execution.validation import detect_test_command\n"
        "print(detect_test_command(Path(sys.argv[1])))\n"
        "print(re.search(r'VmHWM:\\s+(\\d+) kB', Path('/proc/self/status').read_text()).group(1))\n"
    )

    done = subprocess.run(
        [sys.executable, "-c", probe, str(workspace)], capture_output=True, text=True, timeout=120, check=True
    )
    command, max_rss_kib = done.stdout.splitlines()

    assert int(max_rss_kib) * 1024 < 200 * MIB, f"the worker grew to {int(max_rss_kib) // 1024} MiB"
    # A config over MAX_CONFIG_BYTES counts as absent: the worker falls back to what else the checkout shows.
    assert command == UNITTEST


def test_a_tests_link_to_the_root_is_not_walked(plant):
    workspace = plant("ln -s / tests && mkdir -p deep && ln -s / deep/tests")

    finished, command, seconds = in_thread(lambda: detect_test_command(workspace), timeout=30)

    # Walking / through the link found the host's own test files, or died on /proc (EINVAL) and failed the run.
    assert finished and command == UNITTEST and seconds < 2


def test_a_deeply_nested_package_json_does_not_crash_detection(plant):
    workspace = plant("rm test_calc.py && python3 -c \"print('[' * 100000)\" > package.json")

    assert detect_test_command(workspace) is None


def test_a_fifo_gitignore_does_not_hang_git_over_the_workspace(plant, checkout):
    workspace = plant("mkfifo .gitignore && mkdir -p sub && mkfifo sub/.gitattributes sub/data.fifo && echo n > sub/n")
    _, base = checkout
    cancel = threading.Event()
    try:
        listed, patterns, _ = in_thread(lambda: untracked_patterns(workspace, base, cancel=cancel), timeout=20)
        assert listed, "git waits for a writer of the FIFO"
        diffed, stats, _ = in_thread(lambda: diff_stats(workspace, base, cancel=cancel), timeout=20)
        assert diffed, "git waits for a writer of the FIFO"
    finally:
        cancel.set()  # a git left waiting is killed, not left behind for its 10-minute timeout
    assert patterns == ["/sub/"]
    assert "+n" in stats.patch and stats.files_changed == 1
    assert (workspace / "sub" / "data.fifo").is_fifo()  # not a file git opens: left alone, and out of the change


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A directory an unprivileged uid can reach (pytest's own tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="yudai-remove-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def give_to(tree: Path, uid: int) -> None:
    os.chown(tree, uid, uid)
    for parent, dirs, files in os.walk(tree):
        for name in dirs + files:
            os.chown(os.path.join(parent, name), uid, uid, follow_symlinks=False)


def test_remove_tree_never_follows_a_link_and_empties_read_only_directories(shared_tmp: Path):
    outside = shared_tmp / "outside"
    (outside / "keep").mkdir(parents=True)
    (outside / "keep" / "precious.txt").write_text("mine")
    run_dir = shared_tmp / "runs" / "r1"
    (run_dir / "work" / "locked" / "inner").mkdir(parents=True)
    (run_dir / "work" / "locked" / "inner" / "file").write_text("x")
    (run_dir / "work" / "link").symlink_to(outside)
    (run_dir / "work" / "locked" / "link").symlink_to(outside / "keep")
    os.mkfifo(run_dir / "work" / "fifo")
    owner = []
    if os.geteuid() == 0:  # as a sandbox leaves them: files of its uid, removed by a worker of that uid, not root
        give_to(shared_tmp / "runs", 65534)
        owner = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "--"]
    for directory in (run_dir / "work" / "locked" / "inner", run_dir / "work" / "locked"):
        directory.chmod(stat.S_IRUSR | stat.S_IXUSR)
    probe = "import sys; from pathlib import Path; from yudai_solver.execution.validation import remove_tree\n"
    probe += "remove_tree(Path(sys.argv[1]))"

    done = subprocess.run([*owner, sys.executable, "-c", probe, str(run_dir)], capture_output=True, text=True)

    assert done.returncode == 0, done.stderr
    assert not os.path.lexists(run_dir) and os.listdir(shared_tmp / "runs") == []
    assert (outside / "keep" / "precious.txt").read_text() == "mine"
    remove_tree(run_dir)  # missing: fine

"""The bubblewrap sandbox, with real processes: each wall it puts up, and the worker's view of what it leaves."""

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from yudai_solver.base.settings import Settings
from yudai_solver.entry.demo import create_repository
from yudai_solver.execution.validation import diff_stats
from yudai_solver.execution.workspace import WorkspaceCache
from yudai_solver.sandboxes import BubblewrapSandbox, Sandbox, SandboxKilled, create_sandbox
from yudai_solver.sandboxes.bubblewrap import BubblewrapUnavailable

pytestmark = pytest.mark.skipif(
    shutil.which("bwrap") is None or os.geteuid() != 0, reason="needs bubblewrap and a root worker"
)
pytestmark = [pytestmark, pytest.mark.slow]  # seconds each: not in the fast tier


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", sandbox_max_processes=64)


@pytest.fixture
def checkout(tmp_path: Path, settings: Settings) -> tuple[Path, str]:
    """A run-like checkout: a shared clone of a mirror, as the worker makes them."""
    repo = create_repository(tmp_path / "repos" / "calc")
    workspace = settings.data_dir / "runs" / "r1" / "work"
    return workspace, WorkspaceCache(settings.data_dir / "mirrors").checkout(str(repo), "main", workspace)


@pytest.fixture
def box(checkout, settings: Settings):
    workspace, _ = checkout
    sandbox = create_sandbox(
        "bubblewrap", workspace=workspace, home=workspace.parent / "home", command_timeout=5, settings=settings
    )
    yield sandbox
    sandbox.close()


def sh(box: Sandbox, command: str, **kwargs) -> tuple[int, str]:
    done = box.run(command, timeout=kwargs.pop("timeout", 10), **kwargs)
    return done.returncode, done.output


def processes_of(uid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and os.stat(f"/proc/{entry}").st_uid == uid:
                found.append(int(entry))
        except FileNotFoundError:
            pass
    return found


def test_commands_run_as_an_unprivileged_uid_with_no_capability(box: BubblewrapSandbox):
    code, out = sh(box, "id -u; id -G; grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs):' /proc/self/status")
    lines = out.split()
    assert code == 0 and lines[0] == lines[1] == str(box.config.uid) != "0"
    assert dict(zip(lines[2::2], lines[3::2], strict=True)) == {
        "CapInh:": "0" * 16,
        "CapPrm:": "0" * 16,
        "CapEff:": "0" * 16,
        "CapBnd:": "0" * 16,
        "CapAmb:": "0" * 16,
        "NoNewPrivs:": "1",
    }
    assert sh(box, "whoami; hostname")[1].split() == ["sandbox", "sandbox"]


def test_only_the_workspace_home_and_tmp_are_writable(box: BubblewrapSandbox):
    mirror_objects = box.config.read_only[0]
    for target in ("/usr/x", "/etc/x", "/x", f"{mirror_objects}/x", "/proc/x", "/dev/x"):
        code, out = sh(box, f"echo pwned > {target}")
        assert code != 0 and any(why in out for why in ("Read-only", "Permission denied", "No such file")), out
    code, out = sh(box, "echo a > new.txt && echo b > $HOME/h && echo c > /tmp/t && cat /tmp/t")
    assert (code, out) == (0, "c\n")
    assert sh(box, "cat /tmp/t")[1] == "c\n"  # /tmp lasts from one command to the next, like the workspace


def test_the_host_stays_hidden_root_home_data_dir_and_the_worker(box: BubblewrapSandbox, settings: Settings):
    secret = settings.data_dir / "secret.txt"
    secret.write_text("worker-only")
    mirror = Path(box.config.read_only[0]).parent
    code, out = sh(
        box, f"ls -A /root; cat {secret}; ls -A {settings.data_dir} {mirror}; ls /proc | grep -cE '^[0-9]+$'"
    )
    assert "worker-only" not in out and "No such file" in out
    assert int(out.split()[-1]) <= 4  # bwrap's init, bash, ls, grep: the worker's processes are not there
    # Only the directories leading to what is bound show, empty but for it: no database, no mirror config.
    assert f"{settings.data_dir}:\nmirrors\nruns\n\n{mirror}:\nobjects\n" in out


def test_the_mirror_is_readable_through_the_alternates_and_git_works(box: BubblewrapSandbox, checkout):
    _, base = checkout
    code, out = sh(box, "git rev-parse HEAD && git status --porcelain && git log --oneline | wc -l")
    assert code == 0 and out.split() == [base, "1"]


def test_the_worker_still_reads_diffs_and_deletes_what_the_sandbox_wrote(box: BubblewrapSandbox, checkout):
    workspace, base = checkout
    code, _ = sh(box, "sed -i 's/a - b/a + b/' calc.py && mkdir -p d && echo x > d/new && chmod 000 d/new d")
    assert code == 0
    stats = diff_stats(workspace, base)
    assert (stats.files_changed, stats.loc_changed) == (2, 3)
    box.close()
    WorkspaceCache(workspace.parent).remove(workspace)
    assert not workspace.exists()


@contextmanager
def listening_port():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def probe(port: int) -> str:
    return f'python3 -c \'import socket; socket.create_connection(("127.0.0.1", {port}), 2); print("open")\''


def test_no_network_by_default_not_even_the_hosts_loopback(box: BubblewrapSandbox):
    with listening_port() as port:
        code, out = sh(box, probe(port))
        assert code != 0 and "Connection refused" in out
        assert box.execute({"command": probe(port)})["returncode"] != 0
        # Setup commands ask for the network (run(..., network=True)): outbound through slirp, still not the host's.
        code, out = sh(box, f"grep -o tap0 /proc/net/dev; {probe(port)}", network=True)
        assert code != 0 and out.startswith("tap0\n") and "Connection refused" in out


@pytest.mark.parametrize("how", ["setting", "per-solve option"])
def test_the_network_setting_or_option_opens_it_for_agent_commands_too(how, checkout, settings: Settings):
    workspace, _ = checkout
    if how == "setting":
        settings = settings.model_copy(update={"sandbox_network": True})
    box = create_sandbox(
        "bubblewrap",
        workspace=workspace,
        home=workspace.parent / "home",
        settings=settings,
        network=True if how != "setting" else None,
    )
    try:
        with listening_port() as port:
            output = box.execute({"command": f"grep -o tap0 /proc/net/dev; {probe(port)}"})["output"]
            assert output.startswith("tap0\n") and "Connection refused" in output  # outbound only (see slirp.py)
    finally:
        box.close()


def test_a_fork_bomb_is_bounded_by_the_process_limit_and_ends_with_the_command(box: BubblewrapSandbox):
    peak, done = [0], threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], len(processes_of(box.config.uid)))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        output = box.execute({"command": ":(){ :|:& };:; sleep 60"}, timeout=2)
    finally:
        done.set()
        watcher.join()
    assert output["returncode"] == -1 and "timed out" in output["exception_info"]
    assert "Resource temporarily unavailable" in output["output"]
    assert 0 < peak[0] <= box.config.max_processes
    assert soon(lambda: not processes_of(box.config.uid))
    assert sh(box, "echo alive") == (0, "alive\n")


def test_a_4_gb_allocation_fails(box: BubblewrapSandbox):
    code, out = sh(box, "python3 -c 'b = bytearray(4 * 1024 ** 3); print(\"allocated\")'")
    assert code != 0 and "MemoryError" in out and "allocated" not in out


def test_file_size_and_cpu_time_are_limited(checkout, settings: Settings):
    workspace, _ = checkout
    box = BubblewrapSandbox(
        workspace=workspace,
        home=workspace.parent / "home",
        settings=settings.model_copy(update={"sandbox_file_size_mb": 1, "sandbox_cpu_s": 1}),
    )
    try:
        code, out = sh(box, "head -c 2000000 /dev/zero > big; wc -c < big")
        assert out.split()[-1] == str(1024 * 1024)
        started = time.monotonic()
        code, out = sh(box, "python3 -c 'while True: pass'")
        assert code != 0 and time.monotonic() - started < 5
    finally:
        box.close()


def test_a_loop_past_the_timeout_is_killed_with_its_children(box: BubblewrapSandbox):
    started = time.monotonic()
    output = box.execute({"command": "sleep 300 & while true; do :; done"}, timeout=1)
    assert output["returncode"] == -1 and "timed out after 1 s" in output["exception_info"]
    assert time.monotonic() - started < 3
    assert soon(lambda: not processes_of(box.config.uid))


def test_background_children_die_with_the_command(box: BubblewrapSandbox):
    assert sh(box, "sleep 300 & echo started") == (0, "started\n")
    assert soon(lambda: not processes_of(box.config.uid))


def test_kill_from_another_thread_stops_the_command_and_refuses_more(box: BubblewrapSandbox):
    threading.Timer(0.3, box.kill).start()
    started = time.monotonic()
    with pytest.raises(SandboxKilled):
        box.execute({"command": "sleep 30"})
    assert time.monotonic() - started < 3
    with pytest.raises(SandboxKilled):
        box.run("true", timeout=5)
    assert soon(lambda: not processes_of(box.config.uid))


def test_the_environment_is_the_allowlist_and_pid_1_shows_nothing_of_the_worker(checkout, settings, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-canary-bwrap")
    workspace, _ = checkout
    box = BubblewrapSandbox(workspace=workspace, home=workspace.parent / "home", settings=settings)
    try:
        code, out = sh(box, "env; cat /proc/1/environ; cat /proc/*/environ; echo")
    finally:
        box.close()
    names = {line.split("=", 1)[0] for line in out.splitlines() if "=" in line}
    assert "sk-canary-bwrap" not in out and "OPENAI_API_KEY" not in names
    assert {"PATH", "HOME", "LANG", "PYTHONDONTWRITEBYTECODE"} <= names


def test_secrets_in_the_environment_the_worker_started_with_reach_no_command(tmp_path: Path):
    """In a fresh worker process started with a secret: /proc/<pid>/environ keeps a process's initial environment."""
    script = """
import sys
from pathlib import Path
from yudai_solver.sandboxes import create_sandbox
from yudai_solver.base.settings import Settings
root = Path(sys.argv[1]); (root / "w").mkdir()
box = create_sandbox(sys.argv[2], workspace=root / "w", home=root / "h", settings=Settings(data_dir=root / "d"))
print(box.run("env; cat /proc/*/environ; cat /proc/$PPID/environ /proc/1/environ", timeout=10).output)
box.close()
"""
    env = os.environ | {"OPENAI_API_KEY": "sk-canary-initial-env"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), "bubblewrap"], env=env, capture_output=True, text=True, timeout=60
    )
    assert "PATH=" in done.stdout and "sk-canary-initial-env" not in done.stdout + done.stderr


def test_each_live_sandbox_gets_its_own_uid_and_gives_it_back(checkout, settings: Settings, tmp_path: Path):
    workspace, _ = checkout
    (tmp_path / "w2").mkdir()
    first = BubblewrapSandbox(workspace=workspace, home=tmp_path / "h1", settings=settings)
    second = BubblewrapSandbox(workspace=tmp_path / "w2", home=tmp_path / "h2", settings=settings)
    assert first.config.uid != second.config.uid
    first.close()
    third = BubblewrapSandbox(workspace=tmp_path / "w2", home=tmp_path / "h3", settings=settings)
    assert third.config.uid == first.config.uid
    second.close()
    third.close()


def test_symbolic_links_in_the_repository_are_not_followed_when_the_workspace_is_handed_over(tmp_path, settings):
    outside = tmp_path / "outside.txt"
    outside.write_text("root's")
    workspace = tmp_path / "w"
    workspace.mkdir()
    (workspace / "link").symlink_to(outside)
    box = BubblewrapSandbox(workspace=workspace, home=tmp_path / "h", settings=settings)
    try:
        assert outside.stat().st_uid == 0 and (workspace / "link").lstat().st_uid == box.config.uid
        assert sh(box, "echo x > link")[0] != 0  # the link's target is not in the sandbox at all
    finally:
        box.close()


@pytest.mark.parametrize("kind", ["local", "bubblewrap"])
def test_hundreds_of_megabytes_of_output_are_cut_while_they_stream(kind: str, tmp_path: Path):
    """Measured in a fresh process: its peak RSS must not grow with the output."""
    script = f"""
import json, sys
from pathlib import Path
from yudai_solver.sandboxes import create_sandbox
from yudai_solver.base.settings import Settings

def hwm():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) * 1024

root = Path(sys.argv[1]); (root / "w").mkdir()
box = create_sandbox({kind!r}, workspace=root / "w", home=root / "h", settings=Settings(data_dir=root / "d"))
box.run("echo warm", timeout=10)
before = hwm()
done = box.run("head -c 300000000 /dev/zero | tr '\\\\0' x", timeout=60)
print(json.dumps({{"growth": hwm() - before, "chars": len(done.output), "truncated": done.truncated}}))
box.close()
"""
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=120)
    measured = json.loads(out.stdout or out.stderr)
    assert measured["truncated"] and measured["chars"] < 200_000
    assert measured["growth"] < 16 * 1024 * 1024, measured


def test_a_worker_not_running_as_root_is_refused_with_the_reason(checkout, settings, monkeypatch):
    workspace, _ = checkout
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(BubblewrapUnavailable, match="root"):
        BubblewrapSandbox(workspace=workspace, home=workspace.parent / "home", settings=settings)


def soon(condition, seconds: float = 3) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True

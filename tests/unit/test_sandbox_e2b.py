"""The e2b sandbox against a fake of the SDK's `Sandbox` class (the real service cannot be reached from here).

The fake runs each command for real, with bash inside `bwrap`, where /home/user and /tmp are the fake sandbox's
own directories and /proc is private: the paths, environment, exit codes, timeouts and streaming the backend
relies on behave as in an E2B sandbox. It records every call, so tests can check what would reach E2B.
"""

import itertools
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from e2b import CommandExitException, RateLimitException, SandboxException, TimeoutException

from yudai_solver.base.settings import Settings
from yudai_solver.entry.demo import create_repository
from yudai_solver.execution.validation import diff_stats
from yudai_solver.execution.workspace import WorkspaceCache
from yudai_solver.sandboxes import E2BSandbox, SandboxKilled, create_sandbox
from yudai_solver.sandboxes import e2b as e2b_backend
from yudai_solver.sandboxes.e2b import E2BError, Throttle, apply_patch, kill_orphans

pytestmark = pytest.mark.skipif(
    shutil.which("bwrap") is None or os.geteuid() != 0, reason="the fake runs commands with bubblewrap as root"
)


@dataclass
class FakeInfo:
    sandbox_id: str
    metadata: dict


class FakePages:
    def __init__(self, items: list):
        self._items, self.has_next = items, True

    def next_items(self) -> list:
        self.has_next = False
        return self._items


class FakeCommands:
    def __init__(self, box: "FakeBox"):
        self._box = box

    def run(
        self,
        cmd,
        background=None,
        envs=None,
        user=None,
        cwd=None,
        on_stdout=None,
        on_stderr=None,
        stdin=None,
        timeout=60,
        request_timeout=None,
        *,
        retain_output=True,
    ):
        box = self._box
        box.service.calls.append(("run", box.sandbox_id, cmd, dict(envs or {}), cwd))
        if not box.alive:
            raise SandboxException("sandbox is not running")
        env = [f"{name}={value}" for name, value in (envs or {}).items()]
        argv = [
            "nsenter",
            "-t",
            str(box.init_pid),
            "-p",
            "-m",
            "-r",
            "-w",
            "env",
            "-i",
            "-C",
            cwd or "/home/user",
            *env,
            "bash",
            "-c",
            cmd,
        ]
        process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={"PATH": "/usr/bin:/bin"},
        )
        box.running.add(process)
        expired = threading.Event()

        def expire():
            expired.set()
            os.killpg(process.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, expire) if timeout else None
        if timer:
            timer.start()
        try:
            for chunk in iter(lambda: os.read(process.stdout.fileno(), 65536), b""):
                on_stdout(chunk.decode(errors="replace"))
            code = process.wait()
        finally:
            if timer:
                timer.cancel()
            process.stdout.close()
            box.running.discard(process)
        if not box.alive:
            raise SandboxException("sandbox was killed")
        if expired.is_set():
            raise TimeoutException("context deadline exceeded")
        if code != 0:
            raise CommandExitException(stdout=None, stderr=None, exit_code=code, error=None)


class FakeFiles:
    def __init__(self, box: "FakeBox"):
        self._box = box

    def write(self, path: str, data, user=None, request_timeout=None, **_):
        payload = data.read() if hasattr(data, "read") else data
        payload = payload.encode() if isinstance(payload, str) else payload
        self._box.service.calls.append(("write", self._box.sandbox_id, path, payload))
        target = self._box.root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(payload)


class FakeBox:
    def __init__(self, service: "FakeE2B", sandbox_id: str, metadata: dict):
        self.service, self.sandbox_id, self.metadata = service, sandbox_id, metadata
        self.root = service.root / sandbox_id
        (self.root / "home" / "user").mkdir(parents=True)
        (self.root / "tmp").mkdir()
        self.alive, self.running = True, set()
        self.commands, self.files = FakeCommands(self), FakeFiles(self)
        self._start_machine()

    def _start_machine(self) -> None:
        """One PID namespace for the sandbox's life, as one VM: commands enter it (nsenter) and share it."""
        read, write = os.pipe()
        self._holder = subprocess.Popen(
            [
                "bwrap",
                "--dev-bind",
                "/",
                "/",
                "--bind",
                str(self.root / "home"),
                "/home",
                "--bind",
                str(self.root / "tmp"),
                "/tmp",
                "--proc",
                "/proc",
                "--unshare-pid",
                "--die-with-parent",
                "--info-fd",
                str(write),
                "--",
                "sleep",
                "infinity",
            ],
            pass_fds=(write,),
            start_new_session=True,
            env={"PATH": "/usr/bin:/bin"},
        )
        os.close(write)
        with os.fdopen(read) as info:
            self.init_pid = json.loads(info.read().split("}")[0] + "}")["child-pid"]

    def kill(self) -> bool:
        self.service.calls.append(("kill", self.sandbox_id))
        was_alive, self.alive = self.alive, False
        if was_alive:
            self._holder.kill()
            self._holder.wait()
        return was_alive

    def update_network(self, network: dict) -> None:
        self.service.calls.append(("network", self.sandbox_id, dict(network)))


@dataclass
class FakeE2B:
    """Stands in for `e2b.Sandbox` (the class): `create`, `list`, `kill(sandbox_id)`."""

    root: Path
    boxes: dict = field(default_factory=dict)
    calls: list = field(default_factory=list)
    fail_create: Exception | None = None
    _ids: itertools.count = field(default_factory=itertools.count)

    def create(self, **kwargs) -> FakeBox:
        self.calls.append(("create", kwargs))
        if self.fail_create:
            raise self.fail_create
        box = FakeBox(self, f"sbx-{next(self._ids)}", dict(kwargs.get("metadata") or {}))
        self.boxes[box.sandbox_id] = box
        return box

    def list(self, query=None) -> FakePages:
        wanted = (query.metadata if query else None) or {}
        return FakePages(
            [
                FakeInfo(b.sandbox_id, b.metadata)
                for b in self.boxes.values()
                if b.alive and all(b.metadata.get(k) == v for k, v in wanted.items())
            ]
        )

    def kill(self, sandbox_id: str) -> bool:
        return self.boxes[sandbox_id].kill() if sandbox_id in self.boxes else False

    def sent(self) -> str:
        """Everything that would have gone to E2B, as text (uploads decoded loosely)."""
        return repr([call if call[0] != "write" else call[:3] + (call[3].decode("latin-1"),) for call in self.calls])


@pytest.fixture
def fake(tmp_path: Path, monkeypatch) -> FakeE2B:
    service = FakeE2B(tmp_path / "e2b")
    monkeypatch.setattr(e2b_backend, "sdk", lambda: service)
    monkeypatch.setattr(e2b_backend, "_THROTTLES", {})
    return service


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", e2b_creates_per_s=100, e2b_owner="worker-a")


@pytest.fixture
def checkout(tmp_path: Path, settings: Settings) -> tuple[Path, str]:
    repo = create_repository(tmp_path / "repos" / "calc")
    workspace = settings.data_dir / "runs" / "r1" / "work"
    return workspace, WorkspaceCache(settings.data_dir / "mirrors").checkout(str(repo), "main", workspace)


@pytest.fixture
def box(fake, checkout, settings):
    workspace, _ = checkout
    sandbox = create_sandbox(
        "e2b", workspace=workspace, home=workspace.parent / "home", command_timeout=5, settings=settings
    )
    yield sandbox
    sandbox.close()


def sh(box, command: str, **kwargs) -> tuple[int, str]:
    done = box.run(command, timeout=kwargs.pop("timeout", 10), **kwargs)
    return done.returncode, done.output


def test_one_sandbox_from_the_template_with_a_lifetime_and_owner_metadata(box, fake, checkout):
    workspace, _ = checkout
    ((kind, created),) = [call for call in fake.calls if call[0] == "create"]
    assert created["template"] == "base" and created["timeout"] == 3600 and created["allow_internet_access"] is False
    assert created["metadata"] == {"app": "yudai-solver", "owner": "worker-a", "workspace": str(workspace)}
    assert "envs" not in created and "api_key" not in created
    assert box.sandbox_id == "sbx-0" and box.serialize()["info"]["config"]["sandbox_id"] == "sbx-0"


def test_the_repository_arrives_at_its_base_commit_without_remote_or_borrowed_objects(box, checkout):
    _, base = checkout
    code, out = sh(
        box,
        "pwd; git rev-parse HEAD; git status --porcelain; git remote -v; "
        "ls .git/objects/info; git branch --show-current; git config user.name",
    )
    assert code == 0 and out.split() == ["/home/user/repo", base, "main", "yudai-solver"]


def test_a_non_zero_exit_is_a_result_and_a_timeout_kills_the_command(box):
    assert sh(box, "echo out; echo err >&2; exit 3") == (3, "out\nerr\n")
    started = time.monotonic()
    output = box.execute({"command": "sleep 300 & while true; do :; done"}, timeout=1)
    assert output["returncode"] == -1 and "timed out after 1 s" in output["exception_info"]
    assert time.monotonic() - started < 5
    assert sh(box, "sleep 1.5; pgrep -c -f 'sleep 30[0]' || true")[1] == "0\n"  # one process space, as in a VM


def test_output_is_capped_as_it_streams(box):
    done = box.run("head -c 5000000 /dev/zero | tr '\\0' x", timeout=20)
    assert done.truncated and len(done.output) < 200_000 and done.returncode == 0


def test_the_agents_changes_come_back_as_a_patch_applied_on_the_worker(box, checkout):
    workspace, base = checkout
    script = (
        "sed -i 's/a - b/a + b/' calc.py && printf 'new\\n' > added.txt && git rm -q test_calc.py && "
        "printf '\\x00\\x01binary' > blob.bin && git config diff.noprefix true && git config color.diff always"
    )
    assert sh(box, script)[0] == 0
    inside = sh(box, "git add -A && git diff --cached --numstat " + base)[1]
    box.sync_workspace(base)
    stats = diff_stats(workspace, base)
    assert stats.files_changed == 4 and len(inside.splitlines()) == 4
    assert (workspace / "added.txt").read_text() == "new\n" and not (workspace / "test_calc.py").exists()
    assert (workspace / "blob.bin").read_bytes() == b"\x00\x01binary"
    assert "return a + b" in (workspace / "calc.py").read_text()


def test_what_setup_leaves_untracked_stays_out_of_the_patch(box, checkout):
    workspace, base = checkout
    assert sh(box, "mkdir -p .venv/bin && echo x > .venv/bin/tool && echo y > setup.log", network=True)[0] == 0
    assert sh(box, "echo fix >> calc.py")[0] == 0
    box.sync_workspace(base)
    assert diff_stats(workspace, base).files_changed == 1 and not (workspace / ".venv").exists()


def test_a_patch_cannot_reach_into_git_or_outside_the_checkout(checkout):
    workspace, _ = checkout
    for path in (".git/hooks/post-checkout", "../outside.txt"):
        patch = (
            f"diff --git a/{path} b/{path}\nnew file mode 100755\n--- /dev/null\n+++ b/{path}\n"
            "@@ -0,0 +1 @@\n+touch /tmp/pwned\n"
        )
        with pytest.raises(E2BError, match="applying"):
            apply_patch(workspace, patch)
    assert not (workspace / ".git" / "hooks" / "post-checkout").exists()
    assert not (workspace.parent / "outside.txt").exists()


def test_network_is_off_for_agent_commands_and_on_for_setup(box, fake):
    sh(box, "true", network=True)
    box.execute({"command": "true"})
    assert [call[2] for call in fake.calls if call[0] == "network"] == [{}, {"deny_out": ["0.0.0.0/0"]}]


def test_kill_ends_the_running_command_and_the_sandbox_and_refuses_more(box, fake):
    threading.Timer(0.5, box.kill).start()
    started = time.monotonic()
    with pytest.raises(SandboxKilled):
        box.execute({"command": "sleep 30"})
    assert time.monotonic() - started < 5 and not fake.boxes["sbx-0"].alive
    with pytest.raises(SandboxKilled):
        box.run("true", timeout=5)
    box.close()
    assert [call for call in fake.calls if call[0] == "kill"] == [("kill", "sbx-0")]


def test_orphans_of_this_owner_are_killed_at_start_up_and_no_others(fake, settings):
    tag = {"app": "yudai-solver", "owner": "worker-a"}
    mine = [fake.create(metadata=tag | {"workspace": f"/w{i}"}).sandbox_id for i in range(3)]
    fake.create(metadata=tag | {"owner": "worker-b"})
    fake.create(metadata={"owner": "worker-a"})
    assert sorted(kill_orphans(settings, keep={mine[2]})) == mine[:2]
    assert [box.alive for box in fake.boxes.values()] == [False, False, True, True, True]
    assert kill_orphans(settings, keep={mine[2]}) == []


def test_creation_waits_for_a_slot_under_the_concurrent_cap(fake, checkout, settings, tmp_path):
    workspace, _ = checkout
    capped = settings.model_copy(update={"e2b_max_concurrent": 1, "e2b_timeout_s": 2})
    first = E2BSandbox(workspace=workspace, home=tmp_path / "h", settings=capped)
    threading.Timer(0.4, first.close).start()
    started = time.monotonic()
    E2BSandbox(workspace=workspace, home=tmp_path / "h", settings=capped).close()
    assert time.monotonic() - started >= 0.4


def test_the_throttle_times_out_without_a_slot_and_spaces_creations():
    throttle = Throttle(per_s=10, cap=1)
    throttle.acquire(timeout=1)
    with pytest.raises(E2BError, match="no e2b sandbox slot"):
        throttle.acquire(timeout=0.05)
    started = time.monotonic()
    for _ in range(3):
        throttle.release()
        throttle.acquire(timeout=1)
    assert time.monotonic() - started >= 0.2  # 0.1 s apart, counted from the first creation


def test_sdk_errors_become_e2b_errors_and_free_the_slot(fake, checkout, settings, tmp_path):
    workspace, _ = checkout
    fake.fail_create = RateLimitException("rate limit exceeded")
    capped = settings.model_copy(update={"e2b_max_concurrent": 1, "e2b_timeout_s": 1})
    for _ in range(2):
        with pytest.raises(E2BError, match="RateLimitException"):
            E2BSandbox(workspace=workspace, home=tmp_path / "h", settings=capped)


def test_the_environment_is_the_allowlist_and_no_worker_secret_is_sent(box, fake, monkeypatch):
    monkeypatch.setenv("E2B_API_KEY", "e2b-canary-key")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-canary-e2b")
    code, out = sh(box, "env; cat /proc/*/environ 2>/dev/null; git config -l; ls -A ~")
    assert "canary" not in out and "canary" not in fake.sent()
    envs = [call[3] for call in fake.calls if call[0] == "run"]
    assert all(
        set(env)
        == {
            "PATH",
            "HOME",
            "LANG",
            "LC_ALL",
            "TERM",
            "PAGER",
            "MANPAGER",
            "GIT_PAGER",
            "PIP_PROGRESS_BAR",
            "TQDM_DISABLE",
            "PYTHONDONTWRITEBYTECODE",
        }
        for env in envs
    )
    assert envs[0]["HOME"] == "/home/user"


def test_a_patch_too_large_to_carry_whole_fails_the_sync_instead_of_applying_half(box, checkout, monkeypatch):
    workspace, base = checkout
    monkeypatch.setattr(e2b_backend, "MAX_PATCH_BYTES", 1000)
    assert sh(box, "head -c 5000 /dev/zero | tr '\\0' x > big.txt")[0] == 0
    with pytest.raises(E2BError, match="larger than 1000 bytes"):
        box.sync_workspace(base)
    assert not (workspace / "big.txt").exists()

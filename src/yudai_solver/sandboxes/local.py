"""The `local` sandbox: commands run as subprocesses of the worker, each in its own process group.

It isolates the environment (variables built from an allowlist) and the lifetime of processes, not the file system
or the network; use `bubblewrap` or `e2b` for that. Each command runs under `reaper.py`, a child subreaper, so that
what it detaches from its process group (`setsid`, double forks) still dies with it.
"""

import os
import platform
import selectors
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from yudai_solver.sandboxes.protocol import CommandResult, SandboxKilled, raise_if_submitted

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_MAX_OUTPUT_BYTES = 128 * 1024
_READ_CHUNK = 64 * 1024
_POLL_S = 0.1
_DRAIN_S = 0.25  # how long background children may still write once the command itself has exited
_REAP_S = 15.0  # how long the reaper may take to kill what a command left (it gives up after 10 s)
# No reaper without a Python to run it (an embedding host): the process group is then all that is killed.
_REAPER = [sys.executable, "-I", "-S", str(Path(__file__).with_name("reaper.py"))] if sys.executable else []
_FIXED_ENV = {
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "TERM": "dumb",
    "PAGER": "cat",
    "MANPAGER": "cat",
    "GIT_PAGER": "cat",
    "PIP_PROGRESS_BAR": "off",
    "TQDM_DISABLE": "1",
    # A .pyc written by the baseline tests can outlive a same-size edit made within the same second (pyc
    # validation compares mtime in whole seconds and size), so the tests would run the old code.
    "PYTHONDONTWRITEBYTECODE": "1",
}


class LocalSandboxConfig(BaseModel):
    """How a local sandbox runs commands; serialized into the trajectory, so it holds no secret."""

    cwd: str
    """The run's workspace; commands start here."""
    home: str
    """HOME of every command: a directory of the run, never the worker's."""
    timeout: int = 120
    """Seconds an agent command may take before its process group is killed."""
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES
    """Output kept per command: the first and the last half of this; the middle is cut."""
    env_extra_names: list[str] = []
    """Names (not values) of the variables the caller added to the allowlist."""


class LocalSandbox:
    """Runs each command with `bash -c` in the workspace; `kill()` may be called from any thread at any time."""

    def __init__(
        self,
        *,
        workspace: Path,
        home: Path,
        env_extra: dict[str, str] | None = None,
        command_timeout: int = 120,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    ):
        env_extra = env_extra or {}
        home.mkdir(parents=True, exist_ok=True)
        self.config = LocalSandboxConfig(
            cwd=str(workspace),
            home=str(home),
            timeout=command_timeout,
            max_output_bytes=max_output_bytes,
            env_extra_names=sorted(env_extra),
        )
        self.sandbox_id = f"local-{uuid.uuid4().hex[:12]}"
        self._env = sandbox_environment(home, env_extra)
        self._lock = threading.Lock()
        self._running: set[int] = set()  # process group ids of commands not yet reaped
        self._killed = False

    def execute(self, action: dict[str, Any], cwd: str = "", *, timeout: int | None = None) -> dict[str, Any]:
        """Run an agent command; see `Sandbox.execute` for the contract."""
        timeout = timeout or self.config.timeout
        result = self._run_capped(action.get("command", ""), str(Path(self.config.cwd, cwd)), timeout)
        output = {"output": result.output, "returncode": result.returncode, "exception_info": ""}
        if result.timed_out:
            output["exception_info"] = f"The command timed out after {timeout} s; it and its children were killed."
        raise_if_submitted(output)
        return output

    def run(self, command: str, *, timeout: float, network: bool = False) -> CommandResult:
        """Run a setup or test command in the workspace. `network` is ignored: local commands keep the host's."""
        return self._run_capped(command, self.config.cwd, timeout, network=network)

    def kill(self) -> None:
        """Stop every running command with all it started, and refuse later commands."""
        with self._lock:
            self._killed = True
            for pgid in self._running:
                self._stop(pgid)

    def close(self) -> None:
        """Kill whatever still runs; the workspace and home belong to the caller and stay."""
        self.kill()

    def sync_workspace(self, base_commit: str) -> None:
        """Nothing to do: the commands ran in the worker's workspace itself."""

    def get_template_vars(self, **kwargs: Any) -> dict[str, Any]:
        """Config and host platform (the default templates need `system`, `release`, ...); never `os.environ`."""
        return self.config.model_dump() | platform.uname()._asdict() | kwargs

    def serialize(self) -> dict[str, Any]:
        return {
            "info": {
                "config": {
                    "environment": self.config.model_dump(mode="json"),
                    "environment_type": f"{self.__class__.__module__}.{self.__class__.__name__}",
                    "sandbox_id": self.sandbox_id,
                }
            }
        }

    def _run_capped(self, command: str, cwd: str, timeout: float, *, network: bool = False) -> CommandResult:
        started = time.monotonic()
        deadline = started + timeout
        process = self._start(command, cwd, network)
        try:
            capture, timed_out = _read_output(process, deadline, self.config.max_output_bytes)
            timed_out = timed_out or not _exited(process.pid, deadline)
        finally:
            returncode = self._end(process)
        if self._killed:
            raise SandboxKilled()
        return CommandResult(
            command=command,
            returncode=-1 if timed_out else returncode,
            output=capture.text(),
            timed_out=timed_out,
            duration_s=time.monotonic() - started,
            truncated=capture.cut > 0,
        )

    def _argv(self, command: str, cwd: str, network: bool) -> list[str]:
        """The program that runs `command`; subclasses wrap it (the process group, timeout and capture stay)."""
        return [*_REAPER, "bash", "-c", command]

    def _stop(self, pid: int) -> None:
        """Ask the reaper leading process group `pid` to kill its whole tree; subclasses may kill otherwise."""
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    def _start(self, command: str, cwd: str, network: bool = False) -> subprocess.Popen[bytes]:
        # Started under the lock, so a concurrent kill() either sees the new group or has already refused it.
        with self._lock:
            if self._killed:
                raise SandboxKilled()
            process = self._launch(command, cwd, network)
            self._running.add(process.pid)
        return process

    def _launch(self, command: str, cwd: str, network: bool) -> subprocess.Popen[bytes]:
        """Start the command as the leader of a new process group; subclasses may prepare more around it."""
        return self._popen(self._argv(command, cwd, network), cwd)

    def _popen(self, argv: list[str], cwd: str, pass_fds: tuple[int, ...] = ()) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            env=self._env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=pass_fds,
        )

    def _end(self, process: subprocess.Popen[bytes]) -> int:
        """Kill what is left of the command's tree, then reap the leader; returns its exit code."""
        # The leader is not reaped yet, so its pid (= the group id) cannot have been recycled: the kill hits only
        # our processes. It also ends background children, which would otherwise outlive the command and the run.
        with self._lock:
            self._stop(process.pid)
            self._running.discard(process.pid)
        # The group's SIGKILL is the backstop for a reaper that is gone (the command may kill it) or that gave up.
        _exited(process.pid, time.monotonic() + _REAP_S)
        kill_group(process.pid)
        assert process.stdout is not None  # started with stdout=PIPE
        process.stdout.close()
        return process.wait()


class OutputCapture:
    """Keeps the first and the last `limit // 2` bytes of a stream of any length, and counts the bytes cut."""

    def __init__(self, limit: int):
        self._head_limit = limit // 2
        self._tail_limit = limit - self._head_limit
        self._head = bytearray()
        self._tail = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self._head_limit - len(self._head)
        if room > 0:
            self._head += chunk[:room]
            chunk = chunk[room:]
        self._tail += chunk
        if len(self._tail) > self._tail_limit:
            del self._tail[: len(self._tail) - self._tail_limit]

    @property
    def cut(self) -> int:
        return self.total - len(self._head) - len(self._tail)

    def text(self) -> str:
        if not self.cut:
            return (self._head + self._tail).decode("utf-8", errors="replace")
        head = self._head.decode("utf-8", errors="replace")
        tail = self._tail.decode("utf-8", errors="replace")
        return f"{head}\n[... {self.cut} bytes of output cut ...]\n{tail}"


def sandbox_environment(home: Path, extra: dict[str, str]) -> dict[str, str]:
    """The complete environment of a sandbox command: a fixed allowlist plus `extra`, nothing else of the worker's."""
    return {"PATH": worker_path(), "HOME": str(home), **_FIXED_ENV, **extra}


def worker_path() -> str:
    """The worker's PATH minus its own virtualenv, so commands never run with (or install into) the worker's Python."""
    own = str(Path(sys.prefix, "bin")) if sys.prefix != sys.base_prefix else None
    parts = [p for p in os.environ.get("PATH", "").split(os.pathsep) if os.path.isabs(p) and p != own]
    return os.pathsep.join(parts) or DEFAULT_PATH


def _read_output(process: subprocess.Popen[bytes], deadline: float, limit: int) -> tuple[OutputCapture, bool]:
    """Read the output as it streams until EOF or `deadline`; returns it capped, and whether the deadline hit.

    Background children can hold the pipe open forever (`server &`): once the command itself has exited they get
    `_DRAIN_S` to finish writing, then reading stops (and the group is killed by the caller).
    """
    capture = OutputCapture(limit)
    stop, leader_exited = deadline, False
    stdout = process.stdout
    assert stdout is not None  # started with stdout=PIPE
    with selectors.DefaultSelector() as selector:
        selector.register(stdout, selectors.EVENT_READ)
        while (remaining := stop - time.monotonic()) > 0:
            if selector.select(min(remaining, _POLL_S)):
                if not (chunk := os.read(stdout.fileno(), _READ_CHUNK)):
                    return capture, False
                capture.add(chunk)
            if not leader_exited and _exited_now(process.pid):
                stop, leader_exited = min(deadline, time.monotonic() + _DRAIN_S), True
    return capture, not leader_exited


def _exited(pid: int, deadline: float) -> bool:
    """Wait until `pid` exits or `deadline`; True if it exited."""
    pause = 0.001
    while not _exited_now(pid):
        if time.monotonic() >= deadline:
            return False
        # Usually the leader exits right after closing its output: poll fast first, then back off.
        time.sleep(pause)
        pause = min(pause * 2, 0.02)
    return True


def _exited_now(pid: int) -> bool:
    """Whether `pid` has exited, without reaping it (WNOWAIT): its id stays ours until `Popen.wait()`."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is not None


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass

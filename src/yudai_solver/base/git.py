"""Every git process the service starts: one runner, two environments, one error, the shared patterns.

- `trusted_env()`: for repositories the worker made and only the worker touched (mirrors, the pull request's
  checkout) and for the user's own local repositories: the worker's minimal environment — no prompt, https and
  local paths only, proxies and CA bundles passed through, nothing else of the worker's (no API key).
- `isolated_env(home)`: for repositories an agent has touched. The workspace's `.git` (config, hooks, filters,
  fsmonitor) could make git run any program on the worker, so git reads no system or global configuration, may use
  no transport at all, and follows no replace object; callers also point GIT_DIR at a directory of their own.

Credentials never go on a command line, into an environment or a file: `remote()` hands them to git through the
worker's credential helper (`git_credentials`), which answers that one git process only.

Each git runs in a process group of its own: a timeout or a cancel kills the whole group (git and the helpers it
started: remote-https, index-pack, upload-pack), never only the top process. A git that talks to a remote is also
killed when its transfer stalls (`RemoteLimits`).
"""

import math
import os
import re
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from yudai_solver.base.errors import YudaiError
from yudai_solver.base.git_credentials import Credential as Credential  # re-exported: the type `remote()` takes
from yudai_solver.base.git_credentials import Grant, server
from yudai_solver.base.settings import Settings

DEFAULT_TIMEOUT_S = 600
"""Any git command."""
LONG_TIMEOUT_S = 1800
"""A command whose time grows with the repository: a clone, a fetch, a checkout of all its files."""
COMMIT_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
"""A full commit id (SHA-1 or SHA-256 repositories); use with `fullmatch`."""
# The identity the worker commits under in its own checkouts.
USER_NAME = "yudai-solver"
USER_EMAIL = "yudai-solver@localhost"

# Variables git on the worker may need to reach a host (proxies, CA bundles); API keys and the like stay out.
_PASSED_ENV = ("PATH", "HOME", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy", "SSL_CERT_FILE", "GIT_SSL_CAINFO")
_IGNORE_SPECIAL = re.compile(r"([\\*?\[!#])")
_POLL_S = 0.1
_SAMPLE_S = 1.0
"""How often a remote git's progress is measured."""
_BUSY_CPU = 0.05
"""The share of one CPU that counts as progress."""
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_READ_CHUNK = 64 * 1024
_ERROR_CHARS = 2000


class GitError(YudaiError):
    """A git command failed."""


@dataclass(frozen=True)
class RemoteLimits:
    """How long a git that talks to a remote (clone, fetch, push) may take, and how long it may stall."""

    timeout_s: float = LONG_TIMEOUT_S
    """The whole command."""
    stall_s: float = 60
    """Killed after this long without progress: no process of git's read or wrote anything or used the CPU (which
    covers a host that accepts the connection and never answers, where git's own limits do not apply)..."""
    low_speed_bytes: int = 1000
    """... or, once connected, moved fewer bytes per second than this (git's http.lowSpeedLimit and -Time)."""

    @classmethod
    def of(cls, settings: Settings) -> "RemoteLimits":
        return cls(settings.git_timeout_s, settings.git_stall_s, settings.git_low_speed_bytes)


def trusted_env() -> dict[str, str]:
    """The worker's git environment: never prompts, speaks only https and local paths, carries no unrelated secret."""
    passed = {name: os.environ[name] for name in _PASSED_ENV if name in os.environ}
    return passed | {"LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0", "GIT_ALLOW_PROTOCOL": "https:file"}


def isolated_env(home: Path | str) -> dict[str, str]:
    """Git reads no configuration but its repository's own: no system or global file, no prompt, no transport.

    `home` is a directory of the caller's (a scratch directory): git looks there for nothing it would use, but
    no user's HOME with its `.gitconfig` is in reach.
    """
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LC_ALL": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ALLOW_PROTOCOL": "",
        "GIT_NO_REPLACE_OBJECTS": "1",
    }


def remote(
    *args: str,
    env: Mapping[str, str],
    limits: RemoteLimits,
    credential: Credential | None = None,
    cwd: Path | str | None = None,
    cancel: threading.Event | None = None,
) -> str:
    """stdout of a `git ARGS` that talks to a remote (clone, fetch, push), as `text` does, within `limits`.

    Git uses no credential helper of the system's or the user's configuration, nor an askpass program: with
    `credential`, the worker's own helper answers this one git process (and its children) for that URL's host.
    """
    config = ["-c", f"http.lowSpeedLimit={limits.low_speed_bytes}", "-c", f"http.lowSpeedTime={_seconds(limits)}"]
    config += ["-c", "credential.helper=", "-c", "credential.interactive=false", "-c", "core.askPass="]
    full = (*config, *(server().helper_config() if credential else []), *args)
    watch = _Watch(limits.timeout_s, cancel, limits.stall_s)
    with server().grant(credential) if credential else nullcontext() as grant:
        returncode, stdout, stderr = _communicate(full, env, cwd, None, watch, grant=grant)
    if returncode != 0:
        raise _failed(full, stderr)
    return stdout.decode(errors="replace")


def run(
    *args: str,
    env: Mapping[str, str],
    cwd: Path | str | None = None,
    stdin: bytes | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    cancel: threading.Event | None = None,
) -> bytes:
    """stdout of `git ARGS`, run with exactly `env` (nothing of the worker's is added).

    GitError with git's own message (the end of its stderr) when it exits non-zero; GitError too when it runs past
    `timeout` seconds or `cancel` is set, after its process group was killed. stdin is `stdin`, else empty.
    """
    returncode, stdout, stderr = _communicate(args, env, cwd, stdin, _Watch(timeout, cancel))
    if returncode != 0:
        raise _failed(args, stderr)
    return stdout


def text(
    *args: str,
    env: Mapping[str, str],
    cwd: Path | str | None = None,
    stdin: bytes | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    cancel: threading.Event | None = None,
) -> str:
    """`run`, decoded (undecodable bytes replaced)."""
    return run(*args, env=env, cwd=cwd, stdin=stdin, timeout=timeout, cancel=cancel).decode(errors="replace")


def probe(
    *args: str,
    env: Mapping[str, str],
    cwd: Path | str | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    cancel: threading.Event | None = None,
) -> str | None:
    """stdout (stripped) of a git command that may legitimately fail, such as a lookup; None when git exits non-zero.

    A timeout or a cancel is no answer: it still raises GitError.
    """
    returncode, stdout = lookup(*args, env=env, cwd=cwd, timeout=timeout, cancel=cancel)
    return stdout if returncode == 0 else None


def lookup(
    *args: str,
    env: Mapping[str, str],
    cwd: Path | str | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    cancel: threading.Event | None = None,
) -> tuple[int, str]:
    """git's exit code and stdout (stripped), for a lookup whose failures mean different things (`rev-parse
    --verify`: 1 for no such revision, 128 for no repository). A timeout or a cancel raises GitError."""
    returncode, stdout, _stderr = _communicate(args, env, cwd, None, _Watch(timeout, cancel))
    assert returncode is not None  # no output limit was given
    return returncode, stdout.decode(errors="replace").strip()


def head(
    *args: str,
    limit: int,
    env: Mapping[str, str],
    cwd: Path | str | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    cancel: threading.Event | None = None,
) -> tuple[bytes, bool]:
    """The first `limit` bytes of `git ARGS`'s stdout, and whether there were more (git is then killed at once,
    so a huge output never fills memory). GitError as `run`, when git failed before writing more than `limit`."""
    returncode, stdout, stderr = _communicate(args, env, cwd, None, _Watch(timeout, cancel), limit=limit)
    if returncode is None:
        return stdout[:limit], True
    if returncode != 0:
        raise _failed(args, stderr)
    return stdout, False


def verb(args: tuple[str, ...] | list[str]) -> str:
    """The git subcommand among `args` (global options such as `-c KEY=VALUE` and `-C DIR` skipped)."""
    rest = list(args)
    while rest and rest[0] in ("-c", "-C"):
        rest = rest[2:]
    return rest[0] if rest else "?"


def ignore_pattern(path: str) -> str:
    """A gitignore pattern that matches exactly `path` (relative to the repository's top), whatever it contains."""
    return "/" + _IGNORE_SPECIAL.sub(r"\\\1", path)


def _failed(args: tuple[str, ...], stderr: bytes) -> GitError:
    message = stderr.decode(errors="replace").strip()[-_ERROR_CHARS:]
    return GitError(f"git {verb(args)} failed: {message}")


def _communicate(
    args: tuple[str, ...],
    env: Mapping[str, str],
    cwd: Path | str | None,
    stdin: bytes | None,
    watch: "_Watch",
    *,
    limit: int | None = None,
    grant: Grant | None = None,
) -> tuple[int | None, bytes, bytes]:
    """(exit code, stdout, stderr) of git; exit code None when stdout outgrew `limit` (and git was killed)."""
    process = subprocess.Popen(
        ["git", *args],
        env=dict(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        if grant is not None:
            grant.bind(process.pid)
        watch.started(process.pid)
        stdout, stderr, complete = _exchange(process, stdin, watch, limit)
        if grant is not None:
            # Its output closed, so no credential helper of git's is alive any more (they write to git's stderr):
            # the right ends before git is reaped, while its pid still names git.
            grant.close()
        if not complete:
            return None, bytes(stdout), bytes(stderr)
        while (returncode := _wait(process, watch.pause())) is None:
            watch.check()
        return returncode, bytes(stdout), bytes(stderr)
    except GitError as exc:
        raise GitError(f"git {verb(args)} {exc.message}") from None
    finally:
        if grant is not None:
            grant.close()
        _end(process)


def _exchange(
    process: subprocess.Popen[bytes], stdin: bytes | None, watch: "_Watch", limit: int | None
) -> tuple[bytearray, bytearray, bool]:
    """Feed stdin and read stdout and stderr until both close; False as the last item when stdout passed `limit`."""
    assert process.stdout is not None and process.stderr is not None  # both are pipes
    stdout, stderr = bytearray(), bytearray()
    pending = memoryview(stdin or b"")
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ, stdout)
        selector.register(process.stderr, selectors.EVENT_READ, stderr)
        if process.stdin is not None:
            if pending:
                os.set_blocking(process.stdin.fileno(), False)
                selector.register(process.stdin, selectors.EVENT_WRITE)
            else:
                process.stdin.close()
        while selector.get_map():
            watch.check()
            for key, _events in selector.select(watch.pause()):
                if key.fileobj is process.stdin:
                    pending = _feed(selector, process.stdin, pending)
                    continue
                chunk = os.read(key.fd, _READ_CHUNK)
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                key.data.extend(chunk)
                if limit is not None and key.data is stdout and len(stdout) > limit:
                    return stdout, stderr, False
    return stdout, stderr, True


def _feed(selector: selectors.BaseSelector, pipe: IO[bytes], pending: memoryview) -> memoryview:
    """Write what the pipe takes now; close it when all is written or git stopped reading."""
    try:
        pending = pending[os.write(pipe.fileno(), pending[:_READ_CHUNK]) :]
    except BlockingIOError:
        return pending
    except BrokenPipeError:  # git exited or will not read more (it reports why on stderr)
        pending = pending[len(pending) :]
    if not pending:
        selector.unregister(pipe)
        pipe.close()
    return pending


class _Watch:
    """When a git command must end: at its deadline, on a cancel, and (a remote one) when it stalls."""

    def __init__(self, timeout: float, cancel: threading.Event | None, stall_s: float | None = None):
        self.timeout, self.cancel, self.stall_s = timeout, cancel, stall_s
        self.deadline = time.monotonic() + timeout
        self._stall: _Stall | None = None

    def started(self, pid: int) -> None:
        if self.stall_s is not None:
            self._stall = _Stall(pid, self.stall_s)

    def check(self) -> None:
        """GitError saying why, when git must end now."""
        if self.cancel is not None and self.cancel.is_set():
            raise GitError("was cancelled")
        if time.monotonic() >= self.deadline:
            raise GitError(f"timed out after {self.timeout:g} s")
        if self._stall is not None:
            self._stall.check()

    def pause(self) -> float:
        """How long to wait for git before checking again."""
        return min(_POLL_S, max(self.deadline - time.monotonic(), 0.0))


class _Stall:
    """Whether git still moves: some process of its tree read or wrote anything, started or ended, or kept a CPU
    busy (a connectivity check of a large repository reads mapped memory only). git-remote-https waiting on a silent
    host wakes every 50 ms but uses about a thousandth of a CPU."""

    def __init__(self, pid: int, stall_s: float):
        self.pid, self.stall_s = pid, stall_s
        self._sampled = self._moved = time.monotonic()
        self._usage = _usage(pid)

    def check(self) -> None:
        now = time.monotonic()
        if now - self._sampled < _SAMPLE_S:
            return
        usage = _usage(self.pid)
        if not usage or _moved(self._usage, usage, now - self._sampled):  # no /proc to tell: never judged stalled
            self._moved = now
        self._sampled, self._usage = now, usage
        if now - self._moved >= self.stall_s:
            raise GitError(f"stalled: nothing moved for {self.stall_s:g} s")


def _moved(before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]], elapsed: float) -> bool:
    if before.keys() != after.keys() or any(before[pid][0] != after[pid][0] for pid in after):
        return True
    cpu_ticks = sum(after[pid][1] - before[pid][1] for pid in after)
    return cpu_ticks >= _BUSY_CPU * elapsed * _CLOCK_TICKS


def _usage(root: int) -> dict[int, tuple[int, int]]:
    """{pid: (bytes read and written, CPU clock ticks)} of `root` and its descendants, as /proc tells them."""
    usage: dict[int, tuple[int, int]] = {}
    pending = [root]
    while pending:
        pid = pending.pop()
        if pid in usage:
            continue
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue  # gone meanwhile
        usage[pid] = (_io_bytes(pid), int(fields[11]) + int(fields[12]))  # utime and stime
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                pending += [int(child) for child in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
        except OSError:
            pass  # gone meanwhile, or a kernel without the children files: what was found is measured
    return usage


def _io_bytes(pid: int) -> int:
    try:
        lines = Path(f"/proc/{pid}/io").read_text().splitlines()
    except OSError:
        return 0
    counts = dict(line.partition(": ")[::2] for line in lines)
    return int(counts.get("rchar", 0)) + int(counts.get("wchar", 0))


def _seconds(limits: RemoteLimits) -> int:
    return max(1, math.ceil(limits.stall_s))


def _wait(process: subprocess.Popen[bytes], timeout: float) -> int | None:
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


def _end(process: subprocess.Popen[bytes]) -> None:
    """Kill what is left of git's process group (nothing, normally), close the pipes, reap git."""
    if process.returncode is None:
        # Not reaped yet, so its pid (= the group id) cannot have been recycled: the kill hits only git's group.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pipe in (process.stdin, process.stdout, process.stderr):
        if pipe is not None and not pipe.closed:
            try:
                pipe.close()
            except OSError:
                pass
    process.wait()

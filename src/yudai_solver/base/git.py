"""Every git process the service starts: one runner, two environments, one error, the shared patterns.

- `trusted_env()`: for repositories the worker made and only the worker touched (mirrors, the pull request's
  checkout) and for the user's own local repositories: the worker's minimal environment — no prompt, https and
  local paths only, proxies and CA bundles passed through, nothing else of the worker's (no API key).
- `isolated_env(home)`: for repositories an agent has touched. The workspace's `.git` (config, hooks, filters,
  fsmonitor) could make git run any program on the worker, so git reads no system or global configuration, may use
  no transport at all, and follows no replace object; callers also point GIT_DIR at a directory of their own.

Credentials never go on a command line or into a file: a caller adds them to the environment of one process.

Each git runs in a process group of its own: a timeout or a cancel kills the whole group (git and the helpers it
started: remote-https, index-pack, upload-pack), never only the top process.
"""

import os
import re
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from yudai_solver.base.errors import YudaiError

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
_READ_CHUNK = 64 * 1024
_ERROR_CHARS = 2000


class GitError(YudaiError):
    """A git command failed."""


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
    returncode, stdout, stderr = _communicate(args, env, cwd, stdin, timeout, cancel, None)
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
    returncode, stdout, _stderr = _communicate(args, env, cwd, None, timeout, cancel, None)
    return stdout.decode(errors="replace").strip() if returncode == 0 else None


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
    returncode, stdout, stderr = _communicate(args, env, cwd, None, timeout, cancel, limit)
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
    timeout: float,
    cancel: threading.Event | None,
    limit: int | None,
) -> tuple[int | None, bytes, bytes]:
    """(exit code, stdout, stderr) of git; exit code None when stdout outgrew `limit` (and git was killed)."""
    deadline = time.monotonic() + timeout
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
        stdout, stderr, complete = _exchange(process, stdin, deadline, timeout, cancel, limit)
        if not complete:
            return None, bytes(stdout), bytes(stderr)
        while (returncode := _wait(process, min(_POLL_S, max(deadline - time.monotonic(), 0.0)))) is None:
            _check(deadline, timeout, cancel)
        return returncode, bytes(stdout), bytes(stderr)
    except GitError as exc:
        raise GitError(f"git {verb(args)} {exc.message}") from None
    finally:
        _end(process)


def _exchange(
    process: subprocess.Popen[bytes],
    stdin: bytes | None,
    deadline: float,
    timeout: float,
    cancel: threading.Event | None,
    limit: int | None,
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
            _check(deadline, timeout, cancel)
            for key, _events in selector.select(min(_POLL_S, max(deadline - time.monotonic(), 0.0))):
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


def _check(deadline: float, timeout: float, cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise GitError("was cancelled")
    if time.monotonic() >= deadline:
        raise GitError(f"timed out after {timeout:g} s")


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

"""Credentials for the worker's own git processes, handed to them and to nothing else.

A token in a git process's environment (`GIT_CONFIG_VALUE_0`) or command line is readable from `/proc/PID/environ`
or `/proc/PID/cmdline` by every process of the worker's uid for as long as that git runs: the worker's non-dumpable
flag does not survive execve. Instead, git gets a credential helper (`git_credential_helper.py`, named on its command
line with nothing secret) that asks this process over a unix socket in a private directory. The answer goes only to a
helper whose parent chain (`/proc/PID/stat`) leads to the git process the worker started for that operation, and
only for the host of that operation's URL; anyone else's question gets no answer.

What this protects: the token is in no environment, command line, file or log, and crosses a socket, which /proc
does not let another process open. What it cannot: git-remote-https holds the token in memory while it runs, and
it crosses the pipe from the helper to git for the helper's last milliseconds. A process of the worker's uid that
reads other processes' memory or takes their file descriptors (ptrace, /proc/PID/mem, pidfd_getfd: allowed between
processes of one uid unless Yama restricts them) can still take it from there, as it can rewrite the worker's own
code. Only another uid (bubblewrap with a worker running as root, or e2b) keeps an agent from that.
"""

import atexit
import os
import shlex
import shutil
import socket
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

HELPER = Path(__file__).with_name("git_credential_helper.py")
"""The helper git runs, by path: a script of the standard library only."""
_LIMIT = 64 * 1024
_TIMEOUT_S = 10.0
_BIND_WAIT_S = 2.0
"""How long a question may wait, while a git is being started, for that git's pid to be registered (in practice
it always is first: git asks only after a network round trip)."""
_MAX_ANSWERING = 16
_MAX_DEPTH = 64
_PEERCRED = struct.Struct("3i")


@dataclass(frozen=True)
class Credential:
    """What git answers a 401 from `url`'s host with; the password never shows in a repr."""

    url: str
    """The https URL git talks to: only its host (and port) is answered."""
    username: str
    password: str = field(repr=False)

    @property
    def host(self) -> str:
        return _host(self.url)

    @classmethod
    def of(cls, url: str, fields: Mapping[str, str]) -> "Credential | None":
        """The credential a host gave as git's `username` and `password` fields for `url`; None for none."""
        return cls(url, fields.get("username", ""), fields["password"]) if fields.get("password") else None


class Grant:
    """One git operation's right to its credential: from `bind(pid)` (git started) to `close()` (before its reaping,
    so that its pid cannot have been given to another process meanwhile)."""

    def __init__(self, server: "CredentialServer", credential: Credential):
        self._server, self.credential = server, credential
        self.pid: int | None = None

    def bind(self, pid: int) -> None:
        with self._server.changed:
            self.pid = pid
            self._server.changed.notify_all()

    def close(self) -> None:
        with self._server.changed:
            self.pid = None
            self._server.grants.discard(self)


class CredentialServer:
    """A unix socket in a private directory, answered by a daemon thread: one per worker process."""

    def __init__(self) -> None:
        directory = tempfile.mkdtemp(prefix="yudai-git-")  # mode 0700: no other uid can even connect
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        self.path = Path(directory) / "credentials"
        self.changed = threading.Condition()
        self.grants: set[Grant] = set()
        self._answering = threading.BoundedSemaphore(_MAX_ANSWERING)
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(self.path))
        self._listener.listen(_MAX_ANSWERING)
        threading.Thread(target=self._serve, name="git-credentials", daemon=True).start()

    def helper_config(self) -> list[str]:
        """git's `-c` options that make this server its only credential helper."""
        python = sys.executable or "python3"
        command = shlex.join([python, "-I", "-S", str(HELPER), str(self.path)])
        return ["-c", f"credential.helper=!{command}"]

    @contextmanager
    def grant(self, credential: Credential) -> Iterator[Grant]:
        grant = Grant(self, credential)
        with self.changed:
            self.grants.add(grant)
        try:
            yield grant
        finally:
            grant.close()

    def _serve(self) -> None:
        while True:
            try:
                connection, _address = self._listener.accept()
            except OSError:
                return
            if not self._answering.acquire(blocking=False):
                connection.close()  # a flood of questions gets no thread each
                continue
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection: socket.socket) -> None:
        try:
            with connection:
                connection.settimeout(_TIMEOUT_S)
                pid, uid, _gid = _PEERCRED.unpack(
                    connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
                )
                if uid != os.getuid():
                    return
                credential = self._credential_for(pid, _fields(_receive(connection)))
                if credential is not None:
                    connection.sendall(f"username={credential.username}\npassword={credential.password}\n".encode())
        except OSError:
            pass  # the helper went away or timed out: git gets no answer and fails
        finally:
            self._answering.release()

    def _credential_for(self, pid: int, fields: dict[str, str]) -> Credential | None:
        """The credential of the operation whose git started `pid`, if git asks about that operation's host."""
        deadline = time.monotonic() + _BIND_WAIT_S
        with self.changed:
            while True:
                lineage = _lineage(pid)
                found = next((g.credential for g in self.grants if g.pid is not None and g.pid in lineage), None)
                if found is not None:
                    asked = fields.get("host", "").lower()
                    return found if fields.get("protocol") == "https" and asked == found.host else None
                starting = any(grant.pid is None for grant in self.grants)
                if not starting or (remaining := deadline - time.monotonic()) <= 0:
                    return None
                self.changed.wait(remaining)


_server: CredentialServer | None = None
_server_pid = 0
_server_lock = threading.Lock()


def server() -> CredentialServer:
    """This process's credential server, started on first use (and again in a forked child: threads do not fork)."""
    global _server, _server_pid
    with _server_lock:
        if _server is None or _server_pid != os.getpid():
            _server, _server_pid = CredentialServer(), os.getpid()
        return _server


def _host(url: str) -> str:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port}" if parts.port else host


def _receive(connection: socket.socket) -> bytes:
    request = bytearray()
    while len(request) < _LIMIT and (chunk := connection.recv(_LIMIT)):
        request += chunk
    return bytes(request)


def _fields(request: bytes) -> dict[str, str]:
    """git's credential request (`key=value` lines up to a blank one); repeated keys (`wwwauth[]`) keep the last."""
    fields: dict[str, str] = {}
    for line in request.decode(errors="replace").splitlines():
        if not line:
            break
        key, _, value = line.partition("=")
        fields[key] = value
    return fields


def _lineage(pid: int) -> set[int]:
    """`pid` and its ancestors, read from /proc (empty where the process is gone)."""
    found: set[int] = set()
    while pid > 1 and pid not in found and len(found) < _MAX_DEPTH:
        found.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        # The command name (2nd field) may hold spaces and parentheses: the fields after its last ")" are sure.
        pid = int(stat.rpartition(")")[2].split()[1])
    return found

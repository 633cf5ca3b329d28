"""A fake of the `e2b` SDK (2.63, synchronous `Sandbox`) that behaves as the real one where the backend depends on it.

The real service cannot be reached from here, so the fake is built to share as few of the backend's assumptions as
possible:
- The SDK's own `Commands` and `CommandHandle` (e2b/sandbox_sync/commands/command.py, command_handle.py) run on top
  of a fake envd process service (`FakeEnvd`): building the `/bin/bash -l -c CMD` request, decoding output with
  `errors="replace"`, `CommandExitException`, `commands.kill` answering False for a finished pid, and the mapping of
  envd's error codes to exceptions (e2b/envd/rpc.py `handle_rpc_exception_with_health`) are the SDK's code.
- The control plane (`create`, `list`, `kill`, `set_timeout`, `update_network`) and the filesystem are fakes with
  the SDK's exact signatures (its `**opts: Unpack[ApiParams]` spelled out, so an unknown keyword is a TypeError),
  answering errors through the SDK's own mapping functions (`e2b.api.handle_api_exception`,
  `e2b.envd.api.format_envd_api_exception`) for the HTTP status the real API would send.
- Commands run for real: bash as the non-root uid 1000 ("user", as envd runs them without `user=`), in one
  bubblewrap PID and mount namespace per sandbox where /home and /tmp are the sandbox's own; the host's Debian
  /etc/profile is what the login shell reads, and it resets PATH as an E2B template's may.

Each class and method names the SDK source it mirrors; what comes from elsewhere (the issue's findings about envd,
the API's lifetime cap) says so. Needs root and bubblewrap.
"""

import contextlib
import itertools
import json
import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from e2b import FileNotFoundException, SandboxInfo, SandboxNotFoundException, SandboxQuery
from e2b.api import handle_api_exception
from e2b.connection_config import ConnectionConfig
from e2b.envd.api import format_envd_api_exception
from e2b.envd.process import process_pb
from e2b.retry import resolve_idempotency_key
from e2b.sandbox.sandbox_api import SandboxPaginatorBase, SandboxState
from e2b.sandbox.utils import class_method_variant
from e2b.sandbox_sync.commands.command import Commands
from packaging.version import Version
from protobuf import Oneof

USER_UID = 1000
_POLL_S = 0.05
_NOT_FOUND = "The sandbox was not found"  # the proxy's 502 text the SDK keys on (e2b/exceptions.py)
_ApiOpts = dict[str, Any]


@dataclass
class FakeCloud:
    """The E2B service: sandboxes, the account's lifetime cap, failures to inject, every call recorded."""

    root: Path
    cap_s: float = 3600.0
    """The account's cap on a sandbox's life from its start (1 h Hobby, 24 h Pro, per the SDK's `create` docstring)."""
    page_size: int = 100
    death: str = "canceled"
    """How a command's stream ends when its sandbox dies: "canceled" (CANCELED, what the issue saw) or "unavailable"
    (an UNAVAILABLE the health probe resolves)."""
    boxes: dict[str, "FakeVM"] = field(default_factory=dict)
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    failures: dict[str, list[int]] = field(default_factory=dict)
    """HTTP statuses the next calls of an operation ("create", "list", "kill", "set_timeout") answer, in order
    (200: answered normally)."""
    lost_create_answers: int = 0
    """Creations that succeed but whose answer is lost (a 503 after the fact), as a retried request may meet."""
    _ids: Iterator[int] = field(default_factory=itertools.count)
    _keys: dict[str, str] = field(default_factory=dict)

    def fail(self, operation: str, *statuses: int) -> None:
        self.failures.setdefault(operation, []).extend(statuses)

    def answer(self, operation: str, sandbox_id: str | None = None) -> None:
        """Raise what the SDK raises for the next injected status of `operation`, as `_cls_*` do (sandbox_api.py)."""
        queued = self.failures.get(operation)
        if queued and (status := queued.pop(0)) >= 300:  # a 200 in the queue lets that call through
            raise handle_api_exception(_Response(status, json.dumps({"message": f"injected {status}"}).encode()))

    def new_vm(self, metadata: dict[str, str], lifetime_s: float, key: str | None) -> "FakeVM":
        if key is not None and key in self._keys:  # the API answers a repeated Idempotency-Key with the same sandbox
            return self.boxes[self._keys[key]]
        vm = FakeVM(self, f"sbx{next(self._ids)}", metadata, lifetime_s)
        self.boxes[vm.sandbox_id] = vm
        if key is not None:
            self._keys[key] = vm.sandbox_id
        return vm

    def alive(self) -> list["FakeVM"]:
        return [vm for vm in self.boxes.values() if vm.alive]

    def sent(self) -> str:
        """Everything that would have gone to E2B, as text (uploads decoded loosely)."""
        return repr([tuple(v.decode("latin-1") if isinstance(v, bytes) else v for v in call) for call in self.calls])


@dataclass(frozen=True)
class _Response:
    status_code: int
    content: bytes


class FakeVM:
    """One sandbox: a PID and mount namespace kept by `sleep infinity`, its lifetime watched by a thread.

    E2B kills a sandbox at its end of life (`timeout` at creation, moved by `set_timeout` to now + timeout) and
    never lets it live past its start + the account's cap (enforced by the API, not the SDK: an assumption here).
    """

    def __init__(self, cloud: FakeCloud, sandbox_id: str, metadata: dict[str, str], lifetime_s: float):
        self.cloud, self.sandbox_id, self.metadata = cloud, sandbox_id, dict(metadata)
        self.root = cloud.root / sandbox_id
        self.started_at = datetime.now(UTC)
        self.started = time.monotonic()
        self.end = self.started + lifetime_s
        self.alive = True
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()
        home = self.root / "home" / "user"
        home.mkdir(parents=True)
        (self.root / "tmp").mkdir(mode=0o1777)
        os.chmod(self.root / "tmp", 0o1777)
        os.chown(home, USER_UID, USER_UID)
        self._holder, self.init_pid = _start_namespace(self.root)
        threading.Thread(target=self._watch, daemon=True).start()

    def die(self) -> bool:
        with self._lock:
            was_alive, self.alive = self.alive, False
        if was_alive:
            # The namespace's init first: the kernel kills every process in it. Killing only bwrap's outer process
            # left init and its `sleep infinity` running, reparented to pid 1, after every test.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.init_pid, signal.SIGKILL)
            self._holder.kill()
            self._holder.wait()
        return was_alive

    def host_path(self, path: str) -> Path:
        for mount in ("/home", "/tmp"):
            if path == mount or path.startswith(mount + "/"):
                return self.root / mount.lstrip("/") / path[len(mount) :].lstrip("/")
        return Path(path)

    def _watch(self) -> None:
        while self.alive:
            if time.monotonic() >= min(self.end, self.started + self.cloud.cap_s):
                self.die()
            time.sleep(_POLL_S)


def _start_namespace(root: Path) -> tuple[subprocess.Popen[bytes], int]:
    read, write = os.pipe()
    holder = subprocess.Popen(
        [
            "bwrap", "--dev-bind", "/", "/", "--bind", str(root / "home"), "/home", "--bind", str(root / "tmp"),
            "/tmp", "--proc", "/proc", "--unshare-pid", "--die-with-parent", "--info-fd", str(write),
            "--", "sleep", "infinity",
        ],
        pass_fds=(write,),
        start_new_session=True,
        env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    os.close(write)
    with os.fdopen(read) as info:
        return holder, json.loads(info.read().split("}")[0] + "}")["child-pid"]


class FakeEnvd:
    """envd's process service as `process_connect.ProcessClientSync` exposes it (`start`, `send_signal`).

    Behaviours (the first three from the issue's reading of envd, the rest from e2b/envd/rpc.py's error map):
    - the stream ends (end event) only when the process has exited AND its stdout/stderr reached EOF: a background
      child that keeps the pipe keeps the stream open;
    - at the client's deadline (`timeout_ms`) the stream fails with DEADLINE_EXCEEDED at once, without waiting for
      EOF, and envd kills only the top process (bash), not its group; a client that stops reading kills nothing;
    - a process killed by a signal ends with exit code -1 (Go's `ProcessState.ExitCode()`);
    - a missing working directory is INVALID_ARGUMENT at start; a dead sandbox answers UNAVAILABLE "was not found";
      a sandbox dying mid-stream ends it with `FakeCloud.death`; an unknown pid is NOT_FOUND.
    """

    def __init__(self, vm: FakeVM):
        self._vm = vm

    def start(
        self,
        request: process_pb.StartRequest,
        *,
        headers: dict[str, str] | None = None,
        timeout_ms: int | None = None,
    ) -> Generator[process_pb.StartResponse, Any, None]:
        config = request.process
        assert config is not None
        self._vm.cloud.calls.append(
            ("run", self._vm.sandbox_id, config.args[-1], dict(config.envs), config.cwd, dict(headers or {}))
        )
        deadline = time.monotonic() + timeout_ms / 1000 if timeout_ms else None
        return self._stream(config, deadline)

    def send_signal(
        self,
        request: process_pb.SendSignalRequest,
        *,
        headers: dict[str, str] | None = None,
        timeout_ms: int | None = None,
    ) -> process_pb.SendSignalResponse:
        assert request.process is not None and request.process.selector is not None
        pid = request.process.selector.value
        self._vm.cloud.calls.append(("signal", self._vm.sandbox_id, pid))
        if not self._vm.alive:
            raise ConnectError(Code.UNAVAILABLE, f"sandbox {self._vm.sandbox_id}: {_NOT_FOUND}")
        process = self._vm.processes.get(pid)
        if process is None or process.poll() is not None:
            raise ConnectError(Code.NOT_FOUND, f"process with pid {pid} not found")
        os.kill(pid, signal.SIGKILL)
        return process_pb.SendSignalResponse()

    def _stream(
        self, config: process_pb.ProcessConfig, deadline: float | None
    ) -> Generator[process_pb.StartResponse, Any, None]:
        vm = self._vm
        if not vm.alive:
            raise ConnectError(Code.UNAVAILABLE, f"sandbox {vm.sandbox_id}: {_NOT_FOUND}")
        cwd = config.cwd or "/home/user"
        if not vm.host_path(cwd).is_dir():
            raise ConnectError(Code.INVALID_ARGUMENT, f"error starting process: chdir {cwd}: no such file or directory")
        process, pid = self._spawn(config, cwd)
        reader = _Reader(process)
        try:
            yield _event("start", process_pb.ProcessEvent.StartEvent(pid=pid))
            while not reader.done:
                if deadline is not None and time.monotonic() >= deadline:
                    _kill(pid)
                    raise ConnectError(Code.DEADLINE_EXCEEDED, "deadline exceeded")
                if not vm.alive:
                    raise self._death()
                for name, chunk in reader.read(_POLL_S):
                    yield _event("data", process_pb.ProcessEvent.DataEvent(output=Oneof(name, chunk)))
            code = process.wait()
            end = process_pb.ProcessEvent.EndEvent(exit_code=-1 if code < 0 else code, exited=code >= 0)
            if not vm.alive:
                raise self._death()
            yield _event("end", end)
        finally:
            reader.drain_in_background()

    def _death(self) -> ConnectError:
        if self._vm.cloud.death == "canceled":
            return ConnectError(Code.CANCELED, "context canceled")
        return ConnectError(Code.UNAVAILABLE, f"the connection to sandbox {self._vm.sandbox_id} ended")

    def _spawn(self, config: process_pb.ProcessConfig, cwd: str) -> tuple[subprocess.Popen[bytes], int]:
        vm = self._vm
        env = {"HOME": "/home/user", "USER": "user", "PATH": "/usr/local/bin:/usr/bin:/bin"} | dict(config.envs)
        argv = [
            "nsenter", "-t", str(vm.init_pid), "-p", "-m", "-r", "-w",
            "setpriv", f"--reuid={USER_UID}", f"--regid={USER_UID}", "--clear-groups",
            "env", "-i", "-C", cwd, *(f"{k}={v}" for k, v in env.items()), config.cmd, *config.args,
        ]  # fmt: skip
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env={"PATH": "/usr/bin:/bin"},
        )
        pid = _forked_child(process.pid)  # nsenter forks into the PID namespace: bash is its child
        vm.processes[pid] = process
        return process, pid


def _forked_child(parent: int) -> int:
    children = Path(f"/proc/{parent}/task/{parent}/children")
    for _ in range(2000):
        try:
            found = children.read_text().split()
        except OSError:
            found = []
        if found:
            return int(found[0])
        time.sleep(0.001)
    raise RuntimeError("nsenter did not fork")


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _event(kind: str, value: Any) -> process_pb.StartResponse:
    return process_pb.StartResponse(event=process_pb.ProcessEvent(event=Oneof(kind, value)))


class _Reader:
    """stdout and stderr of one process, read as they come (separate pipes, as envd keeps them)."""

    def __init__(self, process: subprocess.Popen[bytes]):
        assert process.stdout is not None and process.stderr is not None
        self._selector = selectors.DefaultSelector()
        self._selector.register(process.stdout, selectors.EVENT_READ, "stdout")
        self._selector.register(process.stderr, selectors.EVENT_READ, "stderr")

    @property
    def done(self) -> bool:
        return not self._selector.get_map()

    def read(self, wait_s: float) -> list[tuple[str, bytes]]:
        chunks = []
        for key, _ in self._selector.select(wait_s):
            chunk = os.read(key.fd, 65536)
            if chunk:
                chunks.append((key.data, chunk))
            else:
                self._selector.unregister(key.fileobj)
                key.fileobj.close()  # type: ignore[union-attr]
        return chunks

    def drain_in_background(self) -> None:
        """A client that stops reading does not stop the process: envd keeps reading its pipes."""
        if not self.done:
            threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        while not self.done:
            self.read(_POLL_S)


class FakeFilesystem:
    """`sandbox.files` (e2b/sandbox_sync/filesystem/filesystem.py): `read` and `write` with their signatures.

    Files are written as the default user; `read(format="bytes")` returns a `bytearray` of the file's exact bytes,
    `format="text"` decodes it as httpx's `Response.text` would; a missing file is `FileNotFoundException` and a
    dead sandbox `SandboxNotRunningException` (404 and 502 through `format_envd_api_exception`).
    """

    def __init__(self, vm: FakeVM):
        self._vm = vm

    def read(
        self,
        path: str,
        format: str = "text",
        user: str | None = None,
        request_timeout: float | None = None,
        gzip: bool = False,
        stream_idle_timeout: float | None = None,
    ) -> str | bytearray:
        self._vm.cloud.calls.append(("read", self._vm.sandbox_id, path, format))
        self._check_alive()
        target = self._vm.host_path(path)
        if not target.is_file():
            raise format_envd_api_exception(404, f"path '{path}' does not exist", {404: FileNotFoundException})
        content = target.read_bytes()
        return bytearray(content) if format == "bytes" else httpx.Response(200, content=content).text

    def write(
        self,
        path: str,
        data: Any,
        user: str | None = None,
        request_timeout: float | None = None,
        gzip: bool = False,
        use_octet_stream: bool | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        payload = data.read() if hasattr(data, "read") else data
        payload = payload.encode() if isinstance(payload, str) else bytes(payload)
        self._vm.cloud.calls.append(("write", self._vm.sandbox_id, path, payload))
        self._check_alive()
        target = self._vm.host_path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(payload)
        os.chown(target, USER_UID, USER_UID)

    def _check_alive(self) -> None:
        if not self._vm.alive:
            raise format_envd_api_exception(502, f"sandbox {self._vm.sandbox_id}: {_NOT_FOUND}", None)


class FakePaginator(SandboxPaginatorBase):
    """`Sandbox.list()`'s paginator (e2b/sandbox_sync/paginator.py): `has_next` and `next_items` from the SDK's own
    base class; a page holds `limit` (or the cloud's page size) sandboxes, running and paused, newest last."""

    cloud: FakeCloud

    def next_items(
        self,
        *,
        request_timeout: float | None = None,
        retries: int | None = None,
        headers: dict[str, str] | None = None,
        api_headers: dict[str, str] | None = None,
        api_key: str | None = None,
        validate_api_key: bool | None = None,
        domain: str | None = None,
        api_url: str | None = None,
        debug: bool | None = None,
        proxy: Any = None,
        sandbox_url: str | None = None,
        http_version: str | None = None,
    ) -> list[SandboxInfo]:
        if not self.has_next:
            raise Exception("No more items to fetch")
        self.cloud.calls.append(("list", self._next_token))
        self.cloud.answer("list")
        wanted = (self.query.metadata if self.query else None) or {}
        found = [vm for vm in self.cloud.alive() if all(vm.metadata.get(k) == v for k, v in wanted.items())]
        start = int(self._next_token or 0)
        page = found[start : start + (self.limit or self.cloud.page_size)]
        more = start + len(page) < len(found)
        self._update_pagination({"x-next-token": str(start + len(page))} if more else {})
        return [_info(vm) for vm in page]


def _info(vm: FakeVM) -> SandboxInfo:
    return SandboxInfo(
        sandbox_id=vm.sandbox_id,
        sandbox_domain=None,
        template_id="base",
        name="base",
        metadata=dict(vm.metadata),
        started_at=vm.started_at,
        end_at=vm.started_at + timedelta(seconds=vm.end - vm.started),
        state=SandboxState.RUNNING,
        cpu_count=2,
        memory_mb=512,
        envd_version="0.6.4",
    )


class FakeSandbox:
    """`e2b.Sandbox` (e2b/sandbox_sync/main.py and sandbox_api.py). Bind a cloud with `fake_sdk(cloud)`."""

    cloud: FakeCloud

    def __init__(self, vm: FakeVM):
        self._vm = vm
        self.sandbox_id = vm.sandbox_id
        self.files = FakeFilesystem(vm)
        self.commands = _real_commands(vm)

    @classmethod
    def create(
        cls,
        template: str | None = None,
        timeout: int | None = None,
        metadata: dict[str, str] | None = None,
        envs: dict[str, str] | None = None,
        secure: bool | None = None,
        allow_internet_access: bool | None = None,
        mcp: Any = None,
        network: Any = None,
        iam: Any = None,
        lifecycle: Any = None,
        volume_mounts: Any = None,
        logger: Any = None,
        idempotency_key: str | None = None,
        *,
        request_timeout: float | None = None,
        retries: int | None = None,
        headers: dict[str, str] | None = None,
        api_headers: dict[str, str] | None = None,
        api_key: str | None = None,
        validate_api_key: bool | None = None,
        domain: str | None = None,
        api_url: str | None = None,
        debug: bool | None = None,
        proxy: Any = None,
        sandbox_url: str | None = None,
        http_version: str | None = None,
    ) -> "FakeSandbox":
        """POST /v2/sandboxes: the key is validated as `resolve_idempotency_key` does; a timeout over the account's
        cap is a 400 (the API's answer, assumed); the default lifetime is 300 s."""
        cloud = cls.cloud
        key = resolve_idempotency_key(idempotency_key)
        cloud.calls.append(
            ("create", {"template": template, "timeout": timeout, "metadata": metadata, "envs": envs,
                        "allow_internet_access": allow_internet_access, "idempotency_key": key})
        )  # fmt: skip
        cloud.answer("create")
        lifetime = 300 if timeout is None else timeout
        if lifetime > cloud.cap_s:
            raise handle_api_exception(_Response(400, b'{"message": "Timeout cannot be greater than the limit"}'))
        vm = cloud.new_vm(metadata or {}, lifetime, key)
        if cloud.lost_create_answers > 0:
            cloud.lost_create_answers -= 1
            raise handle_api_exception(_Response(503, b""))
        return cls(vm)

    @classmethod
    def list(
        cls,
        query: SandboxQuery | None = None,
        limit: int | None = None,
        next_token: str | None = None,
        order: str | None = None,
        *,
        request_timeout: float | None = None,
        retries: int | None = None,
        headers: dict[str, str] | None = None,
        api_headers: dict[str, str] | None = None,
        api_key: str | None = None,
        validate_api_key: bool | None = None,
        domain: str | None = None,
        api_url: str | None = None,
        debug: bool | None = None,
        proxy: Any = None,
        sandbox_url: str | None = None,
        http_version: str | None = None,
    ) -> FakePaginator:
        paginator = FakePaginator(query=query, limit=limit, next_token=next_token, order=order)
        paginator.cloud = cls.cloud
        return paginator

    @class_method_variant("_cls_kill")
    def kill(
        self,
        *,
        request_timeout: float | None = None,
        retries: int | None = None,
        headers: dict[str, str] | None = None,
        api_headers: dict[str, str] | None = None,
        api_key: str | None = None,
        validate_api_key: bool | None = None,
        domain: str | None = None,
        api_url: str | None = None,
        debug: bool | None = None,
        proxy: Any = None,
        sandbox_url: str | None = None,
        http_version: str | None = None,
    ) -> bool:
        return type(self)._cls_kill(self.sandbox_id)

    @classmethod
    def _cls_kill(
        cls,
        sandbox_id: str,
        *,
        request_timeout: float | None = None,
        retries: int | None = None,
        headers: dict[str, str] | None = None,
        api_headers: dict[str, str] | None = None,
        api_key: str | None = None,
        validate_api_key: bool | None = None,
        domain: str | None = None,
        api_url: str | None = None,
        debug: bool | None = None,
        proxy: Any = None,
        sandbox_url: str | None = None,
        http_version: str | None = None,
    ) -> bool:
        """DELETE /sandboxes/{id}: True if it was killed, False for a 404 (gone already), else the mapped error."""
        cls.cloud.calls.append(("kill", sandbox_id))
        cls.cloud.answer("kill")
        vm = cls.cloud.boxes.get(sandbox_id)
        return vm.die() if vm is not None else False

    @class_method_variant("_cls_set_timeout")
    def set_timeout(
        self,
        timeout: int,
        *,
        request_timeout: float | None = None,
        retries: int | None = None,
        headers: dict[str, str] | None = None,
        api_headers: dict[str, str] | None = None,
        api_key: str | None = None,
        validate_api_key: bool | None = None,
        domain: str | None = None,
        api_url: str | None = None,
        debug: bool | None = None,
        proxy: Any = None,
        sandbox_url: str | None = None,
        http_version: str | None = None,
    ) -> None:
        type(self)._cls_set_timeout(self.sandbox_id, timeout)

    @classmethod
    def _cls_set_timeout(
        cls,
        sandbox_id: str,
        timeout: int,
        *,
        request_timeout: float | None = None,
        retries: int | None = None,
        headers: dict[str, str] | None = None,
        api_headers: dict[str, str] | None = None,
        api_key: str | None = None,
        validate_api_key: bool | None = None,
        domain: str | None = None,
        api_url: str | None = None,
        debug: bool | None = None,
        proxy: Any = None,
        sandbox_url: str | None = None,
        http_version: str | None = None,
    ) -> None:
        """POST /sandboxes/{id}/timeout: the sandbox now ends `timeout` s from now (it may shorten it); 404 is
        `SandboxNotFoundException`; over the cap a 400 (assumed); the cap from its start still applies."""
        cloud = cls.cloud
        cloud.calls.append(("set_timeout", sandbox_id, timeout))
        cloud.answer("set_timeout")
        vm = cloud.boxes.get(sandbox_id)
        if vm is None or not vm.alive:
            raise SandboxNotFoundException(f"Sandbox {sandbox_id} not found")
        if timeout > cloud.cap_s:
            raise handle_api_exception(_Response(400, b'{"message": "Timeout cannot be greater than the limit"}'))
        vm.end = time.monotonic() + timeout

    @class_method_variant("_cls_get_info")
    def get_info(
        self,
        *,
        request_timeout: float | None = None,
        retries: int | None = None,
        headers: dict[str, str] | None = None,
        api_headers: dict[str, str] | None = None,
        api_key: str | None = None,
        validate_api_key: bool | None = None,
        domain: str | None = None,
        api_url: str | None = None,
        debug: bool | None = None,
        proxy: Any = None,
        sandbox_url: str | None = None,
        http_version: str | None = None,
    ) -> SandboxInfo:
        return type(self)._cls_get_info(self.sandbox_id)

    @classmethod
    def _cls_get_info(
        cls,
        sandbox_id: str,
        *,
        request_timeout: float | None = None,
        retries: int | None = None,
        headers: dict[str, str] | None = None,
        api_headers: dict[str, str] | None = None,
        api_key: str | None = None,
        validate_api_key: bool | None = None,
        domain: str | None = None,
        api_url: str | None = None,
        debug: bool | None = None,
        proxy: Any = None,
        sandbox_url: str | None = None,
        http_version: str | None = None,
    ) -> SandboxInfo:
        """GET /sandboxes/{id}: its info, `end_at` the current end of life; 404 is `SandboxNotFoundException`."""
        vm = cls.cloud.boxes.get(sandbox_id)
        if vm is None or not vm.alive:
            raise SandboxNotFoundException(f"Sandbox {sandbox_id} not found")
        return _info(vm)

    def update_network(
        self,
        network: dict[str, Any],
        *,
        request_timeout: float | None = None,
        retries: int | None = None,
        headers: dict[str, str] | None = None,
        api_headers: dict[str, str] | None = None,
        api_key: str | None = None,
        validate_api_key: bool | None = None,
        domain: str | None = None,
        api_url: str | None = None,
        debug: bool | None = None,
        proxy: Any = None,
        sandbox_url: str | None = None,
        http_version: str | None = None,
    ) -> None:
        self.cloud.calls.append(("network", self.sandbox_id, dict(network)))
        if not self._vm.alive:
            raise SandboxNotFoundException(f"Sandbox {self.sandbox_id} not found")

    def is_running(self, request_timeout: float | None = None) -> bool:
        return self._vm.alive


def _real_commands(vm: FakeVM) -> Commands:
    """The SDK's own `Commands`, talking to `FakeEnvd` instead of a connect-rpc client; its health probe (run after
    an ambiguous stream error) answers whether the fake sandbox still runs."""
    commands = Commands.__new__(Commands)
    commands._connection_config = ConnectionConfig(api_key="e2b_fake")
    commands._envd_version = Version("0.6.4")
    commands._rpc = FakeEnvd(vm)  # type: ignore[assignment]
    commands._check_health = lambda: vm.alive  # type: ignore[method-assign]
    return commands


def fake_sdk(cloud: FakeCloud) -> type[FakeSandbox]:
    """A `Sandbox` class bound to `cloud` (what `e2b_client.sdk()` returns in tests)."""
    return type("Sandbox", (FakeSandbox,), {"cloud": cloud})


@contextmanager
def installed_cloud(root: Path, monkeypatch: Any) -> Iterator[FakeCloud]:
    """A fake E2B service that the backend's `e2b_client.sdk()` answers with; its sandboxes die at the end."""
    from yudai_solver.sandboxes import e2b_client, e2b_fleet

    cloud = FakeCloud(root)
    monkeypatch.setattr(e2b_client, "sdk", lambda: fake_sdk(cloud))
    monkeypatch.setattr(e2b_fleet, "_THROTTLES", {})
    try:
        yield cloud
    finally:
        for vm in list(cloud.boxes.values()):
            vm.die()


def wait_until(check: Callable[[], bool], timeout_s: float = 10) -> bool:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(_POLL_S)
    return True

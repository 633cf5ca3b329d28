"""The `e2b` sandbox: one E2B cloud sandbox per run, through the `e2b` SDK.

The repository goes in as a tar of a shallow, remote-less clone made on the worker (no credential ever enters);
changes come out as the text of `git diff --binary`, applied to the worker's checkout by a git that reads no
configuration. The E2B API key stays in the worker's environment (the SDK reads `E2B_API_KEY`); the sandbox gets
only the same variable allowlist as every other sandbox. Creation is throttled per process (a rate and a cap), and
every sandbox carries metadata naming its owner, so `kill_orphans` can end those a dead worker left behind.

Not run against the real E2B service from this project's machines (it cannot be reached from there): the tests
drive this module through a fake of the SDK's `Sandbox` class.
"""

import functools
import logging
import math
import shlex
import socket
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from yudai_solver.base import git
from yudai_solver.base.errors import YudaiError
from yudai_solver.base.settings import Settings
from yudai_solver.sandboxes.local import DEFAULT_MAX_OUTPUT_BYTES, DEFAULT_PATH, OutputCapture, sandbox_environment
from yudai_solver.sandboxes.protocol import CommandResult, SandboxKilled, raise_if_submitted

if TYPE_CHECKING:
    import e2b

T = TypeVar("T")
log = logging.getLogger(__name__)
APP = "yudai-solver"
HOME_DIR = "/home/user"
REPO_DIR = f"{HOME_DIR}/repo"
MAX_PATCH_BYTES = 16 * 1024 * 1024
_GRACE_S = 30  # the SDK's own stream timeout, beyond the in-sandbox `timeout`: a backstop, never the rule
_TIMEOUT_KILLED = 137  # `timeout -s KILL` kills the command's process group; the shell reports 128 + 9


class E2BError(YudaiError):
    """The E2B service or a sandbox of it failed."""


def sdk() -> "type[e2b.Sandbox]":
    """The SDK's `Sandbox` class (imported on first use); tests replace this function to inject a fake."""
    from e2b import Sandbox

    return Sandbox


class E2BSandboxConfig(BaseModel):
    """How an E2B sandbox runs commands; serialized into the trajectory, so it holds no secret."""

    cwd: str = REPO_DIR
    home: str = HOME_DIR
    timeout: int = 120
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES
    template: str
    lifetime_s: int
    network: bool = False
    env_extra_names: list[str] = []


class E2BSandbox:
    """A remote sandbox holding a copy of the run's checkout. `kill()` may be called from any thread at any time.

    `home` (a worker directory) is not used: the sandbox's home is its own. `network` overrides the
    `sandbox_network` setting for this sandbox; setup commands (`run(..., network=True)`) always get the network.
    """

    def __init__(
        self,
        *,
        workspace: Path,
        home: Path,
        env_extra: dict[str, str] | None = None,
        command_timeout: int = 120,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
        settings: Settings | None = None,
        network: bool | None = None,
    ):
        settings = settings or Settings.model_construct()
        env_extra = env_extra or {}
        self.config = E2BSandboxConfig(
            timeout=command_timeout,
            max_output_bytes=max_output_bytes,
            template=settings.e2b_template,
            lifetime_s=settings.e2b_timeout_s,
            network=settings.sandbox_network if network is None else network,
            env_extra_names=sorted(env_extra),
        )
        self._workspace = workspace
        # The worker's PATH means nothing in a remote sandbox.
        self._env = sandbox_environment(Path(HOME_DIR), env_extra) | {"PATH": env_extra.get("PATH", DEFAULT_PATH)}
        self._lock = threading.Lock()
        self._killed = False
        self._network = self.config.network
        self._setup_artifacts: set[str] = set()
        self._throttle = throttle_for(settings)
        self._throttle.acquire(timeout=settings.e2b_timeout_s)
        try:
            self._box = _translated(
                lambda: sdk().create(
                    template=self.config.template,
                    timeout=self.config.lifetime_s,
                    allow_internet_access=self._network,
                    metadata={"app": APP, "owner": owner(settings), "workspace": str(workspace)},
                )
            )
        except BaseException:
            self._throttle.release()
            raise
        self.sandbox_id = self._box.sandbox_id
        try:
            self._upload(workspace)
        except BaseException:
            self.close()
            raise

    def execute(self, action: dict[str, Any], cwd: str = "", *, timeout: int | None = None) -> dict[str, Any]:
        """Run an agent command; see `Sandbox.execute` for the contract."""
        timeout = timeout or self.config.timeout
        result = self._run_capped(action.get("command", ""), str(Path(self.config.cwd, cwd)), timeout, False)
        output = {"output": result.output, "returncode": result.returncode, "exception_info": ""}
        if result.timed_out:
            output["exception_info"] = f"The command timed out after {timeout} s; it and its children were killed."
        raise_if_submitted(output)
        return output

    def run(self, command: str, *, timeout: float, network: bool = False) -> CommandResult:
        """Run a setup or test command in the repository; what a networked (setup) command leaves untracked
        is kept out of `sync_workspace`'s patch, as the worker does for the other sandboxes."""
        result = self._run_capped(command, self.config.cwd, timeout, network)
        if network:
            self._setup_artifacts |= self._untracked()
        return result

    def kill(self) -> None:
        """Kill the remote sandbox (ending every command in it) and refuse later commands; idempotent."""
        with self._lock:
            if self._killed:
                return
            self._killed = True
        try:
            self._box.kill()
        except Exception:
            log.warning("killing e2b sandbox %s failed", self.sandbox_id, exc_info=True)
        finally:
            self._throttle.release()

    def close(self) -> None:
        """Release the sandbox: kill it. Idempotent."""
        self.kill()

    def sync_workspace(self, base_commit: str) -> None:
        """Apply the sandbox's `git diff --binary base_commit` (new files included) to the worker's checkout."""
        if not git.COMMIT_SHA.fullmatch(base_commit):
            raise ValueError(f"base_commit must be a full commit SHA, not {base_commit!r}")
        patch = self._patch(base_commit)
        if patch.strip():
            apply_patch(self._workspace, patch)

    def get_template_vars(self, **kwargs: Any) -> dict[str, Any]:
        """Config only; the agent adds the platform variables. Never `os.environ`."""
        return self.config.model_dump() | kwargs

    def serialize(self) -> dict[str, Any]:
        environment_type = f"{self.__class__.__module__}.{self.__class__.__name__}"
        return {
            "info": {
                "config": {
                    "environment": self.config.model_dump(mode="json"),
                    "environment_type": environment_type,
                    "sandbox_id": self.sandbox_id,
                }
            }
        }

    def _run_capped(self, command: str, cwd: str, timeout: float, network: bool) -> CommandResult:
        self._check_alive()
        self._set_network(network or self.config.network)
        capture = OutputCapture(self.config.max_output_bytes)
        started = time.monotonic()
        code, timed_out = self._call(command, cwd, timeout, lambda text: capture.add(text.encode()))
        return CommandResult(
            command=command,
            returncode=-1 if timed_out else code,
            output=capture.text(),
            timed_out=timed_out,
            duration_s=time.monotonic() - started,
            truncated=capture.cut > 0,
        )

    def _call(self, command: str, cwd: str, timeout: float, sink: Callable[[str], None]) -> tuple[int, bool]:
        """Run `command` under `timeout -s KILL` (its whole process group dies on time); returns (code, timed out).

        stderr is merged into stdout inside the sandbox, so `sink` sees the output in order.
        """
        from e2b import CommandExitException, SandboxNotRunningException, SandboxUnreachableException, TimeoutException

        limit = max(1, math.ceil(timeout))
        # Not `exec`: the shell must outlive `timeout`, which kills its own group too, to report 128 + 9.
        wrapped = f"timeout -s KILL {limit} bash -c {shlex.quote(command)} 2>&1; exit $?"
        started = time.monotonic()
        self._check_alive()
        try:
            self._box.commands.run(
                wrapped,
                envs=self._env,
                cwd=cwd,
                timeout=limit + _GRACE_S,
                on_stdout=sink,
                on_stderr=sink,
                retain_output=False,
            )
            code = 0
        except CommandExitException as exc:
            code = exc.exit_code
        except (SandboxNotRunningException, SandboxUnreachableException) as exc:
            self._check_alive()
            raise E2BError(f"e2b sandbox {self.sandbox_id} is gone: {exc}") from None
        except TimeoutException:
            code = _TIMEOUT_KILLED
        except YudaiError:
            raise
        except Exception as exc:  # noqa: BLE001 - translated at the edge, after a kill() it is expected
            self._check_alive()
            raise E2BError(f"e2b command failed: {type(exc).__name__}: {exc}") from None
        self._check_alive()
        return code, code == _TIMEOUT_KILLED and time.monotonic() - started >= limit

    def _check_alive(self) -> None:
        if self._killed:
            raise SandboxKilled()

    def _set_network(self, allowed: bool) -> None:
        if allowed == self._network:
            return
        from e2b import ALL_TRAFFIC

        _translated(lambda: self._box.update_network({} if allowed else {"deny_out": [ALL_TRAFFIC]}))
        self._network = allowed

    def _upload(self, workspace: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="yudai-e2b-") as scratch:
            archive = pack_repository(workspace, Path(scratch))
            remote = f"/tmp/yudai-repo-{uuid.uuid4().hex[:8]}.tar"
            with open(archive, "rb") as data:
                _translated(lambda: self._box.files.write(remote, data))
        script = f"rm -rf {REPO_DIR} && tar -xf {remote} -C {HOME_DIR} && rm -f {remote} && git -C {REPO_DIR} reset -q"
        output = OutputCapture(2000)
        code, _ = self._call(script, HOME_DIR, 600, lambda text: output.add(text.encode()))
        if code != 0:
            raise E2BError(
                f"unpacking the repository in e2b sandbox {self.sandbox_id} failed (exit {code}): {output.text()}"
            )

    def _untracked(self) -> set[str]:
        chunks: list[str] = []
        listing = "git ls-files -z --others --exclude-standard --directory"
        code, _ = self._call(listing, self.config.cwd, 120, chunks.append)
        return {path for path in "".join(chunks).split("\0") if path} if code == 0 else set()

    def _patch(self, base_commit: str) -> str:
        exclude = ""
        if self._setup_artifacts:
            excluded = "\n".join(git.ignore_pattern(path) for path in sorted(self._setup_artifacts))
            exclude = f"printf '%s\\n' {shlex.quote(excluded)} >> .git/info/exclude && "
        # Explicit prefixes, no colour, no external drivers: the sandbox's git configuration is the agent's.
        script = (
            f"{exclude}git add --all && git -c core.quotepath=off diff --cached --binary --no-color "
            f"--no-ext-diff --no-textconv --src-prefix=a/ --dst-prefix=b/ {base_commit}"
        )
        patch = _BoundedText(MAX_PATCH_BYTES)
        code, timed_out = self._call(script, self.config.cwd, 600, patch.add)
        if code != 0 or timed_out:
            raise E2BError(f"exporting the changes from e2b sandbox {self.sandbox_id} failed (exit {code})")
        return patch.text()


class _BoundedText:
    """Collects text up to a limit; E2BError beyond it (a patch is useless cut)."""

    def __init__(self, limit: int):
        self._limit, self._size = limit, 0
        self._parts: list[str] = []

    def add(self, text: str) -> None:
        self._size += len(text)
        if self._size > self._limit:
            raise E2BError(f"the patch is larger than {self._limit} bytes")
        self._parts.append(text)

    def text(self) -> str:
        return "".join(self._parts)


def pack_repository(workspace: Path, scratch: Path) -> Path:
    """A tar holding `repo/`: a depth-1 clone of the checkout's HEAD, with no remote and no borrowed objects."""
    clone = scratch / "repo"
    for args in (
        ["clone", "--quiet", "--depth", "1", "--no-tags", f"file://{workspace}", str(clone)],
        ["-C", str(clone), "remote", "remove", "origin"],
        ["-C", str(clone), "config", "user.name", git.USER_NAME],
        ["-C", str(clone), "config", "user.email", git.USER_EMAIL],
    ):
        try:
            git.run(*args, env=git.trusted_env())
        except git.GitError as exc:
            raise E2BError(f"packing the repository failed: {exc.message}") from None
    archive = scratch / "repo.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(clone, arcname="repo")
    return archive


def apply_patch(workspace: Path, patch: str) -> None:
    """`git apply` the patch in `workspace` with no system or global configuration; E2BError with git's message.

    git apply refuses paths outside the tree, inside `.git` and through symbolic links.
    """
    with tempfile.TemporaryDirectory(prefix="yudai-apply-") as scratch:
        try:
            git.run(
                "apply",
                "--binary",
                "--whitespace=nowarn",
                "-",
                cwd=workspace,
                env=git.isolated_env(scratch),
                stdin=patch.encode(),
            )
        except git.GitError as exc:
            raise E2BError(f"applying the sandbox's patch failed: {exc.message}") from None


def owner(settings: Settings) -> str:
    """The metadata tag of this worker's sandboxes."""
    return settings.e2b_owner or socket.gethostname()


def kill_orphans(settings: Settings, *, keep: Collection[str] = ()) -> list[str]:
    """Kill every live E2B sandbox tagged with this worker's owner whose id is not in `keep`; returns their ids.

    For start-up, after runs left running by a dead process were settled: pass in `keep` the sandbox ids of runs
    that still run elsewhere under the same owner (none, for the embedded dispatcher).
    """
    from e2b import SandboxQuery

    api, tag = sdk(), {"app": APP, "owner": owner(settings)}
    pages = _translated(lambda: api.list(query=SandboxQuery(metadata=tag)))
    killed = []
    while pages.has_next:
        for info in _translated(pages.next_items):
            mine = all((info.metadata or {}).get(key) == value for key, value in tag.items())
            if mine and info.sandbox_id not in keep:
                _translated(functools.partial(api.kill, info.sandbox_id))
                killed.append(info.sandbox_id)
    return killed


class Throttle:
    """At most `cap` sandboxes alive at once, and creations spaced `1 / per_s` seconds apart."""

    def __init__(self, per_s: float, cap: int):
        self._slots = threading.BoundedSemaphore(cap)
        self._interval = 1 / per_s if per_s > 0 else 0.0
        self._lock = threading.Lock()
        self._next = 0.0

    def acquire(self, timeout: float) -> None:
        """Wait for a free slot and for the next creation time; E2BError after `timeout` seconds without a slot."""
        if not self._slots.acquire(timeout=timeout):
            raise E2BError(f"no e2b sandbox slot became free within {timeout} s")
        with self._lock:
            now = time.monotonic()
            start, self._next = max(now, self._next), max(now, self._next) + self._interval
        time.sleep(max(0.0, start - now))

    def release(self) -> None:
        self._slots.release()


_THROTTLES: dict[tuple[float, int], Throttle] = {}
_THROTTLES_LOCK = threading.Lock()


def throttle_for(settings: Settings) -> Throttle:
    """The process-wide throttle for these limits (one per distinct setting, normally exactly one)."""
    key = (settings.e2b_creates_per_s, settings.e2b_max_concurrent)
    with _THROTTLES_LOCK:
        return _THROTTLES.setdefault(key, Throttle(*key))


def _translated(call: Callable[[], T]) -> T:
    """Call into the SDK; its errors become E2BError (type and message only; the SDK never puts the key there)."""
    try:
        return call()
    except YudaiError:
        raise
    except Exception as exc:  # noqa: BLE001 - the edge where third-party errors are translated
        raise E2BError(f"e2b: {type(exc).__name__}: {exc}") from None

"""The `e2b` sandbox: one E2B cloud sandbox per run, through the `e2b` SDK.

The repository goes in as a tar of a shallow, remote-less clone made on the worker (no credential ever enters);
changes come out as the bytes of `git diff --binary`, applied to the worker's checkout by a git that reads no
configuration. The E2B API key stays in the worker's environment (the SDK reads `E2B_API_KEY`); the sandbox gets
only the same variable allowlist as every other sandbox. The sandbox's lifetime is extended before each step
(`e2b_lifetime`), each command ends with its process group (`e2b_commands`), and creation, throttling and the
orphan sweep live in `e2b_fleet`.

Not run against the real E2B service from this project's machines (it cannot be reached from there): the tests
drive this module through `tests/fakes/e2b_sdk.py`, and `python -m yudai_solver.sandboxes.e2b_smoke` checks it
against the real service where an E2B key is available.
"""

import logging
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from yudai_solver.base import git
from yudai_solver.base.settings import Settings
from yudai_solver.sandboxes import e2b_commands
from yudai_solver.sandboxes.e2b_client import E2BError, E2BSandboxLost, translate
from yudai_solver.sandboxes.e2b_commands import HOME_DIR, run_wrapped
from yudai_solver.sandboxes.e2b_fleet import APP, Throttle, create_box, kill_orphans, owner, run_group, throttle_for
from yudai_solver.sandboxes.e2b_lifetime import Lifetime, keep_alive
from yudai_solver.sandboxes.e2b_patch import apply_patch, export_script, exported_size, pack_repository
from yudai_solver.sandboxes.local import DEFAULT_MAX_OUTPUT_BYTES, DEFAULT_PATH, OutputCapture, sandbox_environment
from yudai_solver.sandboxes.protocol import CommandResult, SandboxKilled, raise_if_submitted

__all__ = ["APP", "E2BError", "E2BSandbox", "E2BSandboxLost", "Throttle", "apply_patch", "kill_orphans", "owner"]

T = TypeVar("T")
log = logging.getLogger(__name__)
REPO_DIR = f"{HOME_DIR}/repo"
MAX_PATCH_BYTES = 16 * 1024 * 1024
SYNC_TIMEOUT_S = 600
"""The export command's limit; the final sync keeps the sandbox alive for it, the read and the apply."""
UPLOAD_TIMEOUT_S = 600


class E2BSandboxConfig(BaseModel):
    """How an E2B sandbox runs commands; serialized into the trajectory, so it holds no secret."""

    cwd: str = REPO_DIR
    home: str = HOME_DIR
    timeout: int = 120
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES
    template: str
    lifetime_s: int
    max_lifetime_s: int
    network: bool = False
    env_extra_names: list[str] = []


class E2BSandbox:
    """A remote sandbox holding a copy of the run's checkout. `kill()` may be called from any thread at any time.

    `home` (a worker directory) is not used: the sandbox's home is its own. `network` overrides the
    `sandbox_network` setting for this sandbox; setup commands (`run(..., network=True)`) always get the network.
    `time_budget_s`, the solve's time left, bounds how far the lifetime is ever extended.
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
        time_budget_s: float | None = None,
    ):
        settings = settings or Settings.model_construct()
        env_extra = env_extra or {}
        self.config = E2BSandboxConfig(
            timeout=command_timeout,
            max_output_bytes=max_output_bytes,
            template=settings.e2b_template,
            lifetime_s=min(settings.e2b_timeout_s, settings.e2b_max_lifetime_s),
            max_lifetime_s=settings.e2b_max_lifetime_s,
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
        started = time.monotonic()
        try:
            self._box = create_box(
                settings,
                template=self.config.template,
                lifetime_s=self.config.lifetime_s,
                network=self._network,
                metadata=self._metadata(settings, workspace),
            )
        except BaseException:
            self._throttle.release()
            raise
        self._lifetime = Lifetime(
            started=started, initial_s=self.config.lifetime_s, cap_s=self.config.max_lifetime_s, budget_s=time_budget_s
        )
        self.sandbox_id: str = self._box.sandbox_id
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
        self._keep_alive(SYNC_TIMEOUT_S + e2b_commands.GRACE_S)
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

    @staticmethod
    def _metadata(settings: Settings, workspace: Path) -> dict[str, str]:
        """Whose sandbox this is (the orphan sweep's tag) and which run it serves (spared with its run)."""
        return {"app": APP, "owner": owner(settings), "workspace": str(workspace), "group": run_group(workspace)}

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
        """Run `command` in `cwd` under the wrapper (stdout and stderr merged, in order); returns (code, timed out).

        The sandbox is first kept alive for the whole command; its loss is `E2BSandboxLost`, never an exit code.
        """
        self._keep_alive(timeout + e2b_commands.GRACE_S)
        ended = self._sdk(lambda: run_wrapped(self._box, command, cwd=cwd, envs=self._env, timeout=timeout, sink=sink))
        self._check_alive()
        return ended

    def _sdk(self, call: Callable[[], T]) -> T:
        """Call into this sandbox through the SDK; its errors translated by what happened (see `translate`)."""
        self._check_alive()
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - the edge where third-party errors are translated
            raise translate(exc, sandbox_id=self.sandbox_id, killed=self._killed) from None

    def _keep_alive(self, step_s: float) -> None:
        keep_alive(self._lifetime, step_s, time.monotonic(), lambda s: self._sdk(lambda: self._box.set_timeout(s)))

    def _check_alive(self) -> None:
        if self._killed:
            raise SandboxKilled()

    def _set_network(self, allowed: bool) -> None:
        if allowed == self._network:
            return
        from e2b import ALL_TRAFFIC

        self._sdk(lambda: self._box.update_network({} if allowed else {"deny_out": [ALL_TRAFFIC]}))
        self._network = allowed

    def _upload(self, workspace: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="yudai-e2b-") as scratch:
            archive = pack_repository(workspace, Path(scratch))
            remote = f"/tmp/yudai-repo-{uuid.uuid4().hex[:8]}.tar"
            with open(archive, "rb") as data:
                self._sdk(lambda: self._box.files.write(remote, data))
        script = f"rm -rf {REPO_DIR} && tar -xf {remote} -C {HOME_DIR} && rm -f {remote} && git -C {REPO_DIR} reset -q"
        output = OutputCapture(2000)
        code, _ = self._call(script, HOME_DIR, UPLOAD_TIMEOUT_S, lambda text: output.add(text.encode()))
        if code != 0:
            raise E2BError(
                f"unpacking the repository in e2b sandbox {self.sandbox_id} failed (exit {code}): {output.text()}"
            )

    def _untracked(self) -> set[str]:
        chunks: list[str] = []
        listing = "git ls-files -z --others --exclude-standard --directory"
        code, _ = self._call(listing, self.config.cwd, 120, chunks.append)
        return {path for path in "".join(chunks).split("\0") if path} if code == 0 else set()

    def _patch(self, base_commit: str) -> bytes:
        """The change as bytes, read from a file in the sandbox; E2BError beyond MAX_PATCH_BYTES (a cut patch is
        useless) or when the export fails, with the export's output (git's stderr) as the reason."""
        target = f"/tmp/yudai-patch-{uuid.uuid4().hex[:8]}.diff"
        output = OutputCapture(4000)
        script = export_script(base_commit, target, sorted(self._setup_artifacts))
        code, timed_out = self._call(script, self.config.cwd, SYNC_TIMEOUT_S, lambda text: output.add(text.encode()))
        size = exported_size(output.text())
        if code != 0 or timed_out or size is None:
            raise E2BError(
                f"exporting the changes from e2b sandbox {self.sandbox_id} failed (exit {code}): {output.text()[-500:]}"
            )
        if size > MAX_PATCH_BYTES:
            raise E2BError(f"the patch is larger than {MAX_PATCH_BYTES} bytes ({size} bytes)")
        patch = bytes(self._sdk(lambda: self._box.files.read(target, format="bytes", request_timeout=SYNC_TIMEOUT_S)))
        if len(patch) > MAX_PATCH_BYTES:  # the size line is the sandbox's word; the bytes read are not
            raise E2BError(f"the patch is larger than {MAX_PATCH_BYTES} bytes")
        return patch

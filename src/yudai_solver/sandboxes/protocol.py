"""What every sandbox offers: mini-swe-agent's `Environment` protocol plus setup/test commands and a kill switch."""

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from yudai_solver.base.errors import YudaiError

SUBMIT_MARKER = "COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"


class SandboxKilled(YudaiError):
    """The sandbox was killed; it runs no more commands."""


class SandboxLost(YudaiError):
    """The sandbox died or could not be reached: an infrastructure failure, neither the agent's nor the tests'."""


@dataclass(frozen=True)
class CommandResult:
    """The outcome of one setup or test command run with `Sandbox.run`."""

    command: str
    returncode: int
    output: str
    """stdout and stderr interleaved, capped (see `truncated`)."""
    timed_out: bool
    duration_s: float
    truncated: bool
    """True when the middle of the output was cut to respect the sandbox's output cap."""


@runtime_checkable
class Sandbox(Protocol):
    """A place where commands run. A sandbox *is* a mini-swe-agent `Environment`, so an agent can drive it directly.

    Every implementation must be safe to `kill()` from another thread while `execute`/`run` block in a command.
    """

    config: Any
    sandbox_id: str

    def execute(self, action: dict[str, Any], cwd: str = "", *, timeout: int | None = None) -> dict[str, Any]:
        """Run `action["command"]`; return `{"output", "returncode", "exception_info"}`.

        A timeout is a result (returncode -1, exception_info set), not an exception. Raises mini-swe-agent's
        `Submitted` when the output's first line is `COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT` and the command
        succeeded; raises `SandboxKilled` when the sandbox is or gets killed.
        """
        ...

    def run(self, command: str, *, timeout: float, network: bool = False) -> CommandResult:
        """Run a setup or test command; `network` asks for network access where the sandbox can refuse it.

        Raises `SandboxKilled` when the sandbox is or gets killed.
        """
        ...

    def kill(self) -> None:
        """Stop every running command now (whole process trees) and refuse every later command."""
        ...

    def close(self) -> None:
        """Release the sandbox; kills whatever still runs. Idempotent."""
        ...

    def sync_workspace(self, base_commit: str) -> None:
        """Bring the agent's changes into the worker's copy of the workspace, as a patch applied there.

        A no-op where the sandbox works on the worker's directory itself (local, bubblewrap); a remote sandbox
        (e2b) exports `git diff --binary base_commit` as bytes and the worker applies it to its own checkout.
        """
        ...

    def get_template_vars(self, **kwargs: Any) -> dict[str, Any]:
        """Variables for the agent's prompt templates; never the worker's environment."""
        ...

    def serialize(self) -> dict[str, Any]:
        """The sandbox's part of a trajectory (mini-swe-agent's `info.config` shape); never secret values."""
        ...


def raise_if_submitted(output: dict[str, Any]) -> None:
    """Raise mini-swe-agent's `Submitted` exactly as its `LocalEnvironment._check_finished` does, else return."""
    lines = output.get("output", "").lstrip().splitlines(keepends=True)
    if not lines or lines[0].strip() != SUBMIT_MARKER or output["returncode"] != 0:
        return
    # Imported here: importing minisweagent has side effects (banner, dotenv, mkdir) the package must not trigger.
    from minisweagent.exceptions import Submitted

    submission = "".join(lines[1:])
    raise Submitted(
        {"role": "exit", "content": submission, "extra": {"exit_status": "Submitted", "submission": submission}}
    )

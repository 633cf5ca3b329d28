"""Sandboxes, picked by name. Importing this package imports no mini-swe-agent (it has import-time side effects)."""

from pathlib import Path

from yudai_solver.base.errors import InvalidInput
from yudai_solver.base.settings import Settings
from yudai_solver.sandboxes.bubblewrap import BubblewrapSandbox
from yudai_solver.sandboxes.e2b import E2BSandbox
from yudai_solver.sandboxes.local import LocalSandbox
from yudai_solver.sandboxes.protocol import CommandResult, Sandbox, SandboxKilled
from yudai_solver.sandboxes.worker_guard import protect_worker_environment

__all__ = [
    "SANDBOXES",
    "BubblewrapSandbox",
    "CommandResult",
    "E2BSandbox",
    "LocalSandbox",
    "Sandbox",
    "SandboxKilled",
    "create_sandbox",
]

# The kinds that take `settings` and `network`; `local` takes neither.
_ISOLATING: dict[str, type[BubblewrapSandbox] | type[E2BSandbox]] = {"bubblewrap": BubblewrapSandbox, "e2b": E2BSandbox}
SANDBOXES: dict[str, type[Sandbox]] = {"local": LocalSandbox, **_ISOLATING}


def create_sandbox(
    name: str,
    *,
    workspace: Path,
    home: Path,
    env_extra: dict[str, str] | None = None,
    command_timeout: int = 120,
    settings: Settings | None = None,
    network: bool | None = None,
    time_budget_s: float | None = None,
) -> Sandbox:
    """A new sandbox of kind `name` running commands in `workspace` with HOME=`home`; InvalidInput if unknown.

    `settings` configures the isolating kinds (limits, network, E2B template); their defaults apply without it.
    `network` (a per-solve choice) overrides `settings.sandbox_network` for them; `local` always has the host's.
    `time_budget_s`, the solve's time left, bounds how long a remote sandbox (e2b) is ever kept alive.
    """
    if name not in SANDBOXES:
        raise InvalidInput(f"unknown sandbox {name!r}; known: {', '.join(sorted(SANDBOXES))}", field="sandbox")
    protect_worker_environment()
    if name == "local":
        return LocalSandbox(workspace=workspace, home=home, env_extra=env_extra, command_timeout=command_timeout)
    if name == "e2b":
        return E2BSandbox(
            workspace=workspace,
            home=home,
            env_extra=env_extra,
            command_timeout=command_timeout,
            settings=settings,
            network=network,
            time_budget_s=time_budget_s,
        )
    return _ISOLATING[name](
        workspace=workspace,
        home=home,
        env_extra=env_extra,
        command_timeout=command_timeout,
        settings=settings,
        network=network,
    )

"""Sandboxes, picked by name. Importing this package imports no mini-swe-agent (it has import-time side effects)."""

from pathlib import Path

from ..errors import InvalidInput
from .local import LocalSandbox
from .protocol import CommandResult, Sandbox, SandboxKilled

__all__ = ["SANDBOXES", "CommandResult", "LocalSandbox", "Sandbox", "SandboxKilled", "create_sandbox"]

SANDBOXES: dict[str, type] = {"local": LocalSandbox}


def create_sandbox(
    name: str,
    *,
    workspace: Path,
    home: Path,
    env_extra: dict[str, str] | None = None,
    command_timeout: int = 120,
) -> Sandbox:
    """A new sandbox of kind `name` running commands in `workspace` with HOME=`home`; InvalidInput if unknown."""
    if name not in SANDBOXES:
        raise InvalidInput(f"unknown sandbox {name!r}; known: {', '.join(sorted(SANDBOXES))}", field="sandbox")
    return SANDBOXES[name](workspace=workspace, home=home, env_extra=env_extra, command_timeout=command_timeout)

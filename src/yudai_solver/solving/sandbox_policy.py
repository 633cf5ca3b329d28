"""Which sandbox a service runs agents in, chosen when it starts, and the rule that keeps `local` single-user.

`local` runs every command as the worker's own user: an agent (steered by an issue or a repository) can read the
worker's database and make its user an admin, read the API keys in `/proc/*/environ` when the worker runs as root,
or change another user's runs. Fine for one person on their own machine; not for a service several people share.

So `yudai serve` and `yudai worker`, left without `YUDAI_SANDBOX`, pick `bubblewrap` where a trivial command runs
in it, else `local`. `local` with more than one user is refused unless the operator set both `YUDAI_SANDBOX=local`
and `YUDAI_ALLOW_SHARED_LOCAL_SANDBOX=true`: at start (the process exits), and while running (`sandbox_guard`):
a new solve answers 409 and a run about to start fails, both saying why, so a second user created while the
service runs (`yudai user create` is another process) gets nothing run unsandboxed.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from yudai_solver.base.errors import Conflict
from yudai_solver.base.models import User
from yudai_solver.base.settings import Settings
from yudai_solver.sandboxes import SANDBOXES, bubblewrap, slirp

ISOLATING = {"bubblewrap", "e2b"}
OPT_IN = "set YUDAI_SANDBOX=local and YUDAI_ALLOW_SHARED_LOCAL_SANDBOX=true to accept that"
LOCAL_RISK = (
    "the local sandbox runs agent commands as the service's own user: any user's agent can read its database and "
    "keys and make itself an admin"
)


class SandboxRefused(Conflict):
    """The configured sandbox cannot be used here."""


class SharedLocalSandbox(SandboxRefused):
    """The local sandbox does not separate users; it is refused while more than one user exists."""


@dataclass(frozen=True)
class SandboxChoice:
    """What a process runs agent commands in, and why; shown at start and by `GET /health`."""

    name: str | None
    """None: this process runs no agent command (`yudai serve --no-worker`)."""
    isolates: bool
    message: str
    warning: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "isolates": self.isolates, "message": self.message, "warning": self.warning}


def choose_sandbox(
    settings: Settings, users: int, probe: Callable[[], str | None] = bubblewrap.probe
) -> tuple[Settings, SandboxChoice]:
    """The settings a serving process runs with (sandbox decided, guard on) and the choice to announce.

    Raises SharedLocalSandbox when the choice is `local`, `users` > 1 and the operator did not opt in, and
    SandboxRefused when an explicitly named sandbox is unknown or cannot run here.
    """
    explicit = "sandbox" in settings.model_fields_set
    name, why_not = settings.sandbox, None
    if explicit and name not in SANDBOXES:
        raise SandboxRefused(f"unknown sandbox {name!r} (YUDAI_SANDBOX); known: {', '.join(sorted(SANDBOXES))}")
    if explicit and name == "bubblewrap" and (problem := probe()) is not None:
        raise SandboxRefused(f"YUDAI_SANDBOX=bubblewrap, but bubblewrap cannot run here: {problem}")
    if not explicit:
        why_not = probe()
        name = "bubblewrap" if why_not is None else "local"
    acknowledged = explicit and name == "local" and settings.allow_shared_local_sandbox
    if name == "local" and users > 1 and not acknowledged:
        picked = f"bubblewrap cannot run here ({why_not}), so " if why_not else ""
        raise SharedLocalSandbox(
            f"refusing to start: {picked}the sandbox is local and this service has {users} users; {LOCAL_RISK}. "
            f"Run the service as root with bubblewrap installed (apt-get install bubblewrap slirp4netns), or "
            f"{OPT_IN}."
        )
    chosen = settings.model_copy(
        update={"sandbox": name, "allow_shared_local_sandbox": acknowledged, "sandbox_guard": True}
    )
    return chosen, describe(chosen, how="set by YUDAI_SANDBOX" if explicit else _picked(why_not))


def describe(settings: Settings, how: str = "YUDAI_SANDBOX") -> SandboxChoice:
    """The sandbox of `settings` as `GET /health` and the start-up message tell it."""
    name = settings.sandbox
    if name in ISOLATING:
        missing = slirp.missing_tools() if name == "bubblewrap" else []
        warning = (
            f"setup commands and networked runs will fail: {', '.join(missing)} missing (apt-get install "
            "slirp4netns iproute2)"
            if missing
            else None
        )
        return SandboxChoice(name, True, f"sandbox: {name} ({how}); agent commands are isolated", warning)
    if settings.allow_shared_local_sandbox:
        warning = f"shared use of the local sandbox acknowledged (YUDAI_ALLOW_SHARED_LOCAL_SANDBOX): {LOCAL_RISK}"
    elif settings.sandbox_guard:
        warning = f"single-user only: {LOCAL_RISK}; solves are refused while more than one user exists"
    else:
        warning = f"{LOCAL_RISK}; for one person on their own machine only"
    return SandboxChoice(name, False, f"sandbox: {name} ({how}); agent commands are NOT isolated", warning)


def no_runs_here() -> SandboxChoice:
    """The choice of a process that serves the API only; workers choose their own sandbox when they start."""
    return SandboxChoice(None, False, "sandbox: none here; runs execute in `yudai worker` processes, each with its own")


def refuse_shared_local(session: Session, settings: Settings) -> None:
    """SharedLocalSandbox if `settings` run agents unisolated for several users without the operator's consent."""
    if not settings.sandbox_guard or settings.sandbox != "local" or settings.allow_shared_local_sandbox:
        return
    users = session.scalar(select(func.count(User.id))) or 0
    if users > 1:
        raise SharedLocalSandbox(
            f"this service runs agent commands in the local sandbox and has {users} users; {LOCAL_RISK}. "
            f"Its operator must restart it with bubblewrap, or {OPT_IN}."
        )


def refuse_shared_local_run(factory: sessionmaker[Session], settings: Settings) -> None:
    """`refuse_shared_local` for a run about to start in this process."""
    if settings.sandbox_guard and settings.sandbox == "local" and not settings.allow_shared_local_sandbox:
        with factory() as session:
            refuse_shared_local(session, settings)


def _picked(why_not: str | None) -> str:
    return "picked: bubblewrap runs here" if why_not is None else f"picked: bubblewrap cannot run here: {why_not}"

"""Check the e2b backend against the real E2B service: `E2B_API_KEY=... python -m yudai_solver.sandboxes.e2b_smoke`.

The tests only meet a fake of the SDK; this is the one command an operator with a key runs to see the real thing
do what the fake claims. It creates a sandbox, runs commands (exit code, a background child, a missing working
directory, PATH), syncs a patch with non-UTF-8 content back, extends the lifetime, kills the sandbox and sweeps an
orphan. Every sandbox it makes carries a one-off owner tag, so the sweep touches nothing else; each step prints OK
or FAIL, and the exit code is 0 only if all passed (2 without a key). About a minute, a few sandbox-minutes.
"""

import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from yudai_solver.base import git
from yudai_solver.base.settings import Settings
from yudai_solver.sandboxes import e2b_client
from yudai_solver.sandboxes.e2b import E2BSandbox
from yudai_solver.sandboxes.e2b_fleet import APP, create_box, kill_orphans

LATIN1 = b"caf\xe9\n"


def main() -> int:
    if not os.environ.get("E2B_API_KEY"):
        print("E2B_API_KEY is not set: nothing to check against", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="yudai-e2b-smoke-") as scratch:
        settings = Settings(data_dir=Path(scratch, "data"), e2b_owner=f"yudai-smoke-{uuid.uuid4().hex[:8]}")
        settings = settings.model_copy(update={"e2b_timeout_s": 120})  # short, so that a step must extend it
        workspace, base = _repository(Path(scratch, "runs", "smoke", "work"))
        failures = _check_all(settings, workspace, base)
    print("all checks passed" if not failures else f"{failures} check(s) failed")
    return 1 if failures else 0


def _check_all(settings: Settings, workspace: Path, base: str) -> int:
    sandbox = E2BSandbox(workspace=workspace, home=workspace.parent / "home", settings=settings)
    print(f"created {sandbox.sandbox_id} (template {settings.e2b_template}, owner {settings.e2b_owner})")
    checks: list[tuple[str, Callable[[], bool]]] = [
        ("a command runs as the sandbox's user, its exit code kept", lambda: _exit_code(sandbox)),
        ("a background child does not hold the command", lambda: _background(sandbox)),
        ("a missing working directory is a clear failure", lambda: _missing_cwd(sandbox)),
        ("PATH is the configured one despite the login shell", lambda: _path(sandbox)),
        ("the lifetime is extended for a long step", lambda: _extended(sandbox)),
        ("a patch with non-UTF-8 content arrives byte for byte", lambda: _patch(sandbox, workspace, base)),
        ("kill ends the sandbox", lambda: _killed(sandbox, settings)),
        ("the sweep kills an orphan of this owner", lambda: _swept(settings)),
    ]
    try:
        return sum(not _check(name, check) for name, check in checks)
    finally:
        sandbox.close()
        kill_orphans(settings)


def _check(name: str, check: Callable[[], bool]) -> bool:
    try:
        ok = check()
    except Exception as exc:  # noqa: BLE001 - a smoke test reports every failure and goes on
        print(f"FAIL {name}: {type(exc).__name__}: {exc}")
        return False
    print(f"{'OK  ' if ok else 'FAIL'} {name}")
    return ok


def _exit_code(sandbox: E2BSandbox) -> bool:
    done = sandbox.run("id -un; exit 3", timeout=30)
    print(f"     output: {done.output.strip()!r}")
    return done.returncode == 3


def _background(sandbox: E2BSandbox) -> bool:
    started = time.monotonic()
    done = sandbox.run("sleep 300 & echo started", timeout=60)
    left = sandbox.run("pgrep -c -f 'sleep 30[0]' || true", timeout=30).output.strip()
    return done.returncode == 0 and time.monotonic() - started < 20 and left == "0"


def _missing_cwd(sandbox: E2BSandbox) -> bool:
    output = sandbox.execute({"command": "pwd"}, cwd="no/such/dir")
    return output["returncode"] != 0 and "cannot enter the working directory" in output["output"]


def _path(sandbox: E2BSandbox) -> bool:
    return sandbox.run("echo $PATH", timeout=30).output.strip() == sandbox._env["PATH"]


def _extended(sandbox: E2BSandbox) -> bool:
    before = e2b_client.sdk().get_info(sandbox.sandbox_id).end_at
    sandbox.run("true", timeout=1500)  # longer than the 120 s it was created with and what the upload added
    after = e2b_client.sdk().get_info(sandbox.sandbox_id).end_at
    print(f"     end of life: {before.isoformat()} -> {after.isoformat()}")
    return (after - before).total_seconds() > 300


def _patch(sandbox: E2BSandbox, workspace: Path, base: str) -> bool:
    change = "printf 'cr\\xe8me\\n' >> legacy.txt && printf '\\xff\\xfe raw\\n' > new.txt"
    if sandbox.run(change, timeout=30).returncode != 0:
        return False
    sandbox.sync_workspace(base)
    return (workspace / "legacy.txt").read_bytes() == LATIN1 + b"cr\xe8me\n" and (
        workspace / "new.txt"
    ).read_bytes() == b"\xff\xfe raw\n"


def _killed(sandbox: E2BSandbox, settings: Settings) -> bool:
    sandbox.kill()
    return sandbox.sandbox_id not in _listed(settings)


def _swept(settings: Settings) -> bool:
    tag = {"app": APP, "owner": settings.e2b_owner, "workspace": "/smoke/orphan", "group": "/smoke/orphan"}
    orphan = create_box(settings, template=settings.e2b_template, lifetime_s=120, network=False, metadata=tag)
    killed = kill_orphans(settings)
    return killed == [orphan.sandbox_id] and orphan.sandbox_id not in _listed(settings)


def _listed(settings: Settings) -> list[str]:
    from e2b import SandboxQuery, SandboxState

    pages = e2b_client.sdk().list(
        query=SandboxQuery(metadata={"owner": settings.e2b_owner}, state=[SandboxState.RUNNING])
    )
    found: list[str] = []
    while pages.has_next:
        found += [info.sandbox_id for info in pages.next_items()]
    return found


def _repository(workspace: Path) -> tuple[Path, str]:
    """A one-commit repository holding a Latin-1 file; returns it and its commit."""
    workspace.mkdir(parents=True)
    (workspace / "legacy.txt").write_bytes(LATIN1)
    env = git.trusted_env()
    identity = ["-c", f"user.name={git.USER_NAME}", "-c", f"user.email={git.USER_EMAIL}"]
    git.run("init", "-q", "-b", "main", str(workspace), env=env)
    git.run("-C", str(workspace), "add", "legacy.txt", env=env)
    git.run("-C", str(workspace), *identity, "commit", "-qm", "smoke", env=env)
    return workspace, git.run("-C", str(workspace), "rev-parse", "HEAD", env=env).decode().strip()


if __name__ == "__main__":
    sys.exit(main())

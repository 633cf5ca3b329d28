"""The e2b sandbox against `tests/fakes/e2b_sdk.py` (the real service cannot be reached from here).

The fake runs the SDK's own command layer over a fake envd that runs each command for real (`bash -l -c` as uid
1000 in one PID namespace per sandbox), kills sandboxes at the end of their lifetime, and records every call, so
tests check both what a run sees and what would reach E2B.
"""

import math
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.e2b_sdk import FakeCloud, installed_cloud, wait_until
from yudai_solver.base.settings import Settings
from yudai_solver.entry.demo import create_repository
from yudai_solver.execution.validation import diff_stats
from yudai_solver.execution.workspace import WorkspaceCache
from yudai_solver.sandboxes import (
    E2BSandbox,
    SandboxKilled,
    create_sandbox,
    e2b_commands,
    e2b_fleet,
    e2b_lifetime,
)
from yudai_solver.sandboxes import e2b as e2b_backend
from yudai_solver.sandboxes.e2b import E2BError, E2BSandboxLost, Throttle, apply_patch
from yudai_solver.sandboxes.e2b_client import E2BLifetimeExceeded
from yudai_solver.sandboxes.protocol import SandboxLost

pytestmark = pytest.mark.skipif(
    shutil.which("bwrap") is None or os.geteuid() != 0, reason="the fake runs commands with bubblewrap as root"
)
pytestmark = [pytestmark, pytest.mark.slow]  # seconds each: not in the fast tier
ENV_NAMES = {
    "PATH", "HOME", "LANG", "LC_ALL", "TERM", "PAGER", "MANPAGER", "GIT_PAGER", "PIP_PROGRESS_BAR", "TQDM_DISABLE",
    "PYTHONDONTWRITEBYTECODE",
}  # fmt: skip


@pytest.fixture
def cloud(tmp_path: Path, monkeypatch) -> Iterator[FakeCloud]:
    with installed_cloud(tmp_path / "e2b", monkeypatch) as service:
        yield service


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", e2b_creates_per_s=100, e2b_owner="worker-a")


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    return create_repository(tmp_path / "repos" / "calc")


@pytest.fixture
def checkout(origin: Path, settings: Settings) -> tuple[Path, str]:
    workspace = settings.data_dir / "runs" / "r1" / "work"
    return workspace, WorkspaceCache(settings.data_dir / "mirrors").checkout(str(origin), "main", workspace)


def make_box(settings: Settings, workspace: Path, **kwargs) -> E2BSandbox:
    sandbox = create_sandbox(
        "e2b", workspace=workspace, home=workspace.parent / "home", command_timeout=5, settings=settings, **kwargs
    )
    assert isinstance(sandbox, E2BSandbox)
    return sandbox


@pytest.fixture
def box(cloud, checkout, settings) -> Iterator[E2BSandbox]:
    sandbox = make_box(settings, checkout[0])
    yield sandbox
    sandbox.close()


def sh(box, command: str, **kwargs) -> tuple[int, str]:
    done = box.run(command, timeout=kwargs.pop("timeout", 10), **kwargs)
    return done.returncode, done.output


def calls(cloud: FakeCloud, kind: str) -> list[tuple]:
    return [call for call in cloud.calls if call[0] == kind]


# --- The basics ---------------------------------------------------------------------------------------------------


def test_one_sandbox_from_the_template_with_owner_and_run_metadata_and_an_idempotency_key(box, cloud, checkout):
    workspace, _ = checkout
    ((_, created),) = calls(cloud, "create")
    assert created["template"] == "base" and created["timeout"] == 3600 and created["allow_internet_access"] is False
    assert created["metadata"] == {
        "app": "yudai-solver",
        "owner": "worker-a",
        "workspace": str(workspace),
        "group": str(workspace.parent),
    }
    assert created["envs"] is None and len(created["idempotency_key"]) == 36
    assert box.sandbox_id == "sbx0" and box.serialize()["info"]["config"]["sandbox_id"] == "sbx0"


def test_the_repository_arrives_at_its_base_commit_without_remote_or_borrowed_objects(box, checkout):
    _, base = checkout
    code, out = sh(
        box,
        "pwd; git rev-parse HEAD; git status --porcelain; git remote -v; "
        "ls .git/objects/info; git branch --show-current; git config user.name",
    )
    assert code == 0 and out.split() == ["/home/user/repo", base, "main", "yudai-solver"]


def test_commands_run_as_the_non_root_user_through_a_login_shell(box, cloud):
    assert sh(box, "id -u; echo $HOME")[1] == "1000\n/home/user\n"
    assert all("Authorization" not in call[5] for call in calls(cloud, "run"))  # no user=: the default user


def test_a_non_zero_exit_is_a_result_and_a_timeout_kills_the_command(box):
    assert sh(box, "echo out; echo err >&2; exit 3") == (3, "out\nerr\n")
    started = time.monotonic()
    output = box.execute({"command": "sleep 300 & while true; do :; done"}, timeout=1)
    assert output["returncode"] == -1 and "timed out after 1 s" in output["exception_info"]
    assert time.monotonic() - started < 5
    assert sh(box, "pgrep -c -f 'sleep 30[0]' || true")[1] == "0\n"  # one process space, as in a VM


def test_output_is_capped_as_it_streams(box):
    done = box.run("head -c 5000000 /dev/zero | tr '\\0' x", timeout=20)
    assert done.truncated and len(done.output) < 200_000 and done.returncode == 0


def test_network_is_off_for_agent_commands_and_on_for_setup(box, cloud):
    sh(box, "true", network=True)
    box.execute({"command": "true"})
    assert [call[2] for call in calls(cloud, "network")] == [{}, {"deny_out": ["0.0.0.0/0"]}]


def test_the_environment_is_the_allowlist_and_no_worker_secret_is_sent(box, cloud, monkeypatch):
    monkeypatch.setenv("E2B_API_KEY", "e2b-canary-key")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-canary-e2b")
    code, out = sh(box, "env; cat /proc/*/environ 2>/dev/null; git config -l; ls -A ~")
    assert "canary" not in out and "canary" not in cloud.sent()
    envs = [call[3] for call in calls(cloud, "run")]
    assert all(set(env) == ENV_NAMES for env in envs) and envs[0]["HOME"] == "/home/user"


# --- Item 3: commands end with their process group ----------------------------------------------------------------


def test_a_background_child_ends_with_its_command_instead_of_holding_the_stream(box):
    started = time.monotonic()
    assert sh(box, "sleep 300 & echo started", timeout=20) == (0, "started\n")
    assert time.monotonic() - started < 5  # not the limit + grace the open pipe would cost
    assert sh(box, "pgrep -c -f 'sleep 30[0]' || true")[1] == "0\n"


def test_the_client_deadline_does_not_wait_for_eof_and_kills_the_wrapper_by_pid(box, cloud, monkeypatch):
    monkeypatch.setattr(e2b_commands, "GRACE_S", 1)
    started = time.monotonic()
    # `setsid -f` leaves the process group, so only the client's deadline ends the stream it keeps open.
    done = box.run("setsid -f sleep 60; sleep 30", timeout=2)
    assert done.timed_out and done.returncode == -1 and time.monotonic() - started < 6
    ((_, _, pid),) = calls(cloud, "signal")
    assert pid in cloud.boxes["sbx0"].processes


# --- Item 4: errors mapped by what happened -----------------------------------------------------------------------


def test_a_missing_working_directory_fails_the_command_with_a_clear_message(box):
    output = box.execute({"command": "pwd"}, cwd="no/such/dir")
    assert output["returncode"] == 126
    assert output["output"] == "yudai: cannot enter the working directory /home/user/repo/no/such/dir\n"


def test_path_is_exported_inside_the_script_despite_the_login_profile(cloud, checkout, settings):
    wanted = "/opt/tools/bin:/usr/bin:/bin"
    sandbox = make_box(settings, checkout[0], env_extra={"PATH": wanted})
    try:
        assert sh(sandbox, "echo $PATH") == (0, wanted + "\n")
    finally:
        sandbox.close()


@pytest.mark.parametrize("death", ["canceled", "unavailable"])
def test_a_sandbox_that_dies_mid_command_is_lost_not_a_test_failure(box, cloud, death):
    cloud.death = death
    threading.Timer(0.5, cloud.boxes["sbx0"].die).start()
    with pytest.raises(E2BSandboxLost, match="sbx0 is gone or unreachable"):
        box.run("sleep 20", timeout=30)
    with pytest.raises(SandboxLost):  # SandboxNotRunningException on the next call
        box.run("true", timeout=5)


def test_a_sandbox_e2b_ends_at_its_end_of_life_is_lost_not_a_test_failure(tight, cloud, checkout, settings):
    sandbox = make_box(settings.model_copy(update={"e2b_timeout_s": 3}), checkout[0])
    sandbox._lifetime.end = math.inf  # E2B's idea of the end comes first (a shorter account cap, a late extension)
    with pytest.raises(E2BSandboxLost):
        sandbox.run("sleep 30", timeout=20)
    assert not cloud.boxes["sbx0"].alive


def test_kill_ends_the_running_command_and_the_sandbox_and_refuses_more(box, cloud):
    threading.Timer(0.5, box.kill).start()
    started = time.monotonic()
    with pytest.raises(SandboxKilled):
        box.execute({"command": "sleep 30"})
    assert time.monotonic() - started < 5 and not cloud.boxes["sbx0"].alive
    with pytest.raises(SandboxKilled):
        box.run("true", timeout=5)
    box.close()
    assert calls(cloud, "kill") == [("kill", "sbx0")]


def test_an_sdk_error_after_a_concurrent_kill_is_killed_not_an_error(cloud, checkout, settings, monkeypatch):
    sandbox = make_box(settings.model_copy(update={"e2b_timeout_s": 700}), checkout[0])

    def set_timeout_racing_a_kill(timeout: int) -> None:
        sandbox.kill()  # the run is cancelled while the extension is in flight: E2B answers 404
        type(sandbox._box)._cls_set_timeout(sandbox.sandbox_id, timeout)

    monkeypatch.setattr(sandbox._box, "set_timeout", set_timeout_racing_a_kill)
    with pytest.raises(SandboxKilled):
        sandbox.run("true", timeout=1000)
    assert calls(cloud, "set_timeout") == [("set_timeout", "sbx0", calls(cloud, "set_timeout")[0][2])]


def test_a_lost_sandbox_is_a_named_outcome_of_the_agent_and_of_the_run():
    from yudai_solver.execution.agent import agent_exit
    from yudai_solver.execution.control import RunControl
    from yudai_solver.execution.run import _describe

    lost = E2BSandboxLost("e2b sandbox sbx0 is gone or unreachable (TimeoutException: context canceled)")
    name, message = agent_exit(None, "E2BSandboxLost", lost)  # type: ignore[arg-type]
    assert name == "sandbox_lost" and message.startswith("sandbox_lost: e2b sandbox sbx0 is gone")
    assert _describe(lost, RunControl("run-1", "solve-1")).startswith("sandbox_lost: ")


# --- Item 1: the lifetime ------------------------------------------------------------------------------------------


@pytest.fixture
def tight(monkeypatch) -> None:
    """Small numbers, so that lifetimes of seconds behave as hours do."""
    monkeypatch.setattr(e2b_commands, "GRACE_S", 1)
    monkeypatch.setattr(e2b_lifetime, "MARGIN_S", 0)
    monkeypatch.setattr(e2b_lifetime, "CHUNK_S", 0)
    monkeypatch.setattr(e2b_backend, "UPLOAD_TIMEOUT_S", 2)
    monkeypatch.setattr(e2b_backend, "SYNC_TIMEOUT_S", 2)


def test_the_lifetime_is_extended_before_each_command_and_before_the_final_sync(tight, cloud, checkout, settings):
    workspace, base = checkout
    sandbox = make_box(settings.model_copy(update={"e2b_timeout_s": 4}), workspace)
    assert calls(cloud, "set_timeout") == []  # creation's 4 s cover the upload's 2 + 1
    assert sh(sandbox, "sleep 5; echo survived > proof.txt; echo survived", timeout=8) == (0, "survived\n")
    assert calls(cloud, "set_timeout") == [("set_timeout", "sbx0", 9)]
    time.sleep(1)
    sandbox.sync_workspace(base)
    assert (workspace / "proof.txt").read_text() == "survived\n"
    assert [call[2] for call in calls(cloud, "set_timeout")][1] == 3  # the sync's 2 + 1, asked before it ran
    sandbox.close()


def test_a_step_the_accounts_cap_cannot_cover_fails_clearly_before_it_runs(tight, cloud, checkout, settings):
    sandbox = make_box(settings.model_copy(update={"e2b_timeout_s": 30, "e2b_max_lifetime_s": 30}), checkout[0])
    runs = len(calls(cloud, "run"))
    with pytest.raises(E2BLifetimeExceeded, match="e2b_max_lifetime_s=30 s"):
        sandbox.run("true", timeout=40)
    assert len(calls(cloud, "run")) == runs and calls(cloud, "set_timeout") == []
    sandbox.close()


def test_the_lifetime_never_goes_past_the_solves_time_budget(tight, cloud, checkout, settings):
    tight_settings = settings.model_copy(update={"e2b_timeout_s": 4})
    sandbox = make_box(tight_settings, checkout[0], time_budget_s=6)  # as a run asks: through create_sandbox
    assert sh(sandbox, "true", timeout=20)[0] == 0
    ((_, _, timeout),) = calls(cloud, "set_timeout")
    assert timeout <= 6 and cloud.boxes["sbx0"].end - cloud.boxes["sbx0"].started <= 7  # not the 21 s the step asks
    sandbox.close()


def test_a_run_asks_for_its_sandbox_with_what_is_left_of_the_solves_time_budget():
    from datetime import timedelta

    from yudai_solver.base.models import AIModel, Solve, SolveRun, utcnow
    from yudai_solver.execution.records import _spec

    solve = Solve(id="s", repo_url="/r", issue_number=1, matrix={}, time_budget_s=60)
    run = SolveRun(id="r", solve_id="s", model="m", temperature=0.0, max_edits=5, evolution="direct")
    model = AIModel(name="m", provider="openai", model_id="m", config={})
    assert _spec(run, solve, model).time_left_s == 60  # not started yet: all of it
    solve.started_at = utcnow() - timedelta(seconds=45)
    assert 14 <= _spec(run, solve, model).time_left_s <= 15
    solve.time_budget_s = None
    assert _spec(run, solve, model).time_left_s is None


# --- Item 2: the patch as bytes -----------------------------------------------------------------------------------


def test_the_agents_changes_come_back_as_a_patch_applied_on_the_worker(box, checkout):
    workspace, base = checkout
    script = (
        "sed -i 's/a - b/a + b/' calc.py && printf 'new\\n' > added.txt && git rm -q test_calc.py && "
        "printf '\\x00\\x01binary' > blob.bin && git config diff.noprefix true && git config color.diff always"
    )
    assert sh(box, script)[0] == 0
    inside = sh(box, "git add -A && git diff --cached --numstat " + base)[1]
    box.sync_workspace(base)
    stats = diff_stats(workspace, base)
    assert stats.files_changed == 4 and len(inside.splitlines()) == 4
    assert (workspace / "added.txt").read_text() == "new\n" and not (workspace / "test_calc.py").exists()
    assert (workspace / "blob.bin").read_bytes() == b"\x00\x01binary"
    assert "return a + b" in (workspace / "calc.py").read_text()


@pytest.fixture
def latin1_checkout(origin: Path, settings: Settings) -> tuple[Path, str]:
    (origin / "legacy.txt").write_bytes(b"caf\xe9\n")
    subprocess.run(["git", "-C", str(origin), "add", "legacy.txt"], check=True)
    subprocess.run(
        ["git", "-C", str(origin), "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "latin-1"], check=True
    )
    workspace = settings.data_dir / "runs" / "r2" / "work"
    return workspace, WorkspaceCache(settings.data_dir / "mirrors").checkout(str(origin), "main", workspace)


def test_non_utf8_changes_arrive_byte_for_byte(cloud, latin1_checkout, settings):
    workspace, base = latin1_checkout
    sandbox = make_box(settings, workspace)
    try:
        assert sh(sandbox, "printf 'cr\\xe8me\\n' >> legacy.txt && printf '\\xff\\xfe raw\\n' > new.txt")[0] == 0
        sandbox.sync_workspace(base)
    finally:
        sandbox.close()
    assert (workspace / "legacy.txt").read_bytes() == b"caf\xe9\ncr\xe8me\n"
    assert (workspace / "new.txt").read_bytes() == b"\xff\xfe raw\n"


def test_what_git_prints_on_stderr_stays_out_of_the_patch(box, checkout):
    workspace, base = checkout
    noisy = (
        "git config filter.noisy.clean 'echo warning: noisy filter >&2; cat' && "
        "echo '*.py filter=noisy' > .gitattributes && echo '# fixed' >> calc.py"
    )
    assert sh(box, noisy)[0] == 0
    box.sync_workspace(base)
    assert (workspace / "calc.py").read_text().endswith("# fixed\n")
    assert "noisy" not in (workspace / "calc.py").read_text()


def test_the_patch_cap_counts_bytes_not_characters(box, checkout, monkeypatch):
    workspace, base = checkout
    monkeypatch.setattr(e2b_backend, "MAX_PATCH_BYTES", 600)
    assert sh(box, "for i in $(seq 300); do printf 'é'; done > accents.txt")[0] == 0  # 300 characters, 600 bytes
    with pytest.raises(E2BError, match="larger than 600 bytes"):
        box.sync_workspace(base)
    assert not (workspace / "accents.txt").exists()


def test_what_setup_leaves_untracked_stays_out_of_the_patch(box, checkout):
    workspace, base = checkout
    assert sh(box, "mkdir -p .venv/bin && echo x > .venv/bin/tool && echo y > setup.log", network=True)[0] == 0
    assert sh(box, "echo fix >> calc.py")[0] == 0
    box.sync_workspace(base)
    assert diff_stats(workspace, base).files_changed == 1 and not (workspace / ".venv").exists()


def test_a_patch_cannot_reach_into_git_or_outside_the_checkout(checkout):
    workspace, _ = checkout
    for path in (".git/hooks/post-checkout", "../outside.txt"):
        patch = (
            f"diff --git a/{path} b/{path}\nnew file mode 100755\n--- /dev/null\n+++ b/{path}\n"
            "@@ -0,0 +1 @@\n+touch /tmp/pwned\n"
        )
        with pytest.raises(E2BError, match="applying"):
            apply_patch(workspace, patch.encode())
    assert not (workspace / ".git" / "hooks" / "post-checkout").exists()
    assert not (workspace.parent / "outside.txt").exists()


# --- Creation and its limits --------------------------------------------------------------------------------------


def test_creation_waits_for_a_slot_under_the_concurrent_cap(cloud, checkout, settings, tmp_path):
    workspace, _ = checkout
    capped = settings.model_copy(update={"e2b_max_concurrent": 1, "e2b_timeout_s": 2})
    first = E2BSandbox(workspace=workspace, home=tmp_path / "h", settings=capped)
    threading.Timer(0.4, first.close).start()
    started = time.monotonic()
    E2BSandbox(workspace=workspace, home=tmp_path / "h", settings=capped).close()
    assert time.monotonic() - started >= 0.4


def test_the_throttle_times_out_without_a_slot_and_spaces_creations():
    throttle = Throttle(per_s=10, cap=1)
    throttle.acquire(timeout=1)
    with pytest.raises(E2BError, match="no e2b sandbox slot"):
        throttle.acquire(timeout=0.05)
    started = time.monotonic()
    for _ in range(3):
        throttle.release()
        throttle.acquire(timeout=1)
    assert time.monotonic() - started >= 0.2  # 0.1 s apart, counted from the first creation


def test_sdk_errors_become_e2b_errors_and_free_the_slot(cloud, checkout, settings, tmp_path):
    workspace, _ = checkout
    cloud.fail("create", 401, 401)
    capped = settings.model_copy(update={"e2b_max_concurrent": 1, "e2b_timeout_s": 1})
    for _ in range(2):
        with pytest.raises(E2BError, match="AuthenticationException"):
            E2BSandbox(workspace=workspace, home=tmp_path / "h", settings=capped)
    assert len(calls(cloud, "create")) == 2  # an error that is no refusal is not retried


def test_a_creation_whose_answer_was_lost_is_not_duplicated(cloud, checkout, settings, monkeypatch):
    monkeypatch.setattr(e2b_fleet, "_FIRST_PAUSE_S", 0.01)
    cloud.lost_create_answers = 1
    sandbox = make_box(settings, checkout[0])
    sandbox.close()
    keys = {call[1]["idempotency_key"] for call in calls(cloud, "create")}
    assert len(calls(cloud, "create")) == 2 and len(keys) == 1 and list(cloud.boxes) == ["sbx0"]
    assert wait_until(lambda: not cloud.alive())


# --- Item 7: the operator's smoke command, run here against the fake ------------------------------------------------


def test_the_smoke_command_passes_against_the_fake(cloud, tmp_path, capsys, monkeypatch):
    from yudai_solver.sandboxes import e2b_smoke

    monkeypatch.setenv("E2B_API_KEY", "e2b_fake")
    monkeypatch.setattr(e2b_commands, "GRACE_S", 1)
    assert e2b_smoke.main() == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert out.count("OK  ") == 8 and "all checks passed" in out and cloud.alive() == []

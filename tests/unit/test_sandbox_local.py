"""The local sandbox, with real processes: environment allowlist, cwd, timeouts, kill, submit, output cap."""

import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import pytest

from yudai_solver.base.errors import InvalidInput
from yudai_solver.sandboxes import CommandResult, LocalSandbox, Sandbox, SandboxKilled, create_sandbox

EXTRA_SECRET = "extra-value-7f3a"
SANDBOX_VARS = {
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TERM",
    "PAGER",
    "MANPAGER",
    "GIT_PAGER",
    "PIP_PROGRESS_BAR",
    "TQDM_DISABLE",
    "PYTHONDONTWRITEBYTECODE",
    "EXTRA_TOKEN",
}
BASH_VARS = {"PWD", "SHLVL", "_"}


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def sandbox(tmp_path: Path, workspace: Path):
    box = LocalSandbox(
        workspace=workspace, home=tmp_path / "home", env_extra={"EXTRA_TOKEN": EXTRA_SECRET}, command_timeout=10
    )
    yield box
    box.close()


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group `pgid`, from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry.name))
    return members


def is_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def soon(condition, seconds: float = 1) -> bool:
    """SIGKILL is delivered asynchronously: a killed process may need a few ms to die."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def wait_for(path: Path, seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists() or not path.read_text().strip():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def test_local_sandbox_is_a_sandbox(sandbox: LocalSandbox):
    assert isinstance(sandbox, Sandbox)
    assert sandbox.sandbox_id.startswith("local-")


def test_environment_is_the_allowlist_and_never_the_workers(sandbox: LocalSandbox, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "canary-xyz")

    output = sandbox.execute({"command": "env"})["output"]

    assert "canary-xyz" not in output
    names = {line.split("=", 1)[0] for line in output.splitlines() if "=" in line}
    assert names == SANDBOX_VARS | BASH_VARS
    assert f"HOME={tmp_path / 'home'}" in output.splitlines()
    assert f"EXTRA_TOKEN={EXTRA_SECRET}" in output.splitlines()
    assert "LC_ALL=C.UTF-8" in output.splitlines()


def test_workers_virtualenv_is_not_on_the_sandbox_path(sandbox: LocalSandbox):
    path = sandbox.execute({"command": 'printf %s "$PATH"'})["output"].split(":")

    assert str(Path(sys.prefix, "bin")) not in path


def test_template_vars_and_trajectory_carry_no_environment_value(sandbox: LocalSandbox, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "canary-xyz")

    exposed = repr(sandbox.get_template_vars(task="t")) + repr(sandbox.serialize())

    assert "canary-xyz" not in exposed
    assert EXTRA_SECRET not in exposed
    assert {"system", "release", "version", "machine", "task"} <= sandbox.get_template_vars(task="t").keys()


def test_commands_start_in_the_workspace(sandbox: LocalSandbox, workspace: Path):
    (workspace / "sub").mkdir()

    assert sandbox.execute({"command": "pwd"})["output"].strip() == str(workspace)
    assert sandbox.execute({"command": "pwd"}, cwd="sub")["output"].strip() == str(workspace / "sub")
    assert sandbox.run("pwd", timeout=5).output.strip() == str(workspace)


def test_execute_returns_mini_swe_agent_shape(sandbox: LocalSandbox):
    assert sandbox.execute({"command": "echo out; echo err >&2; exit 3"}) == {
        "output": "out\nerr\n",
        "returncode": 3,
        "exception_info": "",
    }


def test_timeout_kills_the_command_and_all_its_children(sandbox: LocalSandbox):
    started = time.monotonic()

    output = sandbox.execute({"command": "echo $$; sleep 600 & echo $!; sleep 600"}, timeout=1)

    assert time.monotonic() - started < 5
    assert output["returncode"] == -1
    assert "timed out" in output["exception_info"]
    leader, background = (int(line) for line in output["output"].split())
    assert soon(lambda: not is_alive(leader) and not is_alive(background))
    assert soon(lambda: group_members(leader) == [])


def test_background_children_do_not_outlive_their_command(sandbox: LocalSandbox):
    output = sandbox.execute({"command": "sleep 600 >/dev/null 2>&1 & echo $!"})

    assert output["returncode"] == 0
    assert soon(lambda: not is_alive(int(output["output"])))


def test_a_background_child_holding_the_output_does_not_stall_the_command(sandbox: LocalSandbox):
    started = time.monotonic()

    output = sandbox.execute({"command": "sleep 600 & echo $!"})

    assert time.monotonic() - started < 2
    assert (output["returncode"], output["exception_info"]) == (0, "")
    assert soon(lambda: not is_alive(int(output["output"])))


def test_kill_from_another_thread_stops_running_commands_within_2s(sandbox: LocalSandbox, workspace: Path):
    raised = []

    def run(name: str) -> None:
        try:
            sandbox.execute({"command": f"echo $$ > {name}; sleep 600"})
        except SandboxKilled as exc:
            raised.append(exc)

    threads = [threading.Thread(target=run, args=(name,)) for name in ("a.pid", "b.pid")]
    for thread in threads:
        thread.start()
    wait_for(workspace / "a.pid")
    wait_for(workspace / "b.pid")
    started = time.monotonic()
    sandbox.kill()
    for thread in threads:
        thread.join(2)

    assert time.monotonic() - started < 2
    assert len(raised) == 2
    for name in ("a.pid", "b.pid"):
        assert soon(lambda: group_members(int((workspace / name).read_text())) == [])


def test_a_killed_sandbox_refuses_later_commands_at_once(sandbox: LocalSandbox, workspace: Path):
    sandbox.kill()
    started = time.monotonic()

    with pytest.raises(SandboxKilled):
        sandbox.execute({"command": "touch ran"})
    with pytest.raises(SandboxKilled):
        sandbox.run("touch ran", timeout=5)

    assert time.monotonic() - started < 0.5
    assert not (workspace / "ran").exists()


def test_submit_line_raises_submitted_like_mini_swe_agent(sandbox: LocalSandbox, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MSWEA_SILENT_STARTUP", "1")
    monkeypatch.setenv("MSWEA_GLOBAL_CONFIG_DIR", str(tmp_path / "mswea"))
    from minisweagent.exceptions import Submitted

    with pytest.raises(Submitted) as caught:
        sandbox.execute({"command": "printf '\\nCOMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT\\nthe summary\\n'"})

    assert caught.value.messages == (
        {
            "role": "exit",
            "content": "the summary\n",
            "extra": {"exit_status": "Submitted", "submission": "the summary\n"},
        },
    )


def test_submit_line_of_a_failed_command_is_just_output(sandbox: LocalSandbox):
    output = sandbox.execute({"command": "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT; exit 1"})

    assert output["returncode"] == 1


def test_importing_sandboxes_does_not_import_mini_swe_agent():
    probe = "import sys, yudai_solver.sandboxes; sys.exit('minisweagent' in sys.modules)"

    assert subprocess.run([sys.executable, "-c", probe], check=False).returncode == 0


def test_huge_output_is_capped_while_it_streams(sandbox: LocalSandbox):
    command = "head -c 50000000 /dev/zero | tr '\\0' x; echo; echo END"
    tracemalloc.start()
    try:
        result = sandbox.run(command, timeout=30)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert result.returncode == 0 and result.truncated
    assert len(result.output) <= sandbox.config.max_output_bytes + 100
    assert result.output.startswith("xxxx") and result.output.endswith("xxx\nEND\n")
    assert f"[... {50_000_000 + 5 - sandbox.config.max_output_bytes} bytes of output cut ...]" in result.output
    assert peak < 5_000_000


def test_run_reports_a_command_result(sandbox: LocalSandbox):
    result = sandbox.run("echo out; exit 4", timeout=5, network=True)

    assert result == CommandResult(
        command="echo out; exit 4",
        returncode=4,
        output="out\n",
        timed_out=False,
        duration_s=result.duration_s,
        truncated=False,
    )
    assert 0 <= result.duration_s < 5


def test_run_times_out_with_returncode_minus_one(sandbox: LocalSandbox):
    result = sandbox.run("echo started; sleep 600", timeout=0.5)

    assert (result.returncode, result.timed_out, result.output) == (-1, True, "started\n")
    assert result.duration_s < 3


def test_create_sandbox_by_name(tmp_path: Path, workspace: Path):
    box = create_sandbox("local", workspace=workspace, home=tmp_path / "h", command_timeout=7)

    assert isinstance(box, LocalSandbox) and box.config.timeout == 7
    assert (tmp_path / "h").is_dir()


def test_unknown_sandbox_name_lists_the_known_ones(tmp_path: Path, workspace: Path):
    with pytest.raises(InvalidInput, match="unknown sandbox 'docker'; known: bubblewrap, e2b, local"):
        create_sandbox("docker", workspace=workspace, home=tmp_path / "h")

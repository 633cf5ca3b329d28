"""The worker's git under attack: a command of a concurrent run hunting for the GitHub token, a host that accepts
the connection and never answers, a local origin whose hooks would run as the worker."""

import json
import shlex
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.fakes.fixtures import calc_repository, git_certificate  # noqa: F401 - fixtures
from tests.fakes.git_http import GitHttpsServer, StallingServer
from tests.helpers import wait_for
from yudai_solver.base import statuses
from yudai_solver.base.db import transaction
from yudai_solver.base.git import GitError
from yudai_solver.base.models import AIModel, Solve, SolveRun
from yudai_solver.base.settings import Settings
from yudai_solver.execution.control import RunControl
from yudai_solver.execution.run import RunEnv, execute_run
from yudai_solver.execution.workspace import workspaces_for
from yudai_solver.sandboxes.local import LocalSandbox
from yudai_solver.scm.github import GitHubHost
from yudai_solver.scm.local import LocalHost
from yudai_solver.solving.chat_sessions import create_session
from yudai_solver.solving.users import create_user

pytestmark = pytest.mark.slow

SNOOP = Path(__file__).parent.parent / "fakes" / "snoop.py"


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def private_github(git_certificate, tmp_path, monkeypatch):
    """A private repository on an HTTPS git server that challenges like GitHub, with a token of this test's own
    (so no other test's process can hold it), and the settings of a worker that has the token."""
    cert, key = git_certificate
    monkeypatch.setenv("GIT_SSL_CAINFO", str(cert))
    token = f"ghp_{uuid.uuid4().hex}"
    root = tmp_path / "served"
    server = GitHttpsServer(root, token=token, cert=cert, key=key, private=True)
    base = server.start()
    subprocess.run(["git", "clone", "-q", "--bare", str(calc_repository(tmp_path / "src")), str(root / "acme/secret")])
    settings = Settings(data_dir=tmp_path / "data", github_api_url=f"{base}/api/v3", github_token=token)
    yield settings, f"{base}/acme/secret", token, server
    server.stop()


def test_a_snooping_command_of_another_run_finds_no_token_while_the_worker_fetches_and_pushes(private_github, tmp_path):
    settings, repo, token, server = private_github
    ready, stop = tmp_path / "snoop-ready", tmp_path / "snoop-stop"
    sandbox = LocalSandbox(workspace=_dir(tmp_path / "snoop-work"), home=tmp_path / "snoop-home")
    command = shlex.join(["python3", str(SNOOP), str(ready), str(stop), repo.split("/")[2]])
    snooped: list[str] = []
    snooper = threading.Thread(target=lambda: snooped.append(sandbox.run(command, timeout=240).output))
    snooper.start()
    try:
        wait_for(ready.exists, timeout=60)
        workspaces, host = workspaces_for(settings), GitHubHost.from_settings(settings)
        workspaces.checkout(repo, "main", tmp_path / "checkout")  # clones the mirror: the token is asked for
        for attempt in range(3):
            workspaces.mirror(repo)  # fetches
            host.push(repo, tmp_path / "checkout", f"snooped-{attempt}")
    finally:
        stop.touch()
        snooper.join(timeout=60)
        sandbox.close()

    report = json.loads(snooped[0].strip().splitlines()[-1])
    leaked = [text for text in report["found"] + list(report["asked"].values()) if token in text]
    assert leaked == [], f"the snooping command read the token: {leaked}"
    # It did look where the token used to be: the environment of the git that talked to the host.
    assert report["seen"].get("git-remote-http", 0) > 0, report
    assert [p["authorized"] for p in server.pushes] == [True] * 6  # 3 pushes of 2 requests: all authenticated


def test_the_users_own_credential_helpers_are_neither_asked_nor_told(private_github, tmp_path, monkeypatch):
    settings, repo, token, _server = private_github
    home = _dir(tmp_path / "home")
    (home / ".gitconfig").write_text(
        '[credential]\n\thelper = store\n[credential "https://127.0.0.1"]\n\thelper = store\n'
        "[core]\n\taskPass = /bin/false\n"
    )
    monkeypatch.setenv("HOME", str(home))
    workspaces = workspaces_for(settings)

    workspaces.checkout(repo, "main", tmp_path / "checkout")
    GitHubHost.from_settings(settings).push(repo, tmp_path / "checkout", "mine")

    assert not (home / ".git-credentials").exists()  # `store` would have written the token there
    wrong = Settings(data_dir=tmp_path / "other", github_api_url=settings.github_api_url, github_token="ghp_wrong")
    started = time.monotonic()
    with pytest.raises(GitError, match="Authentication failed|could not read"):
        workspaces_for(wrong).mirror(repo)
    assert time.monotonic() - started < 20  # refused, not waiting for a prompt


@pytest.fixture
def stalling():
    server = StallingServer()
    yield server
    server.stop()


def test_a_clone_from_a_host_that_never_answers_ends_within_the_stall_time(stalling, tmp_path):
    settings = Settings(data_dir=tmp_path / "data", git_stall_s=2)
    ended: list[BaseException] = []
    started = time.monotonic()

    def clone() -> None:
        try:
            workspaces_for(settings).mirror(f"{stalling.url}/acme/tarpit")
        except BaseException as exc:  # noqa: BLE001 - kept for the assertions
            ended.append(exc)

    worker = threading.Thread(target=clone)
    worker.start()
    worker.join(timeout=15)
    elapsed = time.monotonic() - started
    stalling.stop()  # lets a git that is still waiting fail, so a failing test leaves nothing behind
    worker.join(timeout=30)

    assert stalling.accepted >= 1 and elapsed < 10, f"the clone was still waiting after {elapsed:.1f} s"
    assert isinstance(ended[0], GitError) and "stalled" in str(ended[0])


def test_a_cancel_ends_a_stalled_clone_and_a_run_waiting_for_the_same_mirror(stalling, tmp_path):
    settings = Settings(data_dir=tmp_path / "data", git_stall_s=600)
    control = RunControl(run_id="r", solve_id="s")
    repo = f"{stalling.url}/acme/tarpit"
    ended: dict[str, tuple[float, BaseException | None]] = {}

    def checkout(name: str) -> None:
        error = None
        try:
            workspaces_for(settings).checkout(repo, "main", tmp_path / name, cancel=control.cancel_event)
        except BaseException as exc:  # noqa: BLE001 - kept for the assertions
            error = exc
        ended[name] = (time.monotonic(), error)

    threads = [threading.Thread(target=checkout, args=(name,)) for name in ("cloning", "waiting")]
    for thread in threads:
        thread.start()
    wait_for(lambda: stalling.accepted >= 1, timeout=20)
    time.sleep(1)
    assert ended == {}  # both still wait: one on the host, the other for the mirror's lock
    cancelled = time.monotonic()
    control.stop("cancelled by the test")
    for thread in threads:
        thread.join(timeout=10)
    stalling.stop()

    assert set(ended) == {"cloning", "waiting"}
    assert all(at - cancelled < 3 for at, _ in ended.values()), {n: at - cancelled for n, (at, _) in ended.items()}
    assert all(isinstance(error, GitError) and "cancelled" in str(error) for _, error in ended.values()), ended


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_cancelling_a_run_ends_its_checkout_from_a_stalled_host(stalling, session_factory, tmp_path):
    settings = Settings(data_dir=tmp_path / "data", git_stall_s=600, database_url="sqlite://")
    with transaction(session_factory) as session:
        user, _ = create_user(session, name="alice")
        chat = create_session(session, user=user, title=None)
        session.add(AIModel(name="m", provider="openai", model_id="m", config={}))
        session.add(
            Solve(
                id="stalled",
                user_id=user.id,
                session_id=chat.id,
                repo_url=f"{stalling.url}/acme/tarpit",
                issue_number=1,
                matrix={"experiments": [{}]},
                issue_title="t",
                issue_body="b",
            )
        )
        session.flush()
        session.add(SolveRun(id="stalled-1", solve_id="stalled", model="m", temperature=0, max_edits=5, evolution="x"))
    control = RunControl(run_id="stalled-1", solve_id="stalled")
    env = RunEnv(settings, session_factory, workspaces_for(settings))
    run = threading.Thread(target=execute_run, args=(env, control))
    run.start()
    wait_for(lambda: stalling.accepted >= 1, timeout=20)
    time.sleep(0.5)
    assert run.is_alive()  # still cloning
    cancelled = time.monotonic()
    control.stop("cancelled by the test")
    run.join(timeout=10)
    took = time.monotonic() - cancelled
    stalling.stop()
    run.join(timeout=30)

    assert took < 3, f"the run still waited on the host {took:.1f} s after its cancel"
    with session_factory() as session:
        stored = session.get(SolveRun, "stalled-1")
        assert (stored.status, stored.error_message) == (statuses.FAILED, "cancelled by the test")


def test_a_push_to_a_local_origin_runs_none_of_its_hooks_nor_its_commands(tmp_path):
    source = calc_repository(tmp_path / "repos" / "calc")
    origin, markers = tmp_path / "origin.git", _dir(tmp_path / "markers")
    git("clone", "-q", "--bare", str(source), str(origin))
    git("-C", str(source), "remote", "add", "origin", str(origin))
    hooks = ("pre-receive", "update", "post-receive", "post-update", "reference-transaction", "push-to-checkout")
    for hook in hooks:
        script = origin / "hooks" / hook
        script.write_text(f"#!/bin/sh\ncat >/dev/null\ntouch {shlex.quote(str(markers / hook))}\n")
        script.chmod(0o755)
    # A command of the origin's configuration that receive-pack runs: it lists the refs of the origin's alternates.
    other = tmp_path / "other.git"
    git("init", "-q", "--bare", str(other))
    (origin / "objects" / "info" / "alternates").write_text(f"{other / 'objects'}\n")
    git("-C", str(origin), "config", "core.alternateRefsCommand", f"touch {shlex.quote(str(markers / 'alternates'))}")
    checkout = tmp_path / "checkout"
    git("clone", "-q", str(source), str(checkout))

    LocalHost.from_settings(Settings(data_dir=tmp_path / "data")).push(str(source), checkout, "yudai/fix")

    assert git("-C", str(origin), "rev-parse", "yudai/fix") == git("-C", str(source), "rev-parse", "HEAD")
    assert sorted(path.name for path in markers.iterdir()) == []


def _dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path

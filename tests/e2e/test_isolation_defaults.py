"""Safe defaults for a shared service (attack review, findings 1 and 7), with real sandboxed commands:

- the sandbox a serving process picks at start (bubblewrap where it runs) and the refusal of `local` for several
  users without the operator's explicit consent, at start, for new solves and for runs;
- what that buys: under bubblewrap an agent command can neither read nor change the worker's SQLite database,
  which under `local` makes any user an admin;
- setup commands with outbound network but not the host's (PostgreSQL on 127.0.0.1:5432 included), and a solve
  that turns setup network off.

Real in-process dispatcher, scripted model server, real git; SQLite (the database kind plays no part here).
"""

import os
import shutil
import socket
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.e2e.conftest import Pipeline
from yudai_solver.base.db import transaction
from yudai_solver.base.models import AIModel, Solve, SolveRun, User
from yudai_solver.base.settings import Settings
from yudai_solver.dispatch.inprocess import InProcessDispatcher
from yudai_solver.entry.api import create_app
from yudai_solver.entry.demo import TEST_COMMAND, create_repository
from yudai_solver.sandboxes.slirp import host_addresses, missing_tools
from yudai_solver.solving import sandbox_policy
from yudai_solver.solving.chat_sessions import create_session
from yudai_solver.solving.sandbox_policy import SandboxRefused, SharedLocalSandbox, choose_sandbox
from yudai_solver.solving.users import create_user
from yudai_solver.testing.scripted import ScriptedChatServer, Step

pytestmark = pytest.mark.slow

needs_bwrap = pytest.mark.skipif(
    shutil.which("bwrap") is None or os.geteuid() != 0, reason="needs bubblewrap and a root worker"
)
needs_slirp = pytest.mark.skipif(bool(missing_tools()), reason="needs slirp4netns and iproute2")
FIX = Step("sed -i 's/return a - b/return a + b/' calc.py", "Fix the operator.")
NO_BWRAP = "bwrap: setting up uid map: Permission denied"


@pytest.fixture
def database_url(tmp_path: Path, _sqlite_template: Path) -> str:
    """SQLite only (see the module docstring): a copy of the migrated template."""
    path = tmp_path / "yudai.db"
    shutil.copyfile(_sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def users(session_factory) -> dict[str, int]:
    """A shared service: its first user (an admin) and mallory, who is not one."""
    with transaction(session_factory) as session:
        owner, _ = create_user(session, name="owner")
        mallory, _ = create_user(session, name="mallory")
        assert owner.is_admin and not mallory.is_admin
        return {"owner": owner.id, "mallory": mallory.id}


@pytest.fixture
def make_pipeline(session_factory, users, tmp_path):
    """A pipeline whose solves the owner starts; `api_settings` (default: the same) are those start_solve sees."""
    made: list[Pipeline] = []

    def make(scripts: dict, api_settings: dict | None = None, **overrides) -> Pipeline:
        repo = create_repository(tmp_path / "repos" / "calc")
        base = {
            "data_dir": tmp_path / "data",
            "local_repo_roots": str(tmp_path / "repos"),
            "command_timeout_s": 30,
            "test_timeout_s": 60,
            "model_timeout_s": 10,
        }
        settings = Settings(**base | overrides)
        with transaction(session_factory) as session:
            chat = create_session(session, user=session.get_one(User, users["owner"]), title="defaults")
            session_id = chat.id
        server = ScriptedChatServer(scripts)
        server.url = server.start()
        dispatcher = InProcessDispatcher(settings, session_factory)
        dispatcher.start()
        shown = Settings(**base | (overrides if api_settings is None else api_settings))
        made.append(Pipeline(shown, session_factory, dispatcher, server, repo, users["owner"], session_id))
        for name in scripts:
            made[-1].add_model(name)
        return made[-1]

    yield make
    for pipeline in made:
        pipeline.dispatcher.stop()
        pipeline.server.stop()


def solve_once(pipeline: Pipeline, model: str, **request) -> tuple[Solve, SolveRun]:
    solve = pipeline.wait(pipeline.start(matrix={"models": [model]}, **request), timeout=120)
    with pipeline.factory() as session:
        run = session.scalar(select(SolveRun).where(SolveRun.solve_id == solve.id))
    return solve, run


def is_admin(factory, user_id: int) -> bool:
    with factory() as session:
        return bool(session.get_one(User, user_id).is_admin)


# --- The start-up choice ------------------------------------------------------------------------------------------


@needs_bwrap
def test_a_shared_service_left_without_a_sandbox_setting_picks_bubblewrap():
    settings, choice = choose_sandbox(Settings(), users=2)

    assert (settings.sandbox, settings.sandbox_guard, choice.name, choice.isolates) == (
        "bubblewrap",
        True,
        "bubblewrap",
        True,
    )
    assert "picked: bubblewrap runs here" in choice.message


def test_where_bubblewrap_cannot_run_one_user_gets_local_and_a_second_is_refused():
    settings, choice = choose_sandbox(Settings(), users=1, probe=lambda: NO_BWRAP)
    assert (settings.sandbox, choice.isolates) == ("local", False)
    assert NO_BWRAP in choice.message and "single-user only" in (choice.warning or "")

    with pytest.raises(SharedLocalSandbox) as refused:
        choose_sandbox(Settings(), users=2, probe=lambda: NO_BWRAP)
    assert NO_BWRAP in refused.value.message
    assert "YUDAI_SANDBOX=local and YUDAI_ALLOW_SHARED_LOCAL_SANDBOX=true" in refused.value.message


def test_local_for_several_users_needs_both_the_explicit_setting_and_the_acknowledgement():
    with pytest.raises(SharedLocalSandbox):
        choose_sandbox(Settings(sandbox="local"), users=2)
    with pytest.raises(SharedLocalSandbox):  # the acknowledgement alone does not choose local
        choose_sandbox(Settings(allow_shared_local_sandbox=True), users=2, probe=lambda: NO_BWRAP)

    settings, choice = choose_sandbox(Settings(sandbox="local", allow_shared_local_sandbox=True), users=2)

    assert (settings.sandbox, settings.allow_shared_local_sandbox, choice.isolates) == ("local", True, False)
    assert "acknowledged" in (choice.warning or "") and "make itself an admin" in (choice.warning or "")


def test_an_explicit_sandbox_that_cannot_run_here_stops_the_start():
    with pytest.raises(SandboxRefused, match="bubblewrap cannot run here"):
        choose_sandbox(Settings(sandbox="bubblewrap"), users=1, probe=lambda: NO_BWRAP)
    with pytest.raises(SandboxRefused, match="unknown sandbox 'docker'"):
        choose_sandbox(Settings(sandbox="docker"), users=1)


def test_health_tells_the_sandbox_whether_it_isolates_and_the_warning(session_factory, tmp_path):
    def health(settings: Settings, choice=None) -> dict:
        app = create_app(settings, session_factory=session_factory)
        if choice is not None:
            app.state.sandbox_choice = choice
        with TestClient(app) as client:
            return client.get("/health").json()

    embedded = health(Settings(data_dir=tmp_path))
    shared, choice = choose_sandbox(Settings(sandbox="local", allow_shared_local_sandbox=True), users=2)
    acknowledged = health(shared, choice)

    assert embedded["status"] == "ok"
    assert (embedded["sandbox"]["name"], embedded["sandbox"]["isolates"]) == ("local", False)
    assert (acknowledged["sandbox"]["name"], acknowledged["sandbox"]["isolates"]) == ("local", False)
    assert "acknowledged" in acknowledged["sandbox"]["warning"]
    assert health(Settings(), sandbox_policy.no_runs_here())["sandbox"]["name"] is None


# --- While running: a second user on an unacknowledged local service -------------------------------------------


def test_a_local_service_refuses_new_solves_once_a_second_user_exists(session_factory, tmp_path):
    create_repository(tmp_path / "repos" / "calc")
    with transaction(session_factory) as session:
        _, token = create_user(session, name="owner")
    headers = {"Authorization": f"Bearer {token}"}
    body = {"repo_url": str(tmp_path / "repos" / "calc"), "issue_number": 1, "issue_title": "t"}
    body |= {"matrix": {"models": ["m"]}, "test_command": TEST_COMMAND}
    guarded = Settings(
        data_dir=tmp_path / "data", local_repo_roots=str(tmp_path / "repos"), sandbox="local", sandbox_guard=True
    )
    with transaction(session_factory) as session:
        session.add(AIModel(name="m", provider="openai", model_id="m", config={}))

    def start(settings: Settings):
        with TestClient(create_app(settings, session_factory=session_factory)) as client:
            chat = client.post("/sessions", json={}, headers=headers).json()["id"]
            return client.post(f"/sessions/{chat}/solve/start", json=body, headers=headers)

    assert start(guarded).status_code == 201  # one user: local is fine
    with transaction(session_factory) as session:
        create_user(session, name="second")
    refused = start(guarded)
    acknowledged = start(guarded.model_copy(update={"allow_shared_local_sandbox": True}))

    detail = refused.json()["detail"]
    assert refused.status_code == 409
    assert "local sandbox" in detail and "YUDAI_ALLOW_SHARED_LOCAL_SANDBOX" in detail
    assert acknowledged.status_code == 201


def test_a_run_reaching_an_unacknowledged_local_worker_of_a_shared_service_fails_unrun(make_pipeline, tmp_path):
    marker = tmp_path / "ran"
    # The API that took the solve runs elsewhere (no guard there); this worker runs `local` with the guard on.
    pipeline = make_pipeline(
        {"m": [Step(f"touch {marker}", "Run anything."), FIX]},
        api_settings={},
        sandbox="local",
        sandbox_guard=True,
    )
    solve, run = solve_once(pipeline, "m", test_command=TEST_COMMAND)

    assert (solve.status, run.status) == ("failed", "failed")
    assert "SharedLocalSandbox" in run.error_message and "2 users" in run.error_message
    assert not marker.exists()


# --- What bubblewrap buys: the database stays out of an agent's reach -------------------------------------------

ESCALATE = """python3 - {db} <<'EOF'
import sqlite3, sys
try:
    db = sqlite3.connect(f"file:{{sys.argv[1]}}?mode=rw", uri=True)
    print("read:", db.execute("select name, is_admin from users").fetchall())
    db.execute("update users set is_admin = 1 where name = 'mallory'")
    db.commit()
    print("escalated")
except Exception as exc:
    print("refused:", exc)
EOF"""


@pytest.mark.parametrize("kind", ["local", pytest.param("bubblewrap", marks=needs_bwrap)])
def test_an_agent_command_and_the_workers_sqlite_database(kind, make_pipeline, database_url, users):
    db_path = database_url.removeprefix("sqlite:///")
    pipeline = make_pipeline(
        {"attacker": [Step(ESCALATE.format(db=db_path), "Make mallory an admin."), FIX]}, sandbox=kind
    )
    solve, run = solve_once(pipeline, "attacker", test_command=TEST_COMMAND)
    output = run.trajectory_data["steps"][0]["output"]

    assert (solve.status, run.status) == ("completed", "completed"), run.error_message
    if kind == "local":  # what the finding reproduced, and why a shared service refuses local
        assert "escalated" in output and "'owner'" in output
        assert is_admin(pipeline.factory, users["mallory"])
    else:
        assert output.startswith("refused: unable to open database file"), output
        assert "'owner'" not in output
        assert not is_admin(pipeline.factory, users["mallory"])


# --- Setup commands: outbound network, not the host's -----------------------------------------------------------

SETUP_PROBE = """grep -c tap0 /proc/net/dev; python3 - {targets} <<'EOF'
import socket, sys
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), 2).close()
        print(target, "open")
    except OSError as exc:
        print(target, "closed:", exc)
EOF"""


@needs_bwrap
@needs_slirp
@pytest.mark.parametrize("setup_network", [None, False])
def test_a_setup_command_does_not_reach_postgresql_or_the_hosts_services(setup_network, make_pipeline):
    with socket.socket() as server:
        server.bind(("0.0.0.0", 0))
        server.listen()
        port = server.getsockname()[1]
        on_host = ["127.0.0.1", *host_addresses()]
        for address in on_host:  # every one of them open to the host itself
            socket.create_connection((address, port), 2).close()
        targets = ["127.0.0.1:5432", f"10.0.2.2:{port}", *(f"{address}:{port}" for address in on_host)]
        pipeline = make_pipeline({"fixer": [FIX]}, sandbox="bubblewrap")
        limits = {} if setup_network is None else {"setup_network": setup_network}
        solve, run = solve_once(
            pipeline,
            "fixer",
            test_command=TEST_COMMAND,
            setup_command=SETUP_PROBE.format(targets=" ".join(targets)),
            limits=limits,
        )

    assert (solve.status, run.status, run.tests_passed) == ("completed", "completed", True), run.error_message
    setup = run.diagnostics["setup"]
    lines = setup["output_tail"].splitlines()
    assert setup["returncode"] == 0, setup
    assert lines[0] == ("1" if setup_network is None else "0")  # a network interface, or none at all
    assert len(lines) == 1 + len(targets) and not any(line.endswith(" open") for line in lines), lines

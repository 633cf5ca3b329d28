"""Isolation through the whole pipeline: secrets kept out of everything stored, walls that hold while the run is
still recorded, untrusted text that stays text, and trajectories that stay small.

Real in-process dispatcher, scripted model server, real git; SQLite only (what is checked does not depend on the
database, and both databases run the pipeline in test_solve_pipeline.py).
"""

import json
import logging
import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.e2e.conftest import Pipeline
from tests.fakes.e2b_sdk import FakeCloud, installed_cloud
from yudai_solver.base.db import transaction
from yudai_solver.base.models import Base, Solve, SolveRun
from yudai_solver.base.settings import Settings
from yudai_solver.dispatch.inprocess import InProcessDispatcher
from yudai_solver.entry.api import create_app
from yudai_solver.entry.demo import TEST_COMMAND, create_repository
from yudai_solver.execution.agent import bounded
from yudai_solver.solving.chat_sessions import create_session
from yudai_solver.solving.users import create_user
from yudai_solver.testing.scripted import ScriptedChatServer, Step

pytestmark = pytest.mark.slow

needs_bwrap = pytest.mark.skipif(
    shutil.which("bwrap") is None or os.geteuid() != 0, reason="needs bubblewrap and a root worker"
)

CANARIES = {
    "OPENAI_API_KEY": "sk-canary-openai-1f2e",
    "YUDAI_GITHUB_TOKEN": "ghp_canary_github_3a4b",
    "YUDAI_DATABASE_URL": "postgresql://yudai:canary-db-password-5c6d@db.internal/yudai",
    "E2B_API_KEY": "e2b_canary_key_7e8f",
    "AWS_SECRET_ACCESS_KEY": "canary-aws-secret-9a0b",
}
FIX = Step("sed -i 's/return a - b/return a + b/' calc.py", "Fix the operator.")


@pytest.fixture
def database_url(tmp_path: Path, _sqlite_template: Path) -> str:
    """SQLite only (see the module docstring): a copy of the migrated template."""
    path = tmp_path / "yudai.db"
    shutil.copyfile(_sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def make_pipeline(session_factory, database_url, tmp_path, monkeypatch):
    """Like conftest's `pipeline`, with settings of the test's choosing (and any scripts)."""
    made = []

    def make(scripts: dict, **overrides) -> Pipeline:
        repo = create_repository(tmp_path / "repos" / "calc")
        settings = Settings(
            **{
                "data_dir": tmp_path / "data",
                "database_url": database_url,
                "local_repo_roots": str(tmp_path / "repos"),
                "command_timeout_s": 30,
                "test_timeout_s": 60,
                "model_timeout_s": 10,
                "e2b_creates_per_s": 100,
            }
            | overrides
        )
        with transaction(session_factory) as session:
            user, _ = create_user(session, name=f"iso-{len(made)}")
            chat = create_session(session, user=user, title="isolation")
            user_id, session_id = user.id, chat.id
        server = ScriptedChatServer(scripts)
        server.url = server.start()
        dispatcher = InProcessDispatcher(settings, session_factory)
        dispatcher.start()
        made.append(Pipeline(settings, session_factory, dispatcher, server, repo, user_id, session_id))
        for name in scripts:
            made[-1].add_model(name)
        return made[-1]

    yield make
    for pipeline in made:
        pipeline.dispatcher.stop()
        pipeline.server.stop()


@pytest.fixture
def fake_e2b(tmp_path, monkeypatch) -> Iterator[FakeCloud]:
    with installed_cloud(tmp_path / "e2b", monkeypatch) as service:
        yield service


def solve_once(pipeline: Pipeline, model: str, **request) -> tuple[Solve, SolveRun]:
    solve = pipeline.wait(pipeline.start(matrix={"models": [model]}, **request))
    with pipeline.factory() as session:
        run = session.scalar(select(SolveRun).where(SolveRun.solve_id == solve.id))
    return solve, run


def everything_stored(factory) -> str:
    """Every row of every table, as text."""
    with factory() as session:
        return "\n".join(
            repr(row) for table in Base.metadata.sorted_tables for row in session.execute(select(table)).all()
        )


def step_outputs(run: SolveRun) -> list[str]:
    return [step["output"] for step in run.trajectory_data["steps"]]


DUMP = [
    Step(
        "env; tr '\\0' '\\n' < /proc/1/environ; cat /proc/*/environ | tr '\\0' '\\n'; echo; cat /proc/$PPID/environ",
        "Dump every environment I can read.",
    ),
    Step(
        "git config -l --show-origin; cat .git/config; cat ~/.gitconfig ~/.git-credentials ~/.netrc",
        "Dump git configuration and credentials.",
    ),
    Step("ls -laR ~; cat ~/.* ~/.*/* 2>/dev/null | head -c 20000", "Dump the home directory."),
    Step(
        'cat .git/objects/info/alternates && cat "$(dirname "$(head -1 .git/objects/info/alternates)")/config"',
        "Dump the mirror's configuration.",
    ),
]


@pytest.mark.parametrize(
    "kind", ["local", pytest.param("bubblewrap", marks=needs_bwrap), pytest.param("e2b", marks=needs_bwrap)]
)
def test_no_worker_secret_reaches_anything_stored(kind, make_pipeline, fake_e2b, monkeypatch, caplog):
    for name, value in CANARIES.items():
        monkeypatch.setenv(name, value)
    caplog.set_level(logging.DEBUG)
    pipeline = make_pipeline({"leaky": [*DUMP, FIX]}, sandbox=kind)
    solve, run = solve_once(pipeline, "leaky", test_command=TEST_COMMAND)

    assert (solve.status, run.status, run.tests_passed, run.loc_changed) == ("completed", "completed", True, 2), (
        run.error_message
    )
    outputs = step_outputs(run)
    assert "PATH=" in outputs[0] and "HOME=" in outputs[0]  # the dump ran: a leak would have been caught
    stored = everything_stored(pipeline.factory)
    for value in CANARIES.values():
        assert value not in stored and value not in caplog.text
    if kind == "e2b":
        assert run.sandbox_id.startswith("sbx") and not fake_e2b.alive()
        sent = fake_e2b.sent()
        assert all(value not in sent for value in CANARIES.values())


@needs_bwrap
def test_every_wall_holds_in_a_bubblewrap_solve_and_the_run_is_recorded(make_pipeline, tmp_path):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        outside = tmp_path / "data" / "escaped.txt"
        script = [
            Step(f"echo x > {outside}; echo x > /usr/escaped; echo x > /etc/escaped", "Write outside."),
            Step("ls -A /root; cat /root/.bashrc /root/.profile", "Read /root."),
            Step(f"python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", {port}), 2)'", "Host port."),
            Step(":(){ :|:& };:; sleep 60", "Fork bomb."),
            Step("python3 -c 'b = bytearray(4 * 1024 ** 3); print(\"allocated\")'", "4 GB."),
            Step("while true; do :; done", "Loop forever."),
            FIX,
        ]
        pipeline = make_pipeline(
            {"hostile": script}, sandbox="bubblewrap", command_timeout_s=2, sandbox_max_processes=64
        )
        solve, run = solve_once(
            pipeline, "hostile", test_command=TEST_COMMAND, setup_command="mkdir -p .venv && echo ok > .venv/ready"
        )

    assert (solve.status, run.status, run.tests_passed, run.loc_changed, run.files_changed) == (
        "completed",
        "completed",
        True,
        2,
        1,
    ), run.error_message
    assert run.sandbox_id.startswith("bwrap-") and run.diagnostics["setup"]["returncode"] == 0
    steps = run.trajectory_data["steps"]
    write, read_root, port_probe, bomb, alloc, loop = steps[:6]
    assert write["returncode"] != 0 and not outside.exists() and "Read-only" in write["output"]
    assert "No such file" in read_root["output"]
    assert port_probe["returncode"] != 0 and "Connection refused" in port_probe["output"]
    assert bomb["returncode"] == -1 and "Resource temporarily unavailable" in bomb["output"]
    assert alloc["returncode"] != 0 and "MemoryError" in alloc["output"]
    assert loop["returncode"] == -1
    assert not [p for p in os.listdir("/proc") if p.isdigit() and _uid(p) in range(60000, 61000)]


def _uid(pid: str) -> int:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except FileNotFoundError:
        return -1


def test_issue_text_reaches_the_model_verbatim_and_no_shell_or_template_runs_it(make_pipeline):
    marker = f"/tmp/pwned-{uuid.uuid4().hex}"
    title = f"Fix $(touch {marker}-title) and `touch {marker}-tick` {{{{ 7*7 }}}} 'single' \"double\""
    body = (
        f"Line one; touch {marker}-semicolon\n{{% for x in range(3) %}}loop{{% endfor %}} {{# c #}}\n"
        f"| touch {marker}-pipe && echo $HOME > {marker}-and"
    )
    echo = Step("printf '%s\\n' '{{ 7*7 }}' '{% if true %}yes{% endif %}'", "Print template syntax.")
    pipeline = make_pipeline({"echo": [echo]}, sandbox="local")
    solve, run = solve_once(pipeline, "echo", test_command="true", issue_title=title, issue_body=body)

    assert run.status == "completed", run.error_message
    first, second = [r for r in pipeline.server.requests if r["model"] == "echo"][:2]
    task = next(m["content"] for m in first["messages"] if m["role"] == "user")
    task = task if isinstance(task, str) else " ".join(part.get("text", "") for part in task)
    # The marker is random hex and may itself contain "49": look for a rendering only in what is left.
    rest = task.replace(marker, "")
    assert title in task and body in task and " 49 " not in rest and "looplooploop" not in rest
    observation = second["messages"][-1]["content"]  # the command's output, through the observation template
    assert "{{ 7*7 }}" in observation and "{% if true %}yes{% endif %}" in observation and "49" not in observation
    assert not list(Path("/tmp").glob(f"{Path(marker).name}*"))
    with pipeline.factory() as session:
        stored = session.get(Solve, solve.id)
    assert (stored.issue_title, stored.issue_body) == (title, body)


def test_a_repository_path_full_of_shell_and_template_syntax_is_only_a_path(make_pipeline, tmp_path):
    marker = f"/tmp/pwned-{uuid.uuid4().hex}"
    pipeline = make_pipeline({"fixer": [FIX]}, sandbox="local")
    weird = tmp_path / "repos" / f"calc $(touch {marker}) `touch {marker}` ;{{{{7*7}}}}'\""
    create_repository(weird)
    solve, run = solve_once(pipeline, "fixer", test_command=TEST_COMMAND, repo_url=str(weird))
    assert (run.status, run.tests_passed, run.loc_changed) == ("completed", True, 2), run.error_message
    assert solve.repo_url == str(weird) and not list(Path("/tmp").glob(f"{Path(marker).name}*"))


BAD_BRANCHES = [
    "main; touch /tmp/pwned",
    "$(touch /tmp/pwned)",
    "`touch /tmp/pwned`",
    "main\nfeature",
    "--upload-pack=touch /tmp/pwned",
    "{{ 7*7 }}",
    "{% raw %}",
    "it's",
    'say "hi"',
    "a|b",
    "a&b",
    "a>b",
]
BAD_URLS = [
    "https://example.com/acme/w;touch /tmp/pwned",
    "https://example.com/$(touch /tmp/pwned)/w",
    "https://example.com/`id`/w",
    "https://tok@example.com/acme/w",
    "ext::sh -c touch% /tmp/pwned",
    "https://example.com/acme/w\n--upload-pack=x",
    "https://example.com/{{7*7}}/w",
    "file:///tmp/$(id)",
]


@pytest.mark.parametrize(
    ("field", "value"), [("base_branch", b) for b in BAD_BRANCHES] + [("repo_url", u) for u in BAD_URLS]
)
def test_branch_names_and_urls_with_shell_or_template_syntax_are_refused_with_422(
    field, value, session_factory, tmp_path
):
    (tmp_path / "repos").mkdir()
    repo = create_repository(tmp_path / "repos" / "calc")
    settings = Settings(data_dir=tmp_path / "data", local_repo_roots=str(tmp_path / "repos"))
    with transaction(session_factory) as session:
        user, token = create_user(session, name="api")
        session_id = create_session(session, user=user, title="t").id
    body = {
        "repo_url": str(repo),
        "issue_number": 1,
        "issue_title": "t",
        "issue_body": "b",
        "matrix": {"models": ["m"]},
        field: value,
    }
    with TestClient(create_app(settings, session_factory=session_factory)) as client:
        response = client.post(
            f"/sessions/{session_id}/solve/start", json=body, headers={"Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 422 and field in response.text, response.text
    with session_factory() as session:
        assert session.scalar(select(Solve.id)) is None


def test_a_long_runs_stored_trajectory_stays_under_the_configured_size(make_pipeline):
    loud = [Step(f"head -c 100000 /dev/zero | tr '\\0' {c}", f"Print a lot ({c}).") for c in "abcdef"]
    pipeline = make_pipeline({"loud": loud}, sandbox="local", max_trajectory_bytes=60_000)
    _, run = solve_once(pipeline, "loud", test_command="true")
    assert run.status == "completed", run.error_message
    assert len(json.dumps(run.trajectory_data).encode()) <= 60_000
    assert run.trajectory_data["truncated"]["from_bytes"] > 600_000 and run.trajectory_data["total_steps"] == 7


def test_bounded_drops_middle_messages_when_cutting_texts_is_not_enough():
    data = {
        "exit_status": "Submitted",
        "total_steps": 500,
        "messages": [{"role": "user", "content": "x" * 300}] * 500,
        "steps": [{"step": i, "action": "ls", "output": "y" * 300} for i in range(500)],
    }
    result = bounded(data, 50_000)
    assert len(json.dumps(result).encode()) <= 50_000 and result["truncated"]["dropped"]["messages"] > 0
    assert result["steps"][0]["step"] == 0 and result["steps"][-1]["step"] == 499
    assert bounded({"steps": [], "messages": []}, 1000) == {"steps": [], "messages": []}

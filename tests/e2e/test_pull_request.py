"""From issue to pull request through the whole pipeline: scripted models, local sandbox, real git.

GitHub: a signed webhook delivery labels the issue, the solve runs, the champion's branch is pushed over HTTPS
(the token travels as a header only) to a git server, the PR is opened on a fake GitHub REST API through
githubkit, and the issue gets a comment with the link. Local: the branch goes to the repository's `origin`.
"""

import hashlib
import hmac
import json
import logging
import subprocess
import time

import pytest
from sqlalchemy import select

from tests.fakes.fixtures import (  # noqa: F401
    TOKEN,
    WEBHOOK_SECRET,
    app_client,
    calc_repository,
    dump_database,
    fake_github,
    git_certificate,
    git_configs,
    git_remote,
    github_settings,
)
from yudai_solver.base import statuses
from yudai_solver.base.db import transaction
from yudai_solver.base.models import AIModel, Solve, SolveRun
from yudai_solver.dispatch.inprocess import InProcessDispatcher
from yudai_solver.entry.demo import SCRIPTS, TEST_COMMAND
from yudai_solver.solving.chat_sessions import create_session
from yudai_solver.solving.users import create_user
from yudai_solver.testing.scripted import ScriptedChatServer, Step

from .conftest import Pipeline

pytestmark = pytest.mark.slow


def git(*args, cwd) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def models(session_factory):
    scripts = dict(SCRIPTS) | {"leaky": [Step("env; cat .git/config; git config --list --show-origin")]}
    server = ScriptedChatServer(scripts)
    url = server.start()
    with transaction(session_factory) as session:
        session.add_all([AIModel(name=n, provider="openai", model_id=n, config={"api_base": url}) for n in scripts])
    yield
    server.stop()


def wait_finished(factory, dispatcher, solve_id: str, timeout: float = 60) -> Solve:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with factory() as session:
            solve = session.get(Solve, solve_id)
        if solve.status in statuses.FINISHED and dispatcher.wait_idle(5):
            return solve
        time.sleep(0.1)
    raise AssertionError(f"solve {solve_id} did not finish in {timeout}s")


def champion_of(factory, solve: Solve) -> SolveRun:
    with factory() as session:
        return session.get(SolveRun, solve.champion_run_id)


def test_a_labelled_issue_becomes_a_pull_request_and_a_comment(
    session_factory, engine, tmp_path, models, fake_github, git_remote, caplog, monkeypatch
):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("YUDAI_GITHUB_TOKEN", TOKEN)  # where a deployment keeps it; the sandbox must not see it
    repo_url = git_remote.add("acme/widgets", calc_repository(tmp_path / "src" / "calc"))
    fake_github.add_repo("acme/widgets")
    fake_github.add_issue("acme/widgets", 3, "add() subtracts", "calc.add(2, 3) returns -1")
    settings = github_settings(
        tmp_path,
        fake_github,
        webhook_owner="maintainer",
        webhook_test_command=TEST_COMMAND,
        webhook_matrix={"models": ["scripted-minimal-fix", "scripted-rewrite", "leaky"]},
        command_timeout_s=30,
        test_timeout_s=60,
        model_timeout_s=10,
    )
    with transaction(session_factory) as session:
        create_user(session, name="maintainer")
    dispatcher = InProcessDispatcher(settings, session_factory)
    body = json.dumps(
        {
            "action": "labeled",
            "label": {"name": "yudai"},
            "sender": {"login": "carol"},
            "issue": {"number": 3, "title": "add() subtracts", "body": "calc.add(2, 3) returns -1", "state": "open"},
            "repository": {"html_url": repo_url, "default_branch": "main"},
        }
    ).encode()
    signature = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()

    with app_client(session_factory, settings, dispatcher) as client:
        response = client.post(
            "/webhooks/github",
            content=body,
            headers={"X-GitHub-Event": "issues", "X-GitHub-Delivery": "e2e-1", "X-Hub-Signature-256": signature},
        )
        assert response.status_code == 200 and response.json()["outcome"] == "started", response.text
        solve = wait_finished(session_factory, dispatcher, response.json()["solve_id"])

    champion = champion_of(session_factory, solve)
    branch = f"yudai/issue-3-{solve.id[:8]}"
    assert solve.status == statuses.COMPLETED and champion.model == "scripted-minimal-fix", solve.error_message
    [pull] = fake_github.repos["acme/widgets"].pulls
    assert (pull["head"]["ref"], pull["base"]["ref"], champion.pr_url) == (branch, "main", pull["html_url"])
    assert pull["body"].startswith("Fixes #3") and "| scripted-rewrite |" in pull["body"]
    assert f"Command: `{TEST_COMMAND}`" in pull["body"] and "(baseline, untouched checkout): ❌ failed" in pull["body"]
    served = git_remote.root / "acme" / "widgets"
    assert git("diff", "main", branch, cwd=served) + "\n" == champion.diagnostics["patch"].rstrip("\n") + "\n"
    [comment] = fake_github.repos["acme/widgets"].comments
    assert comment["issue_number"] == 3 and pull["html_url"] in comment["body"]
    leaky = next(r for r in _runs(session_factory, solve.id) if r.model == "leaky")
    assert leaky.trajectory_data["steps"][0]["output"], "the leaky step ran"
    secret_places = {
        "sandbox output": json.dumps(leaky.trajectory_data),
        "logs": caplog.text,
        "git configs": git_configs(settings.data_dir, git_remote.root),
        "database": dump_database(engine),
    }
    assert [place for place, text in secret_places.items() if TOKEN in text] == []


def test_a_local_repository_gets_the_branch_pushed_to_its_origin(session_factory, tmp_path, models):
    repo = calc_repository(tmp_path / "repos" / "calc")
    origin = tmp_path / "remotes" / "calc.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(origin)], check=True)
    subprocess.run(["git", "-C", str(repo), "remote", "add", "origin", str(origin)], check=True)
    settings = github_settings(tmp_path, _NoGitHub(), command_timeout_s=30, test_timeout_s=60, model_timeout_s=10)
    with transaction(session_factory) as session:
        user, _ = create_user(session, name="e2e")
        chat = create_session(session, user=user, title="e2e")
        ids = (user.id, chat.id)
    dispatcher = InProcessDispatcher(settings, session_factory)
    dispatcher.start()
    try:
        pipeline = Pipeline(settings, session_factory, dispatcher, None, repo, *ids)
        solve = pipeline.wait(
            pipeline.start(
                matrix={"models": ["scripted-minimal-fix", "scripted-noop"]}, test_command=TEST_COMMAND, create_pr=True
            )
        )
    finally:
        dispatcher.stop()

    champion = champion_of(session_factory, solve)
    branch = f"yudai/issue-1-{solve.id[:8]}"
    assert solve.status == statuses.COMPLETED and champion.pr_url == f"{origin}#{branch}"
    assert "return a + b" in git("show", f"{branch}:calc.py", cwd=origin)
    assert git("log", "-1", "--format=%an|%s", branch, cwd=origin) == "yudai-solver|Fix #1: t"
    assert git("branch", "--format=%(refname:short)", cwd=repo) == "main"  # the user's repository is untouched


class _NoGitHub:
    url = "http://127.0.0.1:9"


def _runs(factory, solve_id: str) -> list[SolveRun]:
    with factory() as session:
        return list(session.scalars(select(SolveRun).where(SolveRun.solve_id == solve_id)))

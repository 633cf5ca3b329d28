"""The pull request's state in the solve's status (issue 11, item 4): `pending` from the start until the PR is
opened or has failed, also in the moment after the solve completed while the PR is being made; and a local
origin keeps the PR's body as the branch commit's message."""

import subprocess
import threading

import pytest

from tests.fakes.fixtures import calc_repository, github_settings
from tests.helpers import wait_for
from yudai_solver.base.db import transaction
from yudai_solver.base.models import AIModel, Solve, SolveRun, User
from yudai_solver.dispatch.inprocess import InProcessDispatcher
from yudai_solver.entry.demo import SCRIPTS, TEST_COMMAND
from yudai_solver.scm.local import LocalHost
from yudai_solver.scm.pr import pr_state
from yudai_solver.solving.chat_sessions import create_session
from yudai_solver.solving.solves import status
from yudai_solver.solving.users import create_user
from yudai_solver.testing.scripted import ScriptedChatServer

from .conftest import Pipeline


class _NoGitHub:
    url = "http://127.0.0.1:9"


@pytest.fixture
def local_origin(session_factory, tmp_path):
    server = ScriptedChatServer(dict(SCRIPTS))
    url = server.start()
    with transaction(session_factory) as session:
        session.add_all([AIModel(name=n, provider="openai", model_id=n, config={"api_base": url}) for n in SCRIPTS])
        user, _ = create_user(session, name="e2e")
        chat = create_session(session, user=user, title="e2e")
        ids = (user.id, chat.id)
    repo = calc_repository(tmp_path / "repos" / "calc")
    origin = tmp_path / "remotes" / "calc.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(origin)], check=True)
    subprocess.run(["git", "-C", str(repo), "remote", "add", "origin", str(origin)], check=True)
    settings = github_settings(tmp_path, _NoGitHub(), command_timeout_s=30, test_timeout_s=60, model_timeout_s=10)
    dispatcher = InProcessDispatcher(settings, session_factory)
    dispatcher.start()
    yield Pipeline(settings, session_factory, dispatcher, server, repo, *ids), origin
    dispatcher.stop()
    server.stop()


def status_of(pipeline: Pipeline, solve_id: str) -> dict:
    with pipeline.factory() as session:
        user = session.get(User, pipeline.user_id)
        return status(session, user=user, session_id=pipeline.session_id, solve_id=solve_id).model_dump()


@pytest.mark.slow
def test_the_pr_is_pending_until_opened_even_once_the_solve_completed(local_origin, monkeypatch):
    pipeline, origin = local_origin
    pushing, release = threading.Event(), threading.Event()
    push = LocalHost.push

    def slow_push(self, repo, checkout, branch):
        pushing.set()
        assert release.wait(60)
        push(self, repo, checkout, branch)

    monkeypatch.setattr(LocalHost, "push", slow_push)
    solve_id = pipeline.start(
        matrix={"models": ["scripted-minimal-fix", "scripted-noop"]}, test_command=TEST_COMMAND, create_pr=True
    )
    assert status_of(pipeline, solve_id)["pr"] == {"state": "pending", "url": None, "error": None}

    assert pushing.wait(60)
    during = status_of(pipeline, solve_id)
    assert during["status"] == "completed" and during["champion_run_id"]
    assert during["pr"] == {"state": "pending", "url": None, "error": None}  # a PR is coming: wait for it
    release.set()

    after = wait_for(lambda: (s := status_of(pipeline, solve_id))["pr"]["state"] != "pending" and s, timeout=30)
    branch = f"yudai/issue-1-{solve_id[:8]}"
    assert after["pr"] == {"state": "opened", "url": f"{origin}#{branch}", "error": None}
    # No PR page keeps the body of a local origin's "pull request": the branch's commit message does.
    message = subprocess.run(
        ["git", "-C", str(origin), "log", "-1", "--format=%B", branch], capture_output=True, text=True, check=True
    ).stdout
    assert message.startswith("Fix #1: t\n\nFixes #1\n") and "| scripted-noop |" in message
    assert f"Yudai-Solve: {solve_id}" in message


def _solve(session, *, status: str, create_pr: bool, champion: dict | None) -> Solve:
    solve = Solve(
        id=f"s-{status}-{create_pr}-{bool(champion)}",
        repo_url="r",
        issue_number=1,
        matrix={},
        status=status,
        create_pr=create_pr,
    )
    session.add(solve)
    session.flush()
    if champion is not None:
        run = SolveRun(
            id=f"{solve.id}-r",
            solve_id=solve.id,
            model="m",
            temperature=0,
            max_edits=1,
            evolution="baseline",
            **champion,
        )
        session.add(run)
        session.flush()
        solve.champion_run_id = run.id
        session.flush()
    return solve


@pytest.mark.parametrize(
    ("status", "create_pr", "champion", "expected"),
    [
        ("running", True, None, {"state": "pending"}),
        ("completed", True, {}, {"state": "pending"}),
        ("completed", True, {"pr_url": "u"}, {"state": "opened", "url": "u"}),
        (
            "completed",
            True,
            {"diagnostics": {"pr_error": "push refused"}},
            {"state": "failed", "error": "push refused"},
        ),
        ("completed", False, {}, {"state": "none"}),
        ("completed", False, {"pr_url": "u"}, {"state": "opened", "url": "u"}),  # a retry made one anyway
        (
            "failed",
            True,
            None,
            {"state": "none", "error": "the solve is failed without a champion: there is nothing to propose"},
        ),
    ],
)
def test_pr_state_of_each_situation(session_factory, status, create_pr, champion, expected):
    with transaction(session_factory) as session:
        solve = _solve(session, status=status, create_pr=create_pr, champion=champion)
        assert pr_state(session, solve).model_dump() == {"url": None, "error": None} | expected

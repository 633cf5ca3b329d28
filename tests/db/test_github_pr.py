"""The champion's pull request: built from the worker's mirror, pushed over HTTPS with the token as a header,
opened through githubkit against a fake GitHub; failures recorded on the run; the retry endpoint; local repos.
"""

import base64
import logging
import subprocess
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fakes.fixtures import (  # noqa: F401
    TOKEN,
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
from yudai_solver.base.models import Solve, SolveRun, WebhookDelivery, utcnow
from yudai_solver.execution.validation import diff_stats
from yudai_solver.execution.workspace import WorkspaceCache, workspaces_for
from yudai_solver.scm import git as scm_git
from yudai_solver.scm import pr_body
from yudai_solver.scm.comments import report_on_issue
from yudai_solver.scm.followup import on_solve_ended
from yudai_solver.scm.pr import open_champion_pr
from yudai_solver.solving.chat_sessions import create_session
from yudai_solver.solving.users import create_user

pytestmark = pytest.mark.slow  # seconds each: not in the fast tier

# Git-only behaviour (what was pushed where) does not depend on the database: those tests run on SQLite alone.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
FIX = "sed -i 's/return a - b/return a + b/' calc.py && echo '# notes' > NOTES.md"


def git(*args, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def champion_patch(source: Path, work: Path) -> tuple[str, str]:
    """(base commit, patch) of the fix made in a clone of `source`, as a run stores them."""
    subprocess.run(["git", "clone", "-q", str(source), str(work)], check=True)
    subprocess.run(FIX, shell=True, cwd=work, check=True)
    base = git("rev-parse", "HEAD", cwd=work)
    return base, diff_stats(work, base).patch


@pytest.fixture
def world(session_factory, tmp_path, fake_github, git_remote):
    source = calc_repository(tmp_path / "repos" / "calc")
    repo_url = git_remote.add("acme/widgets", source)
    fake_github.add_repo("acme/widgets")
    fake_github.add_issue("acme/widgets", 7, "add() subtracts")
    base, patch = champion_patch(source, tmp_path / "work")
    settings = github_settings(tmp_path, fake_github, pr_author_name="Yudai Bot", pr_author_email="bot@example.org")
    with transaction(session_factory) as session:
        user, token = create_user(session, name="alice")
        chat = create_session(session, user=user, title=None)
        ids = (user.id, chat.id)
    return World(session_factory, settings, fake_github, git_remote, repo_url, source, base, patch, ids, token)


@dataclass
class World:
    """A GitHub repository served over HTTPS, its fake API, and a user whose solves end with a champion."""

    factory: object
    settings: object
    fake: object
    remote: object
    repo_url: str
    source: Path
    base: str
    patch: str
    ids: tuple[int, int]
    user_token: str

    @property
    def workspaces(self):
        return workspaces_for(self.settings)

    @property
    def user_id(self) -> int:
        return self.ids[0]

    @property
    def session_id(self) -> int:
        return self.ids[1]

    def solve(self, *, repo_url=None, create_pr=True, status=statuses.COMPLETED, **champion) -> str:
        """A finished solve with a champion (run c) and a loser (run l), as the reducer leaves it."""
        solve_id = uuid.uuid4().hex
        diagnostics = {
            "base_commit": self.base,
            "patch": self.patch,
            "patch_truncated": False,
            "test": {"command": "python3 -m unittest discover -q", "returncode": 0, "output_tail": "Ran 2 tests\n\nOK"},
        } | champion.pop("diagnostics", {})
        with transaction(self.factory) as session:
            solve = Solve(
                id=solve_id,
                user_id=self.user_id,
                session_id=self.session_id,
                repo_url=repo_url or self.repo_url,
                issue_number=7,
                base_branch="main",
                status=status,
                matrix={"experiments": [{}, {}]},
                issue_title="add() subtracts",
                issue_body="b",
                test_command="python3 -m unittest discover -q",
                create_pr=create_pr,
                baseline={"state": "measured", "tests_passed": False, "returncode": 1},
                ranking={"reason": "tests passed (1 of 2 runs passed); smallest change"},
                completed_at=utcnow(),
            )
            session.add(solve)
            session.flush()
            session.add_all(
                [
                    SolveRun(
                        id=f"{solve_id[:8]}-c",
                        solve_id=solve_id,
                        model="scripted-minimal-fix",
                        temperature=0.2,
                        max_edits=5,
                        evolution="baseline",
                        status=statuses.COMPLETED,
                        tests_passed=True,
                        loc_changed=3,
                        files_changed=2,
                        tokens=1234,
                        cost=0.0012,
                        latency_ms=4200,
                        diagnostics=diagnostics,
                        completed_at=utcnow(),
                        trajectory_data={
                            "exit_status": "Submitted",
                            "steps": [
                                {"step": 1, "action": "cat calc.py", "output": "def add(a, b):", "returncode": 0},
                                {"step": 2, "action": FIX, "output": "", "returncode": 0},
                            ],
                        },
                        **champion,
                    ),
                    SolveRun(
                        id=f"{solve_id[:8]}-l",
                        solve_id=solve_id,
                        model="scripted-noop",
                        temperature=0.7,
                        max_edits=5,
                        evolution="minimal-fix",
                        status=statuses.COMPLETED,
                        tests_passed=False,
                        loc_changed=0,
                        files_changed=0,
                        tokens=99,
                        cost=0.0,
                        latency_ms=1500,
                    ),
                ]
            )
            session.flush()
            if status == statuses.COMPLETED:
                solve.champion_run_id = f"{solve_id[:8]}-c"
        return solve_id

    def champion(self, solve_id: str) -> SolveRun:
        with self.factory() as session:
            return session.get(SolveRun, f"{solve_id[:8]}-c")

    def status(self, solve_id: str) -> str:
        with self.factory() as session:
            return session.get(Solve, solve_id).status


def test_the_champion_gets_a_pull_request_that_tells_the_whole_story(world):
    solve_id = world.solve()

    url = open_champion_pr(world.settings, world.factory, solve_id, world.workspaces)

    [call] = world.fake.calls("POST", r"/repos/acme/widgets/pulls")
    branch = f"yudai/issue-7-{solve_id[:8]}"
    assert url == "https://github.com/acme/widgets/pull/101" and call.authorized
    assert (call.body["head"], call.body["base"], call.body["title"]) == (branch, "main", "Fix #7: add() subtracts")
    body = call.body["body"]
    assert body.startswith("Fixes #7\n")
    for words in (
        "**scripted-minimal-fix** at temperature 0.2",
        "| 🏆 | scripted-minimal-fix | 0.2 | baseline | completed | - | ✅ passed | 3 | 2 | 1,234 | $0.0012 | 4.2 s |",
        "| scripted-noop | 0.7 | minimal-fix",
        "Command: `python3 -m unittest discover -q`",
        "Before (baseline, untouched checkout): ❌ failed (exit 1)",
        "After (this change): ✅ passed (exit 0)",
        "<details><summary>Agent trajectory: 2 steps",
        "cat calc.py",
        "Ranking: tests passed (1 of 2 runs passed)",
    ):
        assert words in body, words
    assert world.champion(solve_id).pr_url == url and world.status(solve_id) == statuses.COMPLETED
    assert world.champion(solve_id).status == statuses.COMPLETED


@sqlite_only
def test_the_pushed_branch_holds_the_patch_as_one_commit_on_the_base(world):
    solve_id = world.solve()
    open_champion_pr(world.settings, world.factory, solve_id, world.workspaces)

    branch = f"yudai/issue-7-{solve_id[:8]}"
    served = world.remote.root / "acme" / "widgets"
    assert set(world.remote.branches("acme/widgets")) == {"main", branch}
    assert git("rev-parse", f"{branch}^", cwd=served) == world.base
    assert "return a + b" in git("show", f"{branch}:calc.py", cwd=served)
    assert git("show", f"{branch}:NOTES.md", cwd=served) == "# notes"
    author = git("log", "-1", "--format=%an <%ae>|%cn|%s", branch, cwd=served)
    assert author == "Yudai Bot <bot@example.org>|Yudai Bot|Fix #7: add() subtracts"
    assert "Fixes #7" in git("log", "-1", "--format=%b", branch, cwd=served)
    assert [p["authorized"] for p in world.remote.server.pushes] == [True, True]


def test_a_second_call_opens_no_second_pull_request(world):
    solve_id = world.solve()
    first = open_champion_pr(world.settings, world.factory, solve_id, world.workspaces)
    second = on_solve_ended(world.settings, world.factory, solve_id, world.workspaces)

    assert first == second and len(world.fake.calls("POST", r"/repos/acme/widgets/pulls")) == 1


@sqlite_only
def test_a_pull_request_already_open_for_the_branch_is_adopted_not_repeated(world):
    solve_id = world.solve()
    branch = f"yudai/issue-7-{solve_id[:8]}"
    world.fake.repos["acme/widgets"].pulls.append(
        {
            "number": 55,
            "state": "open",
            "head": {"ref": branch, "label": f"acme:{branch}"},
            "base": {"ref": "main"},
            "html_url": "https://github.com/acme/widgets/pull/55",
        }
    )

    url = open_champion_pr(world.settings, world.factory, solve_id, world.workspaces)

    assert url == "https://github.com/acme/widgets/pull/55"
    assert len(world.fake.repos["acme/widgets"].pulls) == 1
    assert [c.query for c in world.fake.calls("GET", r"/repos/acme/widgets/pulls")] == [
        {"head": [f"acme:{branch}"], "state": ["open"]}
    ]


def test_a_rejected_push_is_recorded_on_the_run_and_the_retry_endpoint_opens_the_pr(world):
    solve_id = world.solve()
    wrong = world.settings.model_copy(update={"github_token": None})

    assert open_champion_pr(wrong, world.factory, solve_id, workspaces_for(wrong)) is None

    champion = world.champion(solve_id)
    assert "pushing" in champion.diagnostics["pr_error"] and "no YUDAI_GITHUB_TOKEN" in champion.diagnostics["pr_error"]
    assert champion.pr_url is None and champion.status == statuses.COMPLETED
    assert world.status(solve_id) == statuses.COMPLETED and world.fake.requests == []
    with app_client(world.factory, world.settings) as client:
        response = client.post(
            f"/sessions/{world.session_id}/solve/{solve_id}/pr", headers={"Authorization": f"Bearer {world.user_token}"}
        )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "solve_id": solve_id,
        "run_id": champion.id,
        "pr_url": "https://github.com/acme/widgets/pull/101",
        "pr_error": None,
    }
    assert "pr_error" not in world.champion(solve_id).diagnostics


def test_a_401_from_the_api_is_recorded_on_the_run(world):
    solve_id = world.solve()
    world.fake.token = "ghp_someone-else"

    assert open_champion_pr(world.settings, world.factory, solve_id, world.workspaces) is None

    error = world.champion(solve_id).diagnostics["pr_error"]
    assert "opening a pull request in acme/widgets: GitHub answered 401 (Bad credentials)" == error
    assert world.status(solve_id) == statuses.COMPLETED


def test_the_retry_endpoint_refuses_a_solve_without_champion_and_other_users_solves(world):
    failed = world.solve(status=statuses.FAILED)
    mine = world.solve()
    with app_client(world.factory, world.settings) as client:
        headers = {"Authorization": f"Bearer {world.user_token}"}
        conflict = client.post(f"/sessions/{world.session_id}/solve/{failed}/pr", headers=headers)
        with transaction(world.factory) as session:
            _, bob_token = create_user(session, name="bob")
        stranger = client.post(
            f"/sessions/{world.session_id}/solve/{mine}/pr", headers={"Authorization": f"Bearer {bob_token}"}
        )
    assert conflict.status_code == 409 and "failed" in conflict.json()["detail"]
    assert stranger.status_code == 404 and world.fake.requests == []


@sqlite_only
def test_a_solve_that_asked_for_no_pr_gets_none_until_the_endpoint_is_called(world):
    solve_id = world.solve(create_pr=False)

    assert open_champion_pr(world.settings, world.factory, solve_id, world.workspaces) is None
    assert world.fake.requests == [] and world.remote.server.pushes == []
    with app_client(world.factory, world.settings) as client:
        response = client.post(
            f"/sessions/{world.session_id}/solve/{solve_id}/pr", headers={"Authorization": f"Bearer {world.user_token}"}
        )
    assert response.json()["pr_url"] == "https://github.com/acme/widgets/pull/101"


@sqlite_only
@pytest.mark.parametrize(
    ("diagnostics", "words"),
    [
        ({"patch_truncated": True}, "over 1 MB"),
        ({"patch": ""}, "changed nothing"),
    ],
)
def test_an_unusable_patch_opens_nothing_and_says_why(world, diagnostics, words):
    solve_id = world.solve(diagnostics=diagnostics)

    assert open_champion_pr(world.settings, world.factory, solve_id, world.workspaces) is None
    assert words in world.champion(solve_id).diagnostics["pr_error"] and world.remote.server.pushes == []


@sqlite_only
def test_a_local_repository_pushes_the_branch_to_its_origin(world, tmp_path):
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(world.source), str(origin)], check=True)
    subprocess.run(["git", "-C", str(world.source), "remote", "add", "origin", str(origin)], check=True)
    solve_id = world.solve(repo_url=str(world.source))

    url = open_champion_pr(world.settings, world.factory, solve_id, world.workspaces)

    branch = f"yudai/issue-7-{solve_id[:8]}"
    assert url == f"{origin}#{branch}" and world.champion(solve_id).pr_url == url
    assert "return a + b" in git("show", f"{branch}:calc.py", cwd=origin)
    assert git("branch", "--list", cwd=world.source) == "* main"  # the user's own repository is untouched
    assert world.fake.requests == []


@sqlite_only
def test_a_local_repository_without_origin_records_why(world):
    solve_id = world.solve(repo_url=str(world.source))

    assert open_champion_pr(world.settings, world.factory, solve_id, world.workspaces) is None
    assert "no `origin` remote" in world.champion(solve_id).diagnostics["pr_error"]


def test_a_webhook_started_solve_gets_one_comment_linking_the_pr(world):
    solve_id = world.solve()
    failed = world.solve(status=statuses.FAILED)
    with transaction(world.factory) as session:
        session.get(Solve, failed).error_message = "no run passed the tests: 2 of 2 runs completed"
        session.add_all(
            [
                WebhookDelivery(delivery_id=f"d-{sid}", event="issues", outcome="started", solve_id=sid)
                for sid in (solve_id, failed)
            ]
        )

    on_solve_ended(world.settings, world.factory, solve_id, world.workspaces)
    on_solve_ended(world.settings, world.factory, failed, world.workspaces)
    assert report_on_issue(world.settings, world.factory, solve_id) is None  # once only

    comments = [c["body"] for c in world.fake.repos["acme/widgets"].comments]
    assert len(comments) == 2
    assert "opened https://github.com/acme/widgets/pull/101" in comments[0]
    assert "found no fix for this issue (failed): no run passed the tests" in comments[1]


def test_callers_that_meet_at_the_end_of_a_solve_comment_once(world):
    # The last run, a verification or a budget may all end a solve at once, each calling the follow-up.
    solve_id = world.solve()
    with transaction(world.factory) as session:
        session.add(WebhookDelivery(delivery_id="d-race", event="issues", outcome="started", solve_id=solve_id))
    barrier = threading.Barrier(6)

    def call() -> str | None:
        barrier.wait()
        return report_on_issue(world.settings, world.factory, solve_id)

    with ThreadPoolExecutor(6) as pool:
        urls = [f.result() for f in [pool.submit(call) for _ in range(6)]]

    assert len(world.fake.repos["acme/widgets"].comments) == 1
    assert [u for u in urls if u] == [world.fake.repos["acme/widgets"].comments[0]["html_url"]]


def test_the_token_is_never_on_disk_in_a_command_line_a_log_or_the_database(world, engine, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(WorkspaceCache, "remove", lambda self, dest: None)  # keep the PR checkout to inspect it
    argv: list[str] = []
    real_popen = scm_git.git.subprocess.Popen  # every git process starts here (yudai_solver.base.git)
    monkeypatch.setattr(
        scm_git.git.subprocess, "Popen", lambda args, **kw: (argv.extend(args), real_popen(args, **kw))[1]
    )
    ok, failing = world.solve(), world.solve()
    open_champion_pr(world.settings, world.factory, ok, world.workspaces)
    world.fake.token = "ghp_someone-else"
    open_champion_pr(world.settings, world.factory, failing, world.workspaces)

    secrets = (TOKEN, base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode())
    checkouts = list((world.settings.data_dir / "prs").iterdir())
    assert len(checkouts) == 2 and (checkouts[0] / "work" / ".git" / "config").exists()
    configs = git_configs(world.settings.data_dir, world.remote.root)
    files = "\n".join(
        p.read_bytes().decode(errors="replace") for p in world.settings.data_dir.rglob("*") if p.is_file()
    )
    for secret in secrets:
        assert secret not in configs and secret not in files
        assert secret not in " ".join(argv) and secret not in caplog.text
        assert secret not in dump_database(engine)
    assert "pushing" not in world.champion(ok).diagnostics.get("pr_error", "")
    assert any("pull request" in r.getMessage() for r in caplog.records)  # the logs were captured


def test_the_body_stays_within_githubs_limit_however_long_the_trajectory():
    steps = [{"step": i, "action": f"cat file{i} ```", "output": "x" * 5000, "returncode": 0} for i in range(500)]
    solve = Solve(id="s" * 32, issue_number=7, issue_title="t", matrix={"experiments": [{}]}, test_command="true")
    champion = SolveRun(
        id="r1",
        model="m",
        temperature=0.0,
        evolution="baseline",
        status="completed",
        tests_passed=True,
        diagnostics={"test": {"returncode": 0, "output_tail": "y" * 3000}},
        trajectory_data={"exit_status": "Submitted", "steps": steps},
    )

    body = pr_body.body(solve, [champion], champion)

    assert len(body) <= pr_body.MAX_BODY and body.startswith("Fixes #7")
    assert "<details><summary>Agent trajectory: 500 steps" in body and "more steps left out (size cap)" in body
    assert "````bash\ncat file0 ```\n````" in body  # a fence the content cannot close

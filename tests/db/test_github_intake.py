"""Issue intake at solve start, against a fake GitHub REST API driven through githubkit: fetched into the issues
table, refreshed when stale, and a clear 4xx for a missing issue, a pull request, a closed issue or a bad repo.
"""

from datetime import timedelta

import pytest

from tests.fakes.fixtures import GitHubApi, app_client, fake_github, github_settings  # noqa: F401
from yudai_solver.base.db import transaction
from yudai_solver.base.models import Issue, Solve, SolveRun, utcnow

REPO = "https://github.com/acme/widgets"
ISSUE_PATH = r"/repos/acme/widgets/issues/\d+"


@pytest.fixture
def gh(session_factory, tmp_path, fake_github):
    fake_github.add_repo("acme/widgets")
    fake_github.add_issue("acme/widgets", 7, "Crash on empty input", "Steps: run it empty.", labels=("bug", "yudai"))
    fake_github.add_issue("acme/widgets", 8, "Old crash", state="closed")
    fake_github.add_issue("acme/widgets", 9, "A pull request", pull_request=True)
    settings = github_settings(tmp_path, fake_github)
    with app_client(session_factory, settings) as client:
        api = GitHubApi(client, session_factory, settings)
        headers = api.user("alice")
        api.model("gpt-small")
        session_id = client.post("/sessions", json={}, headers=headers).json()["id"]
        yield api, headers, session_id


def start(gh, **body):
    api, headers, session_id = gh
    request = {"repo_url": REPO, "base_branch": "main", "issue_number": 7, "matrix": {"models": ["gpt-small"]}} | body
    return api.client.post(f"/sessions/{session_id}/solve/start", json=request, headers=headers)


def test_start_fetches_the_issue_into_the_issues_table(gh, fake_github):
    response = start(gh)

    assert response.status_code == 201, response.text
    api = gh[0]
    [issue] = api.rows(Issue)
    assert (issue.repo_url, issue.number, issue.title, issue.body, issue.labels, issue.state) == (
        REPO,
        7,
        "Crash on empty input",
        "Steps: run it empty.",
        ["bug", "yudai"],
        "open",
    )
    [solve] = api.rows(Solve)
    assert (solve.issue_title, solve.issue_body) == ("Crash on empty input", "Steps: run it empty.")
    assert [(c.path, c.authorized) for c in fake_github.calls("GET", ISSUE_PATH)] == [
        ("/repos/acme/widgets/issues/7", True)
    ]


def test_a_solve_naming_no_branch_starts_from_the_repository_s_default_branch(gh, fake_github):
    fake_github.repos["acme/widgets"].default_branch = "trunk"
    api, headers, session_id = gh
    started = start(gh, base_branch=None)
    assert started.status_code == 201, started.text
    assert [solve.base_branch for solve in api.rows(Solve)] == ["trunk"]  # not "main"

    fake_github.repos.pop("acme/widgets")
    gone = start(gh, base_branch=None)
    assert (gone.status_code, gone.json()["field"]) == (422, "repo_url") and "not found" in gone.text


def test_a_title_in_the_request_needs_no_fetch(gh, fake_github):
    assert start(gh, issue_title="Given", issue_body="b").status_code == 201
    assert fake_github.requests == []


def test_a_fresh_stored_issue_is_not_fetched_again_a_stale_one_is(gh, fake_github):
    assert start(gh).status_code == 201
    assert start(gh).status_code == 201
    assert len(fake_github.calls("GET", ISSUE_PATH)) == 1

    fake_github.repos["acme/widgets"].issues[7]["title"] = "Crash on empty input (edited)"
    with transaction(gh[0].session_factory) as session:
        session.query(Issue).one().updated_at = utcnow() - timedelta(seconds=gh[0].settings.issue_refresh_s + 1)
    assert start(gh).status_code == 201

    assert len(fake_github.calls("GET", ISSUE_PATH)) == 2
    assert [i.title for i in gh[0].rows(Issue)] == ["Crash on empty input (edited)"]


@pytest.mark.parametrize(
    ("case", "body", "field", "words"),
    [
        ("missing issue", {"issue_number": 404}, "issue_number", "issue #404 not found"),
        ("missing repository", {"repo_url": "https://github.com/acme/nothing"}, "repo_url", "not found"),
        ("pull request number", {"issue_number": 9}, "issue_number", "is a pull request"),
        ("closed issue", {"issue_number": 8}, "issue_number", "closed"),
    ],
)
def test_an_issue_that_cannot_be_solved_is_a_4xx_naming_the_field_and_writes_nothing(gh, case, body, field, words):
    response = start(gh, **body)

    assert response.status_code == 422, response.text
    assert response.json()["field"] == field and words in response.json()["detail"]
    assert gh[0].rows(Solve) == [] and gh[0].rows(SolveRun) == [] and gh[0].rows(Issue) == []


def test_a_closed_issue_is_solved_when_the_request_allows_it(gh):
    response = start(gh, issue_number=8, allow_closed=True)

    assert response.status_code == 201, response.text
    assert [(i.number, i.state) for i in gh[0].rows(Issue)] == [(8, "closed")]


def test_a_rejected_token_is_a_4xx_saying_so(session_factory, tmp_path, fake_github, gh):
    api, headers, session_id = gh
    settings = github_settings(tmp_path, fake_github, github_token="ghp_wrong")
    with app_client(session_factory, settings) as client:
        response = client.post(
            f"/sessions/{session_id}/solve/start",
            headers=headers,
            json={"repo_url": REPO, "issue_number": 7, "matrix": {"models": ["gpt-small"]}},
        )

    assert response.status_code == 422 and response.json()["field"] == "repo_url"
    assert "401" in response.json()["detail"] and "Bad credentials" in response.json()["detail"]
    assert [c.authorized for c in fake_github.requests] == [False]


def test_a_stale_copy_serves_when_github_is_unreachable(gh, fake_github):
    assert start(gh).status_code == 201
    with transaction(gh[0].session_factory) as session:
        session.query(Issue).one().updated_at = utcnow() - timedelta(days=1)
    fake_github.stop()

    response = start(gh)

    assert response.status_code == 201, response.text
    assert [s.issue_title for s in gh[0].rows(Solve)] == ["Crash on empty input"] * 2

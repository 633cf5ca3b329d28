"""Every kind of bad solve request: a 4xx naming the field, and not one row written."""

import pytest

from yudai_solver.base.models import Solve, SolveRun

from .test_api import git_repo, start_body

EXP = {"model": "gpt-small", "temperature": 0.1}


def matrix_of(**experiment) -> dict:
    return {"experiments": [EXP | experiment]}


CASES = [
    ("missing repo_url", lambda b, _: b.pop("repo_url"), "repo_url"),
    ("missing issue_number", lambda b, _: b.pop("issue_number"), "issue_number"),
    ("missing matrix", lambda b, _: b.pop("matrix"), "matrix"),
    ("issue_number not a number", lambda b, _: b.update(issue_number="seven"), "issue_number"),
    ("negative issue_number", lambda b, _: b.update(issue_number=-1), "issue_number"),
    ("unknown top-level field", lambda b, _: b.update(repository="x"), "repository"),
    ("temperature above 2", lambda b, _: b.update(matrix=matrix_of(temperature=2.5)), "temperature"),
    ("temperature below 0", lambda b, _: b.update(matrix=matrix_of(temperature=-0.1)), "temperature"),
    ("temperature not a number", lambda b, _: b.update(matrix=matrix_of(temperature="hot")), "temperature"),
    (
        "compact temperature out of range",
        lambda b, _: b.update(matrix={"models": ["gpt-small"], "temperatures": [3]}),
        "temperatures",
    ),
    ("max_edits zero", lambda b, _: b.update(matrix=matrix_of(max_edits=0)), "max_edits"),
    ("max_edits negative", lambda b, _: b.update(matrix=matrix_of(max_edits=-3)), "max_edits"),
    ("max_parallel zero", lambda b, _: b.update(limits={"max_parallel": 0}), "max_parallel"),
    ("time_budget_s negative", lambda b, _: b.update(limits={"time_budget_s": -5}), "time_budget_s"),
    ("empty experiments", lambda b, _: b.update(matrix={"experiments": []}), "matrix"),
    ("empty compact models", lambda b, _: b.update(matrix={"models": []}), "matrix"),
    ("matrix of neither form", lambda b, _: b.update(matrix={}), "matrix"),
    ("too many experiments", lambda b, _: b.update(matrix={"experiments": [EXP] * 65}), "matrix"),
    ("too many compact", lambda b, _: b.update(matrix={"models": ["gpt-small"], "temperatures": [0.1] * 65}), "matrix"),
    ("unknown model", lambda b, _: b.update(matrix=matrix_of(model="gpt-9")), "model"),
    ("inactive model", lambda b, _: b.update(matrix=matrix_of(model="retired")), "model"),
    ("unknown evolution", lambda b, _: b.update(matrix=matrix_of(evolution="genetic")), "evolution"),
    ("http url", lambda b, _: b.update(repo_url="http://github.com/acme/widgets"), "repo_url"),
    ("url with credentials", lambda b, _: b.update(repo_url="https://tok@github.com/acme/widgets"), "repo_url"),
    ("ssh url", lambda b, _: b.update(repo_url="git@github.com:acme/widgets.git"), "repo_url"),
    ("local path outside roots", lambda b, _: b.update(repo_url="/etc"), "repo_url"),
    ("file url outside roots", lambda b, _: b.update(repo_url="file:///etc"), "repo_url"),
    ("relative path", lambda b, _: b.update(repo_url="../repos/proj"), "repo_url"),
    ("dotdot escape from root", lambda b, root: b.update(repo_url=f"{root}/../../etc"), "repo_url"),
    ("not a git repo under root", lambda b, root: b.update(repo_url=str(root)), "repo_url"),
    (
        "local repo without issue text",
        lambda b, root: (b.update(repo_url=str(git_repo(root / "p"))), b.pop("issue_title"), b.pop("issue_body")),
        "issue_title",
    ),
    ("github issue unknown, GitHub unreachable", lambda b, _: (b.pop("issue_title"), b.pop("issue_body")), "repo_url"),
    (
        "https repo not on GitHub, no text",
        lambda b, _: (b.update(repo_url="https://git.example.org/acme/widgets"), b.pop("issue_title")),
        "issue_title",
    ),
    ("branch that is an option", lambda b, _: b.update(base_branch="--upload-pack=x"), "base_branch"),
    (
        "local repo without that branch",
        lambda b, root: b.update(repo_url=str(git_repo(root / "p")), base_branch="develop"),
        "base_branch",
    ),
    ("branch with shell syntax", lambda b, _: b.update(base_branch="main;rm -rf /"), "base_branch"),
]


@pytest.mark.parametrize(("case", "mutate", "field"), CASES, ids=[c[0] for c in CASES])
def test_bad_start_is_a_4xx_naming_the_field_and_writes_nothing(api, alice_session, repo_root, case, mutate, field):
    headers, session_id = alice_session
    body = start_body()
    mutate(body, repo_root)
    response = api.client.post(f"/sessions/{session_id}/solve/start", json=body, headers=headers)
    assert 400 <= response.status_code < 500, response.text
    assert field in named_fields(response), response.text
    assert api.count(Solve) == 0 and api.count(SolveRun) == 0


def test_unknown_model_lists_the_available_ones(api, alice_session):
    headers, session_id = alice_session
    body = start_body(matrix=matrix_of(model="gpt-9"))
    detail = api.client.post(f"/sessions/{session_id}/solve/start", json=body, headers=headers).json()["detail"]
    assert "gpt-small" in detail and "retired" not in detail


def test_unknown_session_is_404(api, alice_session):
    headers, _ = alice_session
    response = api.client.post("/sessions/999999/solve/start", json=start_body(), headers=headers)
    assert response.status_code == 404 and response.json()["field"] == "session_id"
    assert api.count(Solve) == 0


def named_fields(response) -> str:
    """The fields an error response names: pydantic's `loc` paths, or our `field`."""
    data = response.json()
    if isinstance(data["detail"], list):
        return " ".join(".".join(map(str, error["loc"])) for error in data["detail"])
    return data.get("field", "")


@pytest.fixture
def alice_session(api):
    headers = api.user("alice")
    api.model("gpt-small", "gpt-4o-mini")
    api.model("retired", active=False)
    session_id = api.client.post("/sessions", json={}, headers=headers).json()["id"]
    return headers, session_id


@pytest.mark.parametrize(
    "path",
    [
        "/sessions/99999999999999999999/solves",
        "/sessions/1/solves?offset=99999999999999999999",
        "/sessions/99999999999999999999/solve/status/x",
    ],
)
def test_numbers_too_large_for_the_database_are_a_422_not_a_500(api, alice_session, path):
    headers, _ = alice_session
    response = api.client.get(path, headers=headers)
    assert response.status_code == 422, response.text


def test_an_issue_number_too_large_for_the_database_is_a_422(api, alice_session):
    headers, session_id = alice_session
    response = api.client.post(
        f"/sessions/{session_id}/solve/start", json=start_body(issue_number=2**40), headers=headers
    )
    assert response.status_code == 422 and "issue_number" in named_fields(response)
    assert api.count(Solve) == 0

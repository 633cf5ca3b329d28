"""The HTTP API on both databases: auth, ownership, the solve endpoints and their shapes."""

import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import event

from yudai_solver.base import models
from yudai_solver.base.db import transaction
from yudai_solver.base.models import Solve, SolveRun

GITHUB_REPO = "https://github.com/acme/widgets"


def git_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    (path / "README").write_text("hello\n")
    subprocess.run(["git", "-C", str(path), "add", "."], check=True)
    subprocess.run(
        ["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"], check=True
    )
    return path


@pytest.fixture
def alice(api):
    headers = api.user("alice")  # first user: admin
    api.model("gpt-small", "gpt-4o-mini")
    api.model("claude", "claude-sonnet-4-5")
    session_id = api.client.post("/sessions", json={"title": "t"}, headers=headers).json()["id"]
    return headers, session_id


def start_body(**overrides) -> dict:
    body = {
        "repo_url": GITHUB_REPO,
        "base_branch": "main",
        "issue_number": 7,
        "issue_title": "Crash on empty input",
        "issue_body": "steps...",
        "matrix": {"experiments": [{"model": "gpt-small", "temperature": 0.1}]},
    }
    return body | overrides


def test_health_needs_no_token(api):
    assert api.client.get("/health").status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/sessions"),
        ("post", "/sessions"),
        ("get", "/models"),
        ("post", "/models"),
        ("get", "/issues"),
        ("post", "/sessions/1/solve/start"),
        ("get", "/sessions/1/solve/status/x"),
        ("get", "/sessions/1/solves"),
        ("post", "/sessions/1/solve/cancel/x"),
    ],
)
def test_every_endpoint_but_health_needs_a_valid_token(api, method, path):
    api.user("someone")
    assert getattr(api.client, method)(path).status_code == 401
    bad = {"Authorization": "Bearer yd_not-a-token"}
    response = getattr(api.client, method)(path, headers=bad)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_runs_are_listed_in_the_matrixs_order_even_when_the_clock_does_not_move(api, alice, monkeypatch):
    # Rows stamped in one flush can share a microsecond, and runs are listed by created_at, then their random ids:
    # a clock that does not move makes every stamp the same.
    frozen = datetime.now(UTC)

    class StoppedClock(datetime):
        @classmethod
        def now(cls, tz=None):
            return frozen

    monkeypatch.setattr(models, "datetime", StoppedClock)
    headers, session_id = alice
    experiments = [{"model": ("gpt-small", "claude")[i % 2], "temperature": i / 10} for i in range(10)]
    body = start_body(matrix={"experiments": experiments})
    started = api.client.post(f"/sessions/{session_id}/solve/start", json=body, headers=headers).json()

    status = api.client.get(f"/sessions/{session_id}/solve/status/{started['solve_id']}", headers=headers).json()
    listed = [(run["model"], run["temperature"]) for run in status["runs"]]
    assert listed == [(e["model"], e["temperature"]) for e in experiments]


def test_start_writes_solve_and_pending_runs(api, alice):
    headers, session_id = alice
    body = start_body(
        matrix={
            "experiments": [
                {"model": "gpt-small", "temperature": 0.1, "max_edits": 5, "evolution": "test-first"},
                {"model": "claude-sonnet-4-5", "temperature": 0.7},
            ]
        },
        limits={"max_parallel": 2, "time_budget_s": 300},
        test_command="pytest -q",
    )
    response = api.client.post(f"/sessions/{session_id}/solve/start", json=body, headers=headers)
    assert response.status_code == 201, response.text
    started = response.json()
    assert started["status"] == "pending"
    assert [(r["model"], r["temperature"], r["max_edits"], r["evolution"], r["status"]) for r in started["runs"]] == [
        ("gpt-small", 0.1, 5, "test-first", "pending"),
        ("claude", 0.7, api.settings.default_max_edits, "baseline", "pending"),
    ]
    with api.session_factory() as session:
        solve = session.get(Solve, started["solve_id"])
        assert (solve.max_parallel, solve.time_budget_s) == (2, 300)
        assert solve.limits == {"max_parallel": 2, "time_budget_s": 300, "early_stop": False, "network": False}
        assert [e["run_id"] for e in solve.matrix["experiments"]] == [r["id"] for r in started["runs"]]
        assert solve.test_command == "pytest -q" and solve.issue_title == "Crash on empty input"


def test_compact_matrix_is_a_cross_product(api, alice):
    headers, session_id = alice
    matrix = {
        "models": ["gpt-small", "claude"],
        "temperatures": [0.0, 0.5, 1.0],
        "evolutions": ["baseline", "minimal-fix"],
    }
    response = api.client.post(f"/sessions/{session_id}/solve/start", json=start_body(matrix=matrix), headers=headers)
    assert response.status_code == 201, response.text
    cells = {(r["model"], r["temperature"], r["evolution"]) for r in response.json()["runs"]}
    assert len(response.json()["runs"]) == 12 and len(cells) == 12


def test_issue_text_comes_from_issues_table(api, alice):
    headers, session_id = alice
    issue = {"repo_url": GITHUB_REPO, "number": 7, "title": "From table", "body": "b", "labels": ["bug"]}
    assert api.client.post("/issues", json=issue, headers=headers).status_code == 201
    issue["title"] = "Updated"
    assert api.client.post("/issues", json=issue, headers=headers).status_code == 201
    listed = api.client.get("/issues", params={"repo_url": GITHUB_REPO}, headers=headers).json()
    assert [(i["number"], i["title"], i["labels"]) for i in listed] == [(7, "Updated", ["bug"])]
    body = start_body()
    del body["issue_title"], body["issue_body"]
    started = api.client.post(f"/sessions/{session_id}/solve/start", json=body, headers=headers).json()
    with api.session_factory() as session:
        assert session.get(Solve, started["solve_id"]).issue_title == "Updated"


def test_status_shape_and_it_never_selects_trajectory(api, alice, engine):
    headers, session_id = alice
    started = api.client.post(f"/sessions/{session_id}/solve/start", json=start_body(), headers=headers).json()
    with transaction(api.session_factory) as session:
        run = session.get(SolveRun, started["runs"][0]["id"])
        run.trajectory_data, run.diagnostics, run.tokens = {"steps": ["x" * 1000]}, {"stdout_tail": "y"}, 42
    statements = []
    listener = lambda conn, cursor, statement, *args: statements.append(statement)  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        status = api.client.get(f"/sessions/{session_id}/solve/status/{started['solve_id']}", headers=headers)
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert status.status_code == 200
    data = status.json()
    assert data["progress"] | {"elapsed_s": 0} == {
        "runs_total": 1,
        "runs_pending": 1,
        "runs_running": 0,
        "runs_completed": 0,
        "runs_failed": 0,
        "runs_cancelled": 0,
        "percent_complete": 0.0,
        "elapsed_s": 0,
        "time_budget_s": None,
        "tokens_total": 42,
        "cost_total": 0.0,
    }
    assert {"tests_passed", "loc_changed", "files_changed", "latency_ms", "pr_url", "error_message"} <= set(
        data["runs"][0]
    )
    assert "trajectory_data" not in data["runs"][0]
    run_selects = [s for s in statements if "solve_runs" in s]
    # Of diagnostics (which holds the patch) only two keys are read, `agent_exit` and `commands`, in the database.
    keys_only = [
        re.sub(r"JSON_EXTRACT\(solve_runs\.diagnostics, \?\)|solve_runs\.diagnostics ->> %\(diagnostics_\d\)s", "", s)
        for s in run_selects
    ]
    assert run_selects and not any("trajectory_data" in s or "diagnostics" in s for s in keys_only)
    detail = api.client.get(
        f"/sessions/{session_id}/solve/{started['solve_id']}/runs/{started['runs'][0]['id']}", headers=headers
    ).json()
    assert detail["trajectory_data"] == {"steps": ["x" * 1000]} and detail["diagnostics"] == {"stdout_tail": "y"}


def test_list_solves_newest_first_and_paginated(api, alice):
    headers, session_id = alice
    ids = [
        api.client.post(f"/sessions/{session_id}/solve/start", json=start_body(), headers=headers).json()["solve_id"]
        for _ in range(3)
    ]
    page = api.client.get(f"/sessions/{session_id}/solves", params={"limit": 2}, headers=headers).json()
    assert page["total"] == 3 and [s["id"] for s in page["items"]] == ids[::-1][:2]
    rest = api.client.get(f"/sessions/{session_id}/solves", params={"limit": 2, "offset": 2}, headers=headers).json()
    assert [s["id"] for s in rest["items"]] == [ids[0]]


def test_cancel_marks_runs_and_repeats_harmlessly(api, alice):
    headers, session_id = alice
    solve_id = api.client.post(f"/sessions/{session_id}/solve/start", json=start_body(), headers=headers).json()[
        "solve_id"
    ]
    first = api.client.post(f"/sessions/{session_id}/solve/cancel/{solve_id}", headers=headers)
    assert first.status_code == 200 and first.json() == {"solve_id": solve_id, "status": "cancelled"}
    again = api.client.post(f"/sessions/{session_id}/solve/cancel/{solve_id}", headers=headers)
    assert again.status_code == 200 and again.json()["status"] == "cancelled"
    status = api.client.get(f"/sessions/{session_id}/solve/status/{solve_id}", headers=headers).json()
    assert [r["status"] for r in status["runs"]] == ["cancelled"] and status["completed_at"]


def test_cancel_of_an_ended_solve_is_a_conflict_naming_its_status(api, alice):
    headers, session_id = alice
    solve_id = api.client.post(f"/sessions/{session_id}/solve/start", json=start_body(), headers=headers).json()[
        "solve_id"
    ]
    with transaction(api.session_factory) as session:
        session.get(Solve, solve_id).status = "completed"
    response = api.client.post(f"/sessions/{session_id}/solve/cancel/{solve_id}", headers=headers)
    assert response.status_code == 409 and "completed" in response.json()["detail"]


def test_other_users_see_nothing_of_mine(api, alice):
    headers, session_id = alice
    started = api.client.post(f"/sessions/{session_id}/solve/start", json=start_body(), headers=headers).json()
    solve_id, run_id = started["solve_id"], started["runs"][0]["id"]
    bob = api.user("bob")
    bob_session = api.client.post("/sessions", json={}, headers=bob).json()["id"]
    assert api.client.get("/sessions", headers=bob).json()[0]["id"] == bob_session
    for path in (
        f"/sessions/{session_id}/solve/status/{solve_id}",
        f"/sessions/{session_id}/solve/{solve_id}/runs/{run_id}",
        f"/sessions/{session_id}/solves",
        f"/sessions/{bob_session}/solve/status/{solve_id}",
    ):
        assert api.client.get(path, headers=bob).status_code == 404, path
    assert api.client.post(f"/sessions/{session_id}/solve/cancel/{solve_id}", headers=bob).status_code == 404
    assert api.client.post(f"/sessions/{bob_session}/solve/cancel/{solve_id}", headers=bob).status_code == 404
    response = api.client.post(f"/sessions/{session_id}/solve/start", json=start_body(), headers=bob)
    assert response.status_code == 404 and response.json()["field"] == "session_id"


def test_models_are_admin_only_and_referenced_ones_are_deactivated(api):
    admin = api.user("root")
    plain = api.user("plain")
    spec = {"name": "local", "provider": "openai", "model_id": "qwen", "config": {"api_base": "http://127.0.0.1:1/v1"}}
    assert api.client.post("/models", json=spec, headers=plain).status_code == 403
    created = api.client.post("/models", json=spec, headers=admin)
    assert created.status_code == 201 and created.json()["config"] == {"api_base": "http://127.0.0.1:1/v1"}
    assert api.client.post("/models", json=spec, headers=admin).status_code == 409
    model_id = created.json()["id"]
    assert api.client.patch(f"/models/{model_id}", json={"is_active": False}, headers=plain).status_code == 403
    patched = api.client.patch(f"/models/{model_id}", json={"config": {"temperature": 0.3}}, headers=admin)
    assert patched.json()["config"] == {"api_base": "http://127.0.0.1:1/v1", "temperature": 0.3}  # merged
    assert [m["name"] for m in api.client.get("/models", headers=plain).json()] == ["local"]
    session_id = api.client.post("/sessions", json={}, headers=admin).json()["id"]
    body = start_body(matrix={"models": ["local"]})
    assert api.client.post(f"/sessions/{session_id}/solve/start", json=body, headers=admin).status_code == 201
    removed = api.client.delete(f"/models/{model_id}", headers=admin)
    assert removed.status_code == 200 and removed.json()["is_active"] is False
    spare = api.client.post("/models", json=spec | {"name": "spare"}, headers=admin).json()["id"]
    assert api.client.delete(f"/models/{spare}", headers=admin).status_code == 204


def test_local_repository_under_roots_is_accepted(api, alice, repo_root):
    headers, session_id = alice
    repo = git_repo(repo_root / "proj")
    for url in (str(repo), f"file://{repo}"):
        response = api.client.post(
            f"/sessions/{session_id}/solve/start", json=start_body(repo_url=url), headers=headers
        )
        assert response.status_code == 201, response.text

"""A service shared by several users, attacked as one of them would: repository grants, issue texts per owner,
where remote repositories may be, webhook events sent again, and input the databases cannot store — on both
databases, each a 4xx naming the field (or no second solve), never a 500 or a half-written row."""

import json
import socket
from datetime import timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tests.fakes.fixtures import GitHubApi, app_client, fake_github, github_settings  # noqa: F401
from yudai_solver.base import migrate
from yudai_solver.base.db import transaction
from yudai_solver.base.models import AIModel, Issue, RepoGrant, Solve, SolveRun, User, WebhookDelivery, utcnow
from yudai_solver.base.schemas import MAX_ISSUE_BODY, MAX_ISSUE_TITLE
from yudai_solver.base.settings import Settings
from yudai_solver.entry.api import create_app
from yudai_solver.solving.users import create_user

from .test_api import git_repo, start_body
from .test_bad_input import named_fields
from .test_github_webhooks import comment_payload, deliver, issue_payload

GITHUB_REPO = "https://github.com/acme/widgets"


# --- finding 4: who may solve what, and whose issue text a solve uses --------------------------------------------


@pytest.fixture
def shared(api, repo_root):
    """alice (the first user: admin), bob and carol (plain users), a local repository, a session each."""
    alice, bob, carol = api.user("alice"), api.user("bob"), api.user("carol")
    api.model("gpt-small")
    repo = git_repo(repo_root / "proj")
    sessions = {
        name: api.client.post("/sessions", json={}, headers=headers).json()["id"]
        for name, headers in (("alice", alice), ("bob", bob), ("carol", carol))
    }
    return {"alice": alice, "bob": bob, "carol": carol}, sessions, repo


def start(api, headers, session_id, **body):
    request = {"issue_number": 5, "base_branch": "main", "matrix": {"models": ["gpt-small"]}} | body
    return api.client.post(f"/sessions/{session_id}/solve/start", json=request, headers=headers)


def grant(api, admin, user: str, repo: str) -> int:
    response = api.client.post("/grants", json={"user": user, "repo": repo}, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_a_user_solves_only_the_repositories_granted_to_them(api, shared, repo_root):
    users, sessions, repo = shared
    bob = users["bob"]
    titled = {"issue_title": "t", "issue_body": "b"}

    for url in (str(repo), str(repo_root / "not-there"), GITHUB_REPO):  # existing or not: the same answer
        refused = start(api, bob, sessions["bob"], repo_url=url, **titled)
        assert refused.status_code == 403 and refused.json()["field"] == "repo_url", refused.text
    assert api.count(Solve) == 0 and api.count(SolveRun) == 0

    assert api.client.post("/grants", json={"user": "bob", "repo": str(repo_root)}, headers=bob).status_code == 403
    root_grant = grant(api, users["alice"], "bob", str(repo_root))
    grant(api, users["alice"], "bob", "https://github.com/acme")
    assert start(api, bob, sessions["bob"], repo_url=str(repo), **titled).status_code == 201
    assert start(api, bob, sessions["bob"], repo_url=GITHUB_REPO + ".git", **titled).status_code == 201
    for url in ("https://github.com/acme2/widgets", "https://github.com/other/acme"):
        assert start(api, bob, sessions["bob"], repo_url=url, **titled).status_code == 403
    assert start(api, users["carol"], sessions["carol"], repo_url=str(repo), **titled).status_code == 403
    assert [g["repo"] for g in api.client.get("/grants", headers=users["carol"]).json()] == []
    assert len(api.client.get("/grants", headers=users["alice"]).json()) == 2

    solve_id = start(api, bob, sessions["bob"], repo_url=str(repo), **titled).json()["solve_id"]
    assert api.client.delete(f"/grants/{root_grant}", headers=bob).status_code == 403
    assert api.client.delete(f"/grants/{root_grant}", headers=users["alice"]).status_code == 204
    assert start(api, bob, sessions["bob"], repo_url=str(repo), **titled).status_code == 403
    retry = api.client.post(f"/sessions/{sessions['bob']}/solve/{solve_id}/pr", headers=bob)
    assert retry.status_code == 403 and retry.json()["field"] == "repo_url"  # no more pushes to it either


def test_the_admin_may_solve_everything_without_grants(api, shared):
    users, sessions, repo = shared
    response = start(api, users["alice"], sessions["alice"], repo_url=str(repo), issue_title="t")
    assert response.status_code == 201, response.text


def test_issue_texts_are_per_owner_and_a_solve_uses_its_owners_text(api, shared):
    users, sessions, repo = shared
    alice, bob, carol = users["alice"], users["bob"], users["carol"]
    grant(api, alice, "bob", str(repo))
    issue = {"repo_url": str(repo), "number": 5, "body": "steps"}

    assert api.client.post("/issues", json=issue | {"title": "alice's text"}, headers=alice).status_code == 201
    overwrite = api.client.post("/issues", json=issue | {"title": "bob's text"}, headers=bob)
    assert overwrite.status_code == 201, overwrite.text  # bob's own text, beside alice's
    refused = api.client.post("/issues", json=issue | {"title": "carol's text"}, headers=carol)
    assert refused.status_code == 403 and refused.json()["field"] == "repo_url"

    def listed(headers):
        return [i["title"] for i in api.client.get("/issues", headers=headers).json()]

    assert (listed(alice), listed(bob), listed(carol)) == (["alice's text"], ["bob's text"], [])
    assert api.client.get("/issues", params={"repo_url": str(repo)}, headers=carol).json() == []
    alice_solve = start(api, alice, sessions["alice"], repo_url=str(repo)).json()["solve_id"]
    bob_solve = start(api, bob, sessions["bob"], repo_url=str(repo)).json()["solve_id"]
    carol_start = start(api, carol, sessions["carol"], repo_url=str(repo))
    assert carol_start.status_code == 403
    with api.session_factory() as session:
        assert session.get(Solve, alice_solve).issue_title == "alice's text"
        assert session.get(Solve, bob_solve).issue_title == "bob's text"


# --- finding 8: remote repositories only on configured hosts and public addresses ---------------------------------


@pytest.fixture
def url_app(session_factory, tmp_path):
    """make(**settings): a client, an admin's headers and a session, on an app whose configured hosts include
    loopback, private and link-local ones (none of their networks allowed unless the settings say so)."""
    with transaction(session_factory) as session:
        _, token = create_user(session, name="root")
        session.add(AIModel(name="gpt-small", provider="openai", model_id="gpt-small", config={}))
    headers = {"Authorization": f"Bearer {token}"}

    def make(**overrides) -> tuple[TestClient, dict, int]:
        settings = Settings(
            database_url="sqlite://",
            data_dir=tmp_path / "data",
            github_api_url="http://127.0.0.1:9",
            repo_hosts="localhost,10.1.2.3,169.254.169.254,2130706433,192.168.0.1",
            **overrides,
        )
        client = TestClient(create_app(settings, session_factory=session_factory))
        return client, headers, client.post("/sessions", json={}, headers=headers).json()["id"]

    return make


def _start_url(client, headers, session_id, url):
    body = {"repo_url": url, "base_branch": "main", "issue_number": 1, "issue_title": "t"} | {
        "matrix": {"models": ["gpt-small"]}
    }
    return client.post(f"/sessions/{session_id}/solve/start", json=body, headers=headers)


@pytest.mark.parametrize(
    "url",
    [
        "https://localhost/acme/widgets",
        "https://10.1.2.3/acme/widgets",
        "https://192.168.0.1/acme/widgets",
        "https://169.254.169.254/latest/meta-data",
        "https://2130706433/acme/widgets",  # 127.0.0.1 spelled as one number
        "https://evil.example/acme/widgets",  # no configured host
        "https://github.com.evil.example/acme/widgets",
        "https://[::1]/acme/widgets",
        "https://github.com/acme/widgets\n",
        "https://github.com/acme/widgets\n/x/y",
    ],
)
def test_a_repository_on_a_loopback_private_link_local_or_unknown_host_is_a_422(url_app, session_factory, url):
    client, headers, session_id = url_app()
    with client:
        response = _start_url(client, headers, session_id, url)
    assert response.status_code == 422 and "repo_url" in named_fields(response), response.text
    with session_factory() as session:
        assert session.scalar(sa.select(sa.func.count(Solve.id))) == 0


def test_an_open_and_a_closed_port_answer_the_same_and_nothing_is_connected_to(url_app):
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.5)
    open_port = listener.getsockname()[1]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    client, headers, session_id = url_app()
    with client:
        answers = [
            _start_url(client, headers, session_id, f"https://127.0.0.1:{port}/acme/widgets")
            for port in (open_port, closed_port)
        ]
    with pytest.raises(TimeoutError):
        listener.accept()
    listener.close()
    assert [a.status_code for a in answers] == [422, 422]
    assert answers[0].json() == answers[1].json() and answers[0].json()["field"] == "repo_url"


def test_an_allowed_private_network_is_accepted(url_app):
    client, headers, session_id = url_app(repo_private_networks="127.0.0.0/8")
    with client:
        response = _start_url(client, headers, session_id, "https://127.0.0.1:9/acme/widgets")
    assert response.status_code == 201, response.text


# --- finding 9: input the databases cannot store, and oversize requests -------------------------------------------


def _raw(api, path: str, text: str, headers: dict):
    return api.client.post(path, content=text.encode(), headers=headers | {"Content-Type": "application/json"})


START_CASES = [
    ("NUL in repo_url", {"repo_url": "https://github.com/acme/wid\x00gets"}, "repo_url"),
    ("NUL in a local repo_url", {"repo_url": "/srv/repos/wid\x00gets"}, "repo_url"),
    ("NUL in issue_title", {"issue_title": "crash\x00"}, "issue_title"),
    ("NUL in issue_body", {"issue_body": "\x00"}, "issue_body"),
    ("NUL in base_branch", {"base_branch": "ma\x00in"}, "base_branch"),
    ("NUL in test_command", {"test_command": "pytest\x00"}, "test_command"),
    ("NUL in requested_by", {"requested_by": "\x00"}, "requested_by"),
    ("NUL in a test path", {"test_paths": ["tests/\x00"]}, "test_paths"),
    ("NUL in a model name", {"matrix": {"models": ["gpt\x00"]}}, "models"),
    ("NUL in an extra limit", {"limits": {"note": "a\x00b"}}, "limits"),
    ("NUL in an extra limit's key", {"limits": {"no\x00te": 1}}, "limits"),
    (
        "NUL in an experiment's extra",
        {"matrix": {"experiments": [{"model": "gpt-small", "temperature": 0, "mode": "\x00"}]}},
        "experiments",
    ),
    ("newline after the URL", {"repo_url": "https://github.com/acme/widgets\n"}, "repo_url"),
    ("newline after the branch", {"base_branch": "main\n"}, "base_branch"),
    ("issue title too long", {"issue_title": "t" * (MAX_ISSUE_TITLE + 1)}, "issue_title"),
    ("issue body too long", {"issue_body": "b" * (MAX_ISSUE_BODY + 1)}, "issue_body"),
]


@pytest.mark.parametrize(("case", "change", "field"), START_CASES, ids=[c[0] for c in START_CASES])
def test_strings_the_database_cannot_store_are_a_422_naming_the_field(api, shared, case, change, field):
    users, sessions, _ = shared
    body = start_body(matrix={"models": ["gpt-small"]}) | change
    response = api.client.post(f"/sessions/{sessions['alice']}/solve/start", json=body, headers=users["alice"])
    assert response.status_code == 422 and field in named_fields(response), response.text
    assert api.count(Solve) == 0 and api.count(SolveRun) == 0


NUMBER_CASES = [
    ("NaN temperature", '"matrix": {"experiments": [{"model": "gpt-small", "temperature": NaN}]}', "temperature"),
    ("NaN compact temperature", '"matrix": {"models": ["gpt-small"], "temperatures": [NaN]}', "temperatures"),
    ("NaN budget", '"matrix": {"models": ["gpt-small"]}, "limits": {"cost_budget_usd": NaN}', "cost_budget_usd"),
    (
        "Infinity budget",
        '"matrix": {"models": ["gpt-small"]}, "limits": {"cost_budget_usd": Infinity}',
        "cost_budget_usd",
    ),
    ("NaN extra limit", '"matrix": {"models": ["gpt-small"]}, "limits": {"x": [1, -Infinity]}', "limits"),
]


@pytest.mark.parametrize(("case", "fragment", "field"), NUMBER_CASES, ids=[c[0] for c in NUMBER_CASES])
def test_numbers_that_are_not_finite_are_a_422_naming_the_field(api, shared, case, fragment, field):
    users, sessions, _ = shared
    text = f'{{"repo_url": "{GITHUB_REPO}", "issue_number": 7, "issue_title": "t", {fragment}}}'
    response = _raw(api, f"/sessions/{sessions['alice']}/solve/start", text, users["alice"])
    assert response.status_code == 422 and field in named_fields(response), response.text
    assert api.count(Solve) == 0 and api.count(SolveRun) == 0


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("post", "/issues", {"repo_url": GITHUB_REPO, "number": 1, "title": "a\x00"}, "title"),
        ("post", "/issues", {"repo_url": GITHUB_REPO, "number": 1, "title": "t", "labels": ["\x00"]}, "labels"),
        ("post", "/issues", {"repo_url": GITHUB_REPO, "number": 1, "title": "t" * (MAX_ISSUE_TITLE + 1)}, "title"),
        ("post", "/sessions", {"title": "\x00"}, "title"),
        ("post", "/models", {"name": "m\x00", "provider": "openai", "model_id": "m"}, "name"),
        (
            "post",
            "/models",
            {"name": "m", "provider": "o", "model_id": "m", "config": {"api_base": "http://x\x00"}},
            "api_base",
        ),
        ("post", "/models", {"name": "m", "provider": "o", "model_id": "m", "config": {"extra": "\x00"}}, "config"),
        ("post", "/grants", {"user": "bob\x00", "repo": GITHUB_REPO}, "user"),
        ("get", "/issues?repo_url=%00", None, "repo_url"),
        ("get", "/grants?user=%00", None, "user"),
        ("get", "/sessions/1/solve/status/%00", None, "solve_id"),
        ("get", "/sessions/1/solve/a/runs/%00", None, "run_id"),
        ("post", "/sessions/1/solve/cancel/%00", None, "solve_id"),
    ],
)
def test_nul_anywhere_in_a_request_is_a_422_naming_the_field(api, shared, method, path, body, field):
    users, _, _ = shared
    rows = (api.count(Issue), api.count(AIModel), api.count(RepoGrant))
    response = getattr(api.client, method)(path, headers=users["alice"], **({"json": body} if body else {}))
    assert response.status_code == 422 and field in named_fields(response), response.text
    assert (api.count(Issue), api.count(AIModel), api.count(RepoGrant)) == rows


def test_a_model_config_that_is_not_finite_is_a_422(api, shared):
    users, _, _ = shared
    text = '{"name": "m", "provider": "o", "model_id": "m", "config": {"temperature": NaN, "top_p": Infinity}}'
    response = _raw(api, "/models", text, users["alice"])
    assert response.status_code == 422 and "temperature" in named_fields(response), response.text


def test_a_body_over_the_size_limit_is_a_413_and_writes_nothing(api, shared):
    users, sessions, _ = shared
    body = start_body(issue_body="b" * 100, test_command="x" * (api.settings.max_request_bytes + 1))
    response = api.client.post(f"/sessions/{sessions['alice']}/solve/start", json=body, headers=users["alice"])
    assert response.status_code == 413, response.text
    chunked = api.client.post(
        "/issues",
        content=iter([b'{"title": "', b"x" * api.settings.max_request_bytes, b'"}']),  # no Content-Length
        headers=users["alice"] | {"Content-Type": "application/json"},
    )
    assert chunked.status_code == 413, chunked.text
    assert api.count(Solve) == 0 and api.count(Issue) == 0


# --- finding 9: a webhook event sent again under a new delivery id ------------------------------------------------


@pytest.fixture
def hook(session_factory, tmp_path, fake_github):
    fake_github.add_repo("acme/widgets")
    settings = github_settings(
        tmp_path,
        fake_github,
        webhook_owner="bot-owner",
        webhook_allowed_logins="dave",
        webhook_matrix={"models": ["gpt-small"]},
    )
    with app_client(session_factory, settings) as client:
        api = GitHubApi(client, session_factory, settings)
        api.user("bot-owner")
        api.model("gpt-small")
        yield api


def test_a_label_event_sent_again_under_a_new_delivery_id_starts_no_second_solve(hook):
    first = deliver(hook, issue_payload(), delivery="d-1")
    again = deliver(hook, issue_payload(), delivery="d-2")

    assert first.json()["outcome"] == "started", first.text
    assert again.json()["outcome"] == "duplicate" and first.json()["solve_id"] in again.json()["reason"]
    assert len(hook.rows(Solve)) == 1 and [r.outcome for r in hook.rows(WebhookDelivery)] == ["started", "duplicate"]
    assert deliver(hook, issue_payload(number=8), delivery="d-3").json()["outcome"] == "started"  # another issue

    with transaction(hook.session_factory) as session:  # the first solve ended long ago: labelling again counts
        solve = session.get(Solve, first.json()["solve_id"])
        solve.status, solve.completed_at = "completed", utcnow() - timedelta(seconds=hook.settings.webhook_repeat_s + 1)
    assert deliver(hook, issue_payload(), delivery="d-4").json()["outcome"] == "started"
    assert len(hook.rows(Solve)) == 3


def test_a_comment_sent_again_under_a_new_delivery_id_starts_no_second_solve(hook):
    def comment(comment_id: int) -> dict:
        payload = comment_payload("/yudai solve")
        payload["comment"]["id"] = comment_id
        return payload

    first = deliver(hook, comment(42), event="issue_comment", delivery="c-1")
    again = deliver(hook, comment(42), event="issue_comment", delivery="c-2")
    another = deliver(hook, comment(43), event="issue_comment", delivery="c-3")  # a new request, explicitly made

    assert first.json()["outcome"] == "started", first.text
    assert again.json()["outcome"] == "duplicate" and "c-1" in again.json()["reason"]
    assert another.json()["outcome"] == "started"
    assert len(hook.rows(Solve)) == 2


def test_webhook_solves_run_as_the_owner_and_need_its_grant(session_factory, tmp_path, fake_github):
    fake_github.add_repo("acme/widgets")
    settings = github_settings(tmp_path, fake_github, webhook_owner="bot", webhook_matrix={"models": ["gpt-small"]})
    with app_client(session_factory, settings) as client:
        api = GitHubApi(client, session_factory, settings)
        admin = api.user("root")
        api.user("bot")
        api.model("gpt-small")
        refused = deliver(api, issue_payload(), delivery="w-1")
        assert refused.json()["outcome"] == "rejected" and "may not solve" in refused.json()["reason"]
        assert client.post("/grants", json={"user": "bot", "repo": GITHUB_REPO}, headers=admin).status_code == 201
        started = deliver(api, issue_payload(), delivery="w-2")
        assert started.json()["outcome"] == "started", started.text
        [solve] = api.rows(Solve)
        assert solve.user_id == next(u.id for u in api.rows(User) if u.name == "bot")


def test_a_webhook_payload_with_nul_is_recorded_not_a_500(hook):
    payload = issue_payload()
    payload["sender"]["login"] = "car\x00ol"
    payload["issue"]["title"] = "crash\x00"
    response = deliver(hook, payload, delivery="n-1")
    assert response.status_code == 200 and response.json()["outcome"] == "rejected", response.text
    assert hook.rows(Solve) == []


# --- the migration keeps what an existing database holds ----------------------------------------------------------


def test_upgrading_an_existing_database_keeps_its_data(database_url, engine):
    migrate.downgrade(database_url, "0005")
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO users (id, name, token_hash, is_admin) VALUES (1, 'old', 'h', false)"))
        conn.execute(
            sa.text(
                "INSERT INTO issues (repo_url, number, title, body, labels, state) VALUES (:r, 5, 't', 'b', :l, 'open')"
            ),
            {"r": GITHUB_REPO, "l": json.dumps(["bug"])},
        )
        conn.execute(
            sa.text("INSERT INTO webhook_deliveries (delivery_id, event, outcome) VALUES ('d', 'issues', 'ignored')")
        )

    migrate.upgrade(database_url)

    with engine.begin() as conn:
        assert conn.execute(sa.text("SELECT repo_url, number, title, body, user_id FROM issues")).all() == [
            (GITHUB_REPO, 5, "t", "b", None)
        ]
        assert conn.execute(sa.text("SELECT delivery_id, event_key FROM webhook_deliveries")).all() == [("d", None)]
        assert conn.execute(sa.text("SELECT name FROM users")).scalars().all() == ["old"]
        # The same issue now has a text per owner, and each user's grants may be stored.
        conn.execute(
            sa.text("INSERT INTO issues (repo_url, number, title, state, user_id) VALUES (:r, 5, 'mine', 'open', 1)"),
            {"r": GITHUB_REPO},
        )
        conn.execute(sa.text("INSERT INTO repo_grants (user_id, repo) VALUES (1, 'https://github.com/acme')"))
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO issues (repo_url, number, title, state, user_id) VALUES (:r, 5, 'x', 'open', 1)"),
            {"r": GITHUB_REPO},
        )
    with engine.begin() as conn:  # cleared, so the database is handed back as the template made it
        for table in ("repo_grants", "issues", "webhook_deliveries", "users"):
            conn.execute(sa.text(f"DELETE FROM {table}"))


@pytest.mark.parametrize("field", ["name", "provider", "model_id"])
def test_a_model_patch_that_nulls_a_required_field_is_a_422_not_a_500(api, shared, field):
    # Found by schemathesis: an explicit null reached a NOT NULL column.
    users, _, _ = shared
    model_id = api.client.get("/models", headers=users["alice"]).json()[0]["id"]
    response = api.client.patch(f"/models/{model_id}", json={field: None}, headers=users["alice"])
    assert response.status_code == 422 and field in named_fields(response), response.text

"""POST /webhooks/github: signed deliveries only, the label and `/yudai solve` triggers, permitted users only,
and one solve per delivery id however often GitHub redelivers it.
"""

import hashlib
import hmac
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.fakes.fixtures import WEBHOOK_SECRET, GitHubApi, app_client, fake_github, github_settings  # noqa: F401
from yudai_solver.base.models import ChatSession, Issue, Solve, SolveRun, User, WebhookDelivery

REPO = "https://github.com/acme/widgets"


def sign(body: bytes, secret: str = WEBHOOK_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def issue_payload(action="labeled", label="yudai", number=7, state="open", **extra) -> dict:
    payload = {
        "action": action,
        "issue": {
            "number": number,
            "title": "Crash on empty input",
            "body": "Steps.",
            "state": state,
            "labels": [{"name": label}] if label else [],
        },
        "repository": {"html_url": REPO, "full_name": "acme/widgets", "default_branch": "trunk"},
        "sender": {"login": "carol"},
    }
    if label:
        payload["label"] = {"name": label}
    return payload | extra


def comment_payload(text: str, login: str = "dave", **issue) -> dict:
    payload = issue_payload(action="created", label=None)
    payload["issue"] |= issue
    return payload | {"comment": {"body": text, "user": {"login": login}}, "sender": {"login": login}}


@pytest.fixture
def hook(session_factory, tmp_path, fake_github):
    fake_github.add_repo("acme/widgets").collaborators.add("erin")
    settings = github_settings(
        tmp_path,
        fake_github,
        webhook_owner="bot-owner",
        webhook_allowed_logins="Dave",
        webhook_matrix={"models": ["gpt-small"], "temperatures": [0.2, 0.7]},
        webhook_test_command="python3 -m pytest -q",
    )
    with app_client(session_factory, settings) as client:
        api = GitHubApi(client, session_factory, settings)
        api.user("bot-owner")
        api.model("gpt-small")
        api.model("claude")
        yield api


def deliver(api: GitHubApi, payload: dict, *, event="issues", delivery="d-1", signature=None, raw: bytes | None = None):
    body = raw if raw is not None else json.dumps(payload).encode()
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "Content-Type": "application/json",
        "X-Hub-Signature-256": signature if signature is not None else sign(body),
    }
    return api.client.post("/webhooks/github", content=body, headers=headers)


def test_the_trigger_label_starts_a_solve_with_the_configured_matrix_and_owner(hook):
    response = deliver(hook, issue_payload())

    assert response.status_code == 200, response.text
    data = response.json()
    assert data["outcome"] == "started" and data["solve_id"]
    [solve] = hook.rows(Solve)
    owner = next(u for u in hook.rows(User) if u.name == "bot-owner")
    assert (solve.id, solve.user_id, solve.repo_url, solve.issue_number, solve.base_branch) == (
        data["solve_id"],
        owner.id,
        REPO,
        7,
        "trunk",
    )
    assert (solve.create_pr, solve.test_command, solve.requested_by) == (True, "python3 -m pytest -q", "github:carol")
    assert sorted((r.model, r.temperature) for r in hook.rows(SolveRun)) == [("gpt-small", 0.2), ("gpt-small", 0.7)]
    assert [(i.number, i.title, i.labels) for i in hook.rows(Issue)] == [(7, "Crash on empty input", ["yudai"])]
    assert [c.title for c in hook.rows(ChatSession) if c.user_id == owner.id] == ["GitHub github.com/acme/widgets"]
    [row] = hook.rows(WebhookDelivery)
    assert (row.delivery_id, row.event, row.action, row.outcome, row.solve_id, row.sender) == (
        "d-1",
        "issues",
        "labeled",
        "started",
        solve.id,
        "carol",
    )


def test_the_same_delivery_twice_starts_one_solve(hook):
    first = deliver(hook, issue_payload(), delivery="same-id")
    again = deliver(hook, issue_payload(), delivery="same-id")

    assert first.json()["outcome"] == "started" and again.json()["outcome"] == "duplicate"
    assert len(hook.rows(Solve)) == 1 and len(hook.rows(WebhookDelivery)) == 1
    assert deliver(hook, issue_payload(number=8), delivery="other-id").json()["outcome"] == "started"
    assert len(hook.rows(Solve)) == 2


@pytest.mark.parametrize(
    "signature",
    [
        "",
        "sha256=" + "0" * 64,
        sign(b"another body"),
        sign(b"x", secret="wrong-secret"),
        "sha1=abc",
    ],
)
def test_a_bad_signature_answers_401_and_starts_nothing(hook, signature):
    body = json.dumps(issue_payload()).encode()
    if signature == sign(b"x", secret="wrong-secret"):
        signature = sign(body, secret="wrong-secret")

    response = deliver(hook, {}, raw=body, signature=signature)

    assert response.status_code == 401, response.text
    assert hook.rows(Solve) == [] and hook.rows(WebhookDelivery) == []


def test_webhooks_are_off_without_a_secret(session_factory, tmp_path, fake_github):
    settings = github_settings(tmp_path, fake_github, github_webhook_secret=None)
    with app_client(session_factory, settings) as client:
        response = deliver(GitHubApi(client, session_factory, settings), issue_payload())
    assert response.status_code == 404 and "YUDAI_GITHUB_WEBHOOK_SECRET" in response.json()["detail"]


@pytest.mark.parametrize(
    ("event", "payload", "reason"),
    [
        ("issues", issue_payload(label="bug"), "not the trigger label"),
        ("issues", issue_payload(action="opened"), "triggers nothing"),
        ("issues", issue_payload(state="closed"), "closed"),
        ("issue_comment", comment_payload("looks good to me"), "no /yudai solve command"),
        ("issue_comment", comment_payload("/yudai solve", pull_request={"url": "x"}), "pull request"),
        ("issue_comment", comment_payload("/yudai solve", login="mallory"), "mallory may not start solves"),
        ("ping", {"zen": "Design for failure."}, "triggers nothing"),
    ],
)
def test_deliveries_that_are_no_trigger_are_recorded_and_start_nothing(hook, event, payload, reason):
    response = deliver(hook, payload, event=event)

    assert response.status_code == 200 and response.json()["outcome"] == "ignored"
    assert reason in response.json()["reason"]
    assert hook.rows(Solve) == [] and [r.outcome for r in hook.rows(WebhookDelivery)] == ["ignored"]


def test_a_solve_command_by_an_allowed_login_names_the_models(hook, fake_github):
    response = deliver(hook, comment_payload("/yudai solve claude gpt-small\nplease"), event="issue_comment")

    assert response.json()["outcome"] == "started", response.text
    assert sorted({r.model for r in hook.rows(SolveRun)}) == ["claude", "gpt-small"]
    assert fake_github.requests == []  # an allowed login needs no question to GitHub


def test_a_solve_command_by_a_collaborator_is_checked_with_github(hook, fake_github):
    response = deliver(hook, comment_payload("/yudai solve", login="erin"), event="issue_comment")

    assert response.json()["outcome"] == "started", response.text
    assert [(c.path, c.authorized) for c in fake_github.requests] == [("/repos/acme/widgets/collaborators/erin", True)]


def test_an_unknown_model_in_the_command_is_rejected_with_the_reason(hook):
    response = deliver(hook, comment_payload("/yudai solve gpt-9"), event="issue_comment")

    assert response.json()["outcome"] == "rejected" and "gpt-9" in response.json()["reason"]
    assert hook.rows(Solve) == [] and hook.rows(SolveRun) == []
    assert [(r.outcome, r.solve_id) for r in hook.rows(WebhookDelivery)] == [("rejected", None)]


def test_without_an_owner_nothing_starts(session_factory, tmp_path, fake_github):
    fake_github.add_repo("acme/widgets")
    settings = github_settings(tmp_path, fake_github, webhook_matrix={"models": ["m"]})
    with app_client(session_factory, settings) as client:
        api = GitHubApi(client, session_factory, settings)
        response = deliver(api, issue_payload())
        assert response.json()["outcome"] == "rejected" and "YUDAI_WEBHOOK_OWNER" in response.json()["reason"]
        assert api.rows(Solve) == []


def test_concurrent_redeliveries_start_one_solve(hook):
    with ThreadPoolExecutor(4) as pool:
        outcomes = list(
            pool.map(lambda _: deliver(hook, issue_payload(), delivery="raced").json()["outcome"], range(4))
        )

    assert sorted(outcomes) == ["duplicate"] * 3 + ["started"]
    assert len(hook.rows(Solve)) == 1 and len(hook.rows(WebhookDelivery)) == 1

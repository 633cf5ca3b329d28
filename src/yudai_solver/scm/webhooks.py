"""GitHub webhook triggers: a signed delivery labelling an issue, or a `/yudai solve [model ...]` comment by a
permitted user, starts a solve with the configured default matrix and owner. Each delivery id counts once.
"""

import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from yudai_solver.base.errors import InvalidInput, YudaiError
from yudai_solver.base.models import ChatSession, Solve, SolveRun, User, WebhookDelivery
from yudai_solver.base.schemas import SolveStart
from yudai_solver.base.settings import Settings
from yudai_solver.solving.solves import start_solve
from yudai_solver.scm.hosts import is_github
from yudai_solver.scm.intake import store_issue
from yudai_solver.scm.protocol import IssueData, ScmError

_COMMAND = re.compile(r"^/yudai\s+solve\b(?P<models>.*)$")
STARTED, IGNORED, REJECTED, DUPLICATE = "started", "ignored", "rejected", "duplicate"


class BadSignature(YudaiError):
    """The X-Hub-Signature-256 header does not sign this body with the webhook secret."""

    status_code = 401


class WebhooksOff(YudaiError):
    """Webhooks are off: set YUDAI_GITHUB_WEBHOOK_SECRET."""

    status_code = 503


@dataclass(frozen=True)
class Trigger:
    repo_url: str
    base_branch: str
    issue: IssueData
    sender: str
    models: list[str] = field(default_factory=list)


@dataclass
class Received:
    delivery_id: str
    outcome: str
    reason: str | None = None
    solve: Solve | None = None
    runs: list[SolveRun] = field(default_factory=list)

    @property
    def solve_id(self) -> str | None:
        return self.solve.id if self.solve else None


def verified_payload(settings: Settings, body: bytes, signature: str | None) -> dict:
    """The delivery's JSON once its HMAC-SHA256 signature checks out (compared in constant time)."""
    if settings.github_webhook_secret is None or not settings.github_webhook_secret.get_secret_value():
        raise WebhooksOff()
    secret = settings.github_webhook_secret.get_secret_value().encode()
    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), (signature or "").strip().encode()):
        raise BadSignature()
    try:
        payload = json.loads(body)
    except ValueError:
        raise InvalidInput("the body is not JSON", field="body") from None
    if not isinstance(payload, dict):
        raise InvalidInput("the body is not a JSON object", field="body")
    return payload


def receive(session: Session, settings: Settings, *, delivery_id: str, event: str, payload: dict) -> Received:
    """Record the delivery and start its solve if it is a permitted trigger (the caller commits, then submits).

    A delivery id seen before answers `duplicate` and does nothing; the table's unique key settles a race.
    """
    delivery_id = delivery_id[:255]
    trigger = parse_trigger(settings, event, payload)  # the network check first: no transaction is open yet
    if isinstance(trigger, Trigger):
        trigger = _permitted(settings, event, trigger)
    row = _recorded(session, _delivery_row(delivery_id, event, payload))
    if row is None:
        return Received(delivery_id, DUPLICATE, "this delivery was received before")
    received = _start(session, settings, trigger, delivery_id) if isinstance(trigger, Trigger) else Received(
        delivery_id, IGNORED, trigger)
    row.outcome, row.reason, row.solve_id = received.outcome, received.reason, received.solve_id
    session.flush()
    return received


def _recorded(session: Session, row: WebhookDelivery) -> WebhookDelivery | None:
    """The new delivery row, or None when its id is known: the unique key decides, also between concurrent requests."""
    if session.scalar(select(WebhookDelivery.id).where(WebhookDelivery.delivery_id == row.delivery_id)) is not None:
        return None
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:  # a concurrent request inserted the same id first
        return None
    return row


def parse_trigger(settings: Settings, event: str, payload: dict) -> "Trigger | str":
    """The trigger this delivery carries, or why it is none."""
    issue, repo = payload.get("issue") or {}, payload.get("repository") or {}
    action = payload.get("action")
    if event == "issues" and action == "labeled":
        label = (payload.get("label") or {}).get("name") or ""
        if label.casefold() != settings.trigger_label.casefold():
            return f"label {label!r} is not the trigger label {settings.trigger_label!r}"
        models: list[str] = []
    elif event == "issue_comment" and action == "created":
        if issue.get("pull_request"):
            return "a comment on a pull request"
        command = _COMMAND.match(((payload.get("comment") or {}).get("body") or "").strip().split("\n")[0].strip())
        if command is None:
            return "the comment is no /yudai solve command"
        models = command.group("models").split()
    else:
        return f"event {event!r} (action {action!r}) triggers nothing"
    return _trigger(settings, payload, issue, repo, models)


def _trigger(settings: Settings, payload: dict, issue: dict, repo: dict, models: list[str]) -> "Trigger | str":
    repo_url = (repo.get("html_url") or "").rstrip("/")
    if not is_github(settings, repo_url):
        return f"{repo_url or 'the repository'} is not served by the configured GitHub"
    if not isinstance(issue.get("number"), int) or not issue.get("title"):
        return "the payload names no issue"
    if issue.get("state") == "closed":
        return f"issue #{issue['number']} is closed"
    labels = [item["name"] for item in issue.get("labels") or [] if isinstance(item, dict)
              and isinstance(item.get("name"), str)]
    data = IssueData(number=issue["number"], title=issue["title"], body=issue.get("body") or "",
                     state="open", labels=labels)
    sender = (payload.get("sender") or {}).get("login") or ""
    return Trigger(repo_url, repo.get("default_branch") or "main", data, sender, models)


def _permitted(settings: Settings, event: str, trigger: Trigger) -> "Trigger | str":
    """Commands come from allowed logins or, if so configured, the repository's collaborators (asked of GitHub)."""
    if event != "issue_comment" or trigger.sender.lower() in settings.allowed_logins:
        return trigger
    if settings.webhook_allow_collaborators and trigger.sender:
        from yudai_solver.scm.github import GitHubHost

        try:
            if GitHubHost.from_settings(settings).is_collaborator(trigger.repo_url, trigger.sender):
                return trigger
        except ScmError as exc:
            return f"could not check whether {trigger.sender} may start solves: {exc.message}"
    return f"{trigger.sender or 'the sender'} may not start solves"


def _start(session: Session, settings: Settings, trigger: Trigger, delivery_id: str) -> Received:
    owner = session.scalar(select(User).where(User.name == settings.webhook_owner)) if settings.webhook_owner else None
    if owner is None:
        return Received(delivery_id, REJECTED, "no owner for webhook solves: set YUDAI_WEBHOOK_OWNER to a user name")
    matrix = dict(settings.webhook_matrix) | ({"models": trigger.models} if trigger.models else {})
    try:
        request = SolveStart(
            repo_url=trigger.repo_url, issue_number=trigger.issue.number, base_branch=trigger.base_branch,
            issue_title=trigger.issue.title, issue_body=trigger.issue.body, matrix=matrix, create_pr=True,
            test_command=settings.webhook_test_command, setup_command=settings.webhook_setup_command,
            requested_by=f"github:{trigger.sender}"[:255],
        )
    except ValidationError as exc:
        return Received(delivery_id, REJECTED, f"the solve request is not valid: {_first_error(exc)}")
    try:
        with session.begin_nested():  # a refused start leaves the delivery row in place
            store_issue(session, trigger.repo_url, trigger.issue)
            solve, runs = start_solve(session, user=owner, session_id=_chat(session, owner, trigger).id,
                                      request=request, settings=settings)
    except YudaiError as exc:
        return Received(delivery_id, REJECTED, exc.message)
    return Received(delivery_id, STARTED, None, solve, runs)


def _chat(session: Session, owner: User, trigger: Trigger) -> ChatSession:
    """One chat session per owner and repository collects the webhook-started solves."""
    title = f"GitHub {trigger.repo_url.split('://', 1)[-1]}"
    chat = session.scalar(select(ChatSession).where(ChatSession.user_id == owner.id, ChatSession.title == title))
    if chat is None:
        chat = ChatSession(user_id=owner.id, title=title)
        session.add(chat)
        session.flush()
    return chat


def _delivery_row(delivery_id: str, event: str, payload: dict) -> WebhookDelivery:
    issue, repo = payload.get("issue") or {}, payload.get("repository") or {}
    number = issue.get("number") if isinstance(issue.get("number"), int) else None
    return WebhookDelivery(
        delivery_id=delivery_id, event=event[:100], action=str(payload.get("action") or "")[:100] or None,
        repo_url=(repo.get("html_url") or "")[:1000] or None, issue_number=number,
        sender=((payload.get("sender") or {}).get("login") or "")[:255] or None, outcome="received",
    )


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    return f"{'.'.join(map(str, error['loc']))}: {error['msg']}"

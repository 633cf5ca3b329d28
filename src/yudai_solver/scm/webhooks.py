"""GitHub webhook deliveries: the signature, the trigger a delivery carries (an issue labelled with the trigger
label, or a `/yudai solve [model ...]` comment by a permitted user), and the records that make each delivery id, and
each event sent again under a new id, count once. Starting the solve is `solving.triggers`'s.
"""

import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from yudai_solver.base import statuses
from yudai_solver.base.db import storable
from yudai_solver.base.errors import InvalidInput, YudaiError
from yudai_solver.base.models import Solve, WebhookDelivery, utcnow
from yudai_solver.base.settings import Settings
from yudai_solver.scm.hosts import host_for
from yudai_solver.scm.protocol import IssueData, ScmError, ScmHost

_COMMAND = re.compile(r"^/yudai\s+solve\b(?P<models>.*)$")


class BadSignature(YudaiError):
    """The X-Hub-Signature-256 header does not sign this body with the webhook secret."""

    status_code = 401


class WebhooksOff(YudaiError):
    """Webhooks are off: set YUDAI_GITHUB_WEBHOOK_SECRET."""

    status_code = 404  # an endpoint switched off is not there; a 5xx would say the service failed


@dataclass(frozen=True)
class Trigger:
    repo_url: str
    base_branch: str
    issue: IssueData
    sender: str
    host: ScmHost
    models: list[str] = field(default_factory=list)
    event_key: str | None = None
    """What identifies the event itself across deliveries: a comment's id (a label event carries none)."""


def verified_payload(settings: Settings, body: bytes, signature: str | None) -> dict[str, Any]:
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


def read_trigger(settings: Settings, event: str, payload: dict[str, Any]) -> "Trigger | str":
    """The permitted trigger this delivery carries, or why it is none. It may ask the host (open no transaction)."""
    trigger = parse_trigger(settings, event, payload)
    return _permitted(settings, event, trigger) if isinstance(trigger, Trigger) else trigger


def record_delivery(session: Session, delivery_id: str, event: str, payload: dict[str, Any]) -> WebhookDelivery | None:
    """The delivery's new row (outcome `received`), or None when its id was received before."""
    return _recorded(session, _delivery_row(delivery_id, event, payload))


def earlier_event(session: Session, settings: Settings, trigger: Trigger) -> str | None:
    """Why this trigger repeats one that started a solve already, or None: the same comment, or the trigger label on
    an issue whose label-started solve still runs or ended less than `webhook_repeat_s` ago."""
    if trigger.event_key is not None:
        query = select(WebhookDelivery.delivery_id).where(WebhookDelivery.event_key == trigger.event_key)
        earlier = session.scalar(query)
        return None if earlier is None else f"this comment started a solve already (delivery {earlier})"
    recent = utcnow() - timedelta(seconds=settings.webhook_repeat_s)
    query = (
        select(Solve.id)
        .join(WebhookDelivery, WebhookDelivery.solve_id == Solve.id)
        .where(
            WebhookDelivery.event == "issues",
            WebhookDelivery.action == "labeled",
            Solve.repo_url == trigger.repo_url,
            Solve.issue_number == trigger.issue.number,
            or_(Solve.status.not_in(statuses.FINISHED), Solve.completed_at.is_(None), Solve.completed_at > recent),
        )
        .limit(1)
    )
    earlier_solve = session.scalar(query)
    if earlier_solve is None:
        return None
    return (
        f"the label started solve {earlier_solve} of issue #{trigger.issue.number}, which is running or ended less "
        f"than {settings.webhook_repeat_s} s ago"
    )


def claim_event(session: Session, row: WebhookDelivery, trigger: Trigger) -> None:
    """Mark the delivery as the one that answered its event; IntegrityError when a concurrent delivery did first."""
    row.event_key = trigger.event_key
    session.flush()


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


def parse_trigger(settings: Settings, event: str, payload: dict[str, Any]) -> "Trigger | str":
    """The trigger this delivery carries, or why it is none."""
    issue, repo = payload.get("issue") or {}, payload.get("repository") or {}
    action = payload.get("action")
    if event == "issues" and action == "labeled":
        label = (payload.get("label") or {}).get("name") or ""
        if label.casefold() != settings.trigger_label.casefold():
            return f"label {label!r} is not the trigger label {settings.trigger_label!r}"
        models: list[str] = []
        event_key = None
    elif event == "issue_comment" and action == "created":
        if issue.get("pull_request"):
            return "a comment on a pull request"
        comment = payload.get("comment") or {}
        command = _COMMAND.match((comment.get("body") or "").strip().split("\n")[0].strip())
        if command is None:
            return "the comment is no /yudai solve command"
        models = command.group("models").split()
        comment_id = comment.get("id")
        event_key = f"issue_comment:{comment_id}" if isinstance(comment_id, int) else None
    else:
        return f"event {event!r} (action {action!r}) triggers nothing"
    return _trigger(settings, payload, issue, repo, models, event_key)


def _trigger(
    settings: Settings,
    payload: dict[str, Any],
    issue: dict[str, Any],
    repo: dict[str, Any],
    models: list[str],
    event_key: str | None,
) -> "Trigger | str":
    repo_url = (repo.get("html_url") or "").rstrip("/")
    host = host_for(settings, repo_url)
    if host is None or host.name != "github":
        return f"{repo_url or 'the repository'} is not served by the configured GitHub"
    if not isinstance(issue.get("number"), int) or not issue.get("title"):
        return "the payload names no issue"
    if issue.get("state") == "closed":
        return f"issue #{issue['number']} is closed"
    labels = [
        item["name"]
        for item in issue.get("labels") or []
        if isinstance(item, dict) and isinstance(item.get("name"), str)
    ]
    data = IssueData(
        number=issue["number"], title=issue["title"], body=issue.get("body") or "", state="open", labels=labels
    )
    sender = (payload.get("sender") or {}).get("login") or ""
    return Trigger(repo_url, repo.get("default_branch") or "main", data, sender, host, models, event_key)


def _permitted(settings: Settings, event: str, trigger: Trigger) -> "Trigger | str":
    """Commands come from allowed logins or, if so configured, the repository's collaborators (asked of its host)."""
    if event != "issue_comment" or trigger.sender.lower() in settings.allowed_logins:
        return trigger
    if settings.webhook_allow_collaborators and trigger.sender:
        try:
            if trigger.host.is_collaborator(trigger.repo_url, trigger.sender):
                return trigger
        except ScmError as exc:
            return f"could not check whether {trigger.sender} may start solves: {exc.message}"
    return f"{trigger.sender or 'the sender'} may not start solves"


def _delivery_row(delivery_id: str, event: str, payload: dict[str, Any]) -> WebhookDelivery:
    issue, repo = payload.get("issue") or {}, payload.get("repository") or {}
    number = issue.get("number") if isinstance(issue.get("number"), int) else None
    # Payload text is stored as the database can hold it (PostgreSQL refuses NUL), never as a 500.
    return WebhookDelivery(
        delivery_id=storable(delivery_id),
        event=storable(event[:100]),
        action=storable(str(payload.get("action") or "")[:100]) or None,
        repo_url=storable(str(repo.get("html_url") or "")[:1000]) or None,
        issue_number=number if number is not None and 0 <= number < 2**31 else None,
        sender=storable(str((payload.get("sender") or {}).get("login") or "")[:255]) or None,
        outcome="received",
    )

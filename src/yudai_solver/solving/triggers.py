"""Solves started by a code host's webhook: a permitted trigger (see `scm.webhooks`) starts a solve with the
configured default matrix, as the configured owner (whose grants apply), in one chat session per owner and
repository. Each delivery id counts once, and so does each event GitHub sends again under a new delivery id.
"""

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from yudai_solver.base.db import storable
from yudai_solver.base.errors import YudaiError
from yudai_solver.base.models import ChatSession, Solve, SolveRun, User, WebhookDelivery
from yudai_solver.base.schemas import SolveStart
from yudai_solver.base.settings import Settings
from yudai_solver.scm.webhooks import Trigger, claim_event, earlier_event, read_trigger, record_delivery
from yudai_solver.solving.intake import store_issue
from yudai_solver.solving.solves import start_solve

STARTED, IGNORED, REJECTED, DUPLICATE = "started", "ignored", "rejected", "duplicate"


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


def receive(session: Session, settings: Settings, *, delivery_id: str, event: str, payload: dict[str, Any]) -> Received:
    """Record the delivery and start its solve if it is a permitted trigger (the caller commits, then submits).

    A delivery id seen before answers `duplicate` and does nothing; the table's unique key settles a race.
    """
    delivery_id = delivery_id[:255]
    trigger = read_trigger(settings, event, payload)  # the network check first: no transaction is open yet
    row = record_delivery(session, delivery_id, event, payload)
    if row is None:
        return Received(delivery_id, DUPLICATE, "this delivery was received before")
    received = (
        _start(session, settings, trigger, row)
        if isinstance(trigger, Trigger)
        else Received(delivery_id, IGNORED, trigger)
    )
    row.outcome, row.reason, row.solve_id = received.outcome, storable(received.reason), received.solve_id
    session.flush()
    return received


def _start(session: Session, settings: Settings, trigger: Trigger, row: WebhookDelivery) -> Received:
    delivery_id = row.delivery_id
    # The owner's row is locked (PostgreSQL) so that deliveries of one event are checked one after the other.
    owner = (
        session.scalar(select(User).where(User.name == settings.webhook_owner).with_for_update())
        if settings.webhook_owner
        else None
    )
    if owner is None:
        return Received(delivery_id, REJECTED, "no owner for webhook solves: set YUDAI_WEBHOOK_OWNER to a user name")
    repeated = earlier_event(session, settings, trigger)
    if repeated is not None:
        return Received(delivery_id, DUPLICATE, repeated)
    matrix = dict(settings.webhook_matrix) | ({"models": trigger.models} if trigger.models else {})
    try:
        request = SolveStart(
            repo_url=trigger.repo_url,
            issue_number=trigger.issue.number,
            base_branch=trigger.base_branch,
            issue_title=trigger.issue.title,
            issue_body=trigger.issue.body,
            matrix=matrix,
            create_pr=True,
            test_command=settings.webhook_test_command,
            setup_command=settings.webhook_setup_command,
            requested_by=f"{trigger.host.name}:{trigger.sender}"[:255],
        )
    except ValidationError as exc:
        return Received(delivery_id, REJECTED, f"the solve request is not valid: {_first_error(exc)}")
    try:
        with session.begin_nested():  # a refused start leaves the delivery row in place
            solve, runs = start_solve(
                session, user=owner, session_id=_chat(session, owner, trigger).id, request=request, settings=settings
            )
            store_issue(session, owner, solve.repo_url, trigger.issue)
            claim_event(session, row, trigger)
    except YudaiError as exc:
        return Received(delivery_id, REJECTED, exc.message)
    except IntegrityError:  # a concurrent delivery of the same event claimed it first
        return Received(delivery_id, DUPLICATE, "this event started a solve already")
    return Received(delivery_id, STARTED, None, solve, runs)


def _chat(session: Session, owner: User, trigger: Trigger) -> ChatSession:
    """One chat session per owner and repository collects the webhook-started solves."""
    title = f"{trigger.host.title} {trigger.repo_url.split('://', 1)[-1]}"
    chat = session.scalar(select(ChatSession).where(ChatSession.user_id == owner.id, ChatSession.title == title))
    if chat is None:
        chat = ChatSession(user_id=owner.id, title=title)
        session.add(chat)
        session.flush()
    return chat


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    return f"{'.'.join(map(str, error['loc']))}: {error['msg']}"

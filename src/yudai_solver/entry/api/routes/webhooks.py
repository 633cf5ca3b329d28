from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request

from yudai_solver.base.errors import InvalidInput
from yudai_solver.base.schemas import WebhookOut
from yudai_solver.entry.api.deps import DbDep, DispatcherDep, SettingsDep
from yudai_solver.scm import webhooks
from yudai_solver.solving import triggers

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


async def _raw_body(request: Request) -> bytes:
    return await request.body()


RawBody = Annotated[bytes, Depends(_raw_body)]


@router.post("/github", response_model=WebhookOut)
def github(
    db: DbDep,
    settings: SettingsDep,
    dispatcher: DispatcherDep,
    body: RawBody,
    x_hub_signature_256: Annotated[str | None, Header()] = None,
    x_github_event: Annotated[str | None, Header()] = None,
    x_github_delivery: Annotated[str | None, Header()] = None,
) -> WebhookOut:
    """Verified first (401 otherwise, nothing recorded); a delivery id counts once."""
    payload = webhooks.verified_payload(settings, body, x_hub_signature_256)
    delivery_id, event = _required(x_github_delivery, "X-GitHub-Delivery"), _required(x_github_event, "X-GitHub-Event")
    received = triggers.receive(db, settings, delivery_id=delivery_id, event=event, payload=payload)
    if received.solve is not None:
        dispatcher.dispatch(db, received.solve, received.runs)  # commits the delivery's row with the solve
    else:
        db.commit()
    return WebhookOut(
        delivery_id=received.delivery_id, outcome=received.outcome, reason=received.reason, solve_id=received.solve_id
    )


def _required(value: str | None, header: str) -> str:
    if not value:
        raise InvalidInput(f"the {header} header is missing", field=header)
    return value

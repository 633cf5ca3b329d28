from typing import Any

from fastapi import APIRouter, Request

from yudai_solver.solving.sandbox_policy import SandboxChoice, describe

router = APIRouter(tags=["health"])


@router.get("/health")
def health(request: Request) -> dict[str, Any]:
    """Liveness, and what this process runs agent commands in: whether that isolates them, and any warning."""
    choice: SandboxChoice | None = getattr(request.app.state, "sandbox_choice", None)
    if choice is None:  # an app not started by `yudai serve` (embedded, tests): its settings say it all
        choice = describe(request.app.state.settings)
    return {"status": "ok", "sandbox": choice.as_json()}

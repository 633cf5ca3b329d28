"""Database writes of one run: claim it, stream its progress, store its result, settle its solve."""

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from .. import statuses
from ..db import transaction
from ..models import AIModel, Solve, SolveRun, utcnow
from ..reducer import cancel_other_runs, finish_if_done


@dataclass(frozen=True)
class RunSpec:
    """Everything one run needs, read once when it is claimed (plain values, no live ORM objects)."""

    run_id: str
    solve_id: str
    repo_url: str
    base_branch: str
    issue_number: int
    issue_title: str
    issue_body: str
    setup_command: str | None
    test_command: str | None
    early_stop: bool
    model_name: str
    provider: str
    model_id: str
    model_config: dict
    temperature: float
    max_edits: int
    evolution: str


def claim(factory: sessionmaker[Session], run_id: str) -> RunSpec | None:
    """Move a pending run to running (and its solve with it); None when it is no longer pending."""
    with transaction(factory) as session:
        run = session.scalar(select(SolveRun).where(SolveRun.id == run_id).with_for_update())
        if run is None or run.status != statuses.PENDING:
            return None
        solve = session.get(Solve, run.solve_id)
        model = session.scalar(select(AIModel).where(AIModel.name == run.model))
        statuses.transition(run, statuses.RUNNING)
        run.attempts, run.heartbeat_at = run.attempts + 1, utcnow()
        if solve.status == statuses.PENDING:
            statuses.transition(solve, statuses.RUNNING)
        if model is None:
            statuses.transition(run, statuses.FAILED, error=f"model {run.model!r} no longer exists")
            session.flush()
            finish_if_done(session, solve.id)
            return None
        return _spec(run, solve, model)


def _spec(run: SolveRun, solve: Solve, model: AIModel) -> RunSpec:
    return RunSpec(
        run.id, solve.id, solve.repo_url, solve.base_branch or "main", solve.issue_number, solve.issue_title or "",
        solve.issue_body or "", solve.setup_command, solve.test_command, bool((solve.limits or {}).get("early_stop")),
        model.name, model.provider, model.model_id, dict(model.config or {}), run.temperature, run.max_edits,
        run.evolution,
    )


def storable(value):
    """`value` with NUL characters replaced: PostgreSQL text and JSONB refuse them, and commands print them."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    return value


def save_progress(factory: sessionmaker[Session], run_id: str, *, steps: list[dict], tokens: int, sandbox_id=None):
    """Steps so far, visible while the run works; also the run's heartbeat."""
    values = {"trajectory_data": {"exit_status": None, "total_steps": len(steps), "steps": list(steps)},
              "steps": len(steps), "tokens": tokens, "heartbeat_at": utcnow()}
    if sandbox_id:
        values["sandbox_id"] = sandbox_id
    with transaction(factory) as session:
        session.execute(
            update(SolveRun).where(SolveRun.id == run_id, SolveRun.status == statuses.RUNNING).values(**storable(values))
        )


def claim_baseline(factory: sessionmaker[Session], solve_id: str) -> bool:
    """True for exactly one run of the solve: the one that measures the tests on the untouched checkout."""
    with transaction(factory) as session:
        result = session.execute(
            update(Solve).where(Solve.id == solve_id, Solve.baseline.is_(None)).values(baseline={"state": "measuring"})
        )
        return result.rowcount == 1


def save_baseline(factory: sessionmaker[Session], solve_id: str, baseline: dict) -> None:
    with transaction(factory) as session:
        session.get(Solve, solve_id).baseline = storable(baseline)


def finish(factory: sessionmaker[Session], spec: RunSpec, *, status: str, error: str | None, values: dict) -> list[str]:
    """Store the run's result unless someone else ended it first (cancel, budget); settle the solve.

    Returns the ids of runs cancelled by early stop, so the caller can kill their commands.
    """
    stopped: list[str] = []
    with transaction(factory) as session:
        run = session.scalar(select(SolveRun).where(SolveRun.id == spec.run_id).with_for_update())
        if run.status == statuses.RUNNING:
            for key, value in storable(values).items():
                setattr(run, key, value)
            statuses.transition(run, status, error=storable(error))
            session.flush()
            if spec.early_stop and status == statuses.COMPLETED and run.tests_passed:
                stopped = cancel_other_runs(session, spec.solve_id, winner_id=run.id)
        finish_if_done(session, spec.solve_id)
    return stopped


def requeue(factory: sessionmaker[Session], run_id: str) -> None:
    """Put a run interrupted by a shutdown back in the queue, forgetting its partial progress."""
    with transaction(factory) as session:
        run = session.scalar(select(SolveRun).where(SolveRun.id == run_id).with_for_update())
        if run.status == statuses.RUNNING:
            statuses.transition(run, statuses.PENDING)
            run.trajectory_data, run.steps, run.tokens, run.sandbox_id = None, None, None, None

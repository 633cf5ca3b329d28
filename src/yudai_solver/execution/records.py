"""Database writes of one run: claim it, stream its progress, store its result, settle its solve."""

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import CursorResult, null, select, update
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from yudai_solver.base import statuses
from yudai_solver.base.db import storable, transaction
from yudai_solver.base.models import AIModel, Solve, SolveRun, utcnow
from yudai_solver.base.run_results import Baseline
from yudai_solver.execution.control import RunControl
from yudai_solver.solving.reducer import cancel_other_runs, finish_if_done

log = logging.getLogger(__name__)
DB_OUTAGE_S = 120
BASELINE_POLL_S = 0.2
SPENDING_COLUMNS = ("tokens", "cost", "steps", "commands", "agent_exit", "trajectory_data", "latency_ms")
"""What a run ended elsewhere (cancelled, out of budget) still gets from its worker's result: what it spent, did
and how its agent stopped."""
_P = ParamSpec("_P")
_R = TypeVar("_R")


def surviving_outages(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Retry a write while the database is unreachable (a restart, a failover), for up to DB_OUTAGE_S.

    Each call is one transaction, so a retry repeats all of it or none; a run must not fail, nor stay `running`
    forever, because its database blinked.
    """

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        deadline, pause = time.monotonic() + DB_OUTAGE_S, 0.2
        while True:
            try:
                return fn(*args, **kwargs)
            except (OperationalError, InterfaceError) as exc:
                if time.monotonic() > deadline:
                    raise
                log.warning("database unavailable in %s, retrying in %.1fs: %s", fn.__name__, pause, exc)
                time.sleep(pause)
                pause = min(pause * 2, 5.0)

    return wrapper


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
    network: bool
    base_commit: str | None
    model_name: str
    provider: str
    model_id: str
    model_config: dict[str, Any]
    temperature: float
    max_edits: int
    evolution: str
    test_paths: list[str] | None = None
    setup_network: bool = True
    time_left_s: float | None = None
    """What is left of the solve's time budget when the run was claimed (None: no budget)."""


@surviving_outages
def claim(factory: sessionmaker[Session], run_id: str) -> RunSpec | None:
    """Move a pending run to running (and its solve with it); None when it is no longer pending."""
    with transaction(factory) as session:
        run = session.scalar(select(SolveRun).where(SolveRun.id == run_id).with_for_update())
        if run is None or run.status != statuses.PENDING:
            return None
        solve = session.get_one(Solve, run.solve_id)
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
        run.id,
        solve.id,
        solve.repo_url,
        solve.base_branch or "main",
        solve.issue_number,
        solve.issue_title or "",
        solve.issue_body or "",
        solve.setup_command,
        solve.test_command,
        bool((solve.limits or {}).get("early_stop")),
        bool((solve.limits or {}).get("network")),
        solve.base_commit,
        model.name,
        model.provider,
        model.model_id,
        dict(model.config or {}),
        run.temperature,
        run.max_edits,
        run.evolution,
        solve.test_paths,
        (solve.limits or {}).get("setup_network") is not False,
        _time_left(solve),
    )


def _time_left(solve: Solve) -> float | None:
    if solve.time_budget_s is None:
        return None
    spent = (utcnow() - solve.started_at).total_seconds() if solve.started_at is not None else 0.0
    return max(0.0, solve.time_budget_s - spent)


@surviving_outages
def save_progress(
    factory: sessionmaker[Session],
    run_id: str,
    *,
    steps: list[dict[str, Any]],
    tokens: int,
    cost: float = 0.0,
    sandbox_id: str | None = None,
    model_calls: int | None = None,
    trajectory_data: dict[str, Any] | None = None,
) -> None:
    """Model calls (the `steps` column), commands, tokens, cost and the trajectory so far — visible while the run
    works, and what the cost budget counts; also the run's heartbeat. Without `model_calls`, `steps` counts the
    commands (the format of older workers)."""
    trajectory = trajectory_data or {"exit_status": None, "total_steps": len(steps), "steps": list(steps)}
    values: dict[str, object] = {
        "trajectory_data": trajectory,
        "steps": len(steps) if model_calls is None else model_calls,
        "commands": len(steps),
        "tokens": tokens,
        "cost": cost,
        "heartbeat_at": utcnow(),
    }
    if sandbox_id:
        values["sandbox_id"] = sandbox_id
    with transaction(factory) as session:
        session.execute(
            update(SolveRun)
            .where(SolveRun.id == run_id, SolveRun.status == statuses.RUNNING)
            .values(**storable(values))
        )


@surviving_outages
def remember_action_format(factory: sessionmaker[Session], model_name: str, action_format: str) -> None:
    """Store what probing found as the model's `action_format`, unless its config names one meanwhile."""
    with transaction(factory) as session:
        model = session.scalar(select(AIModel).where(AIModel.name == model_name).with_for_update())
        config = dict((model.config if model is not None else None) or {})
        if model is not None and config.get("action_format") in (None, "", "auto"):
            model.config = {**config, "action_format": action_format}


@surviving_outages
def claim_baseline(factory: sessionmaker[Session], solve_id: str, run_id: str) -> bool:
    """True for exactly one run of the solve: the one that measures the tests on the untouched checkout.

    The claim names the run, so that a claim its run can no longer honour (its worker died, it was re-queued) is
    given up by whoever settles that run (`_give_up_baseline`) instead of staying "measuring" for good.
    """
    with transaction(factory) as session:
        claim = {"state": "measuring", "run_id": run_id}
        result = session.execute(
            update(Solve).where(Solve.id == solve_id, Solve.baseline.is_(None)).values(baseline=claim)
        )
        assert isinstance(result, CursorResult)  # what an UPDATE without RETURNING answers
        return result.rowcount == 1


@surviving_outages
def save_baseline(factory: sessionmaker[Session], solve_id: str, baseline: Baseline) -> None:
    with transaction(factory) as session:
        session.get_one(Solve, solve_id).baseline = storable(baseline.as_json())


@surviving_outages
def release_baseline(factory: sessionmaker[Session], solve_id: str, run_id: str) -> None:
    """The run measuring the baseline stops before it is measured and will run again: let a run claim it anew."""
    with transaction(factory) as session:
        _give_up_baseline(session, solve_id, run_id, error=None)


def _give_up_baseline(session: Session, solve_id: str, run_id: str, *, error: str | None) -> None:
    """If `run_id` claimed the solve's baseline and has not measured it: free the claim for another attempt
    (`error` None), or record the baseline as failed with `error`. A claim without a run (stored by an older
    version) counts as this run's: measuring twice is better than never."""
    solve = session.scalar(select(Solve).where(Solve.id == solve_id).with_for_update())
    baseline = (solve.baseline if solve is not None else None) or {}
    if solve is None or baseline.get("state") != "measuring" or baseline.get("run_id", run_id) != run_id:
        return
    # SQL NULL, which a claim looks for: None through the ORM would store JSON's `null`.
    value = null() if error is None else storable(Baseline("error", None, error=error).as_json())
    session.execute(update(Solve).where(Solve.id == solve_id).values(baseline=value))


def wait_for_baseline(
    factory: sessionmaker[Session], solve_id: str, control: RunControl, *, timeout_s: float
) -> dict[str, Any] | None:
    """The solve's baseline once measured (or failed to measure); None if the run is stopped or it takes too long."""
    deadline = time.monotonic() + timeout_s
    while not control.stopped and time.monotonic() < deadline:
        baseline = _read_baseline(factory, solve_id)
        if baseline and baseline.get("state") != "measuring":
            return baseline
        control.cancel_event.wait(BASELINE_POLL_S)
    return None


@surviving_outages
def _read_baseline(factory: sessionmaker[Session], solve_id: str) -> dict[str, Any] | None:
    with factory() as session:
        baseline: dict[str, Any] | None = session.scalar(select(Solve.baseline).where(Solve.id == solve_id))
    return baseline


@surviving_outages
def finish(
    factory: sessionmaker[Session], spec: RunSpec, *, status: str, error: str | None, values: dict[str, Any]
) -> list[str]:
    """Store the run's result unless someone else ended it first (cancel, budget); settle the solve.

    Returns the ids of runs cancelled by early stop, so the caller can kill their commands.
    """
    stopped: list[str] = []
    with transaction(factory) as session:
        run = session.scalars(select(SolveRun).where(SolveRun.id == spec.run_id).with_for_update()).one()
        if run.status == statuses.RUNNING:
            for key, value in storable(values).items():
                setattr(run, key, value)
            statuses.transition(run, status, error=storable(error))
            session.flush()
            if spec.early_stop and status == statuses.COMPLETED and run.tests_passed:
                stopped = cancel_other_runs(session, spec.solve_id, winner_id=run.id)
        elif run.solve_id == spec.solve_id and run.status in (statuses.CANCELLED, statuses.FAILED):
            # Ended elsewhere (cancel, budget): it keeps what it spent and its trajectory so far.
            for key in SPENDING_COLUMNS:
                if key in values:
                    setattr(run, key, storable(values[key]))
            if "diagnostics" in values:
                run.diagnostics = storable({**(run.diagnostics or {}), **values["diagnostics"]})
        # A run measures the baseline it claimed before it finishes; one that failed first measured nothing.
        _give_up_baseline(session, spec.solve_id, spec.run_id, error="the run measuring it ended first")
        finish_if_done(session, spec.solve_id)
    return stopped


@surviving_outages
def requeue(factory: sessionmaker[Session], run_id: str) -> None:
    """Put a run interrupted by a shutdown back in the queue, forgetting its partial progress."""
    with transaction(factory) as session:
        run = session.scalars(select(SolveRun).where(SolveRun.id == run_id).with_for_update()).one()
        if run.status == statuses.RUNNING:
            statuses.transition(run, statuses.PENDING)
            run.trajectory_data, run.steps, run.tokens, run.sandbox_id = None, None, None, None
            run.commands, run.agent_exit = None, None
            if run.solve_id is not None:  # always: every run has a solve (the seed's column is nullable)
                _give_up_baseline(session, run.solve_id, run_id, error=None)


def watch(factory: sessionmaker[Session], run_id: str, *, heartbeat: bool) -> tuple[str | None, str | None]:
    """The run's status and error as stored now; with `heartbeat`, also mark it alive if it is running."""
    with transaction(factory) as session:
        if heartbeat:
            session.execute(
                update(SolveRun)
                .where(SolveRun.id == run_id, SolveRun.status == statuses.RUNNING)
                .values(heartbeat_at=utcnow())
            )
        row = session.execute(select(SolveRun.status, SolveRun.error_message).where(SolveRun.id == run_id)).first()
    return (row.status, row.error_message) if row else (None, None)


@surviving_outages
def settle_lost_run(factory: sessionmaker[Session], run_id: str, *, max_attempts: int) -> str:
    """A run whose worker died: back to pending ("retry") or failed as "worker lost" ("failed").

    Returns "done" when the run had already ended, so its job only needs closing.
    """
    with transaction(factory) as session:
        run = session.scalar(select(SolveRun).where(SolveRun.id == run_id).with_for_update())
        if run is None or run.status in statuses.FINISHED:
            return "done"
        if run.status == statuses.PENDING:
            return "retry"
        return settle_lost(session, run, max_attempts=max_attempts)


def settle_lost(session: Session, run: SolveRun, *, max_attempts: int) -> str:
    """A `running` run whose process is gone, in the caller's transaction: back to pending ("retry") or failed as
    "worker lost" ("failed") after `max_attempts`. A baseline it was measuring is freed for its next attempt, or
    marked failed with it."""
    solve_id = run.solve_id
    assert solve_id is not None  # every run has a solve: the seed's column is nullable
    if run.attempts >= max_attempts:
        statuses.transition(run, statuses.FAILED, error="worker lost")
        _give_up_baseline(session, solve_id, run.id, error="worker lost while measuring it")
        session.flush()
        finish_if_done(session, solve_id)
        return "failed"
    statuses.transition(run, statuses.PENDING)
    _give_up_baseline(session, solve_id, run.id, error=None)
    return "retry"


def silent_runs(factory: sessionmaker[Session], *, older_than_s: float) -> list[tuple[str, str, int | None]]:
    """(run id, solve id, job id) of runs still `running` whose heartbeat stopped: their worker is gone."""
    cutoff = utcnow() - timedelta(seconds=older_than_s)
    with factory() as session:
        rows = session.execute(
            select(SolveRun.id, SolveRun.solve_id, SolveRun.job_id).where(
                SolveRun.status == statuses.RUNNING, SolveRun.heartbeat_at < cutoff
            )
        ).all()
    # Every run has a solve: the seed's column is nullable, the filter only says so to the type checker.
    return [(run_id, solve_id, job_id) for run_id, solve_id, job_id in rows if solve_id is not None]


@surviving_outages
def set_job(factory: sessionmaker[Session], run_id: str, job_id: int) -> None:
    with transaction(factory) as session:
        session.execute(update(SolveRun).where(SolveRun.id == run_id).values(job_id=job_id))


def running_sandbox_ids(factory: sessionmaker[Session]) -> set[str]:
    with factory() as session:
        return set(
            session.scalars(
                select(SolveRun.sandbox_id).where(SolveRun.status == statuses.RUNNING, SolveRun.sandbox_id.is_not(None))
            )
        )


@surviving_outages
def pin_base_commit(factory: sessionmaker[Session], solve_id: str, commit: str) -> str:
    """The solve's base commit: `commit` if this is the first run to pin one, else the one pinned before."""
    with transaction(factory) as session:
        session.execute(
            update(Solve).where(Solve.id == solve_id, Solve.base_commit.is_(None)).values(base_commit=commit)
        )
        pinned = session.scalar(select(Solve.base_commit).where(Solve.id == solve_id))
        assert pinned is not None  # set just now, unless an earlier run had set it
        return pinned

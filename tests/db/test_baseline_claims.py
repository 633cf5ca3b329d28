"""A solve's baseline claim names its run, and a run that can no longer measure it gives it up (finding 6 of issue
10): freed for the run's next attempt, or marked failed, on both databases."""

from sqlalchemy import select

from yudai_solver.base.db import transaction
from yudai_solver.base.models import Solve, SolveRun
from yudai_solver.dispatch.inprocess import recover_lost_runs
from yudai_solver.execution import records
from yudai_solver.execution.records import RunSpec


def solve_with_runs(factory, count: int = 2) -> tuple[str, list[str]]:
    with transaction(factory) as session:
        solve = Solve(id="s1", repo_url="/r", issue_number=1, matrix={}, status="running")
        runs = [
            SolveRun(id=f"r{i}", solve_id="s1", model="m", temperature=0, max_edits=1, evolution="baseline")
            for i in range(count)
        ]
        for run in runs:
            run.status, run.attempts = "running", 1
        session.add_all([solve, *runs])
    return "s1", [run.id for run in runs]


def baseline(factory, solve_id: str) -> dict | None:
    with factory() as session:
        return session.scalar(select(Solve.baseline).where(Solve.id == solve_id))


def spec(run_id: str, solve_id: str) -> RunSpec:
    return RunSpec(run_id, solve_id, "/r", "main", 1, "t", "", None, None, False, False, None, "m", "openai", "m", {},
                   0.0, 1, "baseline")  # fmt: skip


def test_a_lost_run_frees_its_claim_for_its_next_attempt(session_factory):
    solve_id, (first, second) = solve_with_runs(session_factory)
    assert records.claim_baseline(session_factory, solve_id, first)
    assert not records.claim_baseline(session_factory, solve_id, second)

    assert records.settle_lost_run(session_factory, first, max_attempts=2) == "retry"

    assert baseline(session_factory, solve_id) is None  # SQL NULL, which the next claim looks for
    assert records.claim_baseline(session_factory, solve_id, second)


def test_a_run_lost_for_good_fails_the_baseline_it_was_measuring(session_factory):
    solve_id, (first, _) = solve_with_runs(session_factory)
    with transaction(session_factory) as session:
        session.get(SolveRun, first).attempts = 2
    records.claim_baseline(session_factory, solve_id, first)

    assert records.settle_lost_run(session_factory, first, max_attempts=2) == "failed"

    assert baseline(session_factory, solve_id) == {
        "state": "error",
        "test_command": None,
        "error": "worker lost while measuring it",
    }


def test_a_restarted_in_process_dispatcher_frees_the_claims_of_its_dead_runs(session_factory):
    solve_id, (first, _) = solve_with_runs(session_factory)
    records.claim_baseline(session_factory, solve_id, first)

    assert recover_lost_runs(session_factory) == {solve_id}

    assert baseline(session_factory, solve_id) is None


def test_only_the_claiming_run_gives_its_claim_up(session_factory):
    solve_id, (first, second) = solve_with_runs(session_factory)
    records.claim_baseline(session_factory, solve_id, first)

    records.requeue(session_factory, second)
    records.finish(session_factory, spec(second, solve_id), status="failed", error="x", values={})
    assert baseline(session_factory, solve_id) == {"state": "measuring", "run_id": first}

    records.finish(session_factory, spec(first, solve_id), status="failed", error="x", values={})
    assert baseline(session_factory, solve_id)["state"] == "error"


def test_a_requeued_run_frees_its_claim(session_factory):
    solve_id, (first, _) = solve_with_runs(session_factory)
    records.claim_baseline(session_factory, solve_id, first)

    records.requeue(session_factory, first)

    assert baseline(session_factory, solve_id) is None

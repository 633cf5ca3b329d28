"""The verification phase through the service: cancel and budgets stop it, a dead process's is resumed, and the
judge breaks ties only, through the real litellm client against a scripted model server."""

import json
import time

import pytest
from sqlalchemy import select

from yudai_solver.base.db import transaction
from yudai_solver.base.models import AIModel, Solve, SolveRun
from yudai_solver.dispatch.inprocess import InProcessDispatcher
from yudai_solver.solving.solves import cancel_solve
from yudai_solver.testing.scripted import Step

from .test_selection import REPRO, TEST_COMMAND, uncovered_repository

pytestmark = pytest.mark.slow

FIX = "sed -i '2s/return a - b/return a + b/' calc.py"
# Fails slowly on the base (it waits before failing), passes at once with the fix.
SLOW_REPRO = (
    "cat > test_issue_slow.py <<'EOF'\nimport time\nimport unittest\n\nfrom calc import add\n\n\n"
    "class AddTest(unittest.TestCase):\n    def test_add(self):\n        if add(2, 3) != 5:\n"
    "            time.sleep(60)\n        self.assertEqual(add(2, 3), 5)\nEOF"
)
VERBOSE_FIX = "sed -i '2s/return a - b/result = a + b\\n    return result/' calc.py"


def runs_by_model(factory, solve_id) -> dict[str, SolveRun]:
    with factory() as session:
        return {r.model: r for r in session.scalars(select(SolveRun).where(SolveRun.solve_id == solve_id))}


def start(pipeline, scripts, models: dict, **request) -> str:
    scripts.update(models)
    for name in models:
        pipeline.add_model(name)
    return pipeline.start(matrix={"models": list(models)}, test_command=TEST_COMMAND, **request)


def wait_for_verification(factory, solve_id, state="running", timeout=60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with factory() as session:
            verification = session.get(Solve, solve_id).verification or {}
        if verification.get("state") == state:
            return
        time.sleep(0.05)
    raise AssertionError(f"verification of {solve_id} never reached {state}")


def test_cancel_during_verification_kills_its_commands_promptly(pipeline, scripts):
    uncovered_repository(pipeline)
    solve_id = start(pipeline, scripts, {"slow": [Step(SLOW_REPRO), Step(FIX)]})
    wait_for_verification(pipeline.factory, solve_id)
    time.sleep(1)  # the base check is now inside its 60 s wait
    asked = time.monotonic()
    with transaction(pipeline.factory) as session:
        cancel_solve(session, session.get(Solve, solve_id), reason="cancelled by user")
    pipeline.dispatcher.cancel(solve_id)
    assert pipeline.dispatcher.wait_idle(10)
    assert time.monotonic() - asked < 5
    with pipeline.factory() as session:
        assert session.get(Solve, solve_id).status == "cancelled"


def test_the_time_budget_ends_a_verification_and_ranks_on_what_was_found(pipeline, scripts):
    uncovered_repository(pipeline)
    solve_id = start(pipeline, scripts, {"slow": [Step(SLOW_REPRO), Step(FIX)]}, limits={"time_budget_s": 12})
    solve = pipeline.wait(solve_id, timeout=60)
    assert solve.verification["state"] == "stopped" and solve.verification["reason"] == "time budget exceeded"
    assert solve.status == "completed" and solve.champion_run_id is not None
    assert (solve.completed_at - solve.started_at).total_seconds() < 20


def test_a_verification_left_running_by_a_dead_process_is_resumed_at_start(pipeline, scripts):
    uncovered_repository(pipeline)
    solve_id = start(pipeline, scripts, {"fix-with-test": [Step(REPRO), Step(FIX)], "same": [Step(FIX)]})
    pipeline.wait(solve_id)
    with transaction(pipeline.factory) as session:  # as a process killed in the middle of verifying leaves it
        solve = session.get(Solve, solve_id)
        solve.status, solve.champion_run_id, solve.ranking, solve.completed_at = "running", None, None, None
        solve.verification = {"state": "running", "heartbeat_at": "2000-01-01T00:00:00+00:00"}
    second = InProcessDispatcher(pipeline.settings, pipeline.factory)
    second.start()
    try:
        assert second.wait_idle(60)
    finally:
        second.stop()
    with pipeline.factory() as session:
        solve = session.get(Solve, solve_id)
        assert solve.status == "completed" and solve.verification["state"] == "done"
        assert [t["valid"] for t in solve.verification["tests"]] == [True]
        assert len(solve.verification["matrix"]) == 2


def judge_model(pipeline, scripts, answer: Step) -> None:
    scripts["judge"] = [answer]
    with transaction(pipeline.factory) as session:
        session.add(
            AIModel(
                name="judge",
                provider="openai",
                model_id="judge",
                config={"api_base": pipeline.server.url, "input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6},
            )
        )


def test_the_judge_breaks_a_tie_the_tests_leave(pipeline, scripts):
    uncovered_repository(pipeline)
    answer = json.dumps({"choice": "B", "rationale": "B names the intermediate result."})
    judge_model(pipeline, scripts, Step(content=answer, prompt_tokens=100, completion_tokens=20))
    solve_id = start(
        pipeline, scripts, {"short": [Step(FIX)], "long": [Step(VERBOSE_FIX)]}, limits={"judge_model": "judge"}
    )
    solve = pipeline.wait(solve_id)
    runs = runs_by_model(pipeline.factory, solve_id)

    verdict = solve.verification["judge"]
    # Candidates are labelled in ranking order: A is the smaller change, B the longer one.
    assert verdict["candidates"] == [runs["short"].id, runs["long"].id]
    assert verdict["run_id"] == runs["long"].id and verdict["error"] is None
    assert verdict["tokens"] == 120 and abs(verdict["cost"] - 0.00014) < 1e-9
    assert solve.champion_run_id == runs["long"].id
    assert "picked by the judge" in solve.ranking["reason"] and "the judge's pick" in solve.ranking["reason"]
    judge_requests = [r for r in pipeline.server.requests if r["model"] == "judge"]
    assert len(judge_requests) == 1
    assert runs["short"].id not in json.dumps(judge_requests[0]) and "result = a + b" in json.dumps(judge_requests[0])


def test_a_judge_that_answers_nonsense_changes_nothing(pipeline, scripts):
    uncovered_repository(pipeline)
    judge_model(pipeline, scripts, Step(content="I like both."))
    solve_id = start(
        pipeline, scripts, {"short": [Step(FIX)], "long": [Step(VERBOSE_FIX)]}, limits={"judge_model": "judge"}
    )
    solve = pipeline.wait(solve_id)
    runs = runs_by_model(pipeline.factory, solve_id)
    assert solve.verification["judge"]["run_id"] is None and solve.verification["judge"]["error"]
    assert solve.champion_run_id == runs["short"].id
    assert "chosen over run" in solve.ranking["reason"] and "fewer changed source lines" in solve.ranking["reason"]


def test_a_judge_model_that_does_not_exist_is_refused_at_start(pipeline, scripts):
    import pytest

    from yudai_solver.base.errors import InvalidInput

    pipeline.add_model("short")
    with pytest.raises(InvalidInput) as refused:
        pipeline.start(matrix={"models": ["short"]}, limits={"judge_model": "nope"})
    assert refused.value.field == "limits.judge_model"

"""Being kind to model servers, through the whole pipeline: a one-slot model keeps parallel runs apart at its server,
and a server that refuses forever does not keep a run past its time budget."""

import time

import pytest
from sqlalchemy import select

from yudai_solver.base.db import transaction
from yudai_solver.base.models import AIModel, SolveRun
from yudai_solver.execution import agent  # noqa: F401 - imported before the budget starts: it takes seconds
from yudai_solver.testing.scripted import Step

pytestmark = pytest.mark.slow


def add_model(pipeline, name: str, **config) -> None:
    config = {"api_base": pipeline.server.url, "action_format": "tool_call"} | config
    with transaction(pipeline.factory) as session:
        session.add(AIModel(name=name, provider="openai", model_id=name, config=config))


def statuses(pipeline, solve_id: str) -> list[str]:
    with pipeline.factory() as session:
        return list(session.scalars(select(SolveRun.status).where(SolveRun.solve_id == solve_id)))


@pytest.mark.parametrize("limit", [1, None])
def test_four_parallel_runs_of_a_one_slot_model_never_overlap_at_its_server(pipeline, scripts, limit):
    name = f"slots-{limit}"
    scripts[name] = [Step("true", delay_s=0.4), Step("echo fixed > fix.txt", delay_s=0.4)]
    add_model(pipeline, name, **({} if limit is None else {"max_concurrency": limit}))
    solve_id = pipeline.start(
        matrix={"models": [name], "temperatures": [0.0, 0.2, 0.4, 0.6]},
        limits={"max_parallel": 4},
        test_command="test -f fix.txt",
    )
    pipeline.wait(solve_id, timeout=120)
    assert statuses(pipeline, solve_id) == ["completed"] * 4
    assert len([r for r in pipeline.server.requests if r["model"] == name]) == 12
    # Without the limit the same four runs overlap at the server: the check can fail.
    assert pipeline.server.peak_in_flight == 1 if limit == 1 else pipeline.server.peak_in_flight > 1


def test_a_server_refusing_forever_ends_with_the_time_budget(pipeline, scripts):
    scripts["refusing"] = [Step("true", status=429, retry_after="1")]
    add_model(pipeline, "refusing")
    started = time.monotonic()
    solve_id = pipeline.start(matrix={"models": ["refusing"]}, limits={"time_budget_s": 4}, test_command="true")
    solve = pipeline.wait(solve_id, timeout=30)
    assert time.monotonic() - started < 8
    assert solve.status == "failed" and "time budget exceeded" in solve.error_message
    refused = [r for r in pipeline.server.requests if r["model"] == "refusing"]
    assert 2 <= len(refused) <= 5  # retried about once a second while the budget lasted


# --- named outcomes, with what the run spent kept -----------------------------------------------------------------


def only_run(pipeline, solve_id: str) -> SolveRun:
    with pipeline.factory() as session:
        return session.scalars(select(SolveRun).where(SolveRun.solve_id == solve_id)).one()


def assistant_texts(run: SolveRun) -> list[str]:
    return [m.get("content") or "" for m in run.trajectory_data["messages"] if m["role"] == "assistant"]


PRICES = {"input_cost_per_token": 0.001, "output_cost_per_token": 0.002}  # 10 in + 5 out: $0.02 an answer


def test_a_server_refusing_longer_than_a_run_may_wait_ends_it_rate_limited(pipeline, scripts):
    scripts["throttled"] = [Step("cat calc.py", "Look first."), Step("true", status=429, retry_after="3600")]
    add_model(pipeline, "throttled", **PRICES)
    started = time.monotonic()
    solve_id = pipeline.start(matrix={"models": ["throttled"]}, test_command="true")
    run = only_run(pipeline, pipeline.wait(solve_id, timeout=60).id)

    assert time.monotonic() - started < 30  # an hour's Retry-After is not waited for
    assert run.diagnostics["agent_exit"] == "rate_limited"
    assert run.error_message == f"rate_limited: {pipeline.server.url} refused the request (HTTP 429)"
    assert (run.tokens, abs(run.cost - 0.02) < 1e-9, assistant_texts(run)) == (15, True, ["Look first."])
    assert (run.steps, run.diagnostics["commands"]) == (2, 1)


def test_a_conversation_outgrowing_the_context_ends_it_context_too_long(pipeline, scripts):
    too_long = "This model's maximum context length is 2048 tokens. However, your messages resulted in 2301 tokens."
    scripts["small"] = [Step("cat calc.py", "Look first."), Step(status=400, error_message=too_long)]
    add_model(pipeline, "small", **PRICES)
    solve_id = pipeline.start(matrix={"models": ["small"]}, test_command="true")
    run = only_run(pipeline, pipeline.wait(solve_id, timeout=60).id)

    assert run.diagnostics["agent_exit"] == "context_too_long", run.error_message
    assert run.error_message.startswith("context_too_long: the conversation outgrew the model's context (")
    assert "\n" not in run.error_message
    assert (run.tokens, abs(run.cost - 0.02) < 1e-9, assistant_texts(run)) == (15, True, ["Look first."])


def test_a_cost_budget_ends_the_run_named_budget_with_what_it_spent_kept(pipeline, scripts):
    scripts["spender"] = [Step("sleep 0.2", f"Answer {n}.") for n in range(40)]
    add_model(pipeline, "spender", **PRICES)
    solve_id = pipeline.start(matrix={"models": ["spender"]}, limits={"cost_budget_usd": 0.1}, test_command="true")
    solve = pipeline.wait(solve_id, timeout=60)
    run = only_run(pipeline, solve_id)

    assert solve.status == "failed" and "cost budget exceeded" in solve.error_message
    assert run.diagnostics["agent_exit"] == "budget"
    assert run.error_message == "cost budget exceeded"
    answers = assistant_texts(run)
    # Every answer paid for is kept and counted; the budget is overshot by at most about one answer (the one that
    # crossed it, and the next one if it came back before the budget check saw the first).
    assert answers[:2] == ["Answer 0.", "Answer 1."] and run.tokens == 15 * len(answers)
    assert abs(run.cost - 0.02 * len(answers)) < 1e-9 and 0.1 <= run.cost <= 0.1 + 2 * 0.02
    assert run.steps >= len(answers) and run.trajectory_data["exit_status"]

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

"""A model served at an `api_base` of its own never receives the worker's provider key (finding 5 of issue 10).

The scripted chat server stands for whoever runs that server: it records the headers of every request it gets,
through the real litellm client, from a run's agent and from the judge.
"""

import pytest
from sqlalchemy import select

from yudai_solver.base.db import transaction
from yudai_solver.base.models import AIModel, SolveRun
from yudai_solver.execution.judge import Candidate, judge
from yudai_solver.testing.scripted import ScriptedChatServer, Step

pytestmark = pytest.mark.slow

SECRET = "sk-real-secret"
LOCAL_KEY = "local-key-for-my-server"
FIX = [Step("echo fixed > fix.txt")]
PICK = [Step(content='{"choice": "A", "rationale": "A fixes it."}')]


def leaked(server: ScriptedChatServer) -> list[dict[str, str]]:
    """The requests whose headers carry the worker's key anywhere."""
    return [headers for headers in server.headers if any(SECRET in value for value in headers.values())]


def add_model(pipeline, name: str, **config) -> None:
    with transaction(pipeline.factory) as session:
        session.add(
            AIModel(name=name, provider="openai", model_id=name, config={"api_base": pipeline.server.url, **config})
        )


def solve_with(pipeline, model: str) -> SolveRun:
    solve_id = pipeline.start(matrix={"models": [model]}, test_command="test -f fix.txt")
    pipeline.wait(solve_id)
    with pipeline.factory() as session:
        return session.scalars(select(SolveRun).where(SolveRun.solve_id == solve_id)).one()


def test_a_run_sends_its_custom_server_a_placeholder_never_the_worker_key(pipeline, scripts, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    scripts["own-server"] = FIX
    add_model(pipeline, "own-server")

    run = solve_with(pipeline, "own-server")

    assert (run.status, run.tests_passed) == ("completed", True), run.error_message
    assert len(pipeline.server.headers) >= 2  # the fix, then the submission
    assert leaked(pipeline.server) == []
    assert {headers.get("authorization") for headers in pipeline.server.headers} == {"Bearer sk-no-key"}


def test_a_run_sends_the_key_its_config_names(pipeline, scripts, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("MY_LOCAL_KEY", LOCAL_KEY)
    scripts["keyed-server"] = FIX
    add_model(pipeline, "keyed-server", api_key_env="MY_LOCAL_KEY")

    run = solve_with(pipeline, "keyed-server")

    assert (run.status, run.tests_passed) == ("completed", True), run.error_message
    assert leaked(pipeline.server) == []
    assert {headers.get("authorization") for headers in pipeline.server.headers} == {f"Bearer {LOCAL_KEY}"}


def test_a_key_variable_that_is_unset_or_a_service_setting_fails_the_run_and_sends_nothing(
    pipeline, scripts, monkeypatch
):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("YUDAI_GITHUB_TOKEN", "ghp-service-token")
    monkeypatch.delenv("UNSET_KEY", raising=False)
    scripts["unset-key"] = scripts["service-key"] = FIX
    add_model(pipeline, "unset-key", api_key_env="UNSET_KEY")
    add_model(pipeline, "service-key", api_key_env="YUDAI_GITHUB_TOKEN")

    unset, service = solve_with(pipeline, "unset-key"), solve_with(pipeline, "service-key")

    assert unset.status == "failed" and "UNSET_KEY" in unset.error_message
    assert service.status == "failed" and "api_key_env" in service.error_message
    assert pipeline.server.headers == []


@pytest.fixture
def judge_server():
    with ScriptedChatServer({"judge": PICK}) as server:
        yield server


def ask_judge(server: ScriptedChatServer, **config):
    return judge(
        provider="openai",
        model_id="judge",
        config={"api_base": server.base_url, **config},
        timeout_s=10,
        issue_title="add() subtracts",
        issue_body="",
        candidates=[Candidate("run-a", "+return a + b\n", "tests pass"), Candidate("run-b", "+return b + a\n", "")],
    )


def test_the_judge_sends_its_custom_server_no_worker_key(judge_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)

    verdict = ask_judge(judge_server)

    assert verdict.run_id == "run-a", verdict.error
    assert leaked(judge_server) == [] and len(judge_server.headers) == 1
    assert judge_server.headers[0].get("authorization") == "Bearer sk-no-key"


def test_the_judge_sends_the_key_its_config_names(judge_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("MY_LOCAL_KEY", LOCAL_KEY)

    verdict = ask_judge(judge_server, api_key_env="MY_LOCAL_KEY")

    assert verdict.run_id == "run-a", verdict.error
    assert [headers.get("authorization") for headers in judge_server.headers] == [f"Bearer {LOCAL_KEY}"]


def test_routing_keys_of_a_config_cannot_send_the_request_elsewhere(judge_server, monkeypatch):
    """litellm's `model_list` and `fallbacks` re-route a call with the worker's keys; a config does not pass them."""
    from yudai_solver.execution.agent import _model_kwargs

    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    routing = {
        "model_list": [{"model_name": "judge", "litellm_params": {"api_base": judge_server.base_url}}],
        "fallbacks": [{"model": "openai/judge", "api_base": judge_server.base_url}],
    }

    kwargs = _model_kwargs("openai", routing, 0.0, 10)

    assert "model_list" not in kwargs and "fallbacks" not in kwargs and "api_key" not in kwargs
    assert _model_kwargs("openai", {"base_url": judge_server.base_url}, 0.0, 10)["api_key"] == "sk-no-key"

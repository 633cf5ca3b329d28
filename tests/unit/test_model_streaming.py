"""The agent's model requests are streamed: counted exactly from the server's usage, and an abandoned one (cancel,
timeout) closes its connection so the server stops generating. Real litellm, a scripted server, the real loop."""

import threading
import time

import pytest

from tests.unit.test_model_gate import QuietEnv
from yudai_solver.execution.agent import SolverAgent, build_model, run_agent, usage_tokens
from yudai_solver.testing.scripted import ScriptedChatServer, Step

LONG = Step("true", "x" * 400, chunks=400, chunk_delay_s=0.05)
"""An answer the server takes 20 s to generate."""


def agent_for(server, name, *, cancel=None, timeout_s=30, action_format="tool_call", **config):
    config = {"api_base": server.base_url} | config
    model = build_model(
        provider="openai",
        model_id=name,
        config=config,
        temperature=0.0,
        timeout_s=timeout_s,
        action_format=action_format,
    )
    return SolverAgent(model, QuietEnv(), cancel_event=cancel or threading.Event(), step_limit=10)


def wait_for_end(server, seconds=5.0):
    deadline = time.monotonic() + seconds
    while not all(record.ended_at for record in server.streams) and time.monotonic() < deadline:
        time.sleep(0.02)
    return server.streams


@pytest.mark.parametrize("answers", ["tool_call", "text"])
def test_streamed_answers_are_counted_with_the_servers_usage(answers):
    steps = [Step("ls", "look", chunks=4, prompt_tokens=17, completion_tokens=9), Step("cat a", prompt_tokens=23)]
    with ScriptedChatServer({"m": steps}, formats={"m": answers}) as server:
        result = run_agent(agent_for(server, "m", action_format=answers), "task")
        requests = server.requests
    assert result.exit_status == "Submitted"
    assert result.tokens == 26 + 28 + 15  # as the server counted them, the submitting answer's 10 + 5 too
    assert all(body["stream"] and body["stream_options"] == {"include_usage": True} for body in requests)
    assert [record.disconnected for record in server.streams] == [False] * 3


def test_a_cancel_mid_generation_hangs_up_and_the_server_stops():
    with ScriptedChatServer({"long": [LONG]}) as server:
        cancel = threading.Event()
        threading.Timer(1.0, cancel.set).start()
        started = time.monotonic()
        result = run_agent(agent_for(server, "long", cancel=cancel), "task")
        assert result.exit_status == "Cancelled" and time.monotonic() - started < 2.0
        (record,) = wait_for_end(server)
    assert record.disconnected and record.sent < record.planned / 4
    assert record.ended_at - started < 2.0  # not 20 s later, when its answer would have ended


def test_a_request_past_its_timeout_is_named_model_timeout_and_the_server_stops():
    # Chunks keep coming, so the HTTP client's read timeout never fires: the request's own deadline does.
    with ScriptedChatServer({"long": [LONG]}) as server:
        started = time.monotonic()
        agent = agent_for(server, "long", timeout_s=1)
        result = run_agent(agent, "task")
        elapsed = time.monotonic() - started
        (record,) = wait_for_end(server)
    assert result.agent_exit == "model_timeout", result.error
    assert result.message == f"model_timeout: {server.base_url} did not answer within 1s"
    assert elapsed < 3.0 and record.disconnected and record.sent < record.planned / 2


@pytest.mark.parametrize("stream", [None, True, False])
def test_a_server_streaming_no_usage_is_asked_unstreamed_after_its_first_answer(stream):
    """llama-cpp-python's server ignores `stream_options`: not set, the model stops streaming to count exactly."""
    steps = [Step("ls", prompt_tokens=100, completion_tokens=50)] * 3
    with ScriptedChatServer({"quiet": steps}, stream_usage=False) as server:
        agent = agent_for(server, "quiet", **({} if stream is None else {"stream": stream}))
        result = run_agent(agent, "task")
        streamed = [bool(body.get("stream")) for body in server.requests]
    assert result.exit_status == "Submitted"
    assert streamed == {None: [True, False, False, False], True: [True] * 4, False: [False] * 4}[stream]
    counted = [usage_tokens(m["extra"]["response"]) for m in agent.messages if m["role"] == "assistant"]
    # Unstreamed, each answer counts what the server said; streamed without usage, litellm's estimate instead.
    server_said = [150, 150, 150, 15]
    assert [c == said for c, said in zip(counted, server_said, strict=True)] == [not s for s in streamed]
    assert result.tokens == sum(counted)

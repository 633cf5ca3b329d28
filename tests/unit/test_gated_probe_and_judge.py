"""The action format probe and the judge go through the model's gate, as the agent's requests do: a busy server's
429 is waited for and retried, and a model whose only slot is taken makes them wait (until their cancel)."""

import threading

from yudai_solver.execution import agent, model_gate
from yudai_solver.execution.judge import Candidate, judge
from yudai_solver.testing.scripted import ScriptedChatServer, Step

VERDICT = '{"choice": "B", "rationale": "smaller"}'
CANDIDATES = [Candidate("run-a", "patch a", "tests pass"), Candidate("run-b", "patch b", "tests pass")]


def probe(server, name, cancel=None, **config):
    config = {"api_base": server.base_url} | config
    return agent.resolve_action_format(provider="openai", model_id=name, config=config, timeout_s=10, cancel=cancel)


def ask_judge(server, name, cancel=None, **config):
    return judge(
        provider="openai",
        model_id=name,
        config={"api_base": server.base_url} | config,
        timeout_s=10,
        issue_title="t",
        issue_body="b",
        candidates=CANDIDATES,
        cancel=cancel,
    )


def taken_slot(server, name) -> model_gate.Gate:
    """The model's gate with its only slot held, as by another run's request in flight."""
    gate = model_gate.gate_for(f"openai/{name}", server.base_url, {"max_concurrency": 1})
    assert gate.acquire(threading.Event())
    return gate


def cancel_after(seconds: float) -> threading.Event:
    event = threading.Event()
    threading.Timer(seconds, event.set).start()
    return event


def test_the_probe_waits_out_a_429_and_still_decides():
    busy_once = Step("true", status=429, retry_after="0.2", error_times=1)
    with ScriptedChatServer({"deaf-busy": [busy_once]}, formats={"deaf-busy": "text"}) as server:
        assert probe(server, "deaf-busy") == ("text", True)
        assert len(server.probes) == 2


def test_the_probe_waits_for_the_models_slot_and_ends_with_its_cancel():
    with ScriptedChatServer({"deaf-full": [Step("true")]}, formats={"deaf-full": "text"}) as server:
        gate = taken_slot(server, "deaf-full")
        try:
            # Cancelled while it waits: it decides nothing, and the server never saw it.
            assert probe(server, "deaf-full", cancel_after(0.5), max_concurrency=1) == ("tool_call", False)
            assert server.probes == []
        finally:
            gate.release()
        assert probe(server, "deaf-full", max_concurrency=1) == ("text", True)


def test_the_judge_waits_out_a_429_and_picks():
    busy_once = Step(content=VERDICT, status=429, retry_after="0.2", error_times=1)
    with ScriptedChatServer({"judge-busy": [busy_once]}) as server:
        verdict = ask_judge(server, "judge-busy")
        assert (verdict.run_id, verdict.error) == ("run-b", None)
        assert len(server.requests) == 2


def test_the_judge_waits_for_the_models_slot():
    with ScriptedChatServer({"judge-full": [Step(content=VERDICT)]}) as server:
        gate = taken_slot(server, "judge-full")
        threading.Timer(0.5, gate.release).start()
        verdict = ask_judge(server, "judge-full", max_concurrency=1)
        assert verdict.run_id == "run-b" and len(server.requests) == 1
        gate = taken_slot(server, "judge-full")
        try:
            verdict = ask_judge(server, "judge-full", cancel_after(0.3), max_concurrency=1)
        finally:
            gate.release()
        assert verdict.run_id is None and verdict.error and len(server.requests) == 1

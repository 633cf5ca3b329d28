"""Being kind to model servers: limits, busy-server retries and abandoned requests, with real litellm requests to a
scripted server and mini-swe-agent's real loop."""

import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from pydantic import ValidationError

from yudai_solver.base.schemas import ModelConfig
from yudai_solver.execution import model_gate
from yudai_solver.execution.agent import SolverAgent, build_model, run_agent
from yudai_solver.execution.mswea import Submitted, litellm
from yudai_solver.testing.scripted import SUBMIT_COMMAND, ScriptedChatServer, Step

pytestmark = pytest.mark.slow  # seconds each: not in the fast tier


class QuietEnv:
    """A sandbox stand-in: every command succeeds with no output; the submit command submits."""

    config = None

    def execute(self, action: dict, cwd: str = "") -> dict:
        if action["command"].startswith(SUBMIT_COMMAND):
            raise Submitted({"role": "exit", "content": "", "extra": {"exit_status": "Submitted", "submission": ""}})
        return {"output": "", "returncode": 0, "exception_info": ""}

    def get_template_vars(self, **kwargs) -> dict:
        return {}

    def serialize(self) -> dict:
        return {}


def agent_for(
    server: ScriptedChatServer, name: str, cancel: threading.Event | None = None, timeout_s: int = 10, **config
):
    config = {"api_base": server.base_url} | config
    model = build_model(provider="openai", model_id=name, config=config, temperature=0.0, timeout_s=timeout_s)
    return SolverAgent(model, QuietEnv(), cancel_event=cancel or threading.Event(), step_limit=10)


def busy(status: int, message: str = "", **headers: str) -> litellm.exceptions.APIError:
    response = httpx.Response(status, headers=headers, request=httpx.Request("POST", "http://x/v1/chat/completions"))
    error = litellm.exceptions.APIError(status, message, "openai", "m")
    error.response = response
    return error


# --- what is retried, and after how long ----------------------------------------------------------------------


def test_busy_answers_are_retried_after_what_they_ask_and_others_are_not():
    assert model_gate.retry_delay(busy(429, "slow down", **{"Retry-After": "3"}), 0) == 3.0
    assert model_gate.retry_delay(busy(429, "slow down", **{"retry-after-ms": "1500"}), 0) == 1.5
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 < model_gate.retry_delay(busy(429, "", **{"Retry-After": later}), 0) <= 30
    assert [model_gate.retry_delay(busy(429), n) for n in (0, 1, 2, 10)] == [1.0, 2.0, 4.0, 60.0]
    assert model_gate.retry_delay(busy(529, "Overloaded"), 0) == 1.0
    assert model_gate.retry_delay(busy(503, "The server is overloaded"), 0) == 1.0
    assert model_gate.retry_delay(busy(503, "Service Unavailable: maintenance"), 0) is None
    assert model_gate.retry_delay(busy(500, "overloaded"), 0) is None
    assert model_gate.retry_delay(ValueError("overloaded"), 0) is None


@pytest.mark.parametrize(
    "config",
    [
        {"max_concurrency": 0},
        {"max_concurrency": 1.5},
        {"max_concurrency": True},
        {"requests_per_minute": -1},
        {"requests_per_minute": "60"},
    ],
)
def test_limits_must_be_positive_numbers(config):
    with pytest.raises(ValueError):
        model_gate.Limits.of(config)


def test_the_api_checks_the_limits_of_a_models_config():
    assert ModelConfig.model_validate({"max_concurrency": 2, "requests_per_minute": 30}).max_concurrency == 2
    for bad in ({"max_concurrency": 0}, {"requests_per_minute": 0}, {"max_concurrency": "x"}):
        with pytest.raises(ValidationError):
            ModelConfig.model_validate(bad)


def test_requests_per_minute_spaces_the_starts():
    gate, cancel = model_gate.Gate(model_gate.Limits.of({"requests_per_minute": 240})), threading.Event()
    starts = []
    for _ in range(4):
        assert gate.acquire(cancel)
        starts.append(time.monotonic())
        gate.release()
    assert all(later - earlier >= 0.24 for earlier, later in zip(starts, starts[1:], strict=False))


# --- through the agent: limits hold at the server ---------------------------------------------------------------


SLOW_TURNS = [Step("true", delay_s=0.3), Step("true", delay_s=0.3)]


def run_in_parallel(agents: list[SolverAgent]) -> list[str]:
    results: list[str] = [""] * len(agents)

    def run(i: int) -> None:
        results[i] = run_agent(agents[i], "task").exit_status

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(agents))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


@pytest.mark.parametrize("limit", [1, None])
def test_one_slot_keeps_four_parallel_runs_apart_at_the_server(limit):
    with ScriptedChatServer({"slots": SLOW_TURNS}) as server:
        config = {} if limit is None else {"max_concurrency": limit}
        agents = [agent_for(server, "slots", **config) for _ in range(4)]
        assert run_in_parallel(agents) == ["Submitted"] * 4
        assert len(server.requests) == 12
        # Without the limit the four runs overlap at the server: the check can fail.
        assert server.peak_in_flight == 1 if limit == 1 else server.peak_in_flight > 1


# --- busy servers ---------------------------------------------------------------------------------------------


def test_a_429_with_retry_after_is_waited_for_then_the_run_goes_on():
    script = [Step("true", status=429, retry_after="1", error_times=2), Step("true")]
    with ScriptedChatServer({"busy": script}) as server:
        started = time.monotonic()
        result = run_agent(agent_for(server, "busy"), "task")
        elapsed = time.monotonic() - started
    assert result.exit_status == "Submitted" and result.error is None
    assert len(server.requests) == 5  # two refusals, then three answers
    assert elapsed >= 1.9


def test_an_overloaded_503_is_retried_and_a_500_fails_at_once():
    overloaded = Step("true", status=503, error_message="Overloaded", retry_after="0", error_times=1)
    with ScriptedChatServer({"overloaded": [overloaded], "broken": [Step("true", status=500)]}) as server:
        assert run_agent(agent_for(server, "overloaded"), "task").exit_status == "Submitted"
        assert len(server.requests) == 3
        result = run_agent(agent_for(server, "broken"), "task")
        assert result.exit_status == "InternalServerError" and len(server.requests) == 4


def test_a_429_forever_ends_with_the_runs_cancel_promptly():
    """The dispatcher stops a run at its time budget with its cancel: that ends the waits for the busy server."""
    with ScriptedChatServer({"refusing": [Step("true", status=429, retry_after="1")]}) as server:
        cancel = threading.Event()
        threading.Timer(2.5, cancel.set).start()
        started = time.monotonic()
        result = run_agent(agent_for(server, "refusing", cancel), "task")
        elapsed = time.monotonic() - started
    assert result.exit_status == "Cancelled"
    assert 2.4 < elapsed < 3.5
    assert 2 <= len(server.requests) <= 3  # at 0, 1 and 2 s (and the time each answer takes)


def test_giving_up_on_a_busy_server_raises_its_error(monkeypatch):
    monkeypatch.setattr(model_gate, "MAX_RETRY_WAIT_S", 1.5)
    with ScriptedChatServer({"refusing": [Step("true", status=429, retry_after="1")]}) as server:
        result = run_agent(agent_for(server, "refusing"), "task")
    assert result.exit_status == "RateLimitError" and len(server.requests) == 2


# --- stopped runs abandon their request -------------------------------------------------------------------------


def test_cancel_during_a_slow_answer_ends_the_run_at_once():
    with ScriptedChatServer({"slow": [Step("true", delay_s=30)]}) as server:
        cancel = threading.Event()
        threading.Timer(1.0, cancel.set).start()
        started = time.monotonic()
        result = run_agent(agent_for(server, "slow", cancel, timeout_s=60, max_concurrency=1), "task")
        elapsed = time.monotonic() - started
        assert result.exit_status == "Cancelled" and len(server.requests) == 1
        assert elapsed < 2.0
        assert not server.requests or server.peak_in_flight == 1
        # The abandoned request keeps its slot while the server still works on it.
        gate = model_gate.gate_for("openai/slow", server.base_url, {"max_concurrency": 1})
        assert not gate.acquire(_set_after(0.3))


def _set_after(seconds: float) -> threading.Event:
    event = threading.Event()
    threading.Timer(seconds, event.set).start()
    return event


def test_the_process_exits_without_waiting_for_an_abandoned_answer():
    with ScriptedChatServer({"slow": [Step("true", delay_s=30)]}) as server:
        child = textwrap.dedent(
            f"""
            import threading, time
            from yudai_solver.execution import model_gate
            from yudai_solver.execution.agent import Cancelled, build_model
            model = build_model(provider="openai", model_id="slow", config={{"api_base": {server.base_url!r}}},
                                temperature=0.0, timeout_s=60)
            cancel = threading.Event()
            threading.Timer(1.0, cancel.set).start()
            try:
                with model_gate.gated(model, cancel, Cancelled):
                    model.query([{{"role": "system", "content": "s"}}, {{"role": "user", "content": "hi"}}])
            except Cancelled:
                print("cancelled", time.time(), flush=True)
            """
        )
        done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
        exited = time.time()
    assert done.returncode == 0 and "cancelled" in done.stdout, done.stderr
    cancelled_at = float(done.stdout.split()[-1])
    # The answer would come 29 s after the cancel; tearing down the interpreter (litellm and all) takes seconds of
    # its own on a busy machine, with or without an abandoned request.
    assert exited - cancelled_at < 10.0

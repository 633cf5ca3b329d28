"""Every way an agent's loop ends has a name and one line; both action formats; litellm's logs stay in the log."""

import logging
import subprocess
import threading

import pytest

from tests.unit.test_agent import BashEnv
from yudai_solver.execution import mswea
from yudai_solver.execution.agent import (
    TEXT_ACTION_REGEX,
    SolverAgent,
    build_model,
    configured_action_format,
    one_line,
    resolve_action_format,
    run_agent,
)
from yudai_solver.execution.strategies import get_strategy
from yudai_solver.testing.scripted import ScriptedChatServer, Step

pytestmark = pytest.mark.slow  # seconds each: not in the fast tier


def run(server, model_id, tmp_path, *, action_format="tool_call", timeout_s=10, **agent):
    config = {"api_base": server.base_url}
    model = build_model(
        provider="openai",
        model_id=model_id,
        config=config,
        temperature=0.0,
        timeout_s=timeout_s,
        action_format=action_format,
    )
    options = get_strategy("baseline").agent_config(action_format) | agent
    return run_agent(SolverAgent(model, BashEnv(tmp_path), cancel_event=threading.Event(), **options), "fix it")


@pytest.mark.parametrize(
    ("step", "name", "words"),
    [
        (Step("true", delay_s=3), "model_timeout", "did not answer within 1s"),
        (Step(status=500), "model_error", "InternalServerError"),
    ],
)
def test_model_errors_are_named_in_one_line_with_the_server(tmp_path, step, name, words):
    with ScriptedChatServer({"m": [step]}) as server:
        result = run(server, "m", tmp_path, timeout_s=1)
    assert result.agent_exit == name and words in result.message and server.base_url in result.message
    assert "\n" not in result.message and result.error and result.model_calls == 1


def test_the_text_format_parses_fenced_bash_and_counts_calls_and_commands(tmp_path):
    with ScriptedChatServer({"t": [Step("echo hi > out.txt", "Write it.")]}, formats={"t": "text"}) as server:
        result = run(server, "t", tmp_path, action_format="text")
    assert (result.agent_exit, result.message, result.model_calls, len(result.steps)) == ("submitted", None, 2, 2)
    assert (tmp_path / "out.txt").read_text() == "hi\n"
    assert all("tools" not in body for body in server.requests)


def test_a_text_answer_without_one_block_is_a_format_error_and_the_answer_is_kept(tmp_path):
    with ScriptedChatServer({"t": [Step(None, "I think so.")]}, formats={"t": "text"}) as server:
        result = run(server, "t", tmp_path, action_format="text")
    assert result.agent_exit == "format_errors" and "fenced bash block (action_format text)" in result.message
    assert (result.format_errors, result.model_calls, result.tokens) == (3, 3, 45)


def test_a_step_limit_is_named(tmp_path):
    with ScriptedChatServer({"m": [Step("true")] * 5}) as server:
        result = run(server, "m", tmp_path, step_limit=2)
    assert result.agent_exit == "step_limit" and "2 model calls" in result.message


@pytest.mark.parametrize(
    ("answers", "found"), [("tool_call", "tool_call"), ("text", "text"), ("adaptive", "tool_call")]
)
def test_auto_probes_once_per_model_and_server(answers, found):
    with ScriptedChatServer({"p": [Step("true")]}, formats={"p": answers}) as server:
        config = {"api_base": server.base_url, "action_format": "auto"}
        first = resolve_action_format(provider="openai", model_id="p", config=config, timeout_s=5)
        again = resolve_action_format(provider="openai", model_id="p", config=config, timeout_s=5)
    assert (first, again) == ((found, True), (found, False))
    assert len(server.probes) == 1 and server.requests == []


def test_a_named_format_is_never_probed_and_an_unknown_one_refused():
    assert resolve_action_format(provider="openai", model_id="x", config={"action_format": "text"}, timeout_s=1) == (
        "text",
        False,
    )
    assert configured_action_format(None) == "auto"
    with pytest.raises(ValueError, match="action_format"):
        configured_action_format({"action_format": "xml"})


def test_the_text_regex_takes_mswea_and_plain_bash_blocks():
    import re

    for fence in ("mswea_bash_command", "bash", "sh"):
        assert re.findall(TEXT_ACTION_REGEX, f"x\n```{fence}\nls -la\n```\n", re.DOTALL) == ["ls -la"]
    assert re.findall(TEXT_ACTION_REGEX, "```python\nprint(1)\n```", re.DOTALL) == []


def test_one_line_keeps_the_first_line_only():
    assert one_line("Error: boom\nTraceback (most recent call last):\n  File /srv/x.py") == "Error: boom"
    assert len(one_line("x" * 1000)) == 300


def test_litellm_logs_go_to_the_log_not_the_terminal(caplog):
    assert mswea.litellm is not None
    for name in ("LiteLLM", "LiteLLM Proxy", "LiteLLM Router"):
        logger = logging.getLogger(name)
        assert logger.propagate and all(type(h) in (logging.NullHandler, logging.FileHandler) for h in logger.handlers)
    with caplog.at_level(logging.WARNING):
        logging.getLogger("LiteLLM").warning("custom pricing warning")
    assert "custom pricing warning" in caplog.text  # the log gets it


def test_litellm_warnings_stay_out_of_a_cli_process_output():
    code = (
        "import logging; from yudai_solver.execution import mswea; "
        "logging.getLogger('LiteLLM').warning('custom pricing warning')"
    )
    done = subprocess.run(["python", "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "custom pricing warning" not in done.stdout + done.stderr

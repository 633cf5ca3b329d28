"""Real litellm against scripted servers that act in each format: every run ends with a named outcome, keeps the
model's answers, counts its tokens as it goes, and has what it changed diffed and tested whatever stopped it."""

import socket
import time

import pytest
from sqlalchemy import select

from yudai_solver.base.db import transaction
from yudai_solver.base.models import AIModel, SolveRun, User
from yudai_solver.entry.demo import SCRIPTS, TEST_COMMAND
from yudai_solver.solving.solves import cancel, run_summaries
from yudai_solver.testing.scripted import Step

pytestmark = pytest.mark.slow

FIX = SCRIPTS["scripted-minimal-fix"]


def add_model(pipeline, name, steps, *, answers="tool_call", **config):
    pipeline.server.scripts[name] = steps
    pipeline.server.formats[name] = answers
    config = {"api_base": pipeline.server.url} | config
    with transaction(pipeline.factory) as session:
        session.add(AIModel(name=name, provider="openai", model_id=name, config=config))


def solve(pipeline, name, **matrix) -> SolveRun:
    solve_id = pipeline.start(matrix={"models": [name], **matrix}, test_command=TEST_COMMAND)
    pipeline.wait(solve_id)
    return only_run(pipeline, solve_id)


def only_run(pipeline, solve_id) -> SolveRun:
    with pipeline.factory() as session:
        return session.scalars(select(SolveRun).where(SolveRun.solve_id == solve_id)).one()


def model_config(pipeline, name):
    with pipeline.factory() as session:
        return session.scalar(select(AIModel).where(AIModel.name == name)).config


def assistant_texts(run):
    return [m.get("content") or "" for m in run.trajectory_data["messages"] if m["role"] == "assistant"]


def test_a_text_server_solves_the_bug_and_its_answers_are_kept(pipeline):
    add_model(pipeline, "texter", FIX, answers="text", action_format="text")
    run = solve(pipeline, "texter")

    assert (run.status, run.error_message) == ("completed", None)
    assert (run.tests_passed, run.loc_changed, run.files_changed) == (True, 2, 1)
    assert run.diagnostics["agent_exit"] == "submitted" and run.diagnostics["action_format"] == "text"
    # 3 scripted answers + 1 that submits: 4 model calls (`steps`), 4 commands, 15 tokens each.
    assert (run.steps, run.diagnostics["commands"], run.tokens) == (4, 4, 60)
    texts = assistant_texts(run)
    assert len(texts) == 4 and "add() subtracts; fix the operator." in texts[1] and "```bash" in texts[1]
    assert not pipeline.server.probes  # a format given is never probed
    assert all("tools" not in body for body in pipeline.server.requests)


def test_auto_detects_a_server_that_ignores_tools_and_remembers(pipeline):
    add_model(pipeline, "deaf", FIX, answers="text")  # no action_format: auto
    run = solve(pipeline, "deaf")

    assert (run.status, run.tests_passed, run.loc_changed) == ("completed", True, 2), run.error_message
    assert run.diagnostics["action_format"] == "text" and run.diagnostics["agent_exit"] == "submitted"
    (probe,) = pipeline.server.probes
    assert probe["tools"][0]["function"]["name"] == "bash" and probe["model"] == "deaf"
    assert model_config(pipeline, "deaf") == {"api_base": pipeline.server.url, "action_format": "text"}
    # The next run of the model knows: no second probe.
    assert solve(pipeline, "deaf").tests_passed is True and len(pipeline.server.probes) == 1


def test_auto_keeps_tool_calls_for_a_server_that_makes_them(pipeline):
    add_model(pipeline, "caller", FIX, answers="adaptive")
    run = solve(pipeline, "caller")

    assert (run.tests_passed, run.diagnostics["action_format"]) == (True, "tool_call"), run.error_message
    assert all(body.get("tools") for body in pipeline.server.requests)


def test_tool_calls_forced_on_a_server_that_ignores_tools_end_in_named_format_errors(pipeline):
    prices = {"input_cost_per_token": 0.001, "output_cost_per_token": 0.002}  # 10 in + 5 out: $0.02 an answer
    add_model(pipeline, "forced", FIX, answers="text", action_format="tool_call", **prices)
    run = solve(pipeline, "forced")

    assert run.diagnostics["agent_exit"] == "format_errors"
    assert run.error_message.startswith("format_errors: 3 answers in a row had no bash tool call")
    assert "\n" not in run.error_message
    assert (run.steps, run.diagnostics["commands"], run.tokens) == (3, 0, 45)
    assert abs(run.cost - 0.06) < 1e-9  # each rejected answer counted once
    # Each rejected answer is kept with the error that rejected it.
    errors = [m for m in run.trajectory_data["messages"] if m.get("extra", {}).get("interrupt_type") == "FormatError"]
    assert len(errors) == 3 and all("```bash\ncat calc.py\n```" in m["extra"]["answer"]["content"] for m in errors)
    assert (run.loc_changed, run.tests_passed) == (0, False)  # validated all the same: nothing changed


def test_tokens_and_answers_are_saved_while_the_run_works(pipeline):
    # The first command takes seconds: only a save after the model's answer shows its tokens meanwhile.
    slow = [Step("sleep 4", "Let me wait a little."), *FIX]
    add_model(pipeline, "slow", slow, action_format="tool_call")
    solve_id = pipeline.start(matrix={"models": ["slow"]}, test_command=TEST_COMMAND)

    deadline, seen = time.monotonic() + 30, None
    while time.monotonic() < deadline:
        with pipeline.factory() as session:
            row = session.scalars(select(SolveRun).where(SolveRun.solve_id == solve_id)).one_or_none()
        if row is not None and row.status == "running" and (row.tokens or 0) > 0:
            seen = row
            break
        time.sleep(0.05)
    assert seen is not None, "no tokens stored while the run worked"
    assert seen.trajectory_data["exit_status"] is None
    assert (seen.tokens, seen.steps, assistant_texts(seen)) == (15, 1, ["Let me wait a little."])
    assert seen.trajectory_data["steps"] == []  # the command still runs

    pipeline.wait(solve_id)
    assert only_run(pipeline, solve_id).tokens == 75


def test_a_run_that_edited_then_hit_its_step_limit_is_diffed_and_tested(pipeline):
    script = [FIX[1], Step("cat calc.py", "Check."), Step("cat calc.py", "Check again.")]
    add_model(pipeline, "limited", script, action_format="tool_call")
    run = solve(pipeline, "limited", max_edits=2)

    assert run.status == "completed" and run.diagnostics["agent_exit"] == "step_limit"
    assert run.error_message == "step_limit: the agent did not submit within its 2 model calls (max_edits)"
    assert (run.loc_changed, run.files_changed, run.tests_passed) == (2, 1, True)
    assert (run.steps, run.diagnostics["commands"]) == (2, 2)
    with pipeline.factory() as session:
        (summary,) = run_summaries(session, run.solve_id)
    assert (summary.agent_exit, summary.steps, summary.commands) == ("step_limit", 2, 2)
    assert summary.error_message == run.error_message


def test_a_cancelled_run_keeps_what_it_spent_and_its_answers(pipeline):
    add_model(pipeline, "sleeper", [Step("cat calc.py", "Look first."), Step("sleep 600", "Wait.")])
    solve_id = pipeline.start(matrix={"models": ["sleeper"]}, test_command=TEST_COMMAND)
    deadline = time.monotonic() + 30
    while len(pipeline.server.requests) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # the sleep command has started
    with transaction(pipeline.factory) as session:
        cancel(session, user=session.get(User, pipeline.user_id), session_id=pipeline.session_id, solve_id=solve_id)
    pipeline.dispatcher.cancel(solve_id)
    assert pipeline.dispatcher.wait_idle(20)

    run = only_run(pipeline, solve_id)
    assert run.status == "cancelled" and run.diagnostics["agent_exit"] == "cancelled"
    assert (run.tokens, run.steps) == (30, 2)
    assert assistant_texts(run) == ["Look first.", "Wait."]


def test_a_run_that_edited_then_met_a_model_error_is_diffed_and_tested(pipeline):
    add_model(pipeline, "broken", [FIX[1], Step(status=500)], action_format="tool_call")
    run = solve(pipeline, "broken")

    assert run.status == "failed" and run.diagnostics["agent_exit"] == "model_error"
    assert run.error_message.startswith(f"model_error: {pipeline.server.url}: InternalServerError")
    assert "\n" not in run.error_message and "Traceback" not in run.error_message
    assert "InternalServerError" in run.diagnostics["agent_error"]
    assert (run.loc_changed, run.files_changed, run.tests_passed) == (2, 1, True)


def test_a_dead_server_is_named_model_unreachable(pipeline):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/v1"
    add_model(pipeline, "gone", FIX, api_base=dead)  # auto: the probe fails too, and decides nothing
    run = solve(pipeline, "gone")

    assert run.status == "failed" and run.diagnostics["agent_exit"] == "model_unreachable"
    assert run.error_message == f"model_unreachable: could not connect to {dead}"
    assert (run.loc_changed, run.tests_passed) == (0, None)  # nothing changed: nothing to test
    assert "action_format" not in model_config(pipeline, "gone")

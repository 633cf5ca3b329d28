"""The judge asks the scripted chat server through a real litellm client; it never raises and never shows run ids."""

import json
import time

import pytest

from yudai_solver.execution.judge import Candidate, Verdict, judge
from yudai_solver.testing.scripted import ScriptedChatServer, Step

pytestmark = pytest.mark.slow

CANDIDATES = [
    Candidate(
        "run-id-7f3a9c01",
        "--- a/calc.py\n+++ b/calc.py\n@@\n-return a - b\n+return a + b\n",
        "tests passed: 12/12; reproduction tests passed: 1/1; agrees with 2 other runs",
    ),
    Candidate(
        "run-id-5be42d77",
        "--- a/calc.py\n+++ b/calc.py\n@@\n-return a - b\n+return b + a\n",
        "tests passed: 12/12; reproduction tests passed: 1/1; agrees with 0 other runs",
    ),
    Candidate(
        "run-id-c0ffee99",
        "--- a/calc.py\n+++ b/calc.py\n@@\n-return a - b\n+return sum((a, b))\n",
        "tests passed: 12/12; reproduction tests passed: 1/1; agrees with 0 other runs",
    ),
]
TITLE = "add() subtracts {title} {{ 7*7 }} $(touch /tmp/x)"
BODY = "Calling `add(2, 3)` returns -1.\n{% for x in y %}{x}{% endfor %} %(name)s {0} 'quotes' \"double\" ünïcödé\n"
PICK_B = '{"choice": "B", "rationale": "B keeps the argument order the docs describe."}'


def answer(content: str, **step) -> list[Step]:
    return [Step(content=content, **step)]


SCRIPTS = {
    "pick": answer(PICK_B, prompt_tokens=1234, completion_tokens=56),
    "fenced": answer('Both are close.\n```json\n{"choice": "C", "rationale": "Shortest."}\n```\n'),
    "prose-label": answer('{"choice": "Candidate a", "rationale": "A is idiomatic."}'),
    "unknown": answer('{"choice": "D", "rationale": "D is best."}'),
    "no-choice": answer('{"rationale": "All are fine."}'),
    "prose": answer("I would pick the second one, it reads better."),
    "empty": answer(""),
    "long-rationale": answer(json.dumps({"choice": "A", "rationale": "x" * 5000})),
    "http-500": [Step(status=500)],
    "slow": answer(PICK_B, delay_s=3),
}


@pytest.fixture
def server():
    with ScriptedChatServer(SCRIPTS) as server:
        yield server


def ask(
    server: ScriptedChatServer,
    model: str,
    *,
    config: dict | None = None,
    timeout_s: int = 10,
    candidates=CANDIDATES,
    **kwargs,
) -> Verdict:
    return judge(
        provider="openai",
        model_id=model,
        config={"api_base": server.base_url} | (config or {}),
        timeout_s=timeout_s,
        issue_title=TITLE,
        issue_body=BODY,
        candidates=candidates,
        **kwargs,
    )


def test_a_valid_pick_maps_the_label_to_its_run_and_counts_tokens_and_cost(server):
    prices = {"input_cost_per_token": 0.000002, "output_cost_per_token": 0.00001}
    verdict = ask(server, "pick", config=prices)
    assert verdict.run_id == "run-id-5be42d77" and verdict.error is None
    assert verdict.rationale == "B keeps the argument order the docs describe."
    assert verdict.tokens == 1234 + 56
    assert verdict.cost == pytest.approx(1234 * 0.000002 + 56 * 0.00001)


def test_request_uses_temperature_zero_and_the_rows_max_tokens(server):
    ask(server, "pick", config={"max_tokens": 300, "temperature": 0.9})
    (request,) = server.requests
    assert request["model"] == "pick" and request["temperature"] == 0 and request["max_tokens"] == 300
    assert not request.get("tools") and not request.get("stream")


def test_request_has_the_issue_verbatim_and_labels_but_no_run_ids(server):
    ask(server, "pick")
    (request,) = server.requests
    system, user = request["messages"]
    assert system["role"] == "system" and '"choice"' in system["content"] and '"rationale"' in system["content"]
    assert user["role"] == "user"
    assert TITLE in user["content"] and BODY in user["content"]
    for label, candidate in zip("ABC", CANDIDATES, strict=True):
        assert f"Candidate {label}" in user["content"]
        assert candidate.source_patch in user["content"] and candidate.evidence in user["content"]
    raw = json.dumps(request)
    assert not any(candidate.run_id in raw for candidate in CANDIDATES)


def test_long_patches_are_cut_and_marked(server):
    long = Candidate("run-long", "+" + "y" * 500, "tests passed: 1/1")
    ask(server, "pick", candidates=[CANDIDATES[0], long], max_patch_chars=100)
    user = server.requests[0]["messages"][1]["content"]
    assert "y" * 99 in user and "y" * 101 not in user and "cut: 401 more characters" in user
    assert CANDIDATES[0].source_patch in user


def test_a_json_fence_after_prose_is_parsed(server):
    verdict = ask(server, "fenced")
    assert (verdict.run_id, verdict.rationale, verdict.error) == ("run-id-c0ffee99", "Shortest.", None)


def test_a_label_written_loosely_still_counts(server):
    assert ask(server, "prose-label").run_id == "run-id-7f3a9c01"


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("unknown", "names no candidate"),
        ("no-choice", "no choice"),
        ("prose", "no JSON object"),
        ("empty", "empty answer"),
    ],
)
def test_answers_without_a_valid_pick_give_an_error_and_still_count_tokens(server, model, message):
    verdict = ask(server, model, config={"input_cost_per_token": 0.001, "output_cost_per_token": 0.001})
    assert verdict.run_id is None and message in verdict.error
    assert verdict.tokens == 15 and verdict.cost == pytest.approx(0.015)


def test_the_rationale_is_capped(server):
    verdict = ask(server, "long-rationale")
    assert verdict.run_id == "run-id-7f3a9c01" and len(verdict.rationale) <= 1000


def test_an_http_error_is_a_verdict_not_an_exception(server):
    verdict = ask(server, "http-500")
    assert verdict.run_id is None and verdict.tokens == 0 and verdict.cost == 0.0
    assert verdict.error.startswith("InternalServerError: ") and "500" in verdict.error
    assert len(server.requests) == 1  # no retries


def test_a_timeout_is_a_verdict_not_an_exception(server):
    started = time.monotonic()
    verdict = ask(server, "slow", timeout_s=1)
    assert time.monotonic() - started < 2.5
    assert verdict.run_id is None and "Timeout" in verdict.error
    assert len(server.requests) == 1


def test_an_unreachable_server_and_no_candidates_give_errors():
    with ScriptedChatServer({}) as gone:
        api_base = gone.base_url
    verdict = judge(
        provider="openai",
        model_id="pick",
        config={"api_base": api_base},
        timeout_s=5,
        issue_title=TITLE,
        issue_body=BODY,
        candidates=CANDIDATES,
    )
    assert verdict.run_id is None and verdict.error
    verdict = judge(
        provider="openai",
        model_id="pick",
        config={"api_base": api_base},
        timeout_s=5,
        issue_title=TITLE,
        issue_body=BODY,
        candidates=[],
    )
    assert verdict == Verdict(None, "", 0, 0.0, "no candidates to judge")

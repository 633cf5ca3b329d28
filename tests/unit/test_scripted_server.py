"""The scripted chat server speaks OpenAI's chat-completions protocol over real HTTP."""

import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from yudai_solver.testing.scripted import SUBMIT_COMMAND, ScriptedChatServer, Step

SCRIPT = [Step("ls", "look", prompt_tokens=11, completion_tokens=2), Step("cat a.py", "read")]


def post(base_url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"{base_url}/chat/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def chat(model: str, n_assistant: int) -> dict:
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "task"}]
    for i in range(n_assistant):
        messages += [{"role": "assistant", "content": f"turn {i}"}, {"role": "user", "content": "output"}]
    return {"model": model, "messages": messages, "stream": False}


def command_of(answer: dict) -> str:
    return json.loads(answer["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"])["command"]


@pytest.fixture
def server():
    with ScriptedChatServer({"fix": SCRIPT, "broken": [Step(status=503)]}) as server:
        yield server


def test_answer_has_the_openai_chat_completion_shape(server):
    status, answer = post(server.base_url, chat("fix", 0))
    assert status == 200
    assert answer["object"] == "chat.completion" and answer["model"] == "fix"
    assert answer["id"] and isinstance(answer["created"], int)
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"] == "look"
    call = choice["message"]["tool_calls"][0]
    assert call["type"] == "function" and call["function"]["name"] == "bash" and call["id"].startswith("call_")
    assert command_of(answer) == "ls"
    assert answer["usage"] == {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}


def test_step_is_the_number_of_assistant_messages_so_far(server):
    assert command_of(post(server.base_url, chat("fix", 1))[1]) == "cat a.py"
    assert command_of(post(server.base_url, chat("fix", 0))[1]) == "ls"


def test_past_the_end_of_the_script_it_submits(server):
    assert command_of(post(server.base_url, chat("fix", 2))[1]) == SUBMIT_COMMAND
    assert command_of(post(server.base_url, chat("fix", 7))[1]) == SUBMIT_COMMAND


def test_tool_call_ids_are_unique(server):
    ids = {post(server.base_url, chat("fix", 0))[1]["choices"][0]["message"]["tool_calls"][0]["id"] for _ in range(5)}
    assert len(ids) == 5


def test_a_step_without_command_has_no_tool_calls():
    with ScriptedChatServer({"m": [Step(None, "just talk")]}) as server:
        _, answer = post(server.base_url, chat("m", 0))
    assert answer["choices"][0]["message"]["tool_calls"] is None
    assert answer["choices"][0]["finish_reason"] == "stop"


def test_scripted_status_answers_with_an_openai_error_body(server):
    status, answer = post(server.base_url, chat("broken", 0))
    assert status == 503
    assert answer["error"]["message"] and answer["error"]["type"] == "server_error"


def test_unknown_model_is_404(server):
    assert post(server.base_url, chat("nope", 0))[0] == 404
    assert post(server.base_url, chat("nope", 0) | {"stream": True})[0] == 404


def stream(base_url: str, body: dict) -> list:
    request = urllib.request.Request(
        f"{base_url}/chat/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"] == "text/event-stream"
        events = [line[len(b"data: ") :].decode() for line in response.read().splitlines() if line]
    assert events[-1] == "[DONE]"
    return [json.loads(event) for event in events[:-1]]


def test_a_streamed_answer_is_openai_chunks_with_the_usage_last():
    steps = [Step("ls", "look around", chunks=3, prompt_tokens=11, completion_tokens=2)]
    with ScriptedChatServer({"fix": steps}) as server:
        chunks = stream(server.base_url, chat("fix", 0) | {"stream": True, "stream_options": {"include_usage": True}})
        (record,) = server.streams
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "fix" for c in chunks)
    deltas = [c["choices"][0]["delta"] for c in chunks[:-1]]
    assert "".join(d.get("content") or "" for d in deltas) == "look around"
    assert len([d for d in deltas if d.get("content")]) == 3
    (call,) = next(d["tool_calls"] for d in deltas if d.get("tool_calls"))
    assert call["index"] == 0 and json.loads(call["function"]["arguments"]) == {"command": "ls"}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 13
    assert (record.sent, record.planned, record.disconnected) == (len(chunks) + 1, len(chunks) + 1, False)


def test_a_stream_without_include_usage_has_no_usage_chunk(server):
    chunks = stream(server.base_url, chat("fix", 0) | {"stream": True})
    assert all("usage" not in c for c in chunks) and chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_a_client_hanging_up_mid_stream_stops_the_generation_and_is_recorded():
    steps = [Step("true", "x" * 200, chunks=200, chunk_delay_s=0.02)]  # 4 s of "generation"
    with ScriptedChatServer({"long": steps}) as server:
        request = urllib.request.Request(
            f"{server.base_url}/chat/completions",
            data=json.dumps(chat("long", 0) | {"stream": True}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            response.readline()
        hung_up = time.monotonic()
        deadline = hung_up + 3
        while not server.streams[0].ended_at and time.monotonic() < deadline:
            time.sleep(0.02)
        (record,) = server.streams
    assert record.disconnected and record.sent < record.planned / 2
    assert record.ended_at - hung_up < 1.0


def test_requests_are_recorded_in_order(server):
    post(server.base_url, chat("fix", 0))
    post(server.base_url, chat("broken", 0))
    assert [body["model"] for body in server.requests] == ["fix", "broken"]


def test_models_lists_the_scripts(server):
    with urllib.request.urlopen(f"{server.base_url}/models", timeout=10) as response:
        names = {model["id"] for model in json.loads(response.read())["data"]}
    assert names == {"fix", "broken"}


def test_delayed_answers_are_served_concurrently():
    with ScriptedChatServer({"slow": [Step("ls", delay_s=0.5)]}) as server:
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: post(server.base_url, chat("slow", 0)), range(8)))
        elapsed = time.monotonic() - started
    assert all(status == 200 for status, _ in answers)
    assert 0.5 <= elapsed < 2.0
    assert len(server.requests) == 8


def test_stop_releases_the_port():
    server = ScriptedChatServer({"fix": SCRIPT})
    base_url = server.start()
    assert server.start() == base_url
    server.stop()
    server.stop()
    with pytest.raises(urllib.error.URLError):
        post(base_url, chat("fix", 0))

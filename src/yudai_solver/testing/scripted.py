"""A scripted, OpenAI-compatible chat-completions server on 127.0.0.1, for tests, benchmarks and `yudai demo`.

Stdlib only. Point litellm at it with `model="openai/<script name>"` and `api_base=server.start()`.

The step to answer is chosen without server-side state: it is the number of assistant messages already in the
request. A conversation therefore replays deterministically, and any number of conversations can share one
server and one script at once.

Each model answers in one of `FORMATS` (`formats`, default "tool_call"): a `bash` tool call, a fenced bash block in
its text (what a server whose chat format ignores `tools` does, whatever the request offers), or "adaptive": a tool
call when the request offers tools, else a fenced block. A request with tools and a single message is an action
format probe: it is answered like step 0 and recorded in `probes`, not `requests`.

A request with `"stream": true` is answered with server-sent events, as OpenAI streams: the text in `Step.chunks`
pieces `Step.chunk_delay_s` apart, then the tool call, the finish reason, the usage (when `stream_options` asks for
it with `include_usage`) and `[DONE]`. Each stream is recorded in `streams`, with whether the client hung up before
its end (`disconnected`): what a test checks that an abandoned request stops the generation with.
"""

import functools
import json
import math
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SUBMIT_COMMAND = "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"
FORMATS = ("tool_call", "text", "adaptive")


@dataclass(frozen=True)
class Step:
    """One scripted model answer.

    `command` becomes a single `bash` tool call (or, answering in text, a fenced `bash` block after `content`).
    None means no action: mini-swe-agent answers with a format error and keeps no assistant message, so the same
    step is asked for again (ending in RepeatedFormatError). A `status` other than 200 answers with an OpenAI-style
    error body instead, after `delay_s`.
    """

    command: str | None = None
    content: str = ""
    delay_s: float = 0.0
    status: int = 200
    prompt_tokens: int = 10
    retry_after: str | None = None
    """Sent as the `Retry-After` header of an error answer."""
    error_times: int = 0
    """With a `status`: answer the error this many times per model (0: always), then answer the step normally."""
    error_message: str = ""
    """The error body's message instead of "Scripted error <status>." (a busy server's says "Overloaded")."""
    completion_tokens: int = 5
    chunks: int = 1
    """Streamed, the answer's text comes in this many pieces (a long generation: many)."""
    chunk_delay_s: float = 0.0
    """Streamed, the wait before each piece of the text: how long the server "generates"."""


@dataclass
class StreamRecord:
    """One streamed answer: the events it was to send, those sent, and whether the client hung up first."""

    model: str
    planned: int
    sent: int = 0
    disconnected: bool = False
    ended_at: float = field(default=0.0)
    """`time.monotonic()` when the server stopped sending (its end, or the hang-up it noticed)."""


SUBMIT_STEP = Step(command=SUBMIT_COMMAND, content="Done; submitting.")


class ScriptedChatServer:
    """Serves `POST /v1/chat/completions` (non-streaming) and `GET /v1/models` from `scripts`, keyed by model."""

    def __init__(
        self, scripts: dict[str, list[Step]], formats: dict[str, str] | None = None, *, stream_usage: bool = True
    ):
        self.scripts = scripts
        self.stream_usage = stream_usage
        """False: streams never carry the usage, whatever `stream_options` asks (as llama-cpp-python's server)."""
        self.formats = formats if formats is not None else {}
        """Each model's answer format (see `FORMATS`); a model not named answers with tool calls. Read per request."""
        self._requests: list[dict[str, Any]] = []
        self._probes: list[dict[str, Any]] = []
        self._headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._errors: dict[tuple[str, Step], int] = {}
        self._streams: list[StreamRecord] = []
        self._in_flight = 0
        self.peak_in_flight = 0
        """The most chat requests this server was answering at once: what a concurrency limit is checked with."""
        self._httpd: _Server | None = None
        self.base_url = ""
        """Set by `start()`: the URL to give litellm as `api_base`."""

    @property
    def requests(self) -> list[dict[str, Any]]:
        """A copy of every chat request body received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def probes(self) -> list[dict[str, Any]]:
        """A copy of every action format probe received so far (see the module's doc), in arrival order."""
        with self._lock:
            return list(self._probes)

    @property
    def streams(self) -> list[StreamRecord]:
        """Every streamed answer so far (see the module's doc), in arrival order; live records, not copies."""
        with self._lock:
            return list(self._streams)

    @property
    def headers(self) -> list[dict[str, str]]:
        """The HTTP headers of every chat request received so far (names lower-cased), in arrival order: what a
        test checks the credentials sent to this server with."""
        with self._lock:
            return [dict(headers) for headers in self._headers]

    def start(self) -> str:
        """Bind a free port on 127.0.0.1, serve in a daemon thread; return the base URL for litellm's api_base.

        Idempotent: a started server returns its URL again.
        """
        if self._httpd is not None:
            return self.base_url
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.scripted = self
        # A short poll interval makes stop() take milliseconds instead of the default half second.
        serve = functools.partial(self._httpd.serve_forever, poll_interval=0.02)
        threading.Thread(target=serve, name="scripted-chat", daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self._httpd.server_port}/v1"
        return self.base_url

    def stop(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "ScriptedChatServer":
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def answer(
        self,
        body: dict[str, Any],
        headers: dict[str, str] | None = None,
        write: Callable[[bytes], None] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """Record `body` (and its HTTP `headers`) and return (HTTP status, JSON body) for it, sleeping the step's
        delay first. With `write` (a streaming request), a 200 answer is sent through it as server-sent events
        instead, while the request counts as in flight; `write` raises `ConnectionError` when the client is gone."""
        messages = body.get("messages", [])
        probe = bool(body.get("tools")) and isinstance(messages, list) and len(messages) == 1
        with self._lock:
            if probe:
                self._probes.append(body)
            else:
                self._requests.append(body)
                self._headers.append({name.lower(): value for name, value in (headers or {}).items()})
            self._in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
        try:
            status, payload = self._answer(body, messages, probe)
            if write is not None and status == 200:
                self._stream(payload, body, write)
            return status, payload
        finally:
            with self._lock:
                self._in_flight -= 1

    def _answer(self, body: dict[str, Any], messages: Any, probe: bool) -> tuple[int, dict[str, Any]]:
        model = body.get("model", "")
        if model not in self.scripts:
            return 404, _error(f"The model `{model}` does not exist.", "invalid_request_error", "model_not_found")
        step = _step_for(self.scripts[model], messages)
        if not probe:
            time.sleep(step.delay_s)
        if step.status != 200 and self._fails(model, step):
            return step.status, _error(step.error_message or f"Scripted error {step.status}.", "server_error", None)
        kind = self.formats.get(model, "tool_call")
        text = kind == "text" or (kind == "adaptive" and not body.get("tools"))
        return 200, _completion(model, step, text=text)

    def _stream(self, completion: dict[str, Any], body: dict[str, Any], write: Callable[[bytes], None]) -> None:
        step = _step_for(self.scripts[completion["model"]], body.get("messages", []))
        usage = self.stream_usage and bool((body.get("stream_options") or {}).get("include_usage"))
        events = _events(completion, step, usage)
        record = StreamRecord(completion["model"], len(events) + 1)
        with self._lock:
            self._streams.append(record)
        try:
            for delay, event in events + [(0.0, "[DONE]")]:
                time.sleep(delay)
                write(f"data: {event}\n\n".encode())
                record.sent += 1
        except ConnectionError:
            record.disconnected = True
        finally:
            record.ended_at = time.monotonic()

    def _fails(self, model: str, step: Step) -> bool:
        if not step.error_times:
            return True
        with self._lock:
            sent = self._errors.get((model, step), 0)
            self._errors[(model, step)] = sent + 1
        return sent < step.error_times


def _step_for(script: list[Step], messages: list[object]) -> Step:
    index = sum(1 for message in messages if isinstance(message, dict) and message.get("role") == "assistant")
    return script[index] if index < len(script) else SUBMIT_STEP


def _completion(model: str, step: Step, *, text: bool = False) -> dict[str, Any]:
    tool_calls = [] if step.command is None or text else [_tool_call(step.command)]
    content = step.content
    if text and step.command is not None:
        content = f"{step.content}\n\n```bash\n{step.command}\n```".lstrip()
    message = {"role": "assistant", "content": content, "tool_calls": tool_calls or None}
    usage = {
        "prompt_tokens": step.prompt_tokens,
        "completion_tokens": step.completion_tokens,
        "total_tokens": step.prompt_tokens + step.completion_tokens,
    }
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if tool_calls else "stop"}],
        "usage": usage,
    }


def _events(completion: dict[str, Any], step: Step, usage: bool) -> list[tuple[float, str]]:
    """The (delay, JSON) events streaming `completion`: its role, its text in `step.chunks` pieces, its tool calls,
    its finish reason and (with `usage`) its usage, each an OpenAI `chat.completion.chunk`."""
    message = completion["choices"][0]["message"]
    head = {key: completion[key] for key in ("id", "created", "model")} | {"object": "chat.completion.chunk"}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        return json.dumps(head | {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    text = message["content"] or ""
    size = max(1, math.ceil(len(text) / max(step.chunks, 1)))
    parts = [text[i : i + size] for i in range(0, len(text), size)] or [""]
    events = [(0.0, chunk({"role": "assistant", "content": ""}))]
    events += [(step.chunk_delay_s, chunk({"content": part})) for part in parts]
    for index, call in enumerate(message.get("tool_calls") or []):
        events.append((0.0, chunk({"tool_calls": [{"index": index} | call]})))
    events.append((0.0, chunk({}, completion["choices"][0]["finish_reason"])))
    if usage:
        events.append((0.0, json.dumps(head | {"choices": [], "usage": completion["usage"]})))
    return events


def _tool_call(command: str) -> dict[str, Any]:
    function = {"name": "bash", "arguments": json.dumps({"command": command})}
    return {"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function", "function": function}


def _error(message: str, kind: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _retry_after(scripted: ScriptedChatServer, body: dict[str, Any]) -> str | None:
    script = scripted.scripts.get(body.get("model", ""))
    return None if script is None else _step_for(script, body.get("messages", [])).retry_after


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Benchmarks open many conversations at once; the default backlog of 5 would stall bursts on SYN retries.
    request_queue_size = 128
    scripted: ScriptedChatServer

    def handle_error(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: tuple[str, int]
    ) -> None:
        # A client that timed out and hung up before a delayed answer is expected here, not a server bug.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so stop() never leaves a client holding a pooled dead connection.
    protocol_version = "HTTP/1.0"
    server: _Server

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            models = [{"id": name, "object": "model", "owned_by": "scripted"} for name in self.server.scripted.scripts]
            self._send(200, {"object": "list", "data": models})
        else:
            self._send(404, _error(f"No route {self.path}.", "invalid_request_error", None))

    def do_POST(self) -> None:
        if not self.path.rstrip("/").endswith("/chat/completions"):
            return self._send(404, _error(f"No route {self.path}.", "invalid_request_error", None))
        body = self._read_json()
        if body is None:
            return self._send(400, _error("The body must be a JSON object.", "invalid_request_error", None))
        started: list[bool] = []

        def write(data: bytes) -> None:
            if not started:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                started.append(True)
            self.wfile.write(data)
            self.wfile.flush()

        streaming = bool(body.get("stream"))
        status, payload = self.server.scripted.answer(body, dict(self.headers.items()), write if streaming else None)
        if not (streaming and status == 200):
            self._send(status, payload, _retry_after(self.server.scripted, body) if status != 200 else None)

    def _read_json(self) -> dict[str, Any] | None:
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def _send(self, status: int, payload: dict[str, Any], retry_after: str | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if retry_after is not None:
            self.send_header("Retry-After", retry_after)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        """Silent: tests and the demo read `requests` instead of an access log."""

"""Being kind to model servers: how many requests of a model run at once, how often they start, what a busy server's
answer does, and how a stopped run lets go of its request.

A model's config may say `max_concurrency` (requests of this model in flight at once, over all runs of this
process, and with `SharedSlots` over every worker sharing the PostgreSQL queue) and `requests_per_minute` (request
starts are spaced 60/rpm seconds apart, process-wide: each worker process paces its own). A model is known by its
litellm name and its server (`api_base`), so two models on one server do not share a limit, and one model's rows
with other prices do. Every model request goes through it: the agent's, the action format probe, the judge.

An answer that says the server is busy — HTTP 429, 529, or 503 saying "overloaded" — is retried after the wait its
`Retry-After` (or `retry-after-ms`) header asks for, else after an exponential backoff (1 s, 2 s, 4 s ... at most
60 s), for at most `MAX_RETRY_WAIT_S` of waiting in all; then (or at once, if the wait asked for would exceed it)
the last error is raised. Any other error is raised at once. A run's cancel (which is also how its time budget
stops it) ends the waits at once.

Every request runs in a daemon thread of its own while the run's thread waits for it or for the cancel: a stopped
run returns at once and abandons the request; the process never waits for it. The agent's requests are streamed
(`model_stream`), so an abandoned one closes its connection at the next chunk and the server stops generating; a
request that is not streamed ends with its answer or its timeout. It keeps its concurrency slot until it ends: the
server is still busy with it. A model's config `stream` says whether its requests are streamed: true, false, or (not
set) streamed until one streamed answer comes without the server's own token counts (llama-cpp-python's server sends
none), then never again in this process, so every later answer is counted exactly (that first one is litellm's
count).
"""

import email.utils
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from yudai_solver.execution import model_stream
from yudai_solver.execution.model_slots import SharedSlots

log = logging.getLogger(__name__)
T = TypeVar("T")

GATE_KEYS = ("max_concurrency", "requests_per_minute", "stream")
"""The config keys of a model read here (`agent` never sends them to its server)."""
ENDPOINT_KEYS = ("api_base", "base_url")
"""As `agent.ENDPOINT_KEYS`: the keys naming the model's own server."""
MAX_RETRY_WAIT_S = 600.0
"""The longest one model call waits in all for a busy server to take it, when no cancel or budget ends it first."""
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 60.0
_MIN_WAIT_S = 0.1
_POLL_S = 0.05


@dataclass(frozen=True)
class Limits:
    """A model's `max_concurrency` and `requests_per_minute` (None: no limit)."""

    max_concurrency: int | None = None
    requests_per_minute: float | None = None

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> "Limits":
        """The limits a model's config names; raises ValueError for one that is not a positive number."""
        concurrency, rpm = config.get("max_concurrency"), config.get("requests_per_minute")
        if concurrency is not None and (isinstance(concurrency, bool) or not isinstance(concurrency, int)):
            raise ValueError(f"max_concurrency must be a positive integer, not {concurrency!r}")
        if rpm is not None and (isinstance(rpm, bool) or not isinstance(rpm, int | float)):
            raise ValueError(f"requests_per_minute must be a positive number, not {rpm!r}")
        if (concurrency is not None and concurrency <= 0) or (rpm is not None and not 0 < rpm < float("inf")):
            raise ValueError("max_concurrency and requests_per_minute must be positive")
        return cls(concurrency, None if rpm is None else float(rpm))


class Gate:
    """The slots and the request pacing of one model on one server, shared by every run of this process."""

    def __init__(self, limits: Limits, key: tuple[str, str] = ("", "")) -> None:
        self.limits = limits
        self.key = key
        """The model's litellm name and its server: what names its slots shared with other processes."""
        self.stream: bool | None = None
        """The config's `stream`: whether requests are streamed (None: until a stream comes without usage)."""
        self.uncounted_streams = False
        """Whether one of its streamed answers came without the server's usage."""
        self._changed = threading.Condition()
        self._busy = 0
        self._next_start = 0.0

    def acquire(self, cancel: threading.Event) -> bool:
        """Wait for a free slot and the next allowed start; False if `cancel` was set first."""
        with self._changed:
            while not cancel.is_set():
                limits, now = self.limits, time.monotonic()
                if limits.max_concurrency is None or self._busy < limits.max_concurrency:
                    if now >= self._next_start:
                        self._busy += 1
                        if limits.requests_per_minute is not None:
                            self._next_start = now + 60.0 / limits.requests_per_minute
                        return True
                    self._changed.wait(min(self._next_start - now, _POLL_S))
                else:
                    self._changed.wait(_POLL_S)
            return False

    def release(self) -> None:
        with self._changed:
            self._busy -= 1
            self._changed.notify_all()

    def streams(self) -> bool:
        """Whether the next request is streamed (see the module)."""
        return self.stream if self.stream is not None else not self.uncounted_streams


_gates: dict[tuple[str, str], Gate] = {}
_gates_lock = threading.Lock()


def gate_for(model_name: str, endpoint: str, config: Mapping[str, Any]) -> Gate:
    """The process's gate of the model `model_name` at `endpoint` ("" for its provider's), with `config`'s limits.

    The limits of the latest config win; requests in flight keep their slots.
    """
    limits, stream = Limits.of(config), config.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise ValueError(f"stream must be true or false, not {stream!r}")
    with _gates_lock:
        gate = _gates.setdefault((model_name, endpoint), Gate(limits, (model_name, endpoint)))
        gate.limits, gate.stream = limits, stream
    return gate


def call(
    fn: Callable[[], T],
    gate: Gate,
    cancel: threading.Event,
    cancelled: Callable[[], Exception],
    shared: SharedSlots | None = None,
) -> T:
    """`fn()` (one model request) through `gate` (and, with a `max_concurrency`, one of its `shared` slots),
    retrying busy-server answers (see the module); raises `cancelled()` as soon as `cancel` is set, abandoning the
    request in flight."""
    waited, attempt = 0.0, 0
    while True:
        release = _slot(gate, shared, cancel)
        if release is None:
            raise cancelled()
        try:
            return _abandonable(fn, release, cancel, cancelled)
        except Exception as error:
            delay = retry_delay(error, attempt)
            if delay is None or waited + delay > MAX_RETRY_WAIT_S:
                raise
            log.warning("model server busy (%s); retrying in %.1fs", _status(error), delay)
            if cancel.wait(delay):
                raise cancelled() from error
            waited, attempt = waited + delay, attempt + 1


def _slot(gate: Gate, shared: SharedSlots | None, cancel: threading.Event) -> Callable[[], None] | None:
    """Take a slot of `gate`, then (with a concurrency limit) one of `shared`; what frees both, None if cancelled."""
    if not gate.acquire(cancel):
        return None
    limit = gate.limits.max_concurrency
    if shared is None or limit is None:
        return gate.release
    try:
        held = shared.acquire(*gate.key, limit, cancel)
    except BaseException:
        gate.release()
        raise
    if held is None:
        gate.release()
        return None

    def release() -> None:
        try:
            held()
        finally:
            gate.release()

    return release


def request(
    fn: Callable[[], T],
    model_name: str,
    config: Mapping[str, Any],
    *,
    cancel: threading.Event | None = None,
    cancelled: Callable[[], Exception] = lambda: RuntimeError("cancelled"),
    shared: SharedSlots | None = None,
) -> T:
    """`fn()`, one request to the model `model_name` (litellm's name) whose config is `config`, through the model's
    gate: what the probe and the judge send (the agent's requests go through `gated`)."""
    return call(fn, configure(model_name, config), cancel or threading.Event(), cancelled, shared)


def _abandonable(
    fn: Callable[[], T], done: Callable[[], None], cancel: threading.Event, cancelled: Callable[[], Exception]
) -> T:
    """`fn()` in a daemon thread (which calls `done` when it ends); raises `cancelled()` if `cancel` comes first."""
    finished = threading.Event()
    outcome: list[Any] = []

    def work() -> None:
        try:
            outcome.append((True, fn()))
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread, which raises it
            outcome.append((False, e))
        finally:
            done()
            finished.set()

    threading.Thread(target=work, name="model-request", daemon=True).start()
    while not finished.wait(_POLL_S):
        if cancel.is_set():
            raise cancelled()
    ok, value = outcome[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


def retry_delay(error: BaseException, attempt: int) -> float | None:
    """How long to wait before retrying after `error` (the `attempt`-th retry, from 0); None: do not retry it."""
    status = _status(error)
    busy = status in (429, 529) or (status == 503 and "overload" in str(error).lower())
    if not busy:
        return None
    asked = _retry_after(error)
    if asked is not None:
        return max(asked, _MIN_WAIT_S)
    return float(min(BACKOFF_FIRST_S * 2**attempt, BACKOFF_MAX_S))


def _status(error: BaseException) -> int | None:
    status = getattr(error, "status_code", None)
    return status if isinstance(status, int) else None


def _retry_after(error: BaseException) -> float | None:
    """The wait an error's response headers ask for: `retry-after-ms`, or `retry-after` in seconds or as a date."""
    headers = getattr(getattr(error, "response", None), "headers", None) or getattr(
        error, "litellm_response_headers", None
    )
    if headers is None:
        return None
    try:
        if (ms := headers.get("retry-after-ms")) is not None:
            return float(ms) / 1000
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return float(value)
        except ValueError:
            when = email.utils.parsedate_to_datetime(str(value))
            return (when - datetime.now(UTC)).total_seconds()
    except (TypeError, ValueError, AttributeError):
        return None


def configure(model_name: str, config: Mapping[str, Any]) -> Gate:
    """Set the limits of the model `model_name` (litellm's name) at its config's server from the config; the
    process-wide gate its runs' requests go through (see `gated`)."""
    return gate_for(model_name, _endpoint(config), config)


def _endpoint(kwargs: Mapping[str, Any]) -> str:
    return str(next((kwargs[key] for key in ENDPOINT_KEYS if kwargs.get(key)), ""))


@contextmanager
def gated(
    model: Any,
    cancel: threading.Event,
    cancelled: Callable[[], Exception],
    shared: SharedSlots | None = None,
) -> Iterator[None]:
    """While inside, the requests of `model` (a mini-swe-agent litellm model: its `_query`) go through its gate
    (set by `configure`; none: no limits; with `shared`, also across processes) and end with `cancelled()` as soon
    as `cancel` is set. They are streamed (see `model_stream`) as its gate says, and returned whole."""
    query, config = getattr(model, "_query", None), getattr(model, "config", None)
    if query is None:  # not a litellm model (a test's stand-in): nothing to gate
        yield
        return
    key = (str(getattr(config, "model_name", "")), _endpoint(getattr(config, "model_kwargs", None) or {}))
    with _gates_lock:
        gate = _gates.get(key) or Gate(Limits(), key)
    own = vars(model)
    had, previous = "_query" in own, own.get("_query")

    timeout = float((getattr(config, "model_kwargs", None) or {}).get("timeout") or 600)

    def streamed(messages: list[dict[str, Any]], **kwargs: Any) -> Any:
        deadline = time.monotonic() + timeout
        answer = query(messages, **kwargs, **model_stream.STREAM_KWARGS)
        response, counted = model_stream.collect(
            answer, messages, cancel=cancel, deadline=deadline, cancelled=cancelled, model=key[0]
        )
        if not counted and not gate.uncounted_streams:
            gate.uncounted_streams = True
            log.warning("%s at %s streams no token counts: this answer's are litellm's estimate", *key)
        return response

    def gated_query(messages: list[dict[str, Any]], **kwargs: Any) -> Any:
        send = streamed if gate.streams() else query
        return call(lambda: send(messages, **kwargs), gate, cancel, cancelled, shared)

    model._query = gated_query
    try:
        yield
    finally:
        if had:
            model._query = previous
        else:
            del model._query

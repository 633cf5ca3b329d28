"""The agent side of one run: a litellm model, a cancellable `DefaultAgent`, its result and its trajectory.

Model calls happen here, in the worker; commands run in the run's sandbox (a mini-swe-agent `Environment`, which
mini-swe-agent keeps as the agent's `env`).
Importing this module imports mini-swe-agent (through `mswea`, which configures it first).
"""

import json
import logging
import os
import platform
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from yudai_solver.execution import model_gate
from yudai_solver.execution.model_slots import SharedSlots
from yudai_solver.execution.mswea import (
    BASH_TOOL,
    DefaultAgent,
    FormatError,
    InterruptAgentFlow,
    LitellmModel,
    LitellmTextbasedModel,
    Submitted,
    litellm,
)
from yudai_solver.execution.strategies import STRATEGIES, mini_config, mini_text_config
from yudai_solver.sandboxes.protocol import SandboxLost

if TYPE_CHECKING:  # mini-swe-agent is imported through `mswea` only, which configures it first
    from minisweagent import Environment, Model

log = logging.getLogger(__name__)
OUTPUT_EXCERPT_CHARS = 2000
# Keys of an ai_models row's config that we set ourselves (or never accept from the database, like keys), and
# litellm's ways to send the request on to other endpoints (which would get the worker's keys).
_OWNED_KEYS = frozenset(
    {"temperature", "timeout", "max_retries", "num_retries", "api_key", "api_key_env", "stream", "model"}
    | {"action_format", "max_concurrency", "requests_per_minute"}
    | {"model_list", "fallbacks", "context_window_fallback_dict"}
)
PRICE_KEYS = ("input_cost_per_token", "output_cost_per_token")
ENDPOINT_KEYS = ("api_base", "base_url")
"""Config keys naming a server of the model's own, instead of its provider's (litellm takes either)."""
PLACEHOLDER_API_KEY = "sk-no-key"
"""Sent to a server of the model's own that names no key: OpenAI's client refuses to start without one."""
ACTION_FORMATS = ("tool_call", "text", "auto")
"""How a model acts (its config's `action_format`, default `auto`): a `bash` tool call per answer, one fenced
bash block per answer (mini-swe-agent's text-based model), or whichever one probe request shows the model does."""
TEXT_ACTION_REGEX = r"```(?:mswea_bash_command|bash|sh|shell)[ \t]*\n(.*?)\n```"
"""A text answer's action: mini-swe-agent's `mswea_bash_command` block, or a plain bash/sh one (small local models
often write those)."""
PROBE_PROMPT = "Call the bash tool with the command `true`. Answer with the tool call only."
PROBE_MAX_TOKENS = 64
_probed: dict[tuple[str, str], str] = {}
_probe_lock = threading.Lock()


def model_name(provider: str, model_id: str) -> str:
    """litellm's model name: `provider/model_id`, unless `model_id` already starts with `provider/` (or no provider).

    So ("openrouter", "anthropic/claude-x") -> "openrouter/anthropic/claude-x" and ("anthropic", "anthropic/claude-x")
    stays as is. Use provider "openai" plus `api_base` in the config for OpenAI-compatible servers (vLLM, Ollama,
    LM Studio).
    """
    if not provider or model_id.startswith(f"{provider}/"):
        return model_id
    return f"{provider}/{model_id}"


def build_model(
    *,
    provider: str,
    model_id: str,
    config: dict[str, Any] | None,
    temperature: float,
    timeout_s: int,
    action_format: str = "tool_call",
) -> LitellmModel:
    """mini-swe-agent's litellm model for one experiment, with mini.yaml's observation and format-error templates.

    `action_format` "text" gives mini-swe-agent's text-based model instead (one fenced bash block per answer, with
    mini_textbased.yaml's templates); resolve "auto" first with `resolve_action_format`.

    `temperature` is the experiment's (the row's config temperature is ignored); every request times out after
    `timeout_s` and is never retried by litellm or mini-swe-agent. API keys are never taken from `config`: for the
    provider's own endpoint litellm reads the provider's key from the worker's environment; a model served
    elsewhere (`api_base`) gets only the variable its config names in `api_key_env`, or a placeholder (see
    `_endpoint_key`). `input_cost_per_token` / `output_cost_per_token` in `config` price a model litellm does not
    know (a local server, a new model), so its runs have a cost that budgets can count.
    """
    name = model_name(provider, model_id)
    _register_price(name, provider, config or {})
    model_gate.configure(name, config or {})  # max_concurrency, requests_per_minute: see `SolverAgent.query`
    text = action_format == "text"
    templates = (mini_text_config() if text else mini_config())["model"]
    options: dict[str, Any] = {key: templates[key] for key in ("observation_template", "format_error_template")}
    if "claude" in name.lower() or "anthropic" in name.lower():
        options["set_cache_control"] = "default_end"
    kwargs = _model_kwargs(provider, config or {}, temperature, timeout_s)
    if text:
        return LitellmTextbasedModel(  # type: ignore[no-untyped-call]  # mini-swe-agent: untyped **kwargs
            model_name=name,
            model_kwargs=kwargs,
            cost_tracking="ignore_errors",
            action_regex=TEXT_ACTION_REGEX,
            **options,
        )
    return LitellmModel(model_name=name, model_kwargs=kwargs, cost_tracking="ignore_errors", **options)


def configured_action_format(config: dict[str, Any] | None) -> str:
    """The config's `action_format` (default `auto`); raises ValueError for an unknown one."""
    value = (config or {}).get("action_format") or "auto"
    if value not in ACTION_FORMATS:
        raise ValueError(f"action_format must be one of {', '.join(ACTION_FORMATS)}, not {value!r}")
    return str(value)


def resolve_action_format(
    *,
    provider: str,
    model_id: str,
    config: dict[str, Any] | None,
    timeout_s: int,
    cancel: threading.Event | None = None,
    shared_slots: SharedSlots | None = None,
) -> tuple[str, bool]:
    """The model's action format, and whether a probe request decided it just now.

    `auto` sends one tiny request offering the bash tool, once per model and server per process: an answer
    without a tool call means the server (or its chat format) ignores tools, so the model acts in `text`. A probe
    that fails (server down, timeout, `cancel`) decides nothing: `tool_call` is used and the run's first call meets
    the error. The probe goes through the model's gate (`model_gate`: its limits, busy-server retries, `cancel`).
    """
    chosen = configured_action_format(config)
    if chosen != "auto":
        return chosen, False
    name = model_name(provider, model_id)
    endpoint = next((str((config or {})[k]) for k in ENDPOINT_KEYS if (config or {}).get(k)), "")
    key = (name, endpoint)
    with _probe_lock:
        if key in _probed:
            return _probed[key], False
    kwargs = _model_kwargs(provider, config or {}, 0.0, timeout_s) | {"max_tokens": PROBE_MAX_TOKENS}
    messages = [{"role": "user", "content": PROBE_PROMPT}]
    try:
        response = model_gate.request(
            lambda: litellm.completion(model=name, messages=messages, tools=[BASH_TOOL], **kwargs),
            name,
            config or {},
            cancel=cancel,
            cancelled=Cancelled,
            shared=shared_slots,
        )
        found = "tool_call" if response.choices[0].message.tool_calls else "text"
    except Exception:  # the run's own first call reports the error, named
        log.info("probing the action format of %s failed", name, exc_info=True)
        return "tool_call", False
    with _probe_lock:
        _probed[key] = found
    return found, True


def _register_price(name: str, provider: str, config: dict[str, Any]) -> None:
    prices = {key: float(config[key]) for key in PRICE_KEYS if config.get(key) is not None}
    if prices:
        litellm.register_model({name: {**prices, "litellm_provider": provider, "mode": "chat"}})


def _model_kwargs(provider: str, config: dict[str, Any], temperature: float, timeout_s: int) -> dict[str, Any]:
    skip = _OWNED_KEYS | set(PRICE_KEYS)
    kwargs = {key: value for key, value in config.items() if key not in skip and value is not None}
    kwargs |= {"temperature": temperature, "timeout": timeout_s, "max_retries": 0, "num_retries": 0}
    kwargs["drop_params"] = True
    if any(config.get(key) for key in ENDPOINT_KEYS):
        kwargs["api_key"] = _endpoint_key(config)
    return kwargs


def _endpoint_key(config: dict[str, Any]) -> str:
    """The key sent to a model's own server: the value of the variable named by `api_key_env`, else a placeholder.

    Given explicitly, so litellm never falls back to the provider's key in the worker's environment: an
    `OPENAI_API_KEY` is for api.openai.com, not for whoever runs the server an `api_base` names.
    """
    name = config.get("api_key_env")
    if name is None or name == "":
        return PLACEHOLDER_API_KEY
    # The service's own settings (database URL, GitHub token) are never a model's key, whatever a config says.
    if not isinstance(name, str) or name.startswith("YUDAI_"):
        raise ValueError(f"api_key_env must name the environment variable of the model's key, not {name!r}")
    value = os.environ.get(name)
    if not value:
        raise ValueError(f"api_key_env names {name}, which is not set in the worker's environment")
    return value


class Cancelled(InterruptAgentFlow):
    """The run was cancelled from outside; ends the agent loop with exit status `Cancelled`."""

    def __init__(self, reason: str = "Cancelled") -> None:
        super().__init__({"role": "exit", "content": reason, "extra": {"exit_status": "Cancelled", "submission": ""}})


class AgentOptions(TypedDict, total=False):
    """The keyword arguments of `DefaultAgent` (its `AgentConfig`) that `SolverAgent` passes on."""

    system_template: str
    instance_template: str
    step_limit: int
    cost_limit: float
    wall_time_limit_seconds: int
    max_consecutive_format_errors: int
    output_path: Path | None


class SolverAgent(DefaultAgent):
    """`DefaultAgent` that can be cancelled, counts tokens and records each executed command as a step.

    `cancel_event` is checked before every model call and every command. `on_step(step)` is called after each
    executed command, `on_answer()` after each model call that got an answer or failed (their exceptions end the
    run): what lets a run save its progress as it happens. `n_calls` counts model calls; `steps` the commands.
    Model requests go through the model's gate (`model_gate.gated`, across processes with `shared_slots`), streamed.
    Without templates the baseline strategy's are used, and
    `cost_limit` defaults to 0 (no cost limit). The run's `max_edits` is mini-swe-agent's `step_limit`: the
    number of model turns, since a turn is the smallest unit the agent can count (it cannot tell edits from reads).
    """

    def __init__(
        self,
        model: "Model",
        sandbox: "Environment",
        *,
        cancel_event: threading.Event,
        on_step: Callable[[dict[str, Any]], None] | None = None,
        on_answer: Callable[[], None] | None = None,
        shared_slots: SharedSlots | None = None,
        **agent_config: Unpack[AgentOptions],
    ) -> None:
        options: AgentOptions = {**STRATEGIES["baseline"].agent_config(), "cost_limit": 0, **agent_config}
        super().__init__(model, sandbox, **options)
        self.cancel_event = cancel_event
        self.on_step = on_step
        self.on_answer = on_answer
        self.shared_slots = shared_slots
        self.format_errors = 0
        self.tokens = 0
        self.steps: list[dict[str, Any]] = []

    def get_template_vars(self, **kwargs: Any) -> dict[str, Any]:
        """mini.yaml's templates need `system`, `release`, ...: the worker's uname fills what the sandbox lacks."""
        return platform.uname()._asdict() | super().get_template_vars(**kwargs)

    def step(self) -> list[dict[str, Any]]:
        self._check_cancelled()
        return super().step()

    def query(self) -> dict[str, Any]:
        """Count the tokens of every answer, including those that fail to parse (they were billed too), and keep
        the answer of a format error in its message (mini-swe-agent keeps only the error)."""
        try:
            # Limits, busy-server retries, cancel; streamed, so an abandoned request stops the server's generation.
            with model_gate.gated(self.model, self.cancel_event, Cancelled, self.shared_slots):
                message = super().query()
        except InterruptAgentFlow as e:
            self.tokens += sum(usage_tokens(m.get("extra", {}).get("response")) for m in e.messages)
            if isinstance(e, FormatError):
                self.format_errors += 1
                self.cost += sum(m.get("extra", {}).get("cost", 0.0) for m in e.messages)  # see `run`
                for m in e.messages:
                    m.setdefault("extra", {})["answer"] = answer_of(m.get("extra", {}).get("response"))
            self._answered()
            raise
        except Exception:
            self._answered()
            raise
        self.tokens += usage_tokens(message.get("extra", {}).get("response"))
        self._answered()
        return message

    def add_messages(self, *messages: dict[str, Any]) -> list[dict[str, Any]]:
        # `query` counts a format error's cost as soon as it is known (for the progress it saves); DefaultAgent.run
        # adds it again just before it adds the error's message (once per error): taken back here.
        self.cost -= sum((m.get("extra") or {}).get("cost", 0.0) for m in messages if _is_format_error(m))
        return super().add_messages(*messages)

    def _answered(self) -> None:
        if self.on_answer is not None:
            self.on_answer()

    def execute_actions(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        outputs = [self._execute(action) for action in message.get("extra", {}).get("actions", [])]
        return self.add_messages(*self.model.format_observation_messages(message, outputs, self.get_template_vars()))

    def _execute(self, action: dict[str, Any]) -> dict[str, Any]:
        self._check_cancelled()
        try:
            output = self.env.execute(action)
        except Submitted as e:
            self._record(action, e.messages[0].get("extra", {}).get("submission", ""), 0)
            raise
        self._record(action, output.get("output", ""), output.get("returncode"))
        return output

    def _record(self, action: dict[str, Any], output: str, returncode: int | None) -> None:
        step = {
            "step": len(self.steps) + 1,
            "action": action.get("command", ""),
            "output": excerpt(output),
            "returncode": returncode,
            "timestamp": datetime.now(UTC).isoformat(),
        }
        self.steps.append(step)
        if self.on_step is not None:
            self.on_step(step)

    def _check_cancelled(self) -> None:
        if self.cancel_event.is_set():
            raise Cancelled()


def _is_format_error(message: dict[str, Any]) -> bool:
    return (message.get("extra") or {}).get("interrupt_type") == "FormatError"


def answer_of(response: object) -> dict[str, Any]:
    """What a raw response dict answered: its text and its tool calls (a format error's message keeps them)."""
    choices = response.get("choices") if isinstance(response, dict) else None
    first = choices[0] if isinstance(choices, list) and choices else None
    message = first.get("message") if isinstance(first, dict) else None
    message = message if isinstance(message, dict) else {}
    return {"content": excerpt(str(message.get("content") or "")), "tool_calls": message.get("tool_calls")}


def usage_tokens(response: object) -> int:
    """Total tokens of one raw response dict (`usage.total_tokens`, else prompt + completion); 0 without usage."""
    usage = response.get("usage") if isinstance(response, dict) else None
    if not isinstance(usage, dict):
        return 0
    if usage.get("total_tokens") is not None:
        return int(usage["total_tokens"])
    return int(usage.get("prompt_tokens") or 0) + int(usage.get("completion_tokens") or 0)


def excerpt(text: str, limit: int = OUTPUT_EXCERPT_CHARS) -> str:
    """`text` if short enough, else its head and tail (both matter: commands print context first, errors last)."""
    if len(text) <= limit:
        return text
    marker = f"\n... [{len(text) - limit} characters elided] ...\n"
    head = (limit - len(marker)) // 2
    return text[:head] + marker + text[-(limit - len(marker) - head) :]


AGENT_EXITS = (
    "submitted",
    "step_limit",
    "cost_limit",
    "format_errors",
    "model_timeout",
    "model_unreachable",
    "context_too_long",
    "rate_limited",
    "cancelled",
    "budget",
    "sandbox_lost",
    "model_error",
    "error",
)
"""How an agent's loop ended (`agent_exit`): the named outcomes, then any other model error, any other error."""
_ONE_LINE = 300


@dataclass
class AgentResult:
    """How one agent run ended. `error` is set when the loop raised (model server down, sandbox broken, ...):
    its type and message in full; `message` says in one line why the agent did not submit (None if it did)."""

    exit_status: str
    submission: str
    tokens: int
    cost: float
    steps: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    agent_exit: str = "submitted"
    message: str | None = None
    model_calls: int = 0
    format_errors: int = 0


def task_text(title: str, body: str) -> str:
    """The task given to the agent for an issue: its title, a blank line, its body — as data, never a template.

    Stripped, so an issue without a body is its title alone.
    """
    return f"{title}\n\n{body}".strip()


def run_agent(agent: SolverAgent, task: str) -> AgentResult:
    """Run `agent` on `task` (plain text, passed to the templates as the `task` variable) until it exits.

    Never raises for an `Exception` from the loop: it is returned as `error`, with its type as exit status.
    """
    error: Exception | None = None
    try:
        info = agent.run(task)
        status, submission = info.get("exit_status", ""), info.get("submission", "")
    except Exception as e:  # noqa: BLE001 - the run records what went wrong; the worker decides what follows.
        error, status, submission = e, type(e).__name__, ""
    name, message = agent_exit(agent, status, error)
    return AgentResult(
        status,
        submission,
        agent.tokens,
        agent.cost,
        list(agent.steps),
        None if error is None else excerpt(f"{type(error).__name__}: {error}"),
        name,
        message,
        agent.n_calls,
        agent.format_errors,
    )


def agent_exit(agent: SolverAgent, exit_status: str, error: Exception | None) -> tuple[str, str | None]:
    """The named outcome of the agent's loop, and one line saying why it did not submit (None if it did)."""
    if error is not None:
        return _error_exit(agent, error)
    limit = agent.config.step_limit
    if exit_status == "Submitted":
        return "submitted", None
    if exit_status == "Cancelled":
        return "cancelled", "cancelled: the run was stopped before the agent submitted"
    if exit_status == "RepeatedFormatError":
        return "format_errors", _format_errors_line(agent)
    if exit_status == "LimitsExceeded" and 0 < limit <= agent.n_calls:
        return "step_limit", f"step_limit: the agent did not submit within its {limit} model calls (max_edits)"
    if exit_status == "LimitsExceeded":
        return "cost_limit", f"cost_limit: the agent did not submit within its cost limit (${agent.cost:.4f} spent)"
    return "error", one_line(f"error: the agent stopped with {exit_status}")


def _format_errors_line(agent: SolverAgent) -> str:
    if isinstance(agent.model, LitellmTextbasedModel):
        return (
            f"format_errors: {agent.config.max_consecutive_format_errors} answers in a row had no single fenced bash "
            "block (action_format text)"
        )
    return (
        f"format_errors: {agent.config.max_consecutive_format_errors} answers in a row had no bash tool call "
        "(action_format tool_call; a server that ignores tools needs action_format text or auto)"
    )


def _error_exit(agent: SolverAgent, error: Exception) -> tuple[str, str]:
    if isinstance(error, SandboxLost):  # infrastructure, not the agent's doing: named so it is not a failed fix
        return "sandbox_lost", one_line(f"sandbox_lost: {error}")
    url = model_url(agent.model)
    exceptions = litellm.exceptions
    detail = one_line(f"{type(error).__name__}: {error}", 160)
    if isinstance(error, exceptions.ContextWindowExceededError):
        return "context_too_long", f"context_too_long: the conversation outgrew the model's context ({detail})"
    if isinstance(error, exceptions.RateLimitError):
        return "rate_limited", f"rate_limited: {url} refused the request (HTTP 429)"
    if isinstance(error, exceptions.Timeout):
        timeout = agent.model.config.model_kwargs.get("timeout")
        return "model_timeout", f"model_timeout: {url} did not answer within {timeout}s"
    unreachable = isinstance(error, exceptions.APIConnectionError) or (
        isinstance(error, exceptions.InternalServerError) and "connection error" in str(error).lower()
    )
    if unreachable:
        return "model_unreachable", f"model_unreachable: could not connect to {url}"
    if type(error).__module__.startswith(("litellm", "openai", "httpx")):
        return "model_error", one_line(f"model_error: {url}: {detail}")
    return "error", one_line(f"error: {detail}")


def model_url(model: object) -> str:
    """The server a model's requests go to: its `api_base`, else its provider's (as litellm names the model)."""
    config = getattr(model, "config", None)
    kwargs = getattr(config, "model_kwargs", {}) or {}
    base = next((kwargs[key] for key in ENDPOINT_KEYS if kwargs.get(key)), None)
    return str(base) if base else f"the provider of {getattr(config, 'model_name', 'the model')}"


def one_line(text: str, limit: int = _ONE_LINE) -> str:
    """The first line of `text`, cut to `limit` characters: for an error_message (the full text goes elsewhere)."""
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first if len(first) <= limit else first[: limit - 1] + "…"


def trajectory(agent: SolverAgent, exit_status: str | None, max_bytes: int | None = None) -> dict[str, Any]:
    """The run's `trajectory_data`: the seed's format plus the messages (raw responses dropped, usage kept; a
    format error's message keeps the answer it rejected). `exit_status` None while the run works.

    With `max_bytes`, its JSON is cut to fit (see `bounded`).
    """
    data: dict[str, Any] = {
        "exit_status": exit_status,
        "total_steps": len(agent.steps),
        "model_calls": agent.n_calls,
        "steps": agent.steps,
        "messages": [_slim(message) for message in agent.messages],
    }
    data = json.loads(json.dumps(data, default=str))
    return data if max_bytes is None else bounded(data, max_bytes)


_MIN_TEXT = 200


def bounded(data: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    """`data` (a trajectory) whose JSON fits in `max_bytes`, with `truncated` saying what was cut.

    Every string longer than one common length is cut to its head and tail (the longest length that fits);
    if even `_MIN_TEXT` characters each do not fit, messages and steps are dropped from the middle as well.
    """
    size = _json_size(data)
    if size <= max_bytes:
        return data
    room = max_bytes - 200  # for the `truncated` record
    low, high = _MIN_TEXT, max(_MIN_TEXT, _longest_string(data))
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if _json_size(_cut_dict(data, middle)) <= room else (low, middle - 1)
    result = _cut_dict(data, low)
    dropped = {"messages": 0, "steps": 0}
    while _json_size(result) > room and any(len(result.get(key) or []) > 2 for key in dropped):
        for key in dropped:
            items = result.get(key) or []
            keep = len(items) // 4
            if len(items) > 2:
                result[key] = items[: max(keep, 1)] + items[len(items) - max(keep, 1) :]
                dropped[key] += len(items) - len(result[key])
    result["truncated"] = {"from_bytes": size, "text_chars": low, "dropped": dropped}
    return result


def _json_size(value: object) -> int:
    return len(json.dumps(value).encode())


def _longest_string(value: object) -> int:
    if isinstance(value, str):
        return len(value)
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return max((_longest_string(item) for item in items), default=0)


def _cut_dict(data: dict[str, Any], limit: int) -> dict[str, Any]:
    return {key: _cut_strings(item, limit) for key, item in data.items()}


def _cut_strings(value: object, limit: int) -> object:
    if isinstance(value, str):
        return excerpt(value, limit)
    if isinstance(value, dict):
        return _cut_dict(value, limit)
    if isinstance(value, list):
        return [_cut_strings(item, limit) for item in value]
    return value


def _slim(message: dict[str, Any]) -> dict[str, Any]:
    extra = dict(message.get("extra") or {})
    response = extra.pop("response", None)
    if isinstance(response, dict) and response.get("usage") is not None:
        extra["usage"] = response["usage"]
    return {**message, "extra": extra} if "extra" in message else message

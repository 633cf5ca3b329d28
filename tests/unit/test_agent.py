"""The agent side of a run: real mini-swe-agent loop, real litellm HTTP client, scripted model server."""

import json
import os
import stat
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from yudai_solver.base.errors import InvalidInput
from yudai_solver.execution import mswea
from yudai_solver.execution.agent import (
    SolverAgent,
    build_model,
    excerpt,
    model_name,
    run_agent,
    task_text,
    trajectory,
)
from yudai_solver.execution.strategies import STRATEGIES, get_strategy, mini_config
from yudai_solver.testing.scripted import SUBMIT_COMMAND, SUBMIT_STEP, ScriptedChatServer, Step

# isort: split
# mini-swe-agent is imported only after `mswea` has configured it (silent, no writes under ~).
from minisweagent.models.test_models import DeterministicModel, make_output

pytestmark = pytest.mark.slow  # seconds each: not in the fast tier

SUBMIT_TOKENS = SUBMIT_STEP.prompt_tokens + SUBMIT_STEP.completion_tokens


class BashEnv:
    """A bare local sandbox for these tests: bash in `cwd` with only PATH, submits like LocalEnvironment."""

    config = None

    def __init__(self, cwd):
        self.cwd = cwd

    def execute(self, action: dict, cwd: str = "") -> dict:
        done = subprocess.run(
            ["bash", "-c", action["command"]], cwd=self.cwd, env={"PATH": os.environ["PATH"]},
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        output = {"output": done.stdout + done.stderr, "returncode": done.returncode, "exception_info": ""}
        lines = output["output"].lstrip().splitlines(keepends=True)
        if lines and lines[0].strip() == "COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT" and done.returncode == 0:
            submission = "".join(lines[1:])
            extra = {"exit_status": "Submitted", "submission": submission}
            raise mswea.Submitted({"role": "exit", "content": submission, "extra": extra})
        return output

    def get_template_vars(self, **kwargs) -> dict:
        return {}

    def serialize(self) -> dict:
        return {}


def scripted_model(server: ScriptedChatServer, model_id: str, timeout_s: int = 10):
    config = {"api_base": server.base_url}
    return build_model(provider="openai", model_id=model_id, config=config, temperature=0.0, timeout_s=timeout_s)


def new_agent(model, tmp_path, **kwargs) -> SolverAgent:
    return SolverAgent(model, BashEnv(tmp_path), cancel_event=kwargs.pop("cancel_event", threading.Event()), **kwargs)


def deterministic(*commands: str) -> DeterministicModel:
    return DeterministicModel(outputs=[make_output(f"turn {i}", [{"command": c}]) for i, c in enumerate(commands)])


def test_deterministic_run_edits_a_file_and_submits(tmp_path):
    (tmp_path / "a.py").write_text("x = 'bug'\n")
    seen = []
    model = deterministic("sed -i s/bug/fixed/ a.py", "seq 1 3000", f"{SUBMIT_COMMAND}\necho ignored")
    result = run_agent(new_agent(model, tmp_path, on_step=seen.append), "fix it")
    assert (result.exit_status, result.error) == ("Submitted", None)
    assert (tmp_path / "a.py").read_text() == "x = 'fixed'\n"
    assert [step["action"] for step in result.steps] == [
        "sed -i s/bug/fixed/ a.py",
        "seq 1 3000",
        model.config.outputs[2]["extra"]["actions"][0]["command"],
    ]
    assert seen == result.steps and [step["step"] for step in seen] == [1, 2, 3]
    assert len(result.steps[1]["output"]) <= 2000 and result.steps[1]["output"].endswith("3000\n")
    assert result.steps[0]["returncode"] == 0 and result.steps[0]["timestamp"].endswith("+00:00")
    assert result.tokens == 0


def test_litellm_against_scripted_server_sums_tokens_and_edits(tmp_path):
    script = [Step("echo fixed > a.txt", "edit", prompt_tokens=120, completion_tokens=7),
              Step("cat a.txt", "check", prompt_tokens=300, completion_tokens=11)]  # fmt: skip
    with ScriptedChatServer({"fixer": script}) as server:
        agent = new_agent(scripted_model(server, "fixer"), tmp_path)
        result = run_agent(agent, "fix it")
        requests = server.requests
    assert (result.exit_status, result.error) == ("Submitted", None)
    assert (tmp_path / "a.txt").read_text() == "fixed\n"
    assert result.tokens == 127 + 311 + SUBMIT_TOKENS
    assert [step["output"] for step in result.steps[:2]] == ["", "fixed\n"]
    assert requests[0]["tools"][0]["function"]["name"] == "bash" and len(requests) == 3
    assistant = requests[1]["messages"][2]
    assert assistant["role"] == "assistant" and "echo fixed" in assistant["tool_calls"][0]["function"]["arguments"]


def test_trajectory_is_json_without_raw_responses_but_with_usage(tmp_path):
    with ScriptedChatServer({"fixer": [Step("true", prompt_tokens=5, completion_tokens=1)]}) as server:
        agent = new_agent(scripted_model(server, "fixer"), tmp_path)
        result = run_agent(agent, "fix it")
    data = trajectory(agent, result.exit_status)
    json.dumps(data)
    assert (data["exit_status"], data["total_steps"]) == ("Submitted", 2)
    assert data["steps"] == result.steps
    extras = [message.get("extra", {}) for message in data["messages"]]
    assert not any("response" in extra for extra in extras)
    assert [extra["usage"]["total_tokens"] for extra in extras if "usage" in extra] == [6, SUBMIT_TOKENS]
    assert "response" in agent.messages[2]["extra"]


def test_format_errors_are_billed_tokens_too(tmp_path):
    with ScriptedChatServer({"mute": [Step(None, "no tool", prompt_tokens=2, completion_tokens=1)]}) as server:
        result = run_agent(new_agent(scripted_model(server, "mute"), tmp_path), "fix it")
        assert len(server.requests) == 3
    assert result.exit_status == "RepeatedFormatError"
    assert result.tokens == 3 * 3


def test_cancel_event_stops_the_loop_before_the_next_model_call(tmp_path):
    cancel = threading.Event()
    model = deterministic("echo 1", "echo 2", SUBMIT_COMMAND)
    result = run_agent(new_agent(model, tmp_path, cancel_event=cancel, on_step=lambda _: cancel.set()), "t")
    assert result.exit_status == "Cancelled" and result.error is None
    assert [step["action"] for step in result.steps] == ["echo 1"]
    assert model.current_index == 0


def test_cancelled_before_start_calls_no_model(tmp_path):
    cancel = threading.Event()
    cancel.set()
    model = deterministic("echo 1")
    result = run_agent(new_agent(model, tmp_path, cancel_event=cancel), "t")
    assert (result.exit_status, result.steps, model.current_index) == ("Cancelled", [], -1)


def test_model_server_error_is_recorded_quickly_without_retries(tmp_path):
    with ScriptedChatServer({"down": [Step(status=500)]}) as server:
        started = time.monotonic()
        result = run_agent(new_agent(scripted_model(server, "down"), tmp_path), "fix it")
        elapsed = time.monotonic() - started
        assert len(server.requests) == 1
    assert elapsed < 10
    assert result.exit_status == "InternalServerError"
    assert "InternalServerError" in result.error and "500" in result.error


def test_model_timeout_is_an_error_not_a_hang(tmp_path):
    with ScriptedChatServer({"slow": [Step("true", delay_s=5)]}) as server:
        started = time.monotonic()
        result = run_agent(new_agent(scripted_model(server, "slow", timeout_s=1), tmp_path), "fix it")
        elapsed = time.monotonic() - started
    assert result.error is not None and "Timeout" in result.error
    assert elapsed < 4


def test_task_text_reaches_the_model_verbatim(tmp_path):
    body = "Crash on {{ 7*7 }} and {% if x %}y{% endif %}; run $(rm -rf /) `id` for fun."
    task = task_text("Title {{ config }}", body)
    with ScriptedChatServer({"fixer": []}) as server:
        run_agent(new_agent(scripted_model(server, "fixer"), tmp_path), task)
        first_user = server.requests[0]["messages"][1]
    assert first_user["role"] == "user"
    assert f"Please solve this issue: Title {{{{ config }}}}\n\n{body}\n" in first_user["content"]
    assert "Crash on 49" not in first_user["content"]  # (the kernel version in the prompt may hold a 49)


def test_strategies_differ_and_keep_the_mini_instance_template():
    systems = {name: strategy.system_template for name, strategy in STRATEGIES.items()}
    assert {"baseline", "minimal-fix", "test-first"} <= set(systems)
    assert len(set(systems.values())) == len(systems)
    assert "smallest possible diff" in systems["minimal-fix"]
    assert "fails" in systems["test-first"] and "test first" in systems["test-first"]
    assert systems["baseline"] == mini_config()["agent"]["system_template"]
    assert all(s.instance_template == mini_config()["agent"]["instance_template"] for s in STRATEGIES.values())


def test_strategy_reaches_the_model(tmp_path):
    model = deterministic(SUBMIT_COMMAND)
    agent = new_agent(model, tmp_path, **get_strategy("minimal-fix").agent_config())
    run_agent(agent, "t")
    assert "smallest possible diff" in agent.messages[0]["content"]


def test_unknown_strategy_names_the_known_ones():
    with pytest.raises(InvalidInput) as info:
        get_strategy("yolo")
    assert "yolo" in info.value.message and "baseline" in info.value.message and "test-first" in info.value.message


@pytest.mark.parametrize(
    ("provider", "model_id", "expected"),
    [
        ("openrouter", "anthropic/claude-x", "openrouter/anthropic/claude-x"),
        ("anthropic", "anthropic/claude-x", "anthropic/claude-x"),
        ("openai", "gpt-4o", "openai/gpt-4o"),
        ("", "ollama/qwen", "ollama/qwen"),
    ],
)
def test_model_name_prefixes_the_provider_once(provider, model_id, expected):
    assert model_name(provider, model_id) == expected


def test_build_model_uses_experiment_temperature_and_config(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    config = {"temperature": 0.9, "api_base": "http://127.0.0.1:1/v1", "max_tokens": 256, "top_p": 0.5,
              "api_key": "from-db", "max_retries": 5}  # fmt: skip
    model = build_model(provider="openai", model_id="local", config=config, temperature=0.2, timeout_s=33)
    assert model.config.model_name == "openai/local"
    assert model.config.model_kwargs == {
        "temperature": 0.2, "api_base": "http://127.0.0.1:1/v1", "max_tokens": 256, "top_p": 0.5, "timeout": 33,
        "max_retries": 0, "num_retries": 0, "drop_params": True, "api_key": "sk-no-key",
    }  # fmt: skip
    assert model.config.cost_tracking == "ignore_errors"
    assert model.config.observation_template == mini_config()["model"]["observation_template"]
    assert model.config.format_error_template == mini_config()["model"]["format_error_template"]


def test_build_model_leaves_keys_to_the_environment_for_the_providers_own_endpoint_only(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    local = build_model(provider="openai", model_id="m", config={"api_base": "http://x/v1"}, temperature=0, timeout_s=5)
    hosted = build_model(
        provider="anthropic", model_id="claude-x", config={"api_key": "db"}, temperature=0, timeout_s=5
    )
    # A server of the model's own gets a placeholder, never the worker's OpenAI key (issue 10, finding 5).
    assert local.config.model_kwargs["api_key"] == "sk-no-key" and "api_key" not in hosted.config.model_kwargs
    assert "api_base" not in hosted.config.model_kwargs


def test_concurrent_conversations_get_their_own_steps(tmp_path):
    script = [Step("echo one > f.txt", delay_s=0.05), Step("echo two >> f.txt", delay_s=0.05)]
    workspaces = [tmp_path / f"w{i}" for i in range(6)]
    with ScriptedChatServer({"fixer": script}) as server:

        def solve(workspace):
            workspace.mkdir()
            return run_agent(new_agent(scripted_model(server, "fixer"), workspace), f"task in {workspace.name}")

        with ThreadPoolExecutor(len(workspaces)) as pool:
            results = list(pool.map(solve, workspaces))
        assert len(server.requests) == 3 * len(workspaces)
    assert [r.exit_status for r in results] == ["Submitted"] * len(workspaces)
    assert [(w / "f.txt").read_text() for w in workspaces] == ["one\ntwo\n"] * len(workspaces)
    assert {r.tokens for r in results} == {2 * 15 + SUBMIT_TOKENS}


def test_excerpt_keeps_head_and_tail_within_the_limit():
    text = "HEAD" + "x" * 10_000 + "TAIL"
    short = excerpt(text)
    assert len(short) <= 2000 and short.startswith("HEAD") and short.endswith("TAIL")
    assert excerpt("small") == "small"


def test_importing_the_package_does_not_import_mini_swe_agent_and_agent_writes_nothing_under_home(tmp_path):
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir(), tmp.mkdir()
    code = (
        "import sys, yudai_solver, yudai_solver.execution, yudai_solver.testing.scripted\n"
        "assert 'minisweagent' not in sys.modules and 'litellm' not in sys.modules, 'imported too early'\n"
        "import yudai_solver.execution.agent\n"
        "import os; print(os.environ['MSWEA_GLOBAL_CONFIG_DIR'])\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MSWEA_", "LITELLM_"))}
    env |= {"HOME": str(home), "TMPDIR": str(tmp), "XDG_CONFIG_HOME": str(home / ".config")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    config_dir = tmp / f"yudai-mswea-{os.getuid()}"
    assert done.stdout == f"{config_dir}\n"
    assert list(home.iterdir()) == []
    assert stat.S_IMODE(config_dir.stat().st_mode) == 0o700

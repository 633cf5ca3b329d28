"""mini-swe-agent's own deterministic tool-call model driving our agent in a real local sandbox."""

import subprocess
import threading

from yudai_solver.execution.agent import SolverAgent, run_agent
from yudai_solver.execution.strategies import get_strategy
from yudai_solver.execution.validation import diff_stats
from yudai_solver.sandboxes import create_sandbox
from yudai_solver.solving.matrix import EVOLUTIONS


def toolcall(command: str, n: int) -> dict:
    from minisweagent.models.test_models import make_toolcall_output

    call_id = f"call_{n}"
    tool_calls = [{"id": call_id, "type": "function", "function": {"name": "bash", "arguments": "{}"}}]
    return make_toolcall_output(None, tool_calls, [{"command": command, "tool_call_id": call_id}])


def repo(path):
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    (path / "a.txt").write_text("one\n")
    subprocess.run(["git", "-C", str(path), "add", "."], check=True)
    subprocess.run(
        ["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "i"], check=True
    )
    return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()


def test_deterministic_model_edits_in_a_real_sandbox_and_submits(tmp_path, monkeypatch):
    from minisweagent.models.test_models import DeterministicToolcallModel

    monkeypatch.setenv("OPENAI_API_KEY", "sk-canary")
    work = tmp_path / "work"
    base = repo(work)
    commands = ["echo two >> a.txt", "env", "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"]
    model = DeterministicToolcallModel(outputs=[toolcall(c, i) for i, c in enumerate(commands)], cost_per_call=0)
    sandbox = create_sandbox("local", workspace=work, home=tmp_path / "home")
    agent = SolverAgent(
        model, sandbox, cancel_event=threading.Event(), step_limit=10, **get_strategy("minimal-fix").agent_config()
    )
    result = run_agent(agent, "append two")
    assert (result.exit_status, result.error) == ("Submitted", None)
    assert [s["action"] for s in result.steps] == commands
    assert "sk-canary" not in result.steps[1]["output"] and f"HOME={tmp_path / 'home'}" in result.steps[1]["output"]
    stats = diff_stats(work, base)
    assert (stats.loc_changed, stats.files_changed) == (1, 1)


def test_the_api_accepts_exactly_the_evolutions_the_agent_knows():
    from yudai_solver.execution.strategies import STRATEGIES

    assert set(EVOLUTIONS) == set(STRATEGIES)

"""Overhead of the service around one scripted 10-step run, against mini-swe-agent run directly.

Both sides: the same scripted model server (litellm HTTP client), the same 10 commands, the same repository and
the same test command. The service side adds the database, the mirror checkout, the sandbox, the baseline test
run, diff stats and result storage; the direct side does a `git clone` and runs mini-swe-agent's own
LocalEnvironment. Runs alternate to spread machine noise evenly.

    python bench/bench_overhead.py [--repeat 5] [--delay 0]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from harness import deployment, median
from yudai_solver.entry.demo import TEST_COMMAND, create_repository
from yudai_solver.testing.scripted import ScriptedChatServer, Step

COMMANDS = [
    "ls",
    "cat calc.py",
    "cat test_calc.py",
    "grep -n 'def ' calc.py",
    "wc -l calc.py",
    "git status --short",
    "sed -i 's/return a - b/return a + b/' calc.py",
    "git diff",
    TEST_COMMAND,
    "cat calc.py",
]


def script(delay_s: float) -> list[Step]:
    return [Step(c, f"step {i}", delay_s=delay_s) for i, c in enumerate(COMMANDS)]


SCRIPT = script(0.0)


def service_run(d, repo: Path) -> float:
    started = time.perf_counter()
    solve = d.wait(
        d.start(
            {
                "repo_url": str(repo),
                "issue_number": 1,
                "issue_title": "add subtracts",
                "issue_body": "fix add",
                "matrix": {"models": ["ten-steps"]},
                "test_command": TEST_COMMAND,
            }
        )
    )
    elapsed = time.perf_counter() - started
    if solve.status != "completed":
        from yudai_solver.base.models import SolveRun

        with d.factory() as session:
            run = session.get(SolveRun, solve.ranking["order"][0]["run_id"])
            raise AssertionError(f"{solve.error_message}: {run.diagnostics.get('test')} {run.trajectory_data}")
    return elapsed


def direct_run(repo: Path, api_base: str) -> float:
    from minisweagent.agents.default import DefaultAgent
    from minisweagent.environments.local import LocalEnvironment
    from minisweagent.models.litellm_model import LitellmModel

    from yudai_solver.execution import mswea  # noqa: F401 - configures mini-swe-agent before it is imported
    from yudai_solver.execution.strategies import get_strategy, mini_config
    from yudai_solver.sandboxes.local import worker_path

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "work"
        subprocess.run(["git", "clone", "-q", str(repo), str(work)], check=True)
        # mini-swe-agent's own default configuration (mini.yaml), as its `mini` command would use it.
        templates = {k: mini_config()["model"][k] for k in ("observation_template", "format_error_template")}
        model = LitellmModel(
            model_name="openai/ten-steps",
            cost_tracking="ignore_errors",
            **templates,
            model_kwargs={"api_base": api_base, "api_key": "x", "temperature": 0.0},
        )
        # The same PATH as the service's sandboxes (the worker's, minus its virtualenv), so that `python3` in the
        # commands is the same program on both sides (here: a pyenv shim, which costs ~60 ms a start).
        path = {"PATH": worker_path()}
        agent = DefaultAgent(
            model,
            LocalEnvironment(cwd=str(work), env=path),
            cost_limit=0,
            step_limit=30,
            **get_strategy("baseline").agent_config(),
        )
        info = agent.run("add subtracts\n\nfix add")
        tests = subprocess.run(["bash", "-c", TEST_COMMAND], cwd=work, capture_output=True, env=os.environ | path)
    elapsed = time.perf_counter() - started
    assert info["exit_status"] == "Submitted" and tests.returncode == 0, (info, tests.stderr)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--delay", type=float, default=0.0, help="Seconds the scripted model takes per answer.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, ScriptedChatServer({"ten-steps": script(args.delay)}) as chat:
        repos = Path(tmp) / "repos"
        repo = create_repository(repos / "calc")
        with deployment(repos) as d:
            d.add_model("ten-steps", chat.base_url)
            service_run(d, repo)  # warm-up: mirror created, modules imported
            direct_run(repo, chat.base_url)
            service, direct = [], []
            for _ in range(args.repeat):
                service.append(service_run(d, repo))
                direct.append(direct_run(repo, chat.base_url))
    s, m = median(service), median(direct)
    print(
        f"service median {s:.3f}s, direct median {m:.3f}s, ratio {s / m:.2f} "
        f"(n={args.repeat}, 10 steps + submit, model answers after {args.delay}s)"
    )
    print("service:", ", ".join(f"{x:.3f}" for x in service))
    print("direct: ", ", ".join(f"{x:.3f}" for x in direct))


if __name__ == "__main__":
    main()

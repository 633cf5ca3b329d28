"""Parallelism: 16 runs whose scripted model answers after 1 s per step, max_parallel 16, vs. a single run.

python bench/bench_parallel.py [--runs 16] [--steps 5] [--delay 1.0]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from harness import deployment
from yudai_solver.entry.demo import TEST_COMMAND, create_repository
from yudai_solver.testing.scripted import ScriptedChatServer, Step


def solve(d, repo: Path, runs: int) -> float:
    body = {
        "repo_url": str(repo),
        "issue_number": 1,
        "issue_title": "add subtracts",
        "issue_body": "fix add",
        "matrix": {"models": ["slow"], "temperatures": [round(i / runs, 3) for i in range(runs)]},
        "limits": {"max_parallel": runs},
        "test_command": TEST_COMMAND,
    }
    started = time.perf_counter()
    result = d.wait(d.start(body))
    elapsed = time.perf_counter() - started
    assert result.status == "completed", result.error_message
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--delay", type=float, default=1.0)
    args = parser.parse_args()
    script = [Step("cat calc.py", delay_s=args.delay)] * (args.steps - 2) + [
        Step("sed -i 's/return a - b/return a + b/' calc.py", delay_s=args.delay),
        Step(TEST_COMMAND, delay_s=args.delay),
    ]
    with tempfile.TemporaryDirectory() as tmp, ScriptedChatServer({"slow": script}) as chat:
        repos = Path(tmp) / "repos"
        repo = create_repository(repos / "calc")
        with deployment(repos, max_concurrent_runs=args.runs) as d:
            d.add_model("slow", chat.base_url)
            single = solve(d, repo, 1)
            many = solve(d, repo, args.runs)
    print(
        f"1 run: {single:.2f}s; {args.runs} runs (max_parallel {args.runs}): {many:.2f}s; "
        f"ratio {many / single:.2f} ({args.steps} steps + submit at {args.delay}s each)"
    )


if __name__ == "__main__":
    main()

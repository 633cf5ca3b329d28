"""Three scripted experiments through the whole pipeline: the smallest passing fix wins, numbers are exact."""

import subprocess

import pytest
from sqlalchemy import select

from yudai_solver.base.models import SolveRun
from yudai_solver.entry.demo import SCRIPTS, TEST_COMMAND

pytestmark = pytest.mark.slow


def git(repo, *args) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def runs_by_model(factory, solve_id) -> dict[str, SolveRun]:
    with factory() as session:
        return {r.model: r for r in session.scalars(select(SolveRun).where(SolveRun.solve_id == solve_id))}


def test_three_experiments_rank_the_minimal_fix_first(pipeline):
    for name in SCRIPTS:
        pipeline.add_model(name)
    head, status = git(pipeline.repo, "rev-parse", "HEAD"), git(pipeline.repo, "status", "--porcelain")
    solve_id = pipeline.start(matrix={"models": list(SCRIPTS)}, test_command=TEST_COMMAND)
    solve = pipeline.wait(solve_id)
    runs = runs_by_model(pipeline.factory, solve_id)
    minimal, rewrite, noop = runs["scripted-minimal-fix"], runs["scripted-rewrite"], runs["scripted-noop"]

    assert solve.status == "completed", solve.error_message
    assert solve.champion_run_id == minimal.id
    assert [r.status for r in runs.values()] == ["completed"] * 3, [r.error_message for r in runs.values()]
    assert (minimal.tests_passed, minimal.loc_changed, minimal.files_changed) == (True, 2, 1)
    # calc.py: +3 header lines, +2 docstrings, "a - b" -> "a + b" (+1 -1) = 7; CHANGES.md: +1.
    assert (rewrite.tests_passed, rewrite.loc_changed, rewrite.files_changed) == (True, 8, 2)
    assert (noop.tests_passed, noop.loc_changed, noop.files_changed) == (False, 0, 0)
    # 15 tokens per scripted answer; each script ends with one extra answer that submits.
    assert (minimal.tokens, rewrite.tokens, noop.tokens) == (60, 45, 45)
    assert solve.baseline["tests_passed"] is False and solve.baseline["test_command"] == TEST_COMMAND
    assert [entry["run_id"] for entry in solve.ranking["order"]] == [minimal.id, rewrite.id, noop.id]
    for run in runs.values():
        assert run.latency_ms > 0 and run.sandbox_id and run.started_at and run.completed_at
        assert len(run.diagnostics["test"]["output_tail"]) <= 2000
        assert run.trajectory_data["exit_status"] == "Submitted"
        assert run.trajectory_data["total_steps"] == len(run.trajectory_data["steps"]) >= 2
    assert "+    return a + b" in minimal.diagnostics["patch"] and "CHANGES.md" in rewrite.diagnostics["patch"]
    assert git(pipeline.repo, "rev-parse", "HEAD") == head
    assert git(pipeline.repo, "status", "--porcelain") == status


def test_worker_secrets_never_reach_the_sandbox(pipeline, scripts):
    scripts["leaky"] = [
        __import__("yudai_solver.testing.scripted", fromlist=["Step"]).Step("env; cat /proc/self/environ")
    ]
    pipeline.add_model("leaky")
    solve_id = pipeline.start(matrix={"models": ["leaky"]}, test_command="true")
    pipeline.wait(solve_id)
    run = runs_by_model(pipeline.factory, solve_id)["leaky"]
    assert run.status == "completed", run.error_message
    dumped = run.trajectory_data["steps"][0]["output"]
    assert "PATH=" in dumped and "sk-canary-worker-secret" not in str(run.trajectory_data)
    assert "YUDAI_" not in dumped

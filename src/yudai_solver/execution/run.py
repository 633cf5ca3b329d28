"""One run end to end: workspace, sandbox, setup, baseline, agent, tests, diff, result.

Runs in a worker thread. The model calls (and the API keys they need) stay in this process; only commands run in
the sandbox. Every exception ends here and is recorded on the run: the worker is the only catch-all.
"""

import logging
import os
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from yudai_solver import __version__
from yudai_solver.base import statuses
from yudai_solver.solving.matrix import AUTO_STRATEGY
from yudai_solver.sandboxes import Sandbox, create_sandbox
from yudai_solver.base.settings import Settings
from yudai_solver.execution import checks, records
from yudai_solver.execution.baseline import BackgroundBaseline, measure
from yudai_solver.execution.control import RunControl
from yudai_solver.execution.followup import after_solve
from yudai_solver.execution.records import RunSpec
from yudai_solver.execution.verification import verify_pending
from yudai_solver.execution.validation import detect_test_command, diff_stats, tail, untracked_patterns
from yudai_solver.execution.workspace import WorkspaceCache

log = logging.getLogger(__name__)
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"
TAIL = 2000
PROGRESS_INTERVAL_S = 0.5


@dataclass
class RunEnv:
    """What every run of one worker shares."""

    settings: Settings
    session_factory: sessionmaker[Session]
    workspaces: WorkspaceCache


@dataclass
class Result:
    status: str = statuses.FAILED
    error: str | None = None
    values: dict = field(default_factory=dict)
    diagnostics: dict = field(default_factory=dict)


class RunFailed(Exception):
    """An infrastructure step failed; the message is the run's error_message."""


def execute_run(env: RunEnv, control: RunControl) -> list[str]:
    """Execute the run if it is still pending; returns run ids that early stop cancelled (to be killed)."""
    spec = records.claim(env.session_factory, control.run_id)
    if spec is None:
        return []
    started = time.monotonic()
    run_dir = env.settings.data_dir / "runs" / spec.run_id
    result = Result(diagnostics={"versions": _versions(), "model": _model_info(spec), "worker": WORKER_ID})
    try:
        _work(env, spec, control, run_dir, result)
    except Exception as exc:  # noqa: BLE001 - recorded on the run; the solve still finishes
        result.status, result.error = statuses.FAILED, _describe(exc, control)
        result.diagnostics["stderr_tail"] = tail(result.error, TAIL)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    if control.requeue:
        records.requeue(env.session_factory, spec.run_id)
        return []
    result.values["latency_ms"] = int((time.monotonic() - started) * 1000)
    result.values["diagnostics"] = result.diagnostics
    try:
        stopped = records.finish(env.session_factory, spec, status=result.status, error=result.error,
                                 values=result.values)
    except Exception as exc:  # noqa: BLE001 - a result the database refuses must not leave the run running
        log.exception("storing the result of run %s failed", spec.run_id)
        error = tail(f"storing the result failed: {type(exc).__name__}: {exc}", TAIL)
        stopped = records.finish(env.session_factory, spec, status=statuses.FAILED, error=error,
                                 values={"latency_ms": result.values["latency_ms"]})
    verify_pending(env, spec.solve_id)
    after_solve(env.settings, env.session_factory, spec.solve_id)
    return stopped


def _describe(exc: Exception, control: RunControl) -> str:
    if control.stopped:
        return control.reason or "stopped"
    return str(exc) if isinstance(exc, RunFailed) else f"{type(exc).__name__}: {exc}"


def _work(env: RunEnv, spec: RunSpec, control: RunControl, run_dir: Path, result: Result) -> None:
    workspace = run_dir / "work"
    base_commit = _checkout(env, spec, workspace)
    result.diagnostics["base_commit"] = base_commit
    sandbox = create_sandbox(env.settings.sandbox, workspace=workspace, home=run_dir / "home", network=spec.network,
                             command_timeout=env.settings.command_timeout_s, settings=env.settings)
    control.attach(sandbox)
    result.values["sandbox_id"] = sandbox.sandbox_id
    try:
        _in_sandbox(env, spec, control, sandbox, workspace, base_commit, result)
    finally:
        sandbox.close()


def _checkout(env: RunEnv, spec: RunSpec, workspace: Path) -> str:
    """A checkout at the solve's base commit; the first run to get here pins it for all the others."""
    base_commit = env.workspaces.checkout(spec.repo_url, spec.base_branch, workspace, commit=spec.base_commit)
    pinned = records.pin_base_commit(env.session_factory, spec.solve_id, base_commit)
    if pinned != base_commit:  # another run pinned an older tip first: start where it started
        env.workspaces.remove(workspace)
        base_commit = env.workspaces.checkout(spec.repo_url, spec.base_branch, workspace, commit=pinned)
    return base_commit


def _in_sandbox(env, spec, control, sandbox: Sandbox, workspace: Path, base_commit: str, result: Result) -> None:
    _setup(env, spec, sandbox, result)
    setup_artifacts = untracked_patterns(workspace, base_commit) if spec.setup_command else []
    test_command = spec.test_command or detect_test_command(workspace)
    background = _baseline(env, spec, control, sandbox, workspace.parent / "baseline", test_command, base_commit)
    try:
        evolution = _evolution(env, spec, control, test_command, background, result)
        agent_result, trajectory = _agent(env, spec, control, sandbox, evolution)
    finally:
        if background is not None:
            background.join()
    result.values.update(tokens=agent_result.tokens, cost=agent_result.cost, steps=len(agent_result.steps),
                         trajectory_data=trajectory)
    result.diagnostics["agent_exit_status"] = agent_result.exit_status
    if control.stopped:
        raise RunFailed(control.reason or "stopped")
    if agent_result.error:
        raise RunFailed(f"agent error: {agent_result.error}")
    sandbox.sync_workspace(base_commit)
    stats = diff_stats(workspace, base_commit, ignore=setup_artifacts)
    _validate(env, spec, sandbox, workspace, base_commit, stats, test_command, result)
    result.diagnostics["test"]["detected"] = bool(test_command) and not spec.test_command
    result.status = statuses.COMPLETED


def _evolution(env, spec, control, test_command, background, result: Result) -> str:
    """The prompt strategy: `baseline` becomes reproduce-first when the base shows no failing test to fix.

    Deciding needs the baseline, so such runs wait for it (it is measured while their sandboxes set up).
    """
    if spec.evolution != "baseline":
        return spec.evolution
    if test_command is None:
        why = "no test command"
    else:
        if background is not None:
            background.join()
        baseline = records.wait_for_baseline(env.session_factory, spec.solve_id, control,
                                             timeout_s=env.settings.test_timeout_s + 60)
        failing = (baseline or {}).get("tests_passed") is False
        if failing or baseline is None:
            return spec.evolution
        why = "the baseline's tests all pass"
    result.diagnostics["strategy"] = {"requested": spec.evolution, "used": AUTO_STRATEGY, "why": why}
    return AUTO_STRATEGY


def _setup(env: RunEnv, spec: RunSpec, sandbox: Sandbox, result: Result) -> None:
    if not spec.setup_command:
        return
    done = sandbox.run(spec.setup_command, timeout=env.settings.setup_timeout_s, network=True)
    result.diagnostics["setup"] = _command_record(done)
    if done.returncode != 0:
        why = "timed out" if done.timed_out else f"exited with {done.returncode}"
        raise RunFailed(f"setup command {why}: {tail(done.output, 500)}")


def _baseline(env, spec, control, sandbox: Sandbox, directory: Path, test_command,
              base_commit: str) -> BackgroundBaseline | None:
    """One run per solve measures the baseline: here if setup prepared this workspace, else beside the agent."""
    if not records.claim_baseline(env.session_factory, spec.solve_id):
        return None
    if spec.setup_command:
        records.save_baseline(env.session_factory, spec.solve_id,
                              measure(sandbox, test_command, env.settings.test_timeout_s))
        return None
    return BackgroundBaseline(env, spec, directory, test_command, control, base_commit)


def _agent(env: RunEnv, spec: RunSpec, control: RunControl, sandbox: Sandbox, evolution: str):
    # Imported here: mini-swe-agent configures itself on import, which only a worker should trigger.
    from yudai_solver.execution.agent import SolverAgent, build_model, run_agent, trajectory
    from yudai_solver.execution.strategies import get_strategy

    model = build_model(provider=spec.provider, model_id=spec.model_id, config=spec.model_config,
                        temperature=spec.temperature, timeout_s=env.settings.model_timeout_s)
    agent = SolverAgent(model, sandbox, cancel_event=control.cancel_event, step_limit=spec.max_edits,
                        **get_strategy(evolution).agent_config())
    agent.on_step = _throttled(lambda: records.save_progress(
        env.session_factory, spec.run_id, steps=agent.steps, tokens=agent.tokens, cost=agent.cost,
        sandbox_id=sandbox.sandbox_id
    ))
    result = run_agent(agent, f"{spec.issue_title}\n\n{spec.issue_body}".strip())
    return result, trajectory(agent, result.exit_status, env.settings.max_trajectory_bytes)


def _throttled(save, interval_s: float = PROGRESS_INTERVAL_S):
    """Call `save` on the first step, then at most once per interval: the result write stores the rest."""
    last = [float("-inf")]

    def on_step(_step: dict) -> None:
        now = time.monotonic()
        if now - last[0] >= interval_s:
            last[0] = now
            save()

    return on_step


def _validate(env, spec, sandbox: Sandbox, workspace: Path, base_commit: str, stats, test_command: str | None,
              result: Result) -> None:
    split = checks.split_change(stats, spec.test_paths)
    result.values.update(loc_changed=stats.loc_changed, files_changed=stats.files_changed)
    result.diagnostics.update(patch=stats.patch, patch_truncated=stats.patch_truncated, change={
        "source_files": list(split.source_files), "tests_added": list(split.tests_added),
        "tests_modified": list(split.tests_modified), "fingerprint": checks.source_fingerprint(workspace, split)})
    if not test_command:
        result.diagnostics["test"] = {"command": None, "detected": False}
        result.values["tests_passed"] = None
        return
    timeout = env.settings.test_timeout_s
    record = checks.validate_source(sandbox, workspace, base_commit, split, test_command, timeout)
    result.diagnostics["test"] = record.as_json()
    result.values["tests_passed"] = record.passed
    own = checks.check_own_reproductions(sandbox, workspace, split, test_command, timeout)
    result.diagnostics["reproduction"] = [check.as_json() for check in own]


def _command_record(done) -> dict:
    return {"command": done.command, "returncode": done.returncode, "timed_out": done.timed_out,
            "duration_s": round(done.duration_s, 3), "output_tail": tail(done.output, TAIL)}


def _versions() -> dict:
    from importlib.metadata import version

    return {"yudai_solver": __version__, "mini_swe_agent": version("mini-swe-agent")}


def _model_info(spec: RunSpec) -> dict:
    return {"name": spec.model_name, "provider": spec.provider, "model_id": spec.model_id,
            "api_base": spec.model_config.get("api_base"), "temperature": spec.temperature,
            "max_edits": spec.max_edits, "evolution": spec.evolution}

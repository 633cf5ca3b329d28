"""One run end to end: workspace, sandbox, setup, baseline, agent, tests, diff, result.

Runs in a worker thread. The model calls (and the API keys they need) stay in this process; only commands run in
the sandbox. Every exception ends here and is recorded on the run: the worker is the only catch-all.
"""

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from yudai_solver import __version__
from yudai_solver.base import statuses
from yudai_solver.base.run_results import Baseline, ReproductionCheck
from yudai_solver.base.settings import Settings
from yudai_solver.execution import checks, records
from yudai_solver.execution.baseline import BackgroundBaseline, measure
from yudai_solver.execution.baseline import store as store_baseline
from yudai_solver.execution.control import RunControl
from yudai_solver.execution.outcome import (
    AgentOutcome,
    Change,
    CommandRecord,
    RunAbout,
    RunOutcome,
    StrategyChoice,
    TestOutcome,
)
from yudai_solver.execution.records import RunSpec
from yudai_solver.execution.validation import detect_test_command, diff_stats, remove_tree, tail, untracked_patterns
from yudai_solver.execution.workspace import WorkspaceCache
from yudai_solver.sandboxes import Sandbox, create_sandbox
from yudai_solver.sandboxes.protocol import SandboxLost
from yudai_solver.solving.matrix import AUTO_STRATEGY
from yudai_solver.solving.sandbox_policy import refuse_shared_local_run
from yudai_solver.solving.testpaths import ChangeSplit

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
class _Parts:
    """The parts of its result a run's steps produced so far: a run that fails still stores what it got to."""

    base_commit: str | None = None
    sandbox_id: str | None = None
    setup: CommandRecord | None = None
    strategy: StrategyChoice | None = None
    agent: AgentOutcome | None = None
    change: Change | None = None
    test: TestOutcome | None = None
    reproduction: tuple[ReproductionCheck, ...] | None = None


@dataclass(frozen=True)
class _Run:
    """One claimed run: what all its steps read."""

    env: RunEnv
    spec: RunSpec
    control: RunControl
    run_dir: Path

    @property
    def workspace(self) -> Path:
        return self.run_dir / "work"


@dataclass(frozen=True)
class _Place:
    """Where the run works: its checkout at the base commit, and the sandbox over it."""

    sandbox: Sandbox
    workspace: Path
    base_commit: str


class RunFailed(Exception):
    """An infrastructure step failed; the message is the run's error_message."""


def execute_run(env: RunEnv, control: RunControl) -> list[str]:
    """Execute the run if it is still pending; returns run ids that early stop cancelled (to be killed)."""
    spec = records.claim(env.session_factory, control.run_id)
    if spec is None:
        return []
    started = time.monotonic()
    run_dir = env.settings.data_dir / "runs" / spec.run_id
    parts, status, error = _Parts(), statuses.COMPLETED, None
    try:
        remove_tree(run_dir)  # a re-run after its worker died on this host finds the dead attempt's files here
        _work(_Run(env, spec, control, run_dir), parts)
    except Exception as exc:  # noqa: BLE001 - recorded on the run; the solve still finishes
        status, error = statuses.FAILED, _describe(exc, control)
    finally:
        _remove_quietly(run_dir)
    if control.requeue:
        records.requeue(env.session_factory, spec.run_id)
        return []
    parts.agent, error = _named(parts.agent, control, status, error)
    outcome = RunOutcome(status, error, int((time.monotonic() - started) * 1000), _about(spec), **vars(parts))
    try:
        stopped = records.finish(
            env.session_factory, spec, status=outcome.status, error=outcome.error, values=outcome.columns()
        )
    except Exception as exc:  # a result the database refuses must not leave the run running
        log.exception("storing the result of run %s failed", spec.run_id)
        error = tail(f"storing the result failed: {type(exc).__name__}: {exc}", TAIL)
        stopped = records.finish(
            env.session_factory, spec, status=statuses.FAILED, error=error, values={"latency_ms": outcome.latency_ms}
        )
    return stopped


def _named(
    agent: AgentOutcome | None, control: RunControl, status: str, error: str | None
) -> tuple[AgentOutcome | None, str | None]:
    """The agent's outcome named after how the run was stopped (cancel, budget), and the run's error_message: a
    completed run whose agent did not submit says why, in one line."""
    if agent is None:
        return None, error
    if control.stopped:
        reason = control.reason or "stopped"
        name = "budget" if "budget" in reason.lower() else "cancelled"
        return replace(agent, agent_exit=name, message=f"{name}: {reason}"), error
    if status == statuses.COMPLETED and error is None:
        error = agent.message
    return agent, error


def _remove_quietly(run_dir: Path) -> None:
    try:
        remove_tree(run_dir)
    except OSError:  # the run's result matters more; the next attempt of the run clears it again
        log.warning("could not remove %s", run_dir, exc_info=True)


def _stop_if_stopped(control: RunControl) -> None:
    """Between the steps before the agent: a cancel ends the run there, not only at the agent's first step."""
    if control.stopped:
        raise RunFailed(control.reason or "stopped")


def _describe(exc: Exception, control: RunControl) -> str:
    if control.stopped:
        return control.reason or "stopped"
    if isinstance(exc, SandboxLost):  # an infrastructure failure of the run, named, never a test result
        return f"sandbox_lost: {exc}"
    return str(exc) if isinstance(exc, RunFailed) else f"{type(exc).__name__}: {exc}"


def _work(run: _Run, parts: _Parts) -> None:
    refuse_shared_local_run(run.env.session_factory, run.env.settings)
    parts.base_commit = base_commit = _checkout(run.env, run.spec, run.workspace, run.control)
    settings = run.env.settings
    sandbox = create_sandbox(
        settings.sandbox,
        workspace=run.workspace,
        home=run.run_dir / "home",
        network=run.spec.network,
        command_timeout=settings.command_timeout_s,
        settings=settings,
        time_budget_s=run.spec.time_left_s,
    )
    run.control.attach(sandbox)
    parts.sandbox_id = sandbox.sandbox_id
    try:
        _in_sandbox(run, _Place(sandbox, run.workspace, base_commit), parts)
    finally:
        sandbox.close()


def _checkout(env: RunEnv, spec: RunSpec, workspace: Path, control: RunControl) -> str:
    """A checkout at the solve's base commit: pinned when the solve started (a local repository), else by the first
    run to get here, for all the others."""
    cancel = control.cancel_event  # a stalled clone or a wait for another run's fetch ends with the run
    base_commit = env.workspaces.checkout(
        spec.repo_url, spec.base_branch, workspace, commit=spec.base_commit, cancel=cancel
    )
    pinned = records.pin_base_commit(env.session_factory, spec.solve_id, base_commit)
    if pinned != base_commit:  # another run pinned an older tip first: start where it started
        env.workspaces.remove(workspace)
        base_commit = env.workspaces.checkout(spec.repo_url, spec.base_branch, workspace, commit=pinned, cancel=cancel)
    return base_commit


def _in_sandbox(run: _Run, place: _Place, parts: _Parts) -> None:
    spec, control = run.spec, run.control
    if spec.setup_command:
        parts.setup = _setup(run, place.sandbox, spec.setup_command)
        _require_success(parts.setup)
    _stop_if_stopped(control)
    cancel = control.cancel_event
    setup_artifacts = (
        untracked_patterns(place.workspace, place.base_commit, cancel=cancel) if spec.setup_command else []
    )
    test_command = spec.test_command or detect_test_command(place.workspace)
    _stop_if_stopped(control)
    background = _baseline(run, place, test_command)
    try:
        parts.strategy = _strategy(run, test_command, background)
        parts.agent, agent_error = _agent(run, place.sandbox, parts.strategy.used if parts.strategy else spec.evolution)
    finally:
        if background is not None:
            background.join()
    if control.stopped:
        raise RunFailed(control.reason or "stopped")
    # Whatever the agent's loop ended with (submitted, a limit, format errors, a model error), what it changed is
    # diffed and tested: its `agent_exit` tells the rest. Only a cancel or a budget (above) skips that.
    place.sandbox.sync_workspace(place.base_commit)
    stats = diff_stats(place.workspace, place.base_commit, ignore=setup_artifacts, cancel=control.cancel_event)
    split = checks.split_change(stats, spec.test_paths)
    parts.change = Change(stats, checks.change_record(place.workspace, split))
    if not agent_error or stats.files_changed:
        _test(run, place, split, test_command, parts)
    if agent_error:
        raise RunFailed(agent_error)


def _strategy(run: _Run, test_command: str | None, background: BackgroundBaseline | None) -> StrategyChoice | None:
    """The prompt strategy if not the requested one: `baseline` becomes reproduce-first when the base shows no
    failing test to fix.

    Deciding needs the baseline, so such runs wait for it (it is measured while their sandboxes set up).
    """
    spec = run.spec
    if spec.evolution != "baseline":
        return None
    if test_command is None:
        why = "no test command"
    else:
        if background is not None:
            background.join()
        baseline = Baseline.from_json(
            records.wait_for_baseline(
                run.env.session_factory, spec.solve_id, run.control, timeout_s=run.env.settings.test_timeout_s + 60
            )
        )
        if baseline is None or baseline.tests_passed is False:
            return None
        why = "the baseline's tests all pass"
    return StrategyChoice(requested=spec.evolution, used=AUTO_STRATEGY, why=why)


def _setup(run: _Run, sandbox: Sandbox, command: str) -> CommandRecord:
    done = sandbox.run(command, timeout=run.env.settings.setup_timeout_s, network=run.spec.setup_network)
    return CommandRecord.of(done)


def _require_success(setup: CommandRecord) -> None:
    if setup.returncode != 0:
        why = "timed out" if setup.timed_out else f"exited with {setup.returncode}"
        raise RunFailed(f"setup command {why}: {tail(setup.output_tail, 500)}")


def _baseline(run: _Run, place: _Place, test_command: str | None) -> BackgroundBaseline | None:
    """One run per solve measures the baseline: here if setup prepared this workspace, else beside the agent."""
    env, spec = run.env, run.spec
    if not records.claim_baseline(env.session_factory, spec.solve_id, spec.run_id):
        return None
    if spec.setup_command:
        measured = measure(place.sandbox, test_command, env.settings.test_timeout_s)
        store_baseline(env.session_factory, spec, run.control, measured)
        return None
    return BackgroundBaseline(env, spec, run.run_dir / "baseline", test_command, run.control, place.base_commit)


def _agent(run: _Run, sandbox: Sandbox, evolution: str) -> tuple[AgentOutcome, str | None]:
    """The agent's loop over the issue, and the one-line error_message if the loop raised."""
    # Imported here: both import mini-swe-agent, which takes seconds and configures itself on import (a banner, a
    # config directory, litellm's price list): only a worker that executes a run should trigger that.
    from yudai_solver.execution.agent import (
        SolverAgent,
        build_model,
        resolve_action_format,
        run_agent,
        task_text,
        trajectory,
    )
    from yudai_solver.execution.model_slots import shared_slots
    from yudai_solver.execution.strategies import get_strategy

    env, spec = run.env, run.spec
    timeout_s, slots = env.settings.model_timeout_s, shared_slots(env.session_factory)  # max_concurrency, all workers
    action_format, probed = resolve_action_format(
        provider=spec.provider,
        model_id=spec.model_id,
        config=spec.model_config,
        timeout_s=timeout_s,
        cancel=run.control.cancel_event,
        shared_slots=slots,
    )
    if probed:
        records.remember_action_format(env.session_factory, spec.model_name, action_format)
    model = build_model(
        provider=spec.provider,
        model_id=spec.model_id,
        config=spec.model_config,
        temperature=spec.temperature,
        timeout_s=timeout_s,
        action_format=action_format,
    )
    agent = SolverAgent(
        model,
        sandbox,
        cancel_event=run.control.cancel_event,
        shared_slots=slots,
        step_limit=spec.max_edits,
        **get_strategy(evolution).agent_config(action_format),
    )
    max_bytes = env.settings.max_trajectory_bytes

    def save() -> None:
        records.save_progress(
            env.session_factory,
            spec.run_id,
            steps=agent.steps,
            tokens=agent.tokens,
            cost=agent.cost,
            sandbox_id=sandbox.sandbox_id,
            model_calls=agent.n_calls,
            trajectory_data=trajectory(agent, None, max_bytes),
        )

    # After every model call (tokens, cost and calls are what budgets and progress read), and after commands at most
    # once per interval (the next answer's save, or the result, stores the rest).
    agent.on_answer = save
    agent.on_step = _throttled(save)
    result = run_agent(agent, task_text(spec.issue_title, spec.issue_body))
    outcome = AgentOutcome(
        result.exit_status,
        result.tokens,
        result.cost,
        result.model_calls,
        trajectory(agent, result.exit_status, max_bytes),
        agent_exit=result.agent_exit,
        commands=len(result.steps),
        message=result.message,
        error=result.error,
        action_format=action_format,
        format_errors=result.format_errors,
    )
    return outcome, (result.message if result.error else None)


def _throttled(save: Callable[[], None], interval_s: float = PROGRESS_INTERVAL_S) -> Callable[[dict[str, Any]], None]:
    """Call `save` on the first step, then at most once per interval."""
    last = [float("-inf")]

    def on_step(_step: dict[str, Any]) -> None:
        now = time.monotonic()
        if now - last[0] >= interval_s:
            last[0] = now
            save()

    return on_step


def _test(run: _Run, place: _Place, split: ChangeSplit, test_command: str | None, parts: _Parts) -> None:
    """The test command over the run's source change, then the run's own reproduction tests with its fix."""
    if not test_command:
        parts.test = TestOutcome(None, detected=False)
        return
    timeout = run.env.settings.test_timeout_s
    record = checks.validate_source(place.sandbox, place.workspace, place.base_commit, split, test_command, timeout)
    parts.test = TestOutcome(record, detected=not run.spec.test_command)
    parts.reproduction = tuple(
        checks.check_own_reproductions(place.sandbox, place.workspace, split, test_command, timeout)
    )


def _about(spec: RunSpec) -> RunAbout:
    return RunAbout(versions=_versions(), model=_model_info(spec), worker=WORKER_ID)


def _versions() -> dict[str, str]:
    return {"yudai_solver": __version__, "mini_swe_agent": version("mini-swe-agent")}


def _model_info(spec: RunSpec) -> dict[str, Any]:
    return {
        "name": spec.model_name,
        "provider": spec.provider,
        "model_id": spec.model_id,
        "api_base": spec.model_config.get("api_base"),
        "temperature": spec.temperature,
        "max_edits": spec.max_edits,
        "evolution": spec.evolution,
    }

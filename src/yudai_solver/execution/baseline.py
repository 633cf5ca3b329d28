"""The solve's baseline: its tests on the untouched checkout, measured once per solve, so fail -> pass shows."""

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session, sessionmaker

from yudai_solver.base.run_results import Baseline
from yudai_solver.execution import records
from yudai_solver.execution.checks import run_tests
from yudai_solver.execution.control import RunControl
from yudai_solver.execution.validation import remove_tree
from yudai_solver.sandboxes import Sandbox, create_sandbox
from yudai_solver.solving.testreport import report_json

if TYPE_CHECKING:  # `run` imports this module: the run's environment is named for the type checker only
    from yudai_solver.execution.run import RunEnv

log = logging.getLogger(__name__)


def measure(sandbox: Sandbox, test_command: str | None, timeout: float) -> Baseline:
    if not test_command:
        return Baseline("no test command", None)
    try:
        record = run_tests(sandbox, test_command, timeout)
    except Exception as exc:  # noqa: BLE001 - a baseline is informative; its failure must not fail the run
        return Baseline("error", test_command, error=f"{type(exc).__name__}: {exc}")
    return Baseline(
        "measured",
        test_command,
        tests_passed=record.passed,
        returncode=record.returncode,
        timed_out=record.timed_out,
        output_tail=record.output_tail,
        report=report_json(record.report),
    )


def store(factory: sessionmaker[Session], spec: records.RunSpec, control: RunControl, baseline: Baseline) -> None:
    """Store the measured baseline, unless the run was stopped meanwhile: its killed test command measured nothing.

    A run going back to the queue frees the claim for its next attempt; one that was cancelled leaves an error.
    """
    if control.requeue:
        records.release_baseline(factory, spec.solve_id, spec.run_id)
    elif control.stopped:
        why = f"not measured: the run was stopped ({control.reason or 'stopped'})"
        records.save_baseline(factory, spec.solve_id, Baseline("error", baseline.test_command, error=why))
    else:
        records.save_baseline(factory, spec.solve_id, baseline)


class BackgroundBaseline:
    """Measures the baseline in a checkout of its own while the agent works, so it adds nothing to the run's time.

    Only for solves without a setup command: with one, the prepared workspace is measured before the agent starts
    rather than running the setup twice.
    """

    def __init__(
        self,
        env: "RunEnv",
        spec: records.RunSpec,
        directory: Path,
        test_command: str | None,
        control: RunControl,
        base_commit: str,
    ) -> None:
        self._args = (env, spec, directory, test_command, control)
        self.base_commit = base_commit
        self._thread = threading.Thread(target=self._run, name=f"baseline-{spec.solve_id[:8]}", daemon=True)
        self._thread.start()

    def join(self) -> None:
        self._thread.join()

    def _run(self) -> None:
        env, spec, directory, test_command, control = self._args
        try:
            try:
                baseline = self._measure(env, spec, directory, test_command, control)
            except Exception as exc:  # noqa: BLE001 - a baseline is informative; its failure must not fail the run
                baseline = Baseline("error", test_command, error=f"{type(exc).__name__}: {exc}")
            store(env.session_factory, spec, control, baseline)
        except Exception:  # the run's result write gives the claim up then (`records.finish`)
            log.exception("storing the baseline of solve %s failed", spec.solve_id)
        finally:
            remove_tree(directory)

    def _measure(
        self, env: "RunEnv", spec: records.RunSpec, directory: Path, test_command: str | None, control: RunControl
    ) -> Baseline:
        env.workspaces.checkout(
            spec.repo_url, spec.base_branch, directory / "work", commit=self.base_commit, cancel=control.cancel_event
        )
        sandbox = create_sandbox(
            env.settings.sandbox,
            workspace=directory / "work",
            home=directory / "home",
            network=spec.network,
            command_timeout=env.settings.command_timeout_s,
            settings=env.settings,
        )
        control.attach(sandbox)
        try:
            return measure(sandbox, test_command, env.settings.test_timeout_s)
        finally:
            sandbox.close()

"""What a run produced, as types: each step of `run` returns one of these parts, and `RunOutcome` holds them all.

`RunOutcome.columns` is the one place a run's result becomes the values of its row, `diagnostics` included; the
stored JSON is read back as types by `base.run_results.RunDiagnostics`.
"""

from dataclasses import dataclass
from typing import Any

from yudai_solver.base.run_results import ChangeRecord, ReproductionCheck
from yudai_solver.execution.checks import TestRecord
from yudai_solver.execution.validation import DiffStats, tail
from yudai_solver.sandboxes import CommandResult

TAIL = 2000


@dataclass(frozen=True)
class RunAbout:
    """What ran the run: the package versions, the model and its settings, the worker."""

    versions: dict[str, str]
    model: dict[str, Any]
    worker: str


@dataclass(frozen=True)
class CommandRecord:
    """One setup command: what ran, how it ended, the tail of its output."""

    command: str
    returncode: int
    timed_out: bool
    duration_s: float
    output_tail: str

    @classmethod
    def of(cls, done: CommandResult) -> "CommandRecord":
        return cls(done.command, done.returncode, done.timed_out, done.duration_s, tail(done.output, TAIL))

    def as_json(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "returncode": self.returncode,
            "timed_out": self.timed_out,
            "duration_s": round(self.duration_s, 3),
            "output_tail": self.output_tail,
        }


@dataclass(frozen=True)
class StrategyChoice:
    """The prompt strategy used instead of the requested one, and why."""

    requested: str
    used: str
    why: str

    def as_json(self) -> dict[str, Any]:
        return {"requested": self.requested, "used": self.used, "why": self.why}


@dataclass(frozen=True)
class AgentOutcome:
    """How the agent's loop ended and what it cost."""

    exit_status: str
    tokens: int
    cost: float
    steps: int
    """Model calls: the run's `steps` column (what `max_edits` limits)."""
    trajectory: dict[str, Any]
    """The run's `trajectory_data` (see `agent.trajectory`)."""
    agent_exit: str = "submitted"
    """The named outcome (see `agent.AGENT_EXITS`)."""
    commands: int = 0
    """Commands the agent ran."""
    message: str | None = None
    """One line saying why the agent did not submit."""
    error: str | None = None
    """The full text of the error that ended the loop, if one did."""
    action_format: str | None = None
    format_errors: int = 0

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "agent_exit_status": self.exit_status,
            "agent_exit": self.agent_exit,
            "model_calls": self.steps,
            "commands": self.commands,
            "format_errors": self.format_errors,
        }
        if self.action_format is not None:
            data["action_format"] = self.action_format
        if self.error is not None:
            data["agent_error"] = self.error
        return data


@dataclass(frozen=True)
class Change:
    """The run's change against its base commit: its size, its patch, its split into source and tests."""

    stats: DiffStats
    record: ChangeRecord


@dataclass(frozen=True)
class TestOutcome:
    """The test command over the run's source change; `record` None when there was no test command."""

    record: TestRecord | None
    detected: bool
    """The command was guessed from the repository rather than given with the solve."""

    @property
    def passed(self) -> bool | None:
        return self.record.passed if self.record is not None else None

    def as_json(self) -> dict[str, Any]:
        if self.record is None:
            return {"command": None, "detected": self.detected}
        return self.record.as_json() | {"detected": self.detected}


@dataclass(frozen=True)
class RunOutcome:
    """A finished run (completed or failed): its status and error, and the parts its steps got to produce."""

    status: str
    error: str | None
    latency_ms: int
    about: RunAbout
    base_commit: str | None = None
    sandbox_id: str | None = None
    setup: CommandRecord | None = None
    strategy: StrategyChoice | None = None
    agent: AgentOutcome | None = None
    change: Change | None = None
    test: TestOutcome | None = None
    reproduction: tuple[ReproductionCheck, ...] | None = None
    """None when the reproduction tests were not checked (no test command, or the run stopped before)."""

    def columns(self) -> dict[str, Any]:
        """The values of the run's row: the columns of the parts there are, and `diagnostics`."""
        values: dict[str, Any] = {}
        if self.sandbox_id is not None:
            values["sandbox_id"] = self.sandbox_id
        if self.agent is not None:
            values.update(
                tokens=self.agent.tokens,
                cost=self.agent.cost,
                steps=self.agent.steps,
                commands=self.agent.commands,
                agent_exit=self.agent.agent_exit,
                trajectory_data=self.agent.trajectory,
            )
        if self.change is not None:
            values.update(loc_changed=self.change.stats.loc_changed, files_changed=self.change.stats.files_changed)
        if self.test is not None:
            values["tests_passed"] = self.test.passed
        return values | {"latency_ms": self.latency_ms, "diagnostics": self.diagnostics()}

    def diagnostics(self) -> dict[str, Any]:
        """The run's `diagnostics` JSON: the one serializer of its result (`RunDiagnostics` reads it back)."""
        data: dict[str, Any] = {"versions": self.about.versions, "model": self.about.model, "worker": self.about.worker}
        if self.base_commit is not None:
            data["base_commit"] = self.base_commit
        if self.setup is not None:
            data["setup"] = self.setup.as_json()
        if self.strategy is not None:
            data["strategy"] = self.strategy.as_json()
        if self.agent is not None:
            data.update(self.agent.as_json())
        if self.change is not None:
            data.update(
                patch=self.change.stats.patch,
                patch_truncated=self.change.stats.patch_truncated,
                change=self.change.record.as_json(),
            )
        if self.test is not None:
            data["test"] = self.test.as_json()
        if self.reproduction is not None:
            data["reproduction"] = [check.as_json() for check in self.reproduction]
        return data

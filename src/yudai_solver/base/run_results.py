"""The stored shape of a run's results and of a solve's baseline, and its reading back as types.

A run's `diagnostics` JSON is written once, by `execution.outcome.RunOutcome.diagnostics`; the PR, the ranking's
evidence, the verification and the web page read it. Here the parts both sides share (`ChangeRecord`,
`ReproductionCheck`, `Baseline`) and the typed view of a stored row (`RunDiagnostics`), so no reader spells keys.
A part that is missing reads as absent (None or empty): runs that failed early, and older rows, lack parts.
"""

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ChangeRecord:
    """A run's change split into source and test files (`diagnostics.change`), with its source fingerprint."""

    source_files: tuple[str, ...] = ()
    tests_added: tuple[str, ...] = ()
    tests_modified: tuple[str, ...] = ()
    fingerprint: str | None = None
    """The normalised source change (see `solving.agreement`); None when it was not computed."""
    source_loc: int | None = None
    """Lines inserted plus deleted in source files only: a thorough reproduction test is no handicap."""

    def as_json(self) -> dict[str, Any]:
        return {
            "source_files": list(self.source_files),
            "tests_added": list(self.tests_added),
            "tests_modified": list(self.tests_modified),
            "fingerprint": self.fingerprint,
            "source_loc": self.source_loc,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ChangeRecord":
        return cls(
            tuple(data.get("source_files") or ()),
            tuple(data.get("tests_added") or ()),
            tuple(data.get("tests_modified") or ()),
            data.get("fingerprint"),
            data.get("source_loc"),
        )


@dataclass(frozen=True)
class ReproductionCheck:
    """A test file the run added, run alone with the run's own fix (an item of `diagnostics.reproduction`)."""

    path: str
    passes_with_fix: bool | None
    """None when it could not run alone (the runner cannot target one file)."""
    detail: str

    def as_json(self) -> dict[str, Any]:
        return {"path": self.path, "passes_with_fix": self.passes_with_fix, "detail": self.detail}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ReproductionCheck":
        return cls(data.get("path", ""), data.get("passes_with_fix"), data.get("detail", ""))


@dataclass(frozen=True)
class StoredTest:
    """`diagnostics.test` read back: the test command over the run's source change, or the lack of one."""

    command: str | None
    """None: no test command was given or detected, and nothing ran."""
    detected: bool | None
    """True when the command was guessed from the repository rather than given; None when not recorded."""
    returncode: int | None = None
    timed_out: bool | None = None
    output_tail: str = ""
    report: dict[str, Any] | None = None
    """The per-test report as stored (`solving.testreport.report_json`); `report_from_json` reads it."""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "StoredTest":
        return cls(
            data.get("command"),
            data.get("detected"),
            data.get("returncode"),
            data.get("timed_out"),
            data.get("output_tail") or "",
            data.get("report"),
        )


@dataclass(frozen=True)
class RunDiagnostics:
    """The parts of a stored run's `diagnostics` that code reads, as types."""

    base_commit: str | None = None
    patch: str = ""
    patch_truncated: bool = False
    change: ChangeRecord | None = None
    test: StoredTest | None = None
    reproduction: tuple[ReproductionCheck, ...] = ()
    pr_branch: str | None = None
    pr_error: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> "RunDiagnostics":
        data = data or {}
        change, test = data.get("change"), data.get("test")
        return cls(
            base_commit=data.get("base_commit") or None,
            patch=data.get("patch") or "",
            patch_truncated=bool(data.get("patch_truncated")),
            change=ChangeRecord.from_json(change) if change is not None else None,
            test=StoredTest.from_json(test) if test is not None else None,
            reproduction=tuple(ReproductionCheck.from_json(check) for check in data.get("reproduction") or ()),
            pr_branch=data.get("pr_branch"),
            pr_error=data.get("pr_error"),
        )


@dataclass(frozen=True)
class Baseline:
    """A solve's baseline (`solves.baseline`): its test command on the untouched checkout, measured once per solve.

    `state` is "measured", "no test command" or "error" (the measuring failed: `error` says why), or
    "measuring" while the run that claimed it measures it.
    """

    state: str
    test_command: str | None
    tests_passed: bool | None = None
    returncode: int | None = None
    timed_out: bool | None = None
    output_tail: str | None = None
    report: dict[str, Any] | None = None
    """The per-test report as stored (`solving.testreport.report_json`)."""
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        if self.state == "error":
            return {"state": self.state, "test_command": self.test_command, "error": self.error}
        if self.state != "measured":
            return {"state": self.state, "test_command": self.test_command, "tests_passed": self.tests_passed}
        return {
            "state": self.state,
            "test_command": self.test_command,
            "tests_passed": self.tests_passed,
            "returncode": self.returncode,
            "timed_out": self.timed_out,
            "output_tail": self.output_tail,
            "report": self.report,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> "Baseline | None":
        if not data:
            return None
        return cls(
            data.get("state", ""),
            data.get("test_command"),
            data.get("tests_passed"),
            data.get("returncode"),
            data.get("timed_out"),
            data.get("output_tail"),
            data.get("report"),
            data.get("error"),
        )

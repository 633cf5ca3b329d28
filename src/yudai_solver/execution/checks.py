"""A run's own checks once its agent is done: its change split into source and tests, the source part tested over
the base's own test files, and the run's new test files (its reproduction tests) run against its own fix.

Existing tests are the referee, not the player: test files the run changed or deleted are put back as the base has
them, and the test files it added are taken out, before the test command runs. Then the added files go back in
and each runs alone: a reproduction test must pass with its own run's fix (whether it fails on the base is checked
later, once per solve, by `verification`).
"""

from dataclasses import dataclass

from yudai_solver.sandboxes import Sandbox
from yudai_solver.execution.testpaths import ChangeSplit, split_patch
from yudai_solver.execution.testreport import TestReport, parse, runner_of, targeted_command
from yudai_solver.execution.agreement import fingerprint
from yudai_solver.execution.validation import DiffStats, apply_patch_text, read_regular, restore_tests, tail

TAIL = 2000
MAX_REPRODUCTION_TESTS = 5
MAX_IDS = 200
MAX_FINGERPRINT_FILES = 50
MAX_FINGERPRINT_BYTES = 1024 * 1024


@dataclass(frozen=True)
class TestRecord:
    """One run of a test command: what ran, how it ended, and its per-test report where the runner gives one."""

    command: str
    returncode: int
    timed_out: bool
    duration_s: float
    output_tail: str
    report: TestReport

    @property
    def passed(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def as_json(self) -> dict:
        return {"command": self.command, "returncode": self.returncode, "timed_out": self.timed_out,
                "duration_s": round(self.duration_s, 3), "output_tail": self.output_tail,
                "report": report_json(self.report)}


@dataclass(frozen=True)
class ReproductionCheck:
    """A test file the run added, run alone with the run's own fix."""

    path: str
    passes_with_fix: bool | None
    """None when it could not run alone (the runner cannot target one file)."""
    detail: str

    def as_json(self) -> dict:
        return {"path": self.path, "passes_with_fix": self.passes_with_fix, "detail": self.detail}


def run_tests(sandbox: Sandbox, command: str, timeout: float) -> TestRecord:
    done = sandbox.run(command, timeout=timeout)
    report = parse(done.output, runner=runner_of(command), returncode=done.returncode, truncated=done.truncated)
    return TestRecord(command, done.returncode, done.timed_out, done.duration_s, tail(done.output, TAIL), report)


def report_json(report: TestReport) -> dict:
    failed = sorted(report.failed)
    return {"runner": report.runner, "complete": report.complete, "failed": failed[:MAX_IDS],
            "failed_ids_count": len(failed), "passed_count": report.passed_count,
            "failed_count": report.failed_count}


def report_from_json(data: dict | None) -> TestReport | None:
    """The stored report, or None when it was not complete enough to compare test by test."""
    if not data or not data.get("complete") or data.get("failed_ids_count", 0) > len(data.get("failed", [])):
        return None
    return TestReport(runner=data.get("runner"), failed=frozenset(data["failed"]), passed_count=data.get("passed_count"),
                      failed_count=data.get("failed_count"), complete=True)


def split_change(stats: DiffStats, test_paths: list[str] | None) -> ChangeSplit:
    patch = stats.patch
    if stats.patch_truncated:  # the last file's section was cut: keep the whole ones
        patch = patch[: patch.rfind("\ndiff --git ") + 1]
    return split_patch(patch, globs=test_paths)


def source_fingerprint(workspace, split: ChangeSplit) -> str | None:
    """The run's source change, normalised (see `agreement`), read from its workspace without following links."""
    if not split.source_files or len(split.source_files) > MAX_FINGERPRINT_FILES:
        return None
    contents = {}
    for path in split.source_files:
        data = read_regular(workspace, path, MAX_FINGERPRINT_BYTES)
        contents[path] = data.decode("utf-8", errors="replace") if data is not None else None
    return fingerprint(contents)


def validate_source(sandbox: Sandbox, workspace, base_commit: str, split: ChangeSplit, command: str,
                    timeout: float) -> TestRecord:
    """The test command over the run's source change and the base's own test files."""
    if split.tests_modified or split.tests_added:
        restore_tests(workspace, base_commit, modified=split.tests_modified, added=split.tests_added)
    return run_tests(sandbox, command, timeout)


def check_own_reproductions(sandbox: Sandbox, workspace, split: ChangeSplit, command: str,
                            timeout: float) -> list[ReproductionCheck]:
    """Put the run's added test files back and run each alone against the run's fix."""
    if not split.tests_added:
        return []
    apply_patch_text(workspace, split.test_patch)
    return [_check_one(sandbox, command, path, timeout) for path in split.tests_added[:MAX_REPRODUCTION_TESTS]]


def _check_one(sandbox: Sandbox, command: str, path: str, timeout: float) -> ReproductionCheck:
    targeted = targeted_command(command, path)
    if targeted is None:
        return ReproductionCheck(path, None, "the test command cannot run one test file alone")
    record = run_tests(sandbox, targeted, timeout)
    return ReproductionCheck(path, record.passed, tail(record.output_tail, 500))

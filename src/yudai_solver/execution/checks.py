"""A run's own checks once its agent is done: its change split into source and tests, the source part tested over
the base's own test files, and the run's new test files (its reproduction tests) run against its own fix.

Existing tests are the referee, not the player: test files the run changed or deleted are put back as the base has
them, and the test files it added are taken out, before the test command runs. Then the added files go back in
and each runs alone: a reproduction test must pass with its own run's fix (whether it fails on the base is checked
later, once per solve, by `verification`).
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yudai_solver.base.run_results import ChangeRecord, ReproductionCheck
from yudai_solver.execution.validation import DiffStats, apply_patch_text, read_regular, restore_tests, tail
from yudai_solver.sandboxes import Sandbox
from yudai_solver.solving.agreement import fingerprint
from yudai_solver.solving.testpaths import ChangeSplit, split_patch
from yudai_solver.solving.testreport import TestReport, parse, report_json, runner_of, targeted_command

TAIL = 2000
MAX_REPRODUCTION_TESTS = 5
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

    def as_json(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "returncode": self.returncode,
            "timed_out": self.timed_out,
            "duration_s": round(self.duration_s, 3),
            "output_tail": self.output_tail,
            "report": report_json(self.report),
        }


def run_tests(sandbox: Sandbox, command: str, timeout: float) -> TestRecord:
    done = sandbox.run(command, timeout=timeout)
    report = parse(done.output, runner=runner_of(command), returncode=done.returncode, truncated=done.truncated)
    return TestRecord(command, done.returncode, done.timed_out, done.duration_s, tail(done.output, TAIL), report)


def split_change(stats: DiffStats, test_paths: list[str] | None) -> ChangeSplit:
    patch = stats.patch
    if stats.patch_truncated:  # the last file's section was cut: keep the whole ones
        patch = patch[: patch.rfind("\ndiff --git ") + 1]
    return split_patch(patch, globs=test_paths)


def change_record(workspace: Path, split: ChangeSplit) -> ChangeRecord:
    """The run's change as stored: its split, and its source fingerprint read from its workspace."""
    return ChangeRecord(
        tuple(split.source_files),
        tuple(split.tests_added),
        tuple(split.tests_modified),
        source_fingerprint(workspace, split),
        changed_lines(split.source_patch),
    )


def changed_lines(patch: str) -> int:
    """Lines inserted plus lines deleted in a patch's text hunks (binary data and file headers aside)."""
    count, in_hunk = 0, False
    for line in patch.splitlines():
        if line.startswith("diff --git "):
            in_hunk = False
        elif line.startswith("@@"):
            in_hunk = True
        elif in_hunk and line[:1] in ("+", "-"):
            count += 1
    return count


def source_fingerprint(workspace: Path, split: ChangeSplit) -> str | None:
    """The run's source change, normalised (see `agreement`), read from its workspace without following links."""
    if not split.source_files or len(split.source_files) > MAX_FINGERPRINT_FILES:
        return None
    contents: dict[str, str | None] = {}
    for path in split.source_files:
        data = read_regular(workspace, path, MAX_FINGERPRINT_BYTES)
        contents[path] = data.decode("utf-8", errors="replace") if data is not None else None
    return fingerprint(contents)


def validate_source(
    sandbox: Sandbox, workspace: Path, base_commit: str, split: ChangeSplit, command: str, timeout: float
) -> TestRecord:
    """The test command over the run's source change and the base's own test files."""
    if split.tests_modified or split.tests_added:
        restore_tests(workspace, base_commit, modified=split.tests_modified, added=split.tests_added)
    return run_tests(sandbox, command, timeout)


def check_own_reproductions(
    sandbox: Sandbox, workspace: Path, split: ChangeSplit, command: str, timeout: float
) -> list[ReproductionCheck]:
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

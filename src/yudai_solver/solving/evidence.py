"""Each run's evidence for the ranking, gathered from its row, its diagnostics, the baseline and the verification.

Per-test comparison (like SWE-bench's FAIL_TO_PASS / PASS_TO_PASS) needs both the baseline's and the run's report
to be complete; otherwise the exit status decides, as it did before reports existed.
"""

from dataclasses import dataclass
from typing import Any, TypedDict

from yudai_solver.base import statuses
from yudai_solver.base.run_results import Baseline, RunDiagnostics, StoredTest
from yudai_solver.solving.ranking import Evidence
from yudai_solver.solving.testreport import TestReport, compare, report_from_json


@dataclass(frozen=True)
class RunFacts:
    """The columns and the diagnostics of one run that the ranking needs."""

    id: str
    model: str
    status: str
    tests_passed: bool | None
    loc_changed: int | None
    files_changed: int | None
    tokens: int | None
    latency_ms: int | None
    error_message: str | None
    diagnostics: dict[str, Any] | None


class _TestEvidence(TypedDict, total=False):
    """The `Evidence` fields a completed run's test results fill in."""

    tests_inconclusive: bool
    regressions: tuple[str, ...]
    regressions_in_changed: tuple[str, ...]
    base_failures_left: tuple[str, ...]


def gather(
    runs: list[RunFacts],
    *,
    baseline: dict[str, Any] | None,
    verification: dict[str, Any] | None,
    agreement: dict[str, int],
    judged: str | None,
) -> list[Evidence]:
    valid = [t["id"] for t in (verification or {}).get("tests", []) if t.get("valid")]
    matrix = (verification or {}).get("matrix", {})
    measured = Baseline.from_json(baseline)
    base = report_from_json(measured.report if measured else None)
    return [_evidence(run, base, valid, matrix.get(run.id, {}), agreement.get(run.id, 0), judged) for run in runs]


def _evidence(
    run: RunFacts,
    base: TestReport | None,
    valid: list[str],
    cells: dict[str, bool | None],
    agreement: int,
    judged: str | None,
) -> Evidence:
    diagnostics = RunDiagnostics.from_json(run.diagnostics)
    change = diagnostics.change
    modified = change.tests_modified if change is not None else ()
    tests = _test_evidence(run, base, diagnostics.test, frozenset(modified))
    return Evidence(
        id=run.id,
        model=run.model,
        status=run.status,
        tests_passed=run.tests_passed,
        loc_changed=run.loc_changed,
        files_changed=run.files_changed,
        tokens=run.tokens,
        latency_ms=run.latency_ms,
        error=run.error_message,
        source_changed=bool(change.source_files) if change is not None else bool(run.files_changed),
        source_loc=change.source_loc if change is not None else None,
        fingerprint=change.fingerprint if change is not None else None,
        tests_modified=len(modified),
        reproduction_passed=sum(cells.get(t) is True for t in valid),
        reproduction_total=len(valid),
        agreement=agreement,
        judged=run.id == judged,
        **tests,
    )


def _test_evidence(
    run: RunFacts, base: TestReport | None, test: StoredTest | None, modified: frozenset[str]
) -> _TestEvidence:
    if run.status != statuses.COMPLETED or run.tests_passed is None:
        return {}
    now = report_from_json(test.report if test is not None else None)
    try:
        result = compare(base, now, changed_test_files=modified) if base and now else None
    except ValueError:  # reports of different runners: no test-by-test comparison
        result = None
    if result is None:
        return {"tests_inconclusive": not run.tests_passed}
    return {
        "regressions": tuple(result.regressions),
        "regressions_in_changed": tuple(result.regressions_in_changed_tests),
        "base_failures_left": tuple(result.still_failing),
    }

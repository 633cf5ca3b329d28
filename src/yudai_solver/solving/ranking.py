"""Champion selection: who qualifies, one ordered list of criteria, and a reason that names the deciding one.

A run qualifies when it completed, changed source code (tests alone or nothing never win), broke no test it did
not itself change, and fixed every test that failed on the base. Qualified runs are ordered by `CRITERIA`, which
also writes the ranking's JSON, so the order and its description cannot drift apart.
"""

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from yudai_solver.base.statuses import COMPLETED

_HUGE = 2**62


@dataclass(frozen=True)
class Evidence:
    """What a run showed, gathered by the reducer from the run, the baseline and the solve's verification."""

    id: str
    model: str
    status: str
    tests_passed: bool | None
    loc_changed: int | None
    files_changed: int | None
    tokens: int | None
    latency_ms: int | None
    error: str | None = None
    source_changed: bool = False
    tests_modified: int = 0
    regressions: tuple[str, ...] = ()
    """Tests that passed on the base and fail now, in test files the run did not change."""
    regressions_in_changed: tuple[str, ...] = ()
    """The same, in test files the run changed (an intended change of behaviour: shown, ranked lower)."""
    base_failures_left: tuple[str, ...] = ()
    """Tests that failed on the base and still fail."""
    tests_inconclusive: bool = False
    """No per-test comparison was possible and the test command failed."""
    reproduction_passed: int = 0
    reproduction_total: int = 0
    agreement: int = 1
    """How many qualified runs (this one included) landed on the same normalised source change."""
    judged: bool = False
    source_loc: int | None = None
    """Changed lines in source files only; None for runs stored before it was recorded (then `loc_changed`)."""
    fingerprint: str | None = None

    @property
    def lines(self) -> int | None:
        return self.source_loc if self.source_loc is not None else self.loc_changed


@dataclass(frozen=True)
class Criterion:
    name: str
    key: Callable[[Evidence], int | str]
    says: Callable[[Evidence], str]


CRITERIA: tuple[Criterion, ...] = (
    Criterion(
        "more reproduction tests passed",
        lambda e: -e.reproduction_passed,
        lambda e: f"passes {e.reproduction_passed} of {e.reproduction_total} reproduction tests",
    ),
    Criterion(
        "no regression in a test it changed",
        lambda e: len(e.regressions_in_changed),
        lambda e: f"{len(e.regressions_in_changed)} regressions in tests it changed",
    ),
    Criterion(
        "no existing test changed",
        lambda e: e.tests_modified,
        lambda e: f"changed {e.tests_modified} existing test files",
    ),
    Criterion("more runs agree", lambda e: -e.agreement, lambda e: f"{e.agreement} runs agree"),
    Criterion(
        "the judge's pick",
        lambda e: 0 if e.judged else 1,
        lambda e: "picked by the judge" if e.judged else "not picked by the judge",
    ),
    Criterion("fewer changed source lines", lambda e: _n(e.lines), lambda e: f"{e.lines} changed source lines"),
    Criterion("fewer files", lambda e: _n(e.files_changed), lambda e: f"{e.files_changed} files"),
    Criterion("fewer tokens", lambda e: _n(e.tokens), lambda e: f"{e.tokens} tokens"),
    Criterion("lower latency", lambda e: _n(e.latency_ms), lambda e: f"{e.latency_ms} ms"),
    Criterion("id", lambda e: e.id, lambda e: f"id {e.id}"),
)
JUDGE_INDEX = next(i for i, c in enumerate(CRITERIA) if c.name == "the judge's pick")


@dataclass(frozen=True)
class Ranking:
    order: list[Evidence]
    champion: Evidence | None
    reason: str
    why_not: dict[str, str]
    """For each run that does not qualify, the deciding reason."""

    def as_json(self) -> dict[str, Any]:
        return {
            "champion_run_id": self.champion.id if self.champion else None,
            "reason": self.reason,
            "qualify": [
                "completed",
                "changed source code",
                "no regression in a test it did not change",
                "fixed every test that failed on the base",
            ],
            "criteria": [c.name for c in CRITERIA],
            "order": [
                {
                    "rank": i + 1,
                    "run_id": e.id,
                    "model": e.model,
                    "status": e.status,
                    "qualified": e.id not in self.why_not,
                    "why_not": self.why_not.get(e.id),
                    **_evidence_json(e),
                }
                for i, e in enumerate(self.order)
            ],
        }


def _n(value: int | None) -> int:
    return _HUGE if value is None else value


def disqualification(e: Evidence) -> str | None:
    """Why `e` cannot be champion, or None when it qualifies."""
    if e.status != COMPLETED:
        return f"{e.status}" + (f": {e.error}" if e.error else "")
    if not e.source_changed:
        return "no source change" if not e.files_changed else "changed only tests"
    if e.regressions:
        return f"broke {len(e.regressions)} tests it did not change: {', '.join(e.regressions[:3])}"
    if e.base_failures_left:
        return (
            f"{len(e.base_failures_left)} tests failing on the base still fail: {', '.join(e.base_failures_left[:3])}"
        )
    if e.tests_inconclusive:
        return "the tests failed"
    return None


def sort_key(e: Evidence) -> tuple[int | str, ...]:
    return tuple(c.key(e) for c in CRITERIA)


def rank(evidence: list[Evidence]) -> Ranking:
    """Qualified runs first, ordered by CRITERIA; then the rest, in the same order."""
    why_not = {e.id: why for e in evidence if (why := disqualification(e)) is not None}
    order = sorted(evidence, key=lambda e: (e.id in why_not, e.status != COMPLETED, sort_key(e)))
    qualified = [e for e in order if e.id not in why_not]
    champion = qualified[0] if qualified else None
    return Ranking(order, champion, _reason(champion, qualified, evidence, why_not), why_not)


def tied_at_top(evidence: list[Evidence]) -> list[Evidence]:
    """The qualified runs that the criteria before the judge cannot tell from the best one."""
    qualified = sorted((e for e in evidence if disqualification(e) is None), key=sort_key)
    if not qualified:
        return []
    head = sort_key(qualified[0])[:JUDGE_INDEX]
    return [e for e in qualified if sort_key(e)[:JUDGE_INDEX] == head]


def _reason(
    champion: Evidence | None, qualified: list[Evidence], evidence: list[Evidence], why_not: dict[str, str]
) -> str:
    if not evidence:
        return "no run to rank"
    if champion is None:
        reasons = "; ".join(f"run {run_id[:8]}: {why}" for run_id, why in sorted(why_not.items()))
        return f"no run qualifies ({len(evidence)} runs): {reasons}"
    summary = "; ".join(_facts(champion) + [f"{champion.lines} source lines in {champion.files_changed} files"])
    rival = _rival(champion, qualified)
    if rival is None:
        alike = len(qualified) - 1
        others = f"{alike} other qualified runs made the same change" if alike else "the only run that qualifies"
        return f"{summary}; {others} ({len(evidence) - len(qualified)} runs do not qualify)"
    decider = _deciding(champion, rival)
    return (
        f"{summary}; chosen over run {rival.id[:8]} for {decider.name} ({decider.says(champion)} vs "
        f"{decider.says(rival)})"
    )


def _rival(champion: Evidence, qualified: list[Evidence]) -> Evidence | None:
    """The best qualified run with a different change: what the champion really had to beat."""
    return next((e for e in qualified[1:] if e.fingerprint is None or e.fingerprint != champion.fingerprint), None)


def _deciding(first: Evidence, second: Evidence) -> Criterion:
    return next(c for c in CRITERIA if c.key(first) != c.key(second))


def _facts(e: Evidence) -> list[str]:
    shown = [e.reproduction_total > 0, bool(e.regressions_in_changed), e.tests_modified > 0, e.agreement > 1, e.judged]
    return [c.says(e) for c, show in zip(CRITERIA[: len(shown)], shown, strict=True) if show]


def _evidence_json(e: Evidence) -> dict[str, Any]:
    data = asdict(e)
    for key in ("id", "model", "status", "error"):
        data.pop(key)
    for key in ("regressions", "regressions_in_changed", "base_failures_left"):
        data[key] = list(data[key])[:20]
    return data

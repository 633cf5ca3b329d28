"""Champion selection: a deterministic order over a solve's runs, and the reason for the winner."""

from dataclasses import dataclass

from .statuses import COMPLETED

RANK_FIELDS = ("tests_passed", "loc_changed", "files_changed", "tokens", "latency_ms")
_HUGE = 2**62


@dataclass(frozen=True)
class Outcome:
    id: str
    model: str
    status: str
    tests_passed: bool | None
    loc_changed: int | None
    files_changed: int | None
    tokens: int | None
    latency_ms: int | None


@dataclass(frozen=True)
class Ranking:
    order: list[Outcome]
    champion: Outcome | None
    reason: str

    def as_json(self) -> dict:
        return {
            "champion_run_id": self.champion.id if self.champion else None,
            "reason": self.reason,
            "criteria": ["tests passed", "fewer changed lines", "fewer files", "fewer tokens", "lower latency", "id"],
            "order": [{"rank": i + 1, "run_id": o.id, "model": o.model, "status": o.status,
                       **{f: getattr(o, f) for f in RANK_FIELDS}} for i, o in enumerate(self.order)],
        }


def sort_key(o: Outcome) -> tuple:
    """Completed before the rest, tests passed first, then smaller and cheaper, then id for a total order."""
    return (o.status != COMPLETED, o.tests_passed is not True, _n(o.loc_changed), _n(o.files_changed),
            _n(o.tokens), _n(o.latency_ms), o.id)


def _n(value: int | None) -> int:
    return _HUGE if value is None else value


def rank(outcomes: list[Outcome], *, tests_ran: bool) -> Ranking:
    """Order the runs and pick a champion: tests passed, or, where no test command exists, a non-empty change."""
    order = sorted(outcomes, key=sort_key)
    qualifies = _passed if tests_ran else _changed
    champion = next((o for o in order if o.status == COMPLETED and qualifies(o)), None)
    return Ranking(order, champion, _reason(champion, order, tests_ran))


def _passed(o: Outcome) -> bool:
    return o.tests_passed is True


def _changed(o: Outcome) -> bool:
    return (o.files_changed or 0) > 0


def _reason(champion: Outcome | None, order: list[Outcome], tests_ran: bool) -> str:
    if champion is None and not order:
        return "no run to rank"
    if champion is None:
        done = sum(o.status == COMPLETED for o in order)
        want = "passed the tests" if tests_ran else "changed any file (no test command was found)"
        return f"no run {want}: {done} of {len(order)} runs completed"
    passing = sum(o.status == COMPLETED and _passed(o) for o in order)
    basis = f"tests passed ({passing} of {len(order)} runs passed)" if tests_ran else "no test command; non-empty change"
    return (f"{basis}; chosen for the smallest change: {champion.loc_changed} lines in {champion.files_changed} "
            f"files, {champion.tokens} tokens, {champion.latency_ms} ms")

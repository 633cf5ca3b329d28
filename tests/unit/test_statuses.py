import pytest

from yudai_solver.base import statuses
from yudai_solver.base.errors import InvalidTransition
from yudai_solver.base.models import Solve, SolveRun


def run(status="pending") -> SolveRun:
    return SolveRun(id="r", status=status, model="m", temperature=0, max_edits=1, evolution="baseline")


def test_a_run_goes_pending_running_completed_with_timestamps():
    r = run()
    statuses.transition(r, "running")
    assert r.started_at is not None and r.completed_at is None
    statuses.transition(r, "completed")
    assert r.status == "completed" and r.completed_at >= r.started_at


@pytest.mark.parametrize("final", ["completed", "failed", "cancelled"])
@pytest.mark.parametrize("target", ["pending", "running", "completed", "failed", "cancelled"])
def test_nothing_leaves_a_final_status(final, target):
    with pytest.raises(InvalidTransition, match=f"from {final} to {target}"):
        statuses.transition(run(final), target)
    with pytest.raises(InvalidTransition):
        statuses.transition(Solve(id="s", status=final), target)


def test_a_pending_run_cannot_complete_without_running():
    with pytest.raises(InvalidTransition):
        statuses.transition(run(), "completed")


def test_a_lost_running_run_can_be_queued_again_and_forgets_its_start():
    r = run()
    statuses.transition(r, "running")
    statuses.transition(r, "pending")
    assert r.status == "pending" and r.started_at is None


def test_failing_records_the_reason():
    r = run("running")
    statuses.transition(r, "failed", error="worker lost")
    assert (r.status, r.error_message) == ("failed", "worker lost")


def test_tables_cover_every_status():
    assert set(statuses.RUN_TRANSITIONS) == set(statuses.SOLVE_TRANSITIONS) == set(statuses.ALL)

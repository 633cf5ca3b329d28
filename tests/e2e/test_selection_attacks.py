"""A hostile workspace against the checks that read and restore it on the worker (real sandboxed commands).

Each attack is what an agent steered by a malicious issue or repository could do after its last step: the worker
then reads the changed source files (agreement) and puts the base's tests back (validation) in that workspace.
"""

import time

import pytest
from sqlalchemy import select

from yudai_solver.base.models import SolveRun
from yudai_solver.entry.demo import TEST_COMMAND
from yudai_solver.testing.scripted import Step

pytestmark = pytest.mark.slow


def runs_by_model(factory, solve_id) -> dict[str, SolveRun]:
    with factory() as session:
        return {r.model: r for r in session.scalars(select(SolveRun).where(SolveRun.solve_id == solve_id))}


def solve(pipeline, scripts, name, command):
    scripts[name] = [Step(command, "attack")]
    pipeline.add_model(name)
    solve_id = pipeline.start(matrix={"models": [name]}, test_command=TEST_COMMAND)
    return pipeline.wait(solve_id, timeout=90), runs_by_model(pipeline.factory, solve_id)[name]


def test_a_fifo_in_place_of_a_changed_source_file_does_not_block_the_worker(pipeline, scripts):
    started = time.monotonic()
    _, run = solve(pipeline, scripts, "fifo", "rm calc.py && mkfifo calc.py")
    # git refuses to diff a FIFO, so the run fails with that reason instead of the worker reading from it.
    assert run.status == "failed" and "calc.py" in run.error_message
    assert time.monotonic() - started < 60


def test_a_symlink_to_an_unbounded_device_is_not_read(pipeline, scripts):
    _, run = solve(pipeline, scripts, "zero", "rm calc.py && ln -s /dev/zero calc.py")
    assert run.status == "completed", run.error_message
    assert run.diagnostics["change"]["fingerprint"]  # computed as "not readable", not from /dev/zero's bytes


def test_restoring_a_test_file_replaced_by_a_link_never_writes_through_it(pipeline, scripts, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("outside the workspace\n")
    _, run = solve(
        pipeline,
        scripts,
        "link",
        f"rm test_calc.py && ln -s {victim} test_calc.py && sed -i 's/return a - b/return a + b/' calc.py",
    )
    assert run.diagnostics["change"]["tests_modified"] == ["test_calc.py"]
    assert victim.read_text() == "outside the workspace\n"
    # The base's test file was put back in the link's place, so the fix was tested by the real tests.
    assert run.status == "completed" and run.tests_passed is True, run.error_message

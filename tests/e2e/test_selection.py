"""The champion on evidence: reproduction tests cross-checked, existing tests as the referee, no champion from nothing.

Every solve here goes through the whole pipeline (scripted models through the real litellm client, local sandbox,
real git, in-process dispatcher). Whether the champion is right is decided by a HIDDEN test that the service never
sees: it runs on a fresh clone with the champion's patch applied, after the solve.
"""

import subprocess
import sys

import pytest
from sqlalchemy import select

from yudai_solver.base.models import SolveRun
from yudai_solver.entry.demo import TEST_COMMAND as DEMO_TEST_COMMAND
from yudai_solver.testing.scripted import Step

pytestmark = pytest.mark.slow

TEST_COMMAND = "python3 -m unittest discover -q"
CALC = "def add(a, b):\n    return a - b\n\n\ndef sub(a, b):\n    return a - b\n"
COVERED = (
    "import unittest\n\nfrom calc import sub\n\n\nclass SubTest(unittest.TestCase):\n"
    "    def test_sub(self):\n        self.assertEqual(sub(5, 3), 2)\n"
)
HIDDEN = "from calc import add\nassert add(2, 3) == 5 and add(-4, 1) == -3 and add(0, 0) == 0\n"
REPRO = (
    "cat > test_issue_add.py <<'EOF'\nimport unittest\n\nfrom calc import add\n\n\n"
    "class AddTest(unittest.TestCase):\n    def test_add_adds(self):\n        self.assertEqual(add(2, 3), 5)\nEOF"
)
VERBOSE = (
    "python3 - <<'EOF'\nimport pathlib\np = pathlib.Path('calc.py')\n"
    "p.write_text(p.read_text().replace('def add(a, b):\\n    return a - b\\n', "
    '\'def add(a, b):\\n    """The sum of a and b."""\\n    total = a\\n    total = total + b\\n'
    "    return total\\n'))\nEOF"
)
SCRIPTS = {
    "fix-with-test": [
        Step(REPRO, "Reproduce first."),
        Step("python3 -m unittest -q test_issue_add.py"),
        Step("sed -i '2s/return a - b/return a + b/' calc.py", "Fix add."),
        Step("python3 -m unittest -q test_issue_add.py"),
    ],
    "same-fix": [Step("cat calc.py"), Step("sed -i '2s/return a - b/return a + b/' calc.py", "Fix add.")],
    "verbose-fix": [Step("cat calc.py"), Step(VERBOSE, "Rewrite add.")],
    "noop": [Step("cat calc.py"), Step(TEST_COMMAND)],
    "overfit": [Step("sed -i '2s/return a - b/return 5 if (a, b) == (2, 3) else a - b/' calc.py", "Special case.")],
    "tests-only": [Step(REPRO, "Only a test.")],
}


def git(repo, *args) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def uncovered_repository(pipeline):
    """The "Why" of the issue: add() subtracts and the repository's tests only check sub()."""
    repo = pipeline.repo
    (repo / "calc.py").write_text(CALC)
    (repo / "test_calc.py").write_text(COVERED)
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "add() subtracts; tests cover sub()")
    return repo


def hidden_check_passes(pipeline, patch: str, tmp_path) -> bool:
    clone = tmp_path / "hidden"
    subprocess.run(["git", "clone", "-q", str(pipeline.repo), str(clone)], check=True)
    if patch:
        subprocess.run(["git", "apply", "-"], input=patch, text=True, cwd=clone, check=True)
    done = subprocess.run([sys.executable, "-c", HIDDEN], cwd=clone, capture_output=True)
    return done.returncode == 0


def runs_by_model(factory, solve_id) -> dict[str, SolveRun]:
    with factory() as session:
        return {r.model: r for r in session.scalars(select(SolveRun).where(SolveRun.solve_id == solve_id))}


def solve_with(pipeline, scripts, models, **request):
    scripts.update({name: SCRIPTS[name] for name in models if name in SCRIPTS})
    for name in models:
        pipeline.add_model(name)
    solve_id = pipeline.start(matrix={"models": models}, **request)
    return pipeline.wait(solve_id, timeout=120), runs_by_model(pipeline.factory, solve_id)


def test_uncovered_bug_the_verified_fix_wins_not_the_noop(pipeline, scripts, tmp_path):
    uncovered_repository(pipeline)
    solve, runs = solve_with(
        pipeline, scripts, ["fix-with-test", "same-fix", "verbose-fix", "noop", "overfit"], test_command=TEST_COMMAND
    )

    assert solve.status == "completed", solve.error_message
    champion = next(r for r in runs.values() if r.id == solve.champion_run_id)
    assert hidden_check_passes(pipeline, champion.diagnostics["patch"], tmp_path), solve.ranking["reason"]
    assert champion.model in ("fix-with-test", "same-fix")
    assert "2 runs agree" in solve.ranking["reason"]
    # The reproduction test failed on the base and is valid. The overfit fix passes it too (it only knows the
    # issue's example), but no other run landed on it; the no-op never qualifies.
    tests = solve.verification["tests"]
    assert [(t["path"], t["valid"]) for t in tests] == [("test_issue_add.py", True)]
    matrix = solve.verification["matrix"]
    assert matrix[runs["fix-with-test"].id] == {tests[0]["id"]: True}
    assert matrix[runs["verbose-fix"].id] == {tests[0]["id"]: True}
    order = {e["run_id"]: e for e in solve.ranking["order"]}
    assert order[runs["noop"].id]["qualified"] is False
    assert order[runs["noop"].id]["why_not"] == "no source change"
    assert "reproduction tests" in solve.ranking["reason"]
    # The strategy was switched to reproduce-first: the base's tests all pass.
    assert runs["noop"].diagnostics["strategy"]["used"] == "reproduce-first"
    assert runs["fix-with-test"].diagnostics["change"]["tests_added"] == ["test_issue_add.py"]
    assert runs["fix-with-test"].diagnostics["reproduction"][0]["passes_with_fix"] is True


def test_only_a_noop_means_no_champion(pipeline, scripts):
    uncovered_repository(pipeline)
    solve, runs = solve_with(pipeline, scripts, ["noop", "tests-only"], test_command=TEST_COMMAND)

    assert solve.status == "failed" and solve.champion_run_id is None
    assert "no run qualifies" in solve.error_message
    assert "no source change" in solve.error_message and "changed only tests" in solve.error_message
    # The tests-only run's reproduction test fails with its own (empty) fix, so it joins no pool: nothing to verify.
    assert runs["tests-only"].diagnostics["reproduction"][0]["passes_with_fix"] is False
    assert solve.verification is None


def test_deleting_the_failing_test_never_wins(pipeline, scripts, tmp_path):
    delete = "sed -i '/def test_add/,+2d' test_calc.py && python3 -m unittest discover -q"
    scripts["tamper"] = [Step(delete, "Remove the failing test.")]
    solve, runs = solve_with(pipeline, scripts, ["tamper", "scripted-noop"], test_command=DEMO_TEST_COMMAND)

    tamper = runs["tamper"]
    assert tamper.diagnostics["change"]["tests_modified"] == ["test_calc.py"]
    # Validated over the base's own test file, restored: the failing test runs again and fails.
    assert tamper.tests_passed is False
    assert solve.status == "failed" and solve.champion_run_id is None
    assert f"run {tamper.id[:8]}: changed only tests" in solve.error_message


def test_tampering_next_to_a_real_fix_ranks_below_it(pipeline, scripts, tmp_path):
    fix_and_tamper = (
        "sed -i 's/return a - b/return a + b/' calc.py && sed -i 's/self.assertEqual(mul(2, 3), 6)/pass/' test_calc.py"
    )
    scripts["fix-and-tamper"] = [Step(fix_and_tamper, "Fix, and loosen a test.")]
    solve, runs = solve_with(
        pipeline, scripts, ["fix-and-tamper", "scripted-minimal-fix"], test_command=DEMO_TEST_COMMAND
    )

    assert solve.status == "completed"
    assert solve.champion_run_id == runs["scripted-minimal-fix"].id, solve.ranking["reason"]
    assert runs["fix-and-tamper"].tests_passed is True  # its source fix passes the base's own tests
    # Both made the same source change; the one that left the tests alone ranks first.
    assert [e["run_id"] for e in solve.ranking["order"]] == [runs["scripted-minimal-fix"].id, runs["fix-and-tamper"].id]
    assert solve.ranking["order"][1]["tests_modified"] == 1
    assert hidden_check_passes(pipeline, runs["scripted-minimal-fix"].diagnostics["patch"], tmp_path)

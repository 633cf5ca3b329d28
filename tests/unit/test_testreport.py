"""Per-test results from a test command's output.

pytest and unittest outputs come from really running them (with this interpreter) on test files generated in
tmp_path, and truncation is done by the sandbox's own `OutputCapture`. go and cargo outputs are samples: go is not
installed here; the cargo samples were captured from a real `cargo test` run of a small crate and trimmed.
"""

import os
import shlex
import subprocess
import sys
from pathlib import Path
from textwrap import dedent

import pytest

from yudai_solver.sandboxes.local import OutputCapture
from yudai_solver.solving.testreport import (
    MAX_IDS,
    Comparison,
    TestReport,
    compare,
    parse,
    runner_of,
    targeted_command,
    test_file_of,
)

pytestmark = pytest.mark.slow  # seconds each: not in the fast tier

PYTHON = sys.executable
PYTEST = [PYTHON, "-m", "pytest", "-p", "no:cacheprovider"]

MIXED_PYTEST = dedent("""
    import pytest

    def test_ok(): pass
    def test_bad(): assert 1 == 2

    @pytest.fixture
    def boom(): raise RuntimeError("fixture boom")
    def test_err(boom): pass

    @pytest.mark.parametrize("x", [1, 2, "a b"])
    def test_p(x): assert x == 1

    class TestK:
        def test_m(self): assert False, "two\\nlines"

    def test_skip(): pytest.skip("no")

    @pytest.mark.xfail
    def test_xf(): assert False
""")
MIXED_PYTEST_FAILED = {
    "tests/test_mixed.py::test_bad",
    "tests/test_mixed.py::test_err",
    "tests/test_mixed.py::test_p[2]",
    "tests/test_mixed.py::test_p[a b]",
    "tests/test_mixed.py::TestK::test_m",
}
MIXED_UNITTEST = dedent("""
    import unittest

    class T(unittest.TestCase):
        def test_ok(self): pass
        def test_fail(self):
            \"\"\"A docstring shows under the header.\"\"\"
            self.assertEqual(1, 2)
        def test_err(self): raise RuntimeError("boom")
        def test_sub(self):
            for i in range(3):
                with self.subTest(i=i):
                    self.assertLess(i, 1)
        @unittest.skip("no")
        def test_skip(self): pass
        @unittest.expectedFailure
        def test_xf(self): self.fail()

    class S(unittest.TestCase):
        @classmethod
        def setUpClass(cls): raise ValueError("class fixture")
        def test_never(self): pass
""")
MIXED_UNITTEST_FAILED = {
    "pkg.test_mixed.T.test_fail",
    "pkg.test_mixed.T.test_err",
    "pkg.test_mixed.T.test_sub",
    "pkg.test_mixed.S.setUpClass",
    "unittest.loader._FailedTest.test_broken",
}


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def run(cwd: Path, command: list[str] | str) -> tuple[str, int]:
    """Run like the sandbox does: stdout and stderr interleaved, no pytest settings inherited from this run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PY_COLORS", "FORCE_COLOR"))}
    done = subprocess.run(
        command,
        check=False,
        cwd=cwd,
        env=env,
        shell=isinstance(command, str),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
    )
    return done.stdout, done.returncode


def report_of(cwd: Path, command: list[str], runner: str) -> TestReport:
    output, returncode = run(cwd, command)
    return parse(output, runner=runner, returncode=returncode, truncated=False)


def capped(cwd: Path, command: list[str], limit: int) -> tuple[str, int, bool]:
    """The output as a sandbox capped at `limit` bytes would return it."""
    output, returncode = run(cwd, command)
    capture = OutputCapture(limit)
    capture.add(output.encode())
    return capture.text(), returncode, capture.cut > 0


# runner_of


@pytest.mark.parametrize(
    ("command", "runner"),
    [
        ("python3 -m pytest -q", "pytest"),
        (".venv/bin/python -m pytest", "pytest"),
        ("/usr/bin/python3.11 -u -m pytest tests/", "pytest"),
        ("pytest tests/", "pytest"),
        ("py.test", "pytest"),
        ("PYTHONPATH=src pytest -x", "pytest"),
        ("pytest -q 2>&1 | tail -50", "pytest"),
        ("python3 -m unittest discover", "unittest"),
        ("python -m unittest tests.test_x", "unittest"),
        ("go test ./...", "go"),
        ("cargo test", "cargo"),
        ("npm test", None),
        ("go build ./...", None),
        ("cargo nextest run", None),
        ("python -m pip install -e .", None),
        ("python -X dev -m pytest", None),
        ("cd sub && pytest", None),
        ("make test", None),
        ("pytest 'unbalanced", None),
        ("", None),
        (None, None),
    ],
)
def test_runner_of_recognises_only_the_first_simple_command_it_is_sure_of(command, runner):
    assert runner_of(command) == runner


# pytest, really run


@pytest.mark.parametrize("quiet", [[], ["-q"]])
def test_pytest_failures_and_errors_are_named_with_and_without_q(tmp_path, quiet):
    write(tmp_path, {"tests/test_mixed.py": MIXED_PYTEST})
    report = report_of(tmp_path, [*PYTEST, *quiet], "pytest")
    assert report == TestReport("pytest", frozenset(MIXED_PYTEST_FAILED), passed_count=2, failed_count=5, complete=True)


def test_a_passing_pytest_run_is_complete_with_no_failures(tmp_path):
    write(tmp_path, {"tests/test_fine.py": "def test_a(): pass\ndef test_b(): pass\n"})
    report = report_of(tmp_path, [*PYTEST, "-q"], "pytest")
    assert report == TestReport("pytest", frozenset(), passed_count=2, failed_count=0, complete=True)


def test_a_pytest_collection_error_names_the_file_but_is_incomplete_as_nothing_else_ran(tmp_path):
    write(tmp_path, {"tests/test_mixed.py": MIXED_PYTEST, "tests/test_broken.py": "import no_such_module\n"})
    report = report_of(tmp_path, PYTEST, "pytest")
    assert report == TestReport(
        "pytest", frozenset({"tests/test_broken.py"}), passed_count=0, failed_count=1, complete=False
    )


@pytest.mark.parametrize("flag", ["-x", "--maxfail=1"])
def test_a_pytest_run_stopped_early_is_incomplete(tmp_path, flag):
    write(tmp_path, {"tests/test_mixed.py": MIXED_PYTEST})
    report = report_of(tmp_path, [*PYTEST, flag], "pytest")
    assert (report.failed, report.complete) == (frozenset({"tests/test_mixed.py::test_bad"}), False)


@pytest.mark.parametrize("flags", [["-qq"], ["-rN"], ["--no-summary"]])
def test_pytest_flags_that_hide_the_summary_make_the_report_incomplete(tmp_path, flags):
    write(tmp_path, {"tests/test_mixed.py": MIXED_PYTEST})
    assert report_of(tmp_path, [*PYTEST, *flags], "pytest").complete is False


def test_pytest_collecting_no_tests_is_incomplete(tmp_path):
    write(tmp_path, {"tests/helper.py": "X = 1\n"})
    report = report_of(tmp_path, PYTEST, "pytest")
    assert (report.failed, report.passed_count, report.complete) == (frozenset(), 0, False)


def test_a_pytest_output_cut_before_its_short_summary_is_complete(tmp_path):
    noisy = MIXED_PYTEST + "\ndef test_noisy():\n    print('x' * 100_000)\n    assert False\n"
    write(tmp_path, {"tests/test_mixed.py": noisy})
    output, returncode, truncated = capped(tmp_path, PYTEST, 8 * 1024)
    report = parse(output, runner="pytest", returncode=returncode, truncated=truncated)
    assert truncated is True
    assert (report.failed, report.complete) == (
        frozenset(MIXED_PYTEST_FAILED | {"tests/test_mixed.py::test_noisy"}),
        True,
    )


def test_a_pytest_output_cut_inside_its_short_summary_is_incomplete(tmp_path):
    many = "import pytest\n@pytest.mark.parametrize('n', range(60))\ndef test_n(n): assert n < 0\n"
    write(tmp_path, {"tests/test_many.py": many})
    output, returncode, truncated = capped(tmp_path, PYTEST, 3 * 1024)
    report = parse(output, runner="pytest", returncode=returncode, truncated=truncated)
    assert (truncated, report.complete, report.failed_count) == (True, False, 60)


def test_a_truncated_output_without_the_cut_marker_is_incomplete(tmp_path):
    write(tmp_path, {"tests/test_mixed.py": MIXED_PYTEST})
    output, returncode = run(tmp_path, PYTEST)
    assert parse(output, runner="pytest", returncode=returncode, truncated=True).complete is False


def test_an_exit_status_that_disagrees_with_the_output_makes_it_incomplete(tmp_path):
    write(tmp_path, {"tests/test_fine.py": "def test_a(): pass\n"})
    output, returncode = run(tmp_path, PYTEST)
    assert returncode == 0
    assert parse(output, runner="pytest", returncode=1, truncated=False).complete is False


def test_an_unknown_runner_gives_an_incomplete_empty_report():
    assert parse("3 passed in 0.1s", runner=None, returncode=0, truncated=False) == TestReport(
        None, frozenset(), None, None, complete=False
    )


# unittest, really run


def test_unittest_failures_errors_subtests_fixtures_and_import_errors_are_named(tmp_path):
    write(tmp_path, {"pkg/__init__.py": "", "pkg/test_mixed.py": MIXED_UNITTEST, "test_broken.py": "import nope\n"})
    report = report_of(tmp_path, [PYTHON, "-m", "unittest", "discover"], "unittest")
    # failures=3 (two subtests) + errors=3: each failing subtest counts, yet folds into one id.
    assert report == TestReport(
        "unittest", frozenset(MIXED_UNITTEST_FAILED), passed_count=1, failed_count=6, complete=True
    )


def test_a_passing_unittest_run_is_complete_with_no_failures(tmp_path):
    write(tmp_path, {"test_fine.py": "import unittest\nclass T(unittest.TestCase):\n    def test_a(self): pass\n"})
    report = report_of(tmp_path, [PYTHON, "-m", "unittest", "discover"], "unittest")
    assert report == TestReport("unittest", frozenset(), passed_count=1, failed_count=0, complete=True)


def test_a_unittest_output_cut_before_its_failure_list_is_complete(tmp_path):
    chatty = (
        MIXED_UNITTEST + "\nclass Chatty(unittest.TestCase):\n    def test_talks(self):\n"
        "        import sys; sys.stderr.write('y' * 100_000)\n"
    )
    write(tmp_path, {"pkg/__init__.py": "", "pkg/test_mixed.py": chatty})
    output, returncode, truncated = capped(tmp_path, [PYTHON, "-m", "unittest", "discover"], 8 * 1024)
    report = parse(output, runner="unittest", returncode=returncode, truncated=truncated)
    expected = MIXED_UNITTEST_FAILED - {"unittest.loader._FailedTest.test_broken"}
    assert (truncated, report.failed, report.complete) == (True, frozenset(expected), True)


def test_a_unittest_header_of_python_3_10_and_older_gives_the_same_id():
    # Hand-written: only Python 3.11 is installed here; older versions leave the method out of the parentheses.
    output = "\n".join(
        [
            "F",
            "=" * 70,
            "FAIL: test_fail (pkg.test_m.T)",
            "-" * 70,
            "AssertionError",
            "",
            "-" * 70,
            "Ran 1 test in 0.001s",
            "",
            "FAILED (failures=1)",
        ]
    )
    report = parse(output, runner="unittest", returncode=1, truncated=False)
    assert (report.failed, report.complete) == (frozenset({"pkg.test_m.T.test_fail"}), True)


def test_a_unittest_test_printing_a_header_lookalike_adds_no_failure():
    output = "test output\nFAIL: test_x (a.B.test_x)\n.\n" + "-" * 70 + "\nRan 1 test in 0.001s\n\nOK\n"
    report = parse(output, runner="unittest", returncode=0, truncated=False)
    assert (report.failed, report.complete) == (frozenset(), True)


# go and cargo, from samples

GO_FAILING = """\
--- FAIL: TestAdd (0.00s)
    add_test.go:9: got 3, want 4
--- FAIL: TestTable (0.00s)
    --- FAIL: TestTable/negative (0.00s)
        add_test.go:20: got -1, want 1
FAIL
FAIL\texample.com/calc\t0.003s
ok  \texample.com/calc/util\t0.002s
?   \texample.com/calc/cmd\t[no test files]
FAIL
"""
GO_BUILD_FAILED = """\
# example.com/calc [example.com/calc.test]
./add_test.go:5:9: undefined: Sub
FAIL\texample.com/calc [build failed]
ok  \texample.com/calc/util\t0.002s
FAIL
"""
GO_PANIC = """\
--- FAIL: TestCrash (0.00s)
panic: runtime error: index out of range [5] with length 3 [recovered]
\tpanic: runtime error: index out of range [5] with length 3

goroutine 7 [running]:
testing.tRunner.func1.2({0x5d1e40, 0xc000014018})
FAIL\texample.com/calc\t0.004s
FAIL
"""
CARGO_HEAD = """\
   Compiling cr v0.1.0 (/tmp/cr)
    Finished `test` profile [unoptimized + debuginfo] target(s) in 1.04s
     Running unittests src/lib.rs (target/debug/deps/cr-f73a538893013b88)

running 5 tests
test tests::ign ... ignored
test tests::ok ... ok
test tests::p - should panic ... ok
test tests::bad ... FAILED
test tests::p_bad - should panic ... FAILED

failures:

---- tests::bad stdout ----

thread 'tests::bad' (13593) panicked at src/lib.rs:9:24:
assertion `left == right` failed
  left: 2
 right: 3

---- tests::p_bad stdout ----
note: test did not panic as expected at src/lib.rs:11:32

failures:
    tests::bad
    tests::p_bad

test result: FAILED. 2 passed; 2 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.16s

error: test failed, to rerun pass `--lib`
"""
CARGO_REST_WITHOUT_FAIL_FAST = """\
     Running tests/it.rs (target/debug/deps/it-c402cc767e4d8483)

running 2 tests
test it_ok ... ok
test it_bad ... FAILED

failures:

failures:
    it_bad

test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s

error: test failed, to rerun pass `--test it`
   Doc-tests cr

running 1 test
test src/lib.rs - add (line 1) ... FAILED

failures:
    src/lib.rs - add (line 1)

test result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s

error: doctest failed, to rerun pass `--doc`
error: 3 targets failed:
    `--lib`
    `--test it`
    `--doc`
"""


def test_go_failing_tests_and_subtests_are_named():
    report = parse(GO_FAILING, runner="go", returncode=1, truncated=False)
    assert report == TestReport(
        "go", frozenset({"TestAdd", "TestTable", "TestTable/negative"}), None, None, complete=True
    )


@pytest.mark.parametrize("output", [GO_BUILD_FAILED, GO_PANIC], ids=["build-failed", "panic"])
def test_a_go_package_that_failed_beyond_its_named_tests_is_incomplete(output):
    assert parse(output, runner="go", returncode=1, truncated=False).complete is False


def test_a_passing_go_run_is_complete():
    output = "ok  \texample.com/calc\t0.003s\n?   \texample.com/calc/cmd\t[no test files]\n"
    assert parse(output, runner="go", returncode=0, truncated=False) == TestReport(
        "go", frozenset(), None, None, complete=True
    )


def test_truncated_go_output_is_incomplete_as_failures_print_as_they_happen():
    assert parse(GO_FAILING, runner="go", returncode=1, truncated=True).complete is False


def test_cargo_without_fail_fast_names_failures_of_every_target():
    report = parse(CARGO_HEAD + CARGO_REST_WITHOUT_FAIL_FAST, runner="cargo", returncode=101, truncated=False)
    failed = {"tests::bad", "tests::p_bad", "it_bad", "src/lib.rs - add (line 1)"}
    assert report == TestReport("cargo", frozenset(failed), passed_count=3, failed_count=4, complete=True)


def test_cargo_stopping_at_its_first_failing_target_is_incomplete():
    report = parse(CARGO_HEAD, runner="cargo", returncode=101, truncated=False)
    assert (report.failed, report.complete) == (frozenset({"tests::bad", "tests::p_bad"}), False)


def test_cargo_that_did_not_compile_is_incomplete():
    output = "error[E0425]: cannot find value `x` in this scope\nerror: could not compile `cr`\n"
    assert parse(output, runner="cargo", returncode=101, truncated=False).complete is False


# bounds


def test_failure_ids_are_capped_and_the_capped_report_is_incomplete():
    lines = [f"FAILED t.py::test_{n}" for n in range(MAX_IDS + 1)]
    output = "\n".join(["=== short test summary info ===", *lines, f"=== {MAX_IDS + 1} failed in 1.00s ==="])
    report = parse(output, runner="pytest", returncode=1, truncated=False)
    assert (len(report.failed), report.complete) == (MAX_IDS, False)


def test_an_absurdly_long_line_is_ignored():
    output = "\n".join(
        ["=== short test summary info ===", f"FAILED t.py::test_{'x' * 3000}", "=== 1 failed in 0.10s ==="]
    )
    report = parse(output, runner="pytest", returncode=1, truncated=False)
    assert (report.failed, report.complete) == (frozenset(), False)


# compare, on real runs


def test_compare_tells_fixed_still_failing_and_both_kinds_of_regression(tmp_path):
    write(
        tmp_path,
        {
            "tests/test_core.py": "def test_fixed(): assert False\ndef test_still(): assert False\n"
            "def test_broken_now(): pass\ndef test_fine(): pass\n",
            "tests/test_new.py": "def test_old(): pass\n",
        },
    )
    base = report_of(tmp_path, PYTEST, "pytest")
    write(
        tmp_path,
        {
            "tests/test_core.py": "def test_fixed(): pass\ndef test_still(): assert False\n"
            "def test_broken_now(): assert False\ndef test_fine(): pass\n",
            "tests/test_new.py": "def test_old(): pass\ndef test_added(): assert False\n",
        },
    )
    now = report_of(tmp_path, PYTEST, "pytest")
    comparison = compare(base, now, changed_test_files=frozenset({"tests/test_new.py"}))
    assert comparison == Comparison(
        fixed=("tests/test_core.py::test_fixed",),
        still_failing=("tests/test_core.py::test_still",),
        regressions=("tests/test_core.py::test_broken_now",),
        regressions_in_changed_tests=("tests/test_new.py::test_added",),
    )


def test_compare_refuses_an_incomplete_report():
    complete = TestReport("pytest", frozenset(), 1, 0, complete=True)
    with pytest.raises(ValueError, match="complete reports"):
        compare(complete, TestReport("pytest", frozenset(), None, None, complete=False))


def test_compare_refuses_reports_of_different_runners():
    with pytest.raises(ValueError, match="same runner"):
        compare(TestReport("pytest", frozenset(), 1, 0, True), TestReport("unittest", frozenset(), 1, 0, True))


def test_comparison_json_caps_each_list_and_counts_it_whole():
    comparison = Comparison(
        fixed=("a", "b", "c"), still_failing=(), regressions=("d",), regressions_in_changed_tests=()
    )
    assert comparison.as_json(cap=2) == {
        "fixed": ["a", "b"],
        "fixed_count": 3,
        "still_failing": [],
        "still_failing_count": 0,
        "regressions": ["d"],
        "regressions_count": 1,
        "regressions_in_changed_tests": [],
        "regressions_in_changed_tests_count": 0,
    }


@pytest.mark.parametrize(
    ("test_id", "runner", "file"),
    [
        ("tests/test_x.py::TestK::test_m[a::b]", "pytest", "tests/test_x.py"),
        ("tests/test_x.py", "pytest", "tests/test_x.py"),
        ("pkg.test_m.T.test_fail", "unittest", "pkg/test_m.py"),
        ("pkg.test_m.T.setUpClass", "unittest", "pkg/test_m.py"),
        ("pkg.test_m.setUpModule", "unittest", "pkg/test_m.py"),
        ("unittest.loader._FailedTest.pkg.test_broken", "unittest", "pkg/test_broken.py"),
        ("TestAdd", "go", None),
        ("tests::bad", "cargo", None),
    ],
)
def test_test_file_of_maps_an_id_to_its_file_where_the_runner_allows(test_id, runner, file):
    assert test_file_of(test_id, runner) == file


def test_a_unittest_regression_in_a_changed_file_is_told_apart_by_its_module():
    base = TestReport("unittest", frozenset(), 2, 0, True)
    now = TestReport("unittest", frozenset({"pkg.test_m.T.test_new", "pkg.test_o.T.test_old"}), 0, 2, True)
    comparison = compare(base, now, changed_test_files=frozenset({"pkg/test_m.py"}))
    assert (comparison.regressions, comparison.regressions_in_changed_tests) == (
        ("pkg.test_o.T.test_old",),
        ("pkg.test_m.T.test_new",),
    )


# targeted_command


@pytest.mark.parametrize(
    ("command", "path", "targeted"),
    [
        ("python3 -m pytest -q", "tests/test_a.py", "python3 -m pytest -q tests/test_a.py"),
        (".venv/bin/python -m pytest tests/ -x", "tests/test b.py", ".venv/bin/python -m pytest -x 'tests/test b.py'"),
        ("pytest -p no:cacheprovider -k 'not slow' tests", "t.py", "pytest -p no:cacheprovider -k 'not slow' t.py"),
        ("pytest --tb=short -rA tests -- more", "t.py", "pytest --tb=short -rA t.py"),
        ("PYTHONPATH='src lib' pytest", "t.py", "PYTHONPATH='src lib' pytest t.py"),
        ("python -m unittest discover -s tests -t .", "tests/test_x.py", "python -m unittest tests/test_x.py"),
        ("python -m unittest discover", "tests/data", None),
        ("pytest --unknown-option value", "t.py", None),
        ("pytest -q && echo done", "t.py", None),
        ("pytest $PYTEST_ARGS", "t.py", None),
        ("go test ./...", "calc/add_test.go", None),
        ("cargo test", "tests/it.rs", None),
        ("npm test", "test/a.test.js", None),
    ],
)
def test_targeted_command_keeps_the_runner_and_its_options_and_swaps_the_paths(command, path, targeted):
    assert targeted_command(command, path) == targeted


@pytest.mark.parametrize("path", ["../x.py", "tests/../../x.py", "-x", "-p evil", "/etc/passwd", ""])
def test_targeted_command_refuses_paths_that_leave_the_repository_or_read_as_options(path):
    assert targeted_command("python3 -m pytest -q", path) is None


@pytest.mark.parametrize(
    ("base", "runner", "path", "only"),
    [
        (
            f"{shlex.quote(PYTHON)} -m pytest -q -p no:cacheprovider tests",
            "pytest",
            "tests/test_one.py",
            "tests/test_one.py::T::test_one",
        ),
        (f"{shlex.quote(PYTHON)} -m unittest discover", "unittest", "tests/test_one.py", "tests.test_one.T.test_one"),
    ],
)
def test_a_targeted_command_really_runs_only_its_file(tmp_path, base, runner, path, only):
    failing = "import unittest\nclass T(unittest.TestCase):\n    def test_{0}(self): self.fail()\n"
    write(tmp_path, {"tests/test_one.py": failing.format("one"), "tests/test_two.py": failing.format("two")})
    output, returncode = run(tmp_path, targeted_command(base, path))
    report = parse(output, runner=runner, returncode=returncode, truncated=False)
    assert (report.failed, report.complete) == (frozenset({only}), True)

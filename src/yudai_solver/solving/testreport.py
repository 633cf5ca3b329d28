"""Per-test results read from a test command's output alone, for the default output of four runners.

Contract:

- `runner_of(command)` names the runner whose output `parse` understands (pytest, unittest, `go test`, `cargo
  test`), or None: then only the exit status means anything. npm is never recognised: its output is whatever
  framework sits behind `npm test`.
- `parse(...)` gives a `TestReport`. Its `failed` ids (failed or errored tests) can be trusted only when `complete`
  is True: the runner's summary was found, every failure the runner counted is named in the kept output, the run
  was not cut short (pytest's `-x` or a collection error, a go test binary that panicked, cargo's fail-fast stop),
  and the exit status agrees. Only then does "not in `failed`" mean "did not fail"; no runner names its passing
  tests by default, so a test that vanished or never ran is indistinguishable from one that passed.
- `compare(base, now)` classifies failures across two complete reports of the same runner (SWE-bench's
  FAIL_TO_PASS / PASS_TO_PASS in spirit); it raises ValueError otherwise.
- `targeted_command(command, path)` rewrites a pytest or unittest command to run one test file, or gives None.

Test ids, as the runners print them:
- pytest: node ids relative to the working directory (`tests/test_x.py::Class::test[param]`); a module that
  failed to import is named by its file (`tests/test_x.py`).
- unittest: `package.module.Class.test` (subtests fold into their test; a failing `setUpClass` is
  `package.module.Class.setUpClass`); a module that failed to import is `unittest.loader._FailedTest.<module>`.
- go: `TestName` and `TestName/subtest`, without the package.
- cargo: `module::test`, doc-tests as `src/lib.rs - item (line 5)`.
"""

import itertools
import posixpath
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import PurePosixPath
from typing import Any

MAX_IDS = 10_000
MAX_LINE_CHARS = 2_000
MAX_STORED_IDS = 200
"""Failing test ids kept in a stored report; a longer list makes the report incomplete (`report_from_json`)."""

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# The marker `sandboxes.local.OutputCapture` puts where it cut the middle of an output.
_CUT_MARKER = re.compile(r"^\[\.\.\. \d+ bytes of output cut \.\.\.\]$")
_SHELL_OPERATOR = re.compile(r"^[();<>|&]+$")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_PYTHON = re.compile(r"^python(\d+(\.\d+)?)?$")
_PYTHON_NO_ARG_FLAGS = re.compile(r"^-[bBdEiIOPqsSuv]+$")
_PYTHON_MODULE_RUNNERS = {"pytest": "pytest", "unittest": "unittest"}

_PYTEST_SECTION = re.compile(r"^=+ short test summary info =+$")
# `\S+?\[.*?\]` first: a parametrized id may contain spaces (`test_p[a b]`), and ` - ` starts the message.
_PYTEST_ENTRY = re.compile(r"^(?:FAILED|ERROR) (\S+?\[.*?\]|\S+)(?: - .*)?$")
_PYTEST_SUMMARY = re.compile(
    r"^(?:=+ )?((?:\d+ [a-z]+)(?:, \d+ [a-z]+)*|no tests ran) in [\d.]+s(?: \(\d+:\d\d:\d\d\))?(?: =+)?$"
)
_PYTEST_BANNER = re.compile(r"^!{3,} .+ !{3,}$")  # "Interrupted: 1 error during collection", "stopping after..."
_PYTEST_BANNER_REACH = 10
_PYTEST_PLURALS = {"errors": "error", "warnings": "warning", "reruns": "rerun"}

_UNITTEST_RULE = "=" * 70
_UNITTEST_HEADER = re.compile(r"^(?:FAIL|ERROR): (\S+) \(([\w.]+)\)")
_UNITTEST_RAN = re.compile(r"^Ran (\d+) tests? in ")
_UNITTEST_RESULT = re.compile(r"^(?:OK|FAILED)(?: \((.*)\))?$")
_UNITTEST_FAILED_IMPORT = "unittest.loader._FailedTest."
_UNITTEST_MODULE_FIXTURES = frozenset({"setUpModule", "tearDownModule"})
_UNITTEST_FIXTURES = _UNITTEST_MODULE_FIXTURES | {"setUpClass", "tearDownClass"}

_GO_FAIL = re.compile(r"^\s*--- FAIL: (\S+) \(")
_GO_PACKAGE = re.compile(r"^(ok|FAIL|\?)\s*\t\S+")

_CARGO_FAIL = re.compile(r"^test (.+?)(?: - should panic)? \.\.\. FAILED$")
_CARGO_RESULT = re.compile(r"^test result: (?:ok|FAILED)\. (\d+) passed; (\d+) failed;")
_CARGO_TARGET_FAILED = re.compile(r"^error: (?:doc)?test failed, to rerun pass ")
_CARGO_WENT_ON = re.compile(r"^\s*(?:Running |Doc-tests |error: \d+ targets? failed)")

_PYTEST_VALUE_OPTIONS = frozenset(
    {
        "-k",
        "-m",
        "-p",
        "-c",
        "-o",
        "-W",
        "-n",
        "-r",
        "--maxfail",
        "--tb",
        "--deselect",
        "--ignore",
        "--ignore-glob",
        "--rootdir",
        "--confcutdir",
        "--basetemp",
        "--durations",
        "--junitxml",
        "--junit-xml",
        "--log-level",
        "--log-cli-level",
        "--timeout",
        "--cov",
        "--cov-report",
        "--cov-config",
        "--import-mode",
        "--capture",
        "--color",
        "--override-ini",
        "--config-file",
        "--dist",
        "--reruns",
    }
)
_PYTEST_SHORT_VALUE_OPTIONS = frozenset(o for o in _PYTEST_VALUE_OPTIONS if len(o) == 2)
_PYTEST_NO_ARG_FLAGS = re.compile(r"^-[qvxsl]+$")
_PYTEST_LONG_FLAGS = frozenset(
    {
        "--quiet",
        "--verbose",
        "--exitfirst",
        "--lf",
        "--last-failed",
        "--ff",
        "--failed-first",
        "--nf",
        "--new-first",
        "--sw",
        "--stepwise",
        "--strict",
        "--strict-markers",
        "--strict-config",
        "--disable-warnings",
        "--showlocals",
        "--no-header",
        "--no-summary",
        "--runxfail",
        "--cache-clear",
        "--full-trace",
        "--doctest-modules",
        "--continue-on-collection-errors",
    }
)
_UNSAFE_IN_KEPT_WORD = re.compile(r"[*?\[]")  # shell globs we would otherwise quote into literals


@dataclass(frozen=True)
class TestReport:
    """What one run of a test command says about its tests; see the module docstring for when to trust it."""

    __test__ = False  # not a pytest test class, despite the name

    runner: str | None
    failed: frozenset[str]
    """Ids of the tests that failed or errored, at most MAX_IDS."""
    passed_count: int | None
    """The runner's count of passed tests (unittest: estimated); None for go, which prints no counts."""
    failed_count: int | None
    """The runner's own count of failures plus errors (each failing subtest counts); None for go."""
    complete: bool
    """False when `failed` may miss failures or tests may not have run: then fall back to the exit status."""


@dataclass(frozen=True)
class Comparison:
    """How the failures of a run differ from those of the base run."""

    fixed: tuple[str, ...]
    still_failing: tuple[str, ...]
    regressions: tuple[str, ...]
    """Failing now, not on base, in a test file the run did not change (or of unknown file)."""
    regressions_in_changed_tests: tuple[str, ...]
    """Failing now, not on base, in a test file the run changed: maybe a new test, maybe a broken one."""

    def as_json(self, cap: int = 50) -> dict[str, Any]:
        """Each list cut to its first `cap` ids, next to `<name>_count`, the length of the whole list."""
        result: dict[str, Any] = {}
        for name in ("fixed", "still_failing", "regressions", "regressions_in_changed_tests"):
            ids = getattr(self, name)
            result[name] = list(ids[:cap])
            result[f"{name}_count"] = len(ids)
        return result


def runner_of(command: str | None) -> str | None:
    """The runner that `command` starts as its first simple command, or None when unsure."""
    words = _without_assignments(_first_simple_command(command or ""))
    if not words:
        return None
    program = posixpath.basename(words[0])
    if program in ("pytest", "py.test"):
        return "pytest"
    if program in ("go", "cargo"):
        return program if words[1:2] == ["test"] else None
    if _PYTHON.match(program) and (at := _python_module_index(words)) is not None:
        return _PYTHON_MODULE_RUNNERS.get(words[at])
    return None


def parse(output: str, *, runner: str | None, returncode: int, truncated: bool) -> TestReport:
    """The per-test results in `output` (a sandbox's capped, interleaved stdout and stderr) of a `runner` run."""
    parser = _PARSERS.get(runner or "")
    tail_safe = runner in ("pytest", "unittest")
    # pytest and unittest name every failure after the last test ran, so an intact tail is enough for them; go
    # and cargo report as they go, and a cut anywhere may have taken failures with it.
    text = _kept_tail(output) if truncated and tail_safe else output
    if parser is None or text is None:
        return TestReport(runner, frozenset(), None, None, complete=False)
    report = parser(_lines(text))
    # A disagreeing exit status means something failed that the output does not name (or the command
    # hides failures): either way the ids are not the whole story.
    trusted = report.complete and (tail_safe or not truncated) and bool(report.failed) == (returncode != 0)
    return replace(report, complete=trusted)


def compare(base: TestReport, now: TestReport, *, changed_test_files: frozenset[str] = frozenset()) -> Comparison:
    """Classify the failures of `now` against those of `base`; both must be complete reports of one runner."""
    if not (base.complete and now.complete) or base.runner != now.runner:
        raise ValueError("compare() needs two complete reports of the same runner")
    new = sorted(now.failed - base.failed)
    in_changed = [t for t in new if test_file_of(t, now.runner) in changed_test_files]
    return Comparison(
        fixed=tuple(sorted(base.failed - now.failed)),
        still_failing=tuple(sorted(base.failed & now.failed)),
        regressions=tuple(t for t in new if t not in set(in_changed)),
        regressions_in_changed_tests=tuple(in_changed),
    )


def test_file_of(test_id: str, runner: str | None) -> str | None:
    """The repository-relative file that defines `test_id` (best effort for unittest), or None when unknown."""
    if runner == "pytest":
        return test_id.split("::", 1)[0] or None
    if runner == "unittest":
        return _unittest_file(test_id)
    return None


test_file_of.__test__ = False  # type: ignore[attr-defined]  # pytest would collect it from importing test modules


def targeted_command(command: str, path: str) -> str | None:
    """`command` rewritten to run only the test file `path` (repository-relative), or None when unsure."""
    words, runner = _plain_words(command), runner_of(command)
    if words is None or not _safe_path(path) or runner not in ("pytest", "unittest"):
        return None
    env, words = words[: len(words) - len(_without_assignments(words))], _without_assignments(words)
    split = 1
    if _PYTHON.match(posixpath.basename(words[0])):
        module_at = _python_module_index(words)
        assert module_at is not None  # runner_of found the module runner there
        split = module_at + 1
    if runner == "unittest":  # unittest takes a file path for a module, as long as it ends in .py
        kept = words[:split] if path.endswith(".py") else None
    else:
        flags = _pytest_flags(words[split:])
        kept = None if flags is None else words[:split] + flags
    # Quoting a glob or `~` would turn it into a literal: such a command cannot be rebuilt word by word.
    if kept is None or any(_UNSAFE_IN_KEPT_WORD.search(w) or w.startswith("~") for w in kept):
        return None
    return _join(env, kept + [path])


# Parsers: each reads the lines of one runner's output into a TestReport whose `complete` covers only what the
# output itself shows; `parse` adds truncation and the exit status.


def _parse_pytest(lines: list[str]) -> TestReport:
    end = _last_index(lines, _PYTEST_SUMMARY.match)
    if end is None:
        return TestReport("pytest", frozenset(), None, None, complete=False)
    summary = _PYTEST_SUMMARY.match(lines[end])
    assert summary is not None  # `end` is the line it matched
    counts = _pytest_counts(summary[1])
    failed_count = counts.get("failed", 0) + counts.get("error", 0)
    start = _last_index(lines[:end], _PYTEST_SECTION.match)
    section = lines[start + 1 : end] if start is not None else []
    ids = [m[1] for line in section if (m := _PYTEST_ENTRY.match(line))]
    # A banner just above the summary means tests were left unrun: their absence from `failed` proves nothing.
    interrupted = any(_PYTEST_BANNER.match(line) for line in lines[max(0, end - _PYTEST_BANNER_REACH) : end])
    return _report("pytest", ids, counts.get("passed", 0), failed_count, len(ids) == failed_count and not interrupted)


def _parse_unittest(lines: list[str]) -> TestReport:
    ran_at = _last_index(lines, _UNITTEST_RAN.match)
    result = next((line for line in lines[ran_at + 1 :] if line), "") if ran_at is not None else ""
    if ran_at is None or not (matched := _UNITTEST_RESULT.match(result)):
        return TestReport("unittest", frozenset(), None, None, complete=False)
    counts = _unittest_counts(matched[1] or "")
    failed_count = counts.get("failures", 0) + counts.get("errors", 0)
    # Only headers right under unittest's rule: a test that prints "FAIL: x (y)" must not add a failure.
    below_rule = (line for previous, line in itertools.pairwise(lines[:ran_at]) if previous == _UNITTEST_RULE)
    headers = [m for line in below_rule if (m := _UNITTEST_HEADER.match(line))]
    ids = [_unittest_id(m[1], m[2]) for m in headers]
    ran = _UNITTEST_RAN.match(lines[ran_at])
    assert ran is not None  # `ran_at` is the line it matched
    passed = _unittest_passed(int(ran[1]), counts, ids)
    return _report("unittest", ids, passed, failed_count, complete=len(headers) == failed_count)


def _parse_go(lines: list[str]) -> TestReport:
    ids: list[str] = []
    named = crashed = unexplained = False
    packages = 0
    for line in lines:
        if failing := _GO_FAIL.match(line):
            ids.append(failing[1])
            named = True
        elif line.startswith("panic: "):
            crashed = True  # the test binary died: the package's later tests never ran
        elif package := _GO_PACKAGE.match(line):
            # A failed package with no failing test named (build failure, timeout, TestMain) hides its failures.
            unexplained |= package[1] == "FAIL" and (crashed or not named)
            named, crashed, packages = False, False, packages + 1
    return _report("go", ids, None, None, complete=packages > 0 and not unexplained)


def _parse_cargo(lines: list[str]) -> TestReport:
    results = [m for line in lines if (m := _CARGO_RESULT.match(line))]
    ids = [m[1] for line in lines if (m := _CARGO_FAIL.match(line))]
    failed_count = sum(int(m[2]) for m in results)
    stop = _last_index(lines, _CARGO_TARGET_FAILED.match)
    # Without --no-fail-fast cargo stops at the first failing target: the targets after it never ran.
    stopped = stop is not None and not any(_CARGO_WENT_ON.match(line) for line in lines[stop + 1 :])
    complete = bool(results) and len(ids) == failed_count and not stopped
    return _report("cargo", ids, sum(int(m[1]) for m in results), failed_count, complete)


_PARSERS: dict[str, Callable[[list[str]], TestReport]] = {
    "pytest": _parse_pytest,
    "unittest": _parse_unittest,
    "go": _parse_go,
    "cargo": _parse_cargo,
}


def _report(runner: str, ids: list[str], passed: int | None, failed: int | None, complete: bool) -> TestReport:
    unique = list(dict.fromkeys(ids))
    kept = frozenset(unique[:MAX_IDS])
    return TestReport(runner, kept, passed, failed, complete=complete and len(unique) <= MAX_IDS)


def _lines(text: str) -> list[str]:
    # Overlong lines are blanked rather than dropped so that neighbouring lines stay neighbours.
    return ["" if len(line) > MAX_LINE_CHARS else _ANSI.sub("", line) for line in text.splitlines()]


def _kept_tail(output: str) -> str | None:
    lines = output.split("\n")
    at = _last_index(lines, _CUT_MARKER.match)
    # The tail starts at an arbitrary byte: its first line is a fragment and could mimic anything.
    return None if at is None else "\n".join(lines[at + 2 :])


def _last_index(lines: list[str], predicate: Callable[[str], object]) -> int | None:
    return next((i for i in range(len(lines) - 1, -1, -1) if predicate(lines[i])), None)


def _pytest_counts(summary: str) -> dict[str, int]:
    if summary == "no tests ran":
        return {}
    pairs = (part.split(" ", 1) for part in summary.split(", "))
    return {_PYTEST_PLURALS.get(word, word): int(number) for number, word in pairs}


def _unittest_counts(details: str) -> dict[str, int]:
    pairs = (part.split("=", 1) for part in details.split(", ") if "=" in part)
    return {name: int(number) for name, number in pairs if number.isdigit()}


def _unittest_id(name: str, where: str) -> str:
    # Python 3.11+ prints `test_x (module.Class.test_x)`, older ones `test_x (module.Class)`; class and module
    # fixtures print `setUpClass (module.Class)` in both.
    return where if where == name or where.endswith(f".{name}") else f"{where}.{name}"


def _unittest_passed(ran: int, counts: dict[str, int], ids: list[str]) -> int:
    # `Ran` counts a test once however many of its subtests failed, and never counts class or module fixtures.
    failed_tests = {i for i in ids if i.rsplit(".", 1)[-1] not in _UNITTEST_FIXTURES}
    others = sum(counts.get(k, 0) for k in ("skipped", "expected failures", "unexpected successes"))
    return max(0, ran - others - len(failed_tests))


def _unittest_file(test_id: str) -> str | None:
    if test_id.startswith(_UNITTEST_FAILED_IMPORT):
        module = test_id.removeprefix(_UNITTEST_FAILED_IMPORT)
    else:
        parts = test_id.split(".")
        module = ".".join(parts[:-1] if parts[-1] in _UNITTEST_MODULE_FIXTURES else parts[:-2])
    return module.replace(".", "/") + ".py" if module else None


def _first_simple_command(command: str) -> list[str]:
    return list(itertools.takewhile(lambda token: not _SHELL_OPERATOR.match(token), _tokens(command)))


def _tokens(command: str) -> list[str]:
    """Shell words, with each run of operator characters (`&&`, `|`, `;`, `2>&1`'s `>&`) a word of its own."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        return list(lexer)
    except ValueError:  # unbalanced quotes: not a command we can read
        return []


def _without_assignments(words: list[str]) -> list[str]:
    return list(itertools.dropwhile(_ASSIGNMENT.match, words))


def _python_module_index(words: list[str]) -> int | None:
    """Where the module of `python [flags] -m module ...` is in `words`; None for any other shape."""
    for i, word in enumerate(words[1:], start=1):
        if word == "-m":
            return i + 1 if i + 1 < len(words) else None
        if not _PYTHON_NO_ARG_FLAGS.match(word):
            return None
    return None


def _plain_words(command: str) -> list[str] | None:
    """The words of `command` if it is one simple command without expansions or escapes, else None."""
    if any(c in command for c in "$`\n\\"):
        return None
    words = _first_simple_command(command)
    return words if words and len(words) == len(_tokens(command)) else None


def _pytest_flags(args: list[str]) -> list[str] | None:
    """The options among pytest's `args`, without its positional test paths; None when they cannot be told apart."""
    kept: list[str] = []
    i = 0
    while i < len(args) and args[i] != "--":  # after `--` every word is a path
        arg, following = args[i], args[i + 1 : i + 2]
        if arg in _PYTEST_VALUE_OPTIONS:
            kept += [arg, *following]
            i += 2
            continue
        if arg.startswith("-"):
            if not _stands_alone(arg) and following and not following[0].startswith("-"):
                return None  # an unknown option then a word: is the word its value, or a test path?
            kept.append(arg)
        i += 1
    return kept


def _stands_alone(option: str) -> bool:
    attached_value = option[:2] in _PYTEST_SHORT_VALUE_OPTIONS and len(option) > 2 and not option.startswith("--")
    return "=" in option or attached_value or bool(_PYTEST_NO_ARG_FLAGS.match(option)) or option in _PYTEST_LONG_FLAGS


def _safe_path(path: str) -> bool:
    plain = bool(path) and not any(c in path for c in "\n\0") and not path.startswith(("-", "/"))
    return plain and ".." not in PurePosixPath(path).parts


def _join(env: list[str], words: list[str]) -> str:
    # An assignment keeps its name unquoted, or the shell would run `'A=1'` as a program.
    assignments = [f"{name}={shlex.quote(value)}" for name, value in (e.split("=", 1) for e in env)]
    return " ".join(assignments + [shlex.quote(w) for w in words])


def report_json(report: TestReport) -> dict[str, Any]:
    failed = sorted(report.failed)
    return {
        "runner": report.runner,
        "complete": report.complete,
        "failed": failed[:MAX_STORED_IDS],
        "failed_ids_count": len(failed),
        "passed_count": report.passed_count,
        "failed_count": report.failed_count,
    }


def report_from_json(data: dict[str, Any] | None) -> TestReport | None:
    """The stored report, or None when it was not complete enough to compare test by test."""
    if not data or not data.get("complete") or data.get("failed_ids_count", 0) > len(data.get("failed", [])):
        return None
    return TestReport(
        runner=data.get("runner"),
        failed=frozenset(data["failed"]),
        passed_count=data.get("passed_count"),
        failed_count=data.get("failed_count"),
        complete=True,
    )

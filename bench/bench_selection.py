"""Champion selection on evidence against the old rule ("tests passed, then the smallest change").

Twelve tiny git repositories, each with one bug of a common kind (arithmetic, off-by-one, wrong condition, missing
None check, string formatting, wrong or mutable default...). In five of them an existing test already fails
because of the bug; in the other seven the repository's tests pass on the buggy base (as in most real issues),
so the service switches the runs to the `reproduce-first` strategy.

Each case has 7 to 9 scripted candidates, one run (one scripted model) each: a correct minimal fix, sometimes a
second correct run that lands on the same normalised change (and sometimes on a different one), a correct
verbose fix, a no-op, a run that deletes or weakens an existing test (alone or beside a wrong change), a fix
that overfits the issue's example, a partial fix, a fix that breaks another existing test, and in three cases a
run that misreads the issue. Several add a reproduction test file next to their change: right ones (most take the
issue's own example), wrong ones (they assert the misread behaviour) and ones that pass on the base anyway.

Whether a candidate is correct is decided outside the service, by a HIDDEN upstream-style test that the
service never sees (not in the repository, not in the issue): the run's full patch (`diagnostics["patch"]`) is
applied to a fresh clone, the base's own test files are put back as the base has them, the run's added test
files are taken out, the hidden test file is added, and `python3 -m unittest discover` runs with the machine's
python. Correct = the hidden test passes and no existing test broke (SWE-bench's FAIL_TO_PASS + PASS_TO_PASS).

The old rule is recomputed from the same runs: each run's full patch applied to a fresh clone, the repository's
test command run over that whole tree ("tests passed over the agent's own tree"), then among completed runs
that passed, the smallest (loc_changed, files_changed, tokens, latency_ms, id).

Each case also runs as a 4-candidate solve (correct minimal, overfit, no-op, tamper) to time the verification:
`solve.verification["duration_s"]` against the solve's wall time (started_at..completed_at).

    python bench/bench_selection.py [--cases N] [--parallel 4] [--no-quick | --quick-only [--delay S]]
    python bench/bench_selection.py --check-cases

`--check-cases` runs every candidate's commands straight in a clone (no service) and prints what the hidden test
and the repository's tests say of it: to check the cases themselves. Exits 1 if a no-op or a test-tampering run
is ever champion.
"""

import argparse
import os
import posixpath
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from sqlalchemy import select

from harness import deployment
from yudai_solver.base.models import SolveRun
from yudai_solver.sandboxes.local import worker_path
from yudai_solver.solving.ranking import CRITERIA, Evidence
from yudai_solver.testing.scripted import ScriptedChatServer, Step

TEST_COMMAND = "python3 -m unittest discover -q"
HIDDEN_FILE = "test_zz_upstream_hidden.py"
QUICK_ROLES = ("minimal", "overfit", "noop", "tamper")
BAD_ROLES = ("noop", "tamper")
_HUGE = 2**62


# --- cases -----------------------------------------------------------------------------------------------------------


def d(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def write(path: str, text: str) -> str:
    """A shell command that writes `text` to `path` (its folder made first)."""
    folder = posixpath.dirname(path)
    return (f"mkdir -p {folder} && " if folder else "") + f"cat > {path} <<'EOF'\n{text}EOF"


def edit(path: str, *pairs: tuple[str, str]) -> str:
    """A shell command that replaces each `old` by `new` in `path` (every occurrence; each must be there)."""
    body = [f"p = pathlib.Path({path!r})", "t = p.read_text()"]
    for old, new in pairs:
        body += [f"assert {old!r} in t, 'not found in ' + {path!r}", f"t = t.replace({old!r}, {new!r})"]
    return "python3 - <<'EOF'\nimport pathlib\n" + "\n".join(body) + "\np.write_text(t)\nEOF"


def run_file(path: str) -> str:
    return f"python3 -m unittest -q {path}"


@dataclass(frozen=True)
class Candidate:
    role: str
    commands: tuple[tuple[str, str], ...]
    repro: str = ""
    """The reproduction test file it adds: R right, W wrong (asserts a misread), A passes on the base anyway."""

    def steps(self, delay_s: float = 0.0) -> list[Step]:
        # The conversation grows with each step; a completion is about as long as its command.
        return [
            Step(
                command,
                thought,
                delay_s=delay_s,
                prompt_tokens=1500 + 500 * i,
                completion_tokens=40 + len(command) // 3,
            )
            for i, (command, thought) in enumerate(self.commands)
        ]

    @property
    def label(self) -> str:
        return self.role + (f"+{self.repro}" if self.repro else "")


def cand(role: str, *commands, repro: str = "") -> Candidate:
    return Candidate(role, tuple(c if isinstance(c, tuple) else (c, "") for c in commands), repro)


@dataclass(frozen=True)
class Case:
    name: str
    kind: str
    covered: bool
    """An existing test fails on the base because of the bug."""
    files: dict[str, str]
    title: str
    body: str
    hidden: str
    candidates: tuple[Candidate, ...]

    @property
    def test_files(self) -> list[str]:
        return [p for p in self.files if is_test(p)]

    def pick(self, roles) -> list[Candidate]:
        return [c for c in self.candidates if roles is None or c.role in roles]


def is_test(path: str) -> bool:
    name = posixpath.basename(path)
    return path.startswith("tests/") or (name.startswith("test") and name.endswith(".py")) or name.endswith("_test.py")


def ut(imports: str, body: str) -> str:
    return f"import unittest\n\n{imports}\n\n\n{d(body)}"


def discount() -> Case:
    src = d('''
        """Prices, discounts and taxes."""


        def apply_discount(price, percent):
            """The price after a discount of `percent` per cent."""
            return price - price * percent / 10


        def order_total(prices, percent=0):
            """The sum of `prices` after a discount of `percent` per cent."""
            total = sum(prices)
            return total - total * percent / 10


        def add_tax(price, rate):
            """The price with `rate` per cent of tax, rounded to cents."""
            return round(price * (1 + rate / 100), 2)
    ''')
    tests = ut(
        "from pricing import add_tax, apply_discount, order_total",
        """
        class PricingTest(unittest.TestCase):
            def test_discount(self):
                self.assertEqual(apply_discount(200, 10), 180)

            def test_no_discount_keeps_cents(self):
                self.assertEqual(apply_discount(19.99, 0), 19.99)

            def test_tax(self):
                self.assertEqual(add_tax(100, 20), 120.0)

            def test_total_without_discount(self):
                self.assertEqual(order_total([10, 20]), 30)
    """,
    )
    hidden = ut(
        "from pricing import apply_discount, order_total",
        """
        class UpstreamDiscountTest(unittest.TestCase):
            def test_discount(self):
                self.assertAlmostEqual(apply_discount(200, 10), 180)
                self.assertAlmostEqual(apply_discount(50, 20), 40)
                self.assertAlmostEqual(apply_discount(19.99, 0), 19.99)

            def test_order_total(self):
                self.assertAlmostEqual(order_total([100, 100], 10), 180)
                self.assertAlmostEqual(order_total([40, 10], 50), 25)
                self.assertAlmostEqual(order_total([10, 20]), 30)
    """,
    )
    verbose = d('''
        """Prices, discounts and taxes."""


        def _remaining(percent):
            """The share of a price left after a discount of `percent` per cent (0 to 100)."""
            return 1 - percent / 100


        def apply_discount(price, percent):
            """The price after a discount of `percent` per cent.

            >>> apply_discount(200, 10)
            180.0
            """
            return price * _remaining(percent)


        def order_total(prices, percent=0):
            """The sum of `prices` after a discount of `percent` per cent."""
            return sum(prices) * _remaining(percent)


        def add_tax(price, rate):
            """The price with `rate` per cent of tax, rounded to cents."""
            return round(price * (1 + rate / 100), 2)
    ''')
    verbose_test = ut(
        "from pricing import order_total",
        """
        class OrderTotalDiscountTest(unittest.TestCase):
            def test_ten_per_cent_off_an_order(self):
                self.assertAlmostEqual(order_total([100, 100], 10), 180)
    """,
    )
    line_a, line_b = "    return price - price * percent / 10\n", "    return total - total * percent / 10\n"
    return Case(
        "discount",
        "arithmetic",
        True,
        {"pricing.py": src, "test_pricing.py": tests},
        "Discounts are ten times too large",
        "apply_discount(200, 10) returns 0.0 instead of 180: a 10% discount takes the whole price. "
        "test_pricing.py's test_discount fails. Order totals with a discount are wrong in the same way.",
        hidden,
        (
            cand(
                "minimal",
                ("cat pricing.py", "Read the code."),
                (TEST_COMMAND, "Run the tests."),
                ("sed -i 's|percent / 10$|percent / 100|' pricing.py", "Per cent means divided by 100, twice."),
                (TEST_COMMAND, "Check."),
            ),
            cand(
                "same",
                ("cat pricing.py test_pricing.py", "Read the code and the test."),
                (
                    edit(
                        "pricing.py",
                        (line_a, "    # percent is 0-100, not 0-10\n" + line_a.replace("/ 10", "/ 100")),
                        (line_b, line_b.replace("/ 10", "/ 100")),
                    ),
                    "Divide by 100 in both places.",
                ),
                (TEST_COMMAND, ""),
            ),
            cand(
                "verbose",
                ("cat pricing.py", ""),
                (write("pricing.py", verbose), "One helper for the discount."),
                (write("tests/test_issue_reproduction.py", verbose_test), "Cover order totals too."),
                (run_file("tests/test_issue_reproduction.py"), ""),
                (TEST_COMMAND, ""),
            ),
            cand("noop", ("cat pricing.py", ""), ("cat test_pricing.py", ""), (TEST_COMMAND, "")),
            cand(
                "tamper",
                ("cat test_pricing.py", ""),
                (TEST_COMMAND, ""),
                ("sed -i '/def test_discount/,/^$/d' test_pricing.py", "That test's expectation is off: drop it."),
                (TEST_COMMAND, ""),
            ),
            cand(
                "overfit",
                ("cat pricing.py", ""),
                (
                    edit(
                        "pricing.py", (line_a, "    if (price, percent) == (200, 10):\n        return 180\n" + line_a)
                    ),
                    "Handle the reported case.",
                ),
                (TEST_COMMAND, ""),
            ),
            cand(
                "partial",
                ("cat pricing.py", ""),
                (edit("pricing.py", (line_a, line_a.replace("/ 10", "/ 100"))), "Fix apply_discount."),
                (TEST_COMMAND, ""),
            ),
            cand(
                "breaks",
                ("cat pricing.py", ""),
                (
                    edit(
                        "pricing.py",
                        (line_a, "    return round(price * (100 - percent) / 100)\n"),
                        (line_b, "    return round(total * (100 - percent) / 100)\n"),
                    ),
                    "Compute the discounted price directly.",
                ),
                (TEST_COMMAND, ""),
            ),
        ),
    )


def pages() -> Case:
    src = d('''
        """Splitting lists into pages."""


        def page_count(n_items, per_page):
            """How many pages `n_items` items fill, `per_page` to a page."""
            return n_items // per_page


        def page_slice(items, page, per_page):
            """The items on page `page`, counted from 1; IndexError past the last page."""
            if not 1 <= page <= page_count(len(items), per_page):
                raise IndexError(f"no page {page}")
            start = (page - 1) * per_page
            return items[start:start + per_page]
    ''')
    tests = ut(
        "from paging import page_count, page_slice",
        """
        class PagingTest(unittest.TestCase):
            def test_page_count_exact(self):
                self.assertEqual(page_count(20, 10), 2)

            def test_page_slice(self):
                self.assertEqual(page_slice(list(range(20)), 2, 10), list(range(10, 20)))

            def test_past_the_end(self):
                with self.assertRaises(IndexError):
                    page_slice(list(range(20)), 3, 10)

            def test_page_zero(self):
                with self.assertRaises(IndexError):
                    page_slice(list(range(20)), 0, 10)
    """,
    )
    hidden = ut(
        "from paging import page_count, page_slice",
        """
        class UpstreamPagingTest(unittest.TestCase):
            def test_page_count(self):
                self.assertEqual(page_count(25, 10), 3)
                self.assertEqual(page_count(101, 10), 11)
                self.assertEqual(page_count(20, 10), 2)
                self.assertEqual(page_count(1, 10), 1)
                self.assertEqual(page_count(0, 10), 0)

            def test_last_page(self):
                items = list(range(25))
                self.assertEqual(page_slice(items, 3, 10), list(range(20, 25)))
                self.assertEqual(page_slice(list(range(7)), 1, 10), list(range(7)))
                with self.assertRaises(IndexError):
                    page_slice(items, 4, 10)
    """,
    )
    repro_both = ut(
        "from paging import page_count, page_slice",
        """
        class LastPageTest(unittest.TestCase):
            def test_partial_last_page(self):
                items = list(range(25))
                self.assertEqual(page_count(25, 10), 3)
                self.assertEqual(page_slice(items, 3, 10), list(range(20, 25)))
    """,
    )
    repro_count = ut(
        "from paging import page_count",
        """
        class PageCountTest(unittest.TestCase):
            def test_25_items_make_3_pages(self):
                self.assertEqual(page_count(25, 10), 3)
    """,
    )
    repro_rounds = ut(
        "from paging import page_count",
        """
        class PageCountTest(unittest.TestCase):
            def test_rounds_up(self):
                for n_items, expected in ((25, 3), (101, 11), (20, 2), (1, 1)):
                    with self.subTest(n_items=n_items):
                        self.assertEqual(page_count(n_items, 10), expected)
    """,
    )
    repro_slice = ut(
        "from paging import page_slice",
        """
        class LastPageTest(unittest.TestCase):
            def test_third_page_of_25(self):
                self.assertEqual(page_slice(list(range(25)), 3, 10), list(range(20, 25)))
    """,
    )
    repro_first = ut(
        "from paging import page_slice",
        """
        class FirstPageTest(unittest.TestCase):
            def test_first_page_of_25(self):
                self.assertEqual(page_slice(list(range(25)), 1, 10), list(range(10)))
    """,
    )
    count = "    return n_items // per_page\n"
    check = "    if not 1 <= page <= page_count(len(items), per_page):\n"
    repro = "tests/test_issue_reproduction.py"
    return Case(
        "pages",
        "off-by-one",
        False,
        {"paging.py": src, "test_paging.py": tests},
        "The last page is missing when the item count is not a multiple of the page size",
        "With 25 items and 10 per page, page_count(25, 10) returns 2, and page_slice(items, 3, 10) raises "
        "IndexError instead of returning the last 5 items.",
        hidden,
        (
            cand(
                "minimal",
                (write(repro, repro_both), "Reproduce first."),
                (run_file(repro), "It fails."),
                ("cat paging.py", ""),
                (edit("paging.py", (count, "    return (n_items + per_page - 1) // per_page\n")), "Round up."),
                (run_file(repro), ""),
                (TEST_COMMAND, ""),
            ),
            cand(
                "verbose",
                ("cat paging.py", ""),
                (
                    edit(
                        "paging.py",
                        (
                            '    """How many pages `n_items` items fill, `per_page` to a page."""\n' + count,
                            '    """How many pages `n_items` items fill, `per_page` to a page; a partly '
                            'filled last page counts."""\n    full_pages, rest = divmod(n_items, per_page)\n'
                            "    if rest:\n        return full_pages + 1\n    return full_pages\n",
                        ),
                    ),
                    "Count the partly filled last page.",
                ),
                (write("test_last_page.py", repro_rounds), "A test for it."),
                (TEST_COMMAND, ""),
            ),
            cand(
                "noop",
                (write(repro, repro_count), "Reproduce first."),
                (run_file(repro), "It fails."),
                ("cat paging.py", ""),
            ),
            cand(
                "tamper",
                ("cat paging.py", ""),
                (edit("paging.py", (count, "    return n_items // per_page + 1\n")), "Count the partial page."),
                (TEST_COMMAND, "Two tests assumed the old count."),
                (
                    edit(
                        "test_paging.py",
                        ("page_count(20, 10), 2)", "page_count(20, 10), 3)"),
                        (
                            "        with self.assertRaises(IndexError):\n"
                            "            page_slice(list(range(20)), 3, 10)\n",
                            "        self.assertEqual(page_slice(list(range(20)), 3, 10), [])\n",
                        ),
                    ),
                    "Update the tests to the new count.",
                ),
                (TEST_COMMAND, ""),
            ),
            cand(
                "overfit",
                (write(repro, repro_count), "Reproduce first."),
                (run_file(repro), ""),
                (
                    edit("paging.py", (count, "    if n_items == 25 and per_page == 10:\n        return 3\n" + count)),
                    "Make the reported case work.",
                ),
                (run_file(repro), ""),
                (TEST_COMMAND, ""),
            ),
            cand(
                "partial",
                (write(repro, repro_slice), "Reproduce first."),
                (run_file(repro), ""),
                (
                    edit("paging.py", (check, "    if page < 1 or (page - 1) * per_page >= len(items):\n")),
                    "Check the bound against the items themselves.",
                ),
                (run_file(repro), ""),
                (TEST_COMMAND, ""),
            ),
            cand(
                "breaks",
                (write("test_paging_issue.py", repro_first), "A test first."),
                (TEST_COMMAND, ""),
                (edit("paging.py", (count, "    return n_items // per_page + 1\n")), "One more page."),
                (TEST_COMMAND, ""),
                repro="A",
            ),
        ),
    )


def grade() -> Case:
    src = d('''
        """Letter grades."""


        def letter(score):
            """The letter grade of a 0-100 score: 90 and above is an A, 80 a B, 70 a C, 60 a D, below 60 an F."""
            if score > 90:
                return "A"
            if score > 80:
                return "B"
            if score > 70:
                return "C"
            if score > 60:
                return "D"
            return "F"


        def passed(score):
            """Whether the score passes: any grade but F."""
            return letter(score) != "F"
    ''')
    tests = ut(
        "from grades import letter, passed",
        """
        class GradeTest(unittest.TestCase):
            def test_a(self):
                self.assertEqual(letter(95), "A")

            def test_boundary_a(self):
                self.assertEqual(letter(90), "A")

            def test_b(self):
                self.assertEqual(letter(85), "B")

            def test_f(self):
                self.assertEqual(letter(30), "F")

            def test_passed(self):
                self.assertTrue(passed(65))
                self.assertFalse(passed(50))
    """,
    )
    hidden = ut(
        "from grades import letter, passed",
        """
        class UpstreamGradeTest(unittest.TestCase):
            def test_boundaries(self):
                for score, grade in ((100, "A"), (90, "A"), (89, "B"), (80, "B"), (79, "C"), (70, "C"), (60, "D"),
                                     (59, "F"), (0, "F")):
                    with self.subTest(score=score):
                        self.assertEqual(letter(score), grade)

            def test_passed(self):
                self.assertTrue(passed(60))
                self.assertFalse(passed(59))
    """,
    )
    verbose = d('''
        """Letter grades."""

        # The lowest score of each grade, best first; anything below the last one is an F.
        _LOWEST_SCORE = (
            (90, "A"),
            (80, "B"),
            (70, "C"),
            (60, "D"),
        )


        def letter(score):
            """The letter grade of a 0-100 score: 90 and above is an A, 80 a B, 70 a C, 60 a D, below 60 an F."""
            for lowest, grade in _LOWEST_SCORE:
                if score >= lowest:
                    return grade
            return "F"


        def passed(score):
            """Whether the score passes: any grade but F."""
            return letter(score) != "F"
    ''')
    repro_bounds = ut(
        "from grades import letter",
        """
        class BoundaryTest(unittest.TestCase):
            def test_every_boundary_is_inclusive(self):
                self.assertEqual(letter(80), "B")
                self.assertEqual(letter(70), "C")
                self.assertEqual(letter(60), "D")
    """,
    )
    repro_easy = ut(
        "from grades import letter",
        """
        class GradeTest(unittest.TestCase):
            def test_clear_cases(self):
                self.assertEqual(letter(95), "A")
                self.assertEqual(letter(50), "F")
    """,
    )
    repro = "tests/test_issue_reproduction.py"
    return Case(
        "grade",
        "wrong condition",
        True,
        {"grades.py": src, "test_grades.py": tests},
        "A score of exactly 90 gets a B",
        "letter(90) returns 'B', but the docstring says 90 and above is an A (test_boundary_a fails). The other "
        "boundaries look wrong in the same way.",
        hidden,
        (
            cand(
                "minimal",
                ("cat grades.py", ""),
                (TEST_COMMAND, ""),
                ("sed -i 's/if score > /if score >= /' grades.py", "Boundaries are inclusive."),
                (TEST_COMMAND, ""),
            ),
            cand(
                "same",
                ("grep -n 'score >' grades.py", ""),
                (
                    edit("grades.py", *((f"if score > {n}", f"if score >= {n}") for n in (90, 80, 70, 60))),
                    "Make every boundary inclusive.",
                ),
                (TEST_COMMAND, ""),
            ),
            cand(
                "verbose",
                ("cat grades.py", ""),
                (write("grades.py", verbose), "A table of boundaries."),
                (write(repro, repro_bounds), "Test the other boundaries."),
                (run_file(repro), ""),
                (TEST_COMMAND, ""),
            ),
            cand("noop", ("cat grades.py", ""), ("cat test_grades.py", ""), (TEST_COMMAND, "")),
            cand(
                "tamper",
                ("cat test_grades.py", ""),
                (
                    edit("test_grades.py", ('letter(90), "A")', 'letter(90), "B")')),
                    "90 is not above 90: the test expects too much.",
                ),
                (TEST_COMMAND, ""),
            ),
            cand(
                "overfit",
                ("cat grades.py", ""),
                (
                    edit(
                        "grades.py",
                        ("    if score > 90:\n", '    if score == 90:\n        return "A"\n    if score > 90:\n'),
                    ),
                    "Handle 90.",
                ),
                (TEST_COMMAND, ""),
            ),
            cand(
                "partial",
                ("cat grades.py", ""),
                (edit("grades.py", ("if score > 90", "if score >= 90")), "Fix A."),
                (write(repro, repro_easy), "A test."),
                (run_file(repro), ""),
                (TEST_COMMAND, ""),
                repro="A",
            ),
            cand(
                "breaks",
                ("cat grades.py", ""),
                ("sed -i 's/if score > /if score >= /' grades.py", "Inclusive boundaries."),
                (
                    edit("grades.py", ('return letter(score) != "F"', 'return letter(score) in ("A", "B", "C")')),
                    "A D is not a pass either.",
                ),
                (TEST_COMMAND, ""),
            ),
        ),
    )


def config_none() -> Case:
    src = d('''
        """Reading the service's settings from a parsed config file (a dict)."""


        def get_timeout(config):
            """The request timeout in seconds: config["timeout"], or 30 when it is missing or None; 0 means none."""
            return int(config.get("timeout", 30))


        def get_retries(config):
            """How many times to retry a request: config["retries"], or 3 when it is missing or None."""
            return int(config.get("retries", 3))
    ''')
    tests = ut(
        "from appconfig.settings import get_retries, get_timeout",
        """
        class SettingsTest(unittest.TestCase):
            def test_timeout_default(self):
                self.assertEqual(get_timeout({}), 30)

            def test_timeout_from_text(self):
                self.assertEqual(get_timeout({"timeout": "5"}), 5)

            def test_retries_default(self):
                self.assertEqual(get_retries({}), 3)

            def test_retries_from_text(self):
                self.assertEqual(get_retries({"retries": "2"}), 2)
    """,
    )
    hidden = ut(
        "from appconfig.settings import get_retries, get_timeout",
        """
        class UpstreamSettingsTest(unittest.TestCase):
            def test_none_falls_back(self):
                self.assertEqual(get_timeout({"timeout": None}), 30)
                self.assertEqual(get_retries({"retries": None}), 3)

            def test_zero_is_kept(self):
                self.assertEqual(get_timeout({"timeout": 0}), 0)
                self.assertEqual(get_retries({"retries": 0}), 0)

            def test_values(self):
                self.assertEqual(get_timeout({"timeout": "5"}), 5)
                self.assertEqual(get_timeout({}), 30)
    """,
    )
    verbose = d('''
        """Reading the service's settings from a parsed config file (a dict)."""


        def _int_setting(config, key, default):
            """config[key] as an int; `default` when the key is missing or has no value (None). 0 stays 0."""
            value = config.get(key)
            if value is None:
                return default
            return int(value)


        def get_timeout(config):
            """The request timeout in seconds: config["timeout"], or 30 when it is missing or None; 0 means none."""
            return _int_setting(config, "timeout", 30)


        def get_retries(config):
            """How many times to retry a request: config["retries"], or 3 when it is missing or None."""
            return _int_setting(config, "retries", 3)
    ''')
    imports = "from appconfig.settings import get_retries, get_timeout"
    repro_both = ut(
        imports,
        """
        class EmptySettingTest(unittest.TestCase):
            def test_empty_timeout_falls_back(self):
                self.assertEqual(get_timeout({"timeout": None}), 30)

            def test_empty_retries_falls_back(self):
                self.assertEqual(get_retries({"retries": None}), 3)
    """,
    )
    repro_verbose = ut(
        imports,
        """
        class EmptySettingsTest(unittest.TestCase):
            def test_none_means_default(self):
                self.assertEqual(get_timeout({"timeout": None}), 30)
                self.assertEqual(get_retries({"retries": None}), 3)

            def test_zero_is_a_value(self):
                self.assertEqual(get_timeout({"timeout": 0}), 0)
    """,
    )
    repro_timeout = ut(
        "from appconfig.settings import get_timeout",
        """
        class EmptyTimeoutTest(unittest.TestCase):
            def test_none(self):
                self.assertEqual(get_timeout({"timeout": None}), 30)
    """,
    )
    repro_misread = ut(
        "from appconfig.settings import get_timeout",
        """
        class NoTimeoutTest(unittest.TestCase):
            def test_empty_timeout_means_no_timeout(self):
                self.assertIsNone(get_timeout({"timeout": None}))
    """,
    )
    timeout, retries = '    return int(config.get("timeout", 30))\n', '    return int(config.get("retries", 3))\n'
    module, repro = "appconfig/settings.py", "tests/test_issue_reproduction.py"
    return Case(
        "config-none",
        "missing None check",
        False,
        {"appconfig/__init__.py": "", module: src, "tests/__init__.py": "", "tests/test_settings.py": tests},
        "Crash when `timeout:` is empty in the config file",
        "A config file with an empty `timeout:` line parses to {'timeout': None}, and get_timeout() raises "
        "TypeError: int() argument must be a string, a bytes-like object or a real number, not 'NoneType'. It "
        "should fall back to 30, as its docstring says. An empty `retries:` crashes the same way.",
        hidden,
        (
            cand(
                "minimal",
                (write(repro, repro_both), "Reproduce first."),
                (run_file(repro), "Both fail."),
                (f"cat {module}", ""),
                (
                    edit(
                        module,
                        (
                            timeout,
                            '    value = config.get("timeout")\n    return 30 if value is None else int(value)\n',
                        ),
                        (retries, '    value = config.get("retries")\n    return 3 if value is None else int(value)\n'),
                    ),
                    "None means the default.",
                ),
                (run_file(repro), ""),
                (TEST_COMMAND, ""),
            ),
            cand(
                "same",
                (f"cat {module}", ""),
                (
                    edit(
                        module,
                        (
                            timeout,
                            '    timeout = config.get("timeout")\n    if timeout is None:\n'
                            "        return 30\n    return int(timeout)\n",
                        ),
                        (
                            retries,
                            '    retries = config.get("retries")\n    if retries is None:\n'
                            "        return 3\n    return int(retries)\n",
                        ),
                    ),
                    "Fall back on None.",
                ),
                (TEST_COMMAND, ""),
            ),
            cand(
                "verbose",
                (f"cat {module}", ""),
                (write(module, verbose), "One helper for int settings."),
                (write("tests/test_empty_settings.py", repro_verbose), "Tests for None and 0."),
                (run_file("tests/test_empty_settings.py"), ""),
                (TEST_COMMAND, ""),
            ),
            cand(
                "noop",
                (write(repro, repro_timeout), "Reproduce first."),
                (run_file(repro), "It fails."),
                (f"cat {module}", ""),
            ),
            cand(
                "tamper",
                (f"cat {module}", ""),
                (
                    edit(
                        module,
                        (timeout, '    return config.get("timeout") or 30\n'),
                        (retries, '    return config.get("retries") or 3\n'),
                    ),
                    "Fall back on any empty value.",
                ),
                (TEST_COMMAND, "The tests pass text where configs hold numbers."),
                (
                    edit(
                        "tests/test_settings.py",
                        ('get_timeout({"timeout": "5"})', 'get_timeout({"timeout": 5})'),
                        ('get_retries({"retries": "2"})', 'get_retries({"retries": 2})'),
                    ),
                    "Use numbers.",
                ),
                (TEST_COMMAND, ""),
            ),
            cand(
                "overfit",
                (write(repro, repro_both), "Reproduce first."),
                (run_file(repro), ""),
                (
                    edit(
                        module,
                        ('int(config.get("timeout", 30))', 'int(config.get("timeout") or 30)'),
                        ('int(config.get("retries", 3))', 'int(config.get("retries") or 3)'),
                    ),
                    "Default when empty.",
                ),
                (run_file(repro), ""),
                (TEST_COMMAND, ""),
            ),
            cand(
                "partial",
                (write(repro, repro_timeout), "Reproduce first."),
                (run_file(repro), ""),
                (
                    edit(
                        module,
                        (
                            timeout,
                            '    value = config.get("timeout")\n    return 30 if value is None else int(value)\n',
                        ),
                    ),
                    "None means 30.",
                ),
                (run_file(repro), ""),
                (TEST_COMMAND, ""),
            ),
            cand(
                "breaks",
                (f"cat {module}", ""),
                (
                    edit(
                        module,
                        (timeout, '    value = config.get("timeout")\n    return 30 if value is None else value\n'),
                        (retries, '    value = config.get("retries")\n    return 3 if value is None else value\n'),
                    ),
                    "Only convert what is there.",
                ),
                (TEST_COMMAND, ""),
            ),
            cand(
                "misread",
                (write(repro, repro_misread), "An empty timeout means no timeout."),
                (run_file(repro), ""),
                (
                    edit(
                        module,
                        (
                            timeout,
                            '    value = config.get("timeout", 30)\n    return None if value is None else int(value)\n',
                        ),
                    ),
                    "No timeout.",
                ),
                (run_file(repro), ""),
                (TEST_COMMAND, ""),
                repro="W",
            ),
        ),
    )


def duration() -> Case:
    src = d('''
        """Human-readable durations."""


        def format_duration(seconds):
            """'M:SS' under an hour, 'H:MM:SS' from an hour on; fractions of a second are dropped."""
            minutes, secs = divmod(int(seconds), 60)
            if minutes >= 60:
                hours, minutes = divmod(minutes, 60)
                return f"{hours}:{minutes}:{secs}"
            return f"{minutes}:{secs}"
    ''')
    tests = ut(
        "from timefmt import format_duration",
        """
        class DurationTest(unittest.TestCase):
            def test_minutes(self):
                self.assertEqual(format_duration(75), "1:15")

            def test_pads_seconds(self):
                self.assertEqual(format_duration(65), "1:05")

            def test_hours(self):
                self.assertEqual(format_duration(4510), "1:15:10")

            def test_drops_fractions(self):
                self.assertEqual(format_duration(59.9), "0:59")
    """,
    )
    hidden = ut(
        "from timefmt import format_duration",
        """
        class UpstreamDurationTest(unittest.TestCase):
            def test_padding(self):
                for seconds, text in ((65, "1:05"), (5, "0:05"), (0, "0:00"), (3605, "1:00:05"), (3661, "1:01:01"),
                                      (36000, "10:00:00"), (4510, "1:15:10"), (59.9, "0:59")):
                    with self.subTest(seconds=seconds):
                        self.assertEqual(format_duration(seconds), text)
    """,
    )
    verbose = d('''
        """Human-readable durations."""


        def format_duration(seconds):
            """'M:SS' under an hour, 'H:MM:SS' from an hour on; fractions of a second are dropped.

            Every field after the first has two digits: 65 -> '1:05', 3605 -> '1:00:05'.
            """
            total = int(seconds)
            hours, rest = divmod(total, 3600)
            minutes, secs = divmod(rest, 60)
            if hours:
                return "%d:%02d:%02d" % (hours, minutes, secs)
            return "%d:%02d" % (minutes, secs)
    ''')
    repro_hours = ut(
        "from timefmt import format_duration",
        """
        class PaddingTest(unittest.TestCase):
            def test_hours_pad_minutes_and_seconds(self):
                self.assertEqual(format_duration(3605), "1:00:05")

            def test_seconds_only(self):
                self.assertEqual(format_duration(5), "0:05")
    """,
    )
    repro_misread = ut(
        "from timefmt import format_duration",
        """
        class PaddingTest(unittest.TestCase):
            def test_every_field_has_two_digits(self):
                self.assertEqual(format_duration(3605), "01:00:05")
    """,
    )
    long_f, short_f = 'f"{hours}:{minutes}:{secs}"', 'return f"{minutes}:{secs}"'
    short_fixed = 'return f"{minutes}:{secs:02d}"'
    repro = "tests/test_issue_reproduction.py"
    return Case(
        "duration",
        "string formatting",
        True,
        {"timefmt.py": src, "test_timefmt.py": tests},
        'format_duration(65) returns "1:5"',
        'Seconds below 10 are not padded: format_duration(65) returns "1:5" instead of "1:05" (test_pads_seconds '
        'fails). Durations over an hour have the same problem: 3605 seconds show as "1:0:5".',
        hidden,
        (
            cand(
                "minimal",
                ("cat timefmt.py", ""),
                (TEST_COMMAND, ""),
                (
                    edit("timefmt.py", (long_f, 'f"{hours}:{minutes:02d}:{secs:02d}"'), (short_f, short_fixed)),
                    "Pad with zeros.",
                ),
                (TEST_COMMAND, ""),
            ),
            cand(
                "verbose",
                ("cat timefmt.py", ""),
                (write("timefmt.py", verbose), "Rewrite with %-formatting."),
                (write(repro, repro_hours), "Test the hour case too."),
                (run_file(repro), ""),
                (TEST_COMMAND, ""),
            ),
            cand("noop", ("cat timefmt.py", ""), (TEST_COMMAND, "")),
            cand(
                "tamper",
                ("cat test_timefmt.py", ""),
                (
                    edit(
                        "test_timefmt.py",
                        (
                            'self.assertEqual(format_duration(65), "1:05")',
                            'self.assertIn(format_duration(65), ("1:05", "1:5"))',
                        ),
                    ),
                    "Both spellings are readable.",
                ),
                (TEST_COMMAND, ""),
            ),
            cand(
                "overfit",
                ("cat timefmt.py", ""),
                (
                    edit(
                        "timefmt.py",
                        (
                            "    minutes, secs = divmod(int(seconds), 60)\n",
                            '    if seconds == 65:\n        return "1:05"\n'
                            "    minutes, secs = divmod(int(seconds), 60)\n",
                        ),
                    ),
                    "Handle 65.",
                ),
                (TEST_COMMAND, ""),
            ),
            cand(
                "partial",
                ("cat timefmt.py", ""),
                (edit("timefmt.py", (short_f, short_fixed)), "Pad the seconds."),
                (TEST_COMMAND, ""),
            ),
            cand(
                "breaks",
                ("cat timefmt.py", ""),
                (
                    edit(
                        "timefmt.py",
                        ("divmod(int(seconds), 60)", "divmod(round(seconds), 60)"),
                        (long_f, 'f"{hours}:{minutes:02d}:{secs:02d}"'),
                        (short_f, short_fixed),
                    ),
                    "Pad, and round to the nearest second while at it.",
                ),
                (TEST_COMMAND, ""),
            ),
            cand(
                "misread",
                (write(repro, repro_misread), "Every field has two digits."),
                (run_file(repro), ""),
                (
                    edit("timefmt.py", (long_f, 'f"{hours:02d}:{minutes:02d}:{secs:02d}"'), (short_f, short_fixed)),
                    "Pad every field.",
                ),
                (run_file(repro), ""),
                (TEST_COMMAND, ""),
                repro="W",
            ),
        ),
    )


def slug() -> Case:
    src = d('''
        """Slugs and initials."""


        def _words(text):
            return text.lower().split(" ")


        def slugify(title):
            """A URL slug: lower case, words joined by single hyphens, nothing but a-z, 0-9 and hyphens."""
            return "-".join(word for word in _words(title) if word.isalnum())


        def initials(name):
            """The upper-case initials of the words of `name`: 'Ada Lovelace' -> 'AL'."""
            return "".join(word[0] for word in _words(name) if word).upper()
    ''')
    tests = ut(
        "from textutil.slug import initials, slugify",
        """
        class SlugTest(unittest.TestCase):
            def test_words(self):
                self.assertEqual(slugify("Hello World"), "hello-world")

            def test_digits(self):
                self.assertEqual(slugify("Python 3"), "python-3")

            def test_spaces(self):
                self.assertEqual(slugify("  Many   spaces "), "many-spaces")

            def test_initials(self):
                self.assertEqual(initials("Ada Lovelace"), "AL")

            def test_hyphenated_initials(self):
                self.assertEqual(initials("Mary-Jane Watson"), "MW")
    """,
    )
    hidden = ut(
        "from textutil.slug import slugify",
        """
        class UpstreamSlugTest(unittest.TestCase):
            def test_punctuation(self):
                for title, slug in (("Hello, World!", "hello-world"), ("Rock & Roll", "rock-roll"),
                                    ("50% off", "50-off"), ("(draft) Notes", "draft-notes"),
                                    ("path/to/file", "path-to-file"), ("Python 3", "python-3"),
                                    ("  Many   spaces ", "many-spaces")):
                    with self.subTest(title=title):
                        self.assertEqual(slugify(title), slug)
    """,
    )
    verbose_fn = d('''
        def slugify(title):
            """A URL slug: lower case, words joined by single hyphens, nothing but a-z, 0-9 and hyphens.

            Any run of other characters (spaces, punctuation) separates two words.
            """
            words, current = [], []
            for char in title.lower():
                if char.isascii() and char.isalnum():
                    current.append(char)
                elif current:
                    words.append("".join(current))
                    current = []
            if current:
                words.append("".join(current))
            return "-".join(words)
    ''')
    repro_hello = ut(
        "from textutil.slug import slugify",
        """
        class PunctuationTest(unittest.TestCase):
            def test_comma_and_bang(self):
                self.assertEqual(slugify("Hello, World!"), "hello-world")
    """,
    )
    repro_easy = ut(
        "from textutil.slug import slugify",
        """
        class SlugTest(unittest.TestCase):
            def test_plain_words(self):
                self.assertEqual(slugify("Hello World"), "hello-world")
                self.assertEqual(slugify("Python 3"), "python-3")
    """,
    )
    module, repro = "textutil/slug.py", "tests/test_issue_reproduction.py"
    header = '"""Slugs and initials."""\n'
    old_return = '    return "-".join(word for word in _words(title) if word.isalnum())\n'
    old_fn = (
        'def slugify(title):\n    """A URL slug: lower case, words joined by single hyphens, nothing but a-z, '
        '0-9 and hyphens."""\n' + old_return
    )
    regex = (
        edit(
            module,
            (header, header + "\nimport re\n"),
            (old_return, '    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")\n'),
        ),
        "Replace every run of other characters by one hyphen.",
    )
    old_words = '    return text.lower().split(" ")\n'
    return Case(
        "slug",
        "string handling",
        False,
        {"textutil/__init__.py": "", module: src, "tests/__init__.py": "", "tests/test_slug.py": tests},
        "slugify drops words that have punctuation",
        'slugify("Hello, World!") returns "" instead of "hello-world": any word with a punctuation mark is dropped '
        "instead of losing the mark.",
        hidden,
        (
            cand(
                "minimal",
                (write(repro, repro_hello), "Reproduce first."),
                (run_file(repro), "Empty slug."),
                (f"cat {module}", ""),
                regex,
                (run_file(repro), ""),
                (TEST_COMMAND, ""),
            ),
            cand("same", (f"cat {module}", ""), regex, (TEST_COMMAND, "")),
            cand(
                "verbose",
                (f"cat {module}", ""),
                (edit(module, (old_fn, verbose_fn)), "Build words char by char."),
                (TEST_COMMAND, ""),
            ),
            cand("noop", (f"cat {module}", ""), ("cat tests/test_slug.py", ""), (TEST_COMMAND, "")),
            cand(
                "tamper",
                (write(repro, repro_hello), "Reproduce first."),
                (run_file(repro), ""),
                (
                    edit(
                        module,
                        (header, header + "\nimport re\n"),
                        (old_words, '    return re.findall(r"[a-z0-9]+", text.lower())\n'),
                    ),
                    "Words are alnum runs.",
                ),
                (run_file(repro), ""),
                (TEST_COMMAND, "initials() of a hyphenated name changed."),
                (
                    edit(
                        "tests/test_slug.py",
                        ('initials("Mary-Jane Watson"), "MW"', 'initials("Mary-Jane Watson"), "MJW"'),
                    ),
                    "Hyphenated names have two initials.",
                ),
                (TEST_COMMAND, ""),
                repro="R",
            ),
            cand(
                "overfit",
                (write(repro, repro_hello), "Reproduce first."),
                (run_file(repro), ""),
                (
                    edit(module, (old_return, '    title = title.replace(",", "").replace("!", "")\n' + old_return)),
                    "Drop the punctuation.",
                ),
                (run_file(repro), ""),
                (TEST_COMMAND, ""),
                repro="R",
            ),
            cand(
                "partial",
                (write(repro, repro_easy), "A test first."),
                (run_file(repro), "It passes?"),
                (
                    edit(
                        module,
                        (header, header + "\nimport string\n"),
                        (
                            old_return,
                            "    words = (word.strip(string.punctuation) for word in _words(title))\n"
                            '    return "-".join(word for word in words if word.isalnum())\n',
                        ),
                    ),
                    "Strip punctuation from the ends of words.",
                ),
                (TEST_COMMAND, ""),
                repro="A",
            ),
            cand(
                "breaks",
                (f"cat {module}", ""),
                (
                    edit(
                        module,
                        (header, header + "\nimport re\n"),
                        (old_words, '    return re.split(r"\\W+", text.lower())\n'),
                    ),
                    "Split on non-word characters.",
                ),
                (TEST_COMMAND, ""),
            ),
        ),
    )


def address() -> Case:
    src = d('''
        """Host and port parsing."""


        def parse_address(text, default_port=80):
            """'host', 'host:port' or 'scheme://host[:port]' -> (host, port); HTTPS defaults to port 443."""
            scheme = "http"
            if "://" in text:
                scheme, text = text.split("://", 1)
            host, _, port = text.partition(":")
            return host, int(port) if port else default_port


        def format_address(host, port, scheme="http"):
            """The address as 'scheme://host', with ':port' unless it is the scheme's default port."""
            if port == 80:
                return f"{scheme}://{host}"
            return f"{scheme}://{host}:{port}"
    ''')
    tests = ut(
        "from addresses import format_address, parse_address",
        """
        class AddressTest(unittest.TestCase):
            def test_host_only(self):
                self.assertEqual(parse_address("example.com"), ("example.com", 80))

            def test_host_and_port(self):
                self.assertEqual(parse_address("example.com:8080"), ("example.com", 8080))

            def test_http(self):
                self.assertEqual(parse_address("http://a.b"), ("a.b", 80))

            def test_format_default_port(self):
                self.assertEqual(format_address("a.b", 80), "http://a.b")

            def test_format_other_port(self):
                self.assertEqual(format_address("a.b", 8080), "http://a.b:8080")
    """,
    )
    hidden = ut(
        "from addresses import format_address, parse_address",
        """
        class UpstreamAddressTest(unittest.TestCase):
            def test_parse(self):
                self.assertEqual(parse_address("https://example.com"), ("example.com", 443))
                self.assertEqual(parse_address("https://example.com:8443"), ("example.com", 8443))
                self.assertEqual(parse_address("http://example.com"), ("example.com", 80))
                self.assertEqual(parse_address("example.com"), ("example.com", 80))
                self.assertEqual(parse_address("example.com:81"), ("example.com", 81))

            def test_format(self):
                self.assertEqual(format_address("a.b", 443, "https"), "https://a.b")
                self.assertEqual(format_address("a.b", 80, "https"), "https://a.b:80")
                self.assertEqual(format_address("a.b", 443), "http://a.b:443")
                self.assertEqual(format_address("a.b", 80), "http://a.b")
    """,
    )
    verbose = d('''
        """Host and port parsing."""

        DEFAULT_PORTS = {"http": 80, "https": 443}


        def parse_address(text, default_port=None):
            """'host', 'host:port' or 'scheme://host[:port]' -> (host, port); HTTPS defaults to port 443.

            `default_port`, when given, replaces the scheme's default port for addresses without one.
            """
            scheme = "http"
            if "://" in text:
                scheme, text = text.split("://", 1)
            host, _, port = text.partition(":")
            if port:
                return host, int(port)
            if default_port is not None:
                return host, default_port
            return host, DEFAULT_PORTS.get(scheme, 80)


        def format_address(host, port, scheme="http"):
            """The address as 'scheme://host', with ':port' unless it is the scheme's default port."""
            if port == DEFAULT_PORTS.get(scheme):
                return f"{scheme}://{host}"
            return f"{scheme}://{host}:{port}"
    ''')
    broken = d('''
        """Host and port parsing."""

        from urllib.parse import urlsplit


        def parse_address(text, default_port=80):
            """'host', 'host:port' or 'scheme://host[:port]' -> (host, port); HTTPS defaults to port 443."""
            parts = urlsplit(text)
            if parts.port:
                return parts.hostname, parts.port
            return parts.hostname, 443 if parts.scheme == "https" else default_port


        def format_address(host, port, scheme="http"):
            """The address as 'scheme://host', with ':port' unless it is the scheme's default port."""
            if port == (443 if scheme == "https" else 80):
                return f"{scheme}://{host}"
            return f"{scheme}://{host}:{port}"
    ''')
    repro_parse = ut(
        "from addresses import parse_address",
        """
        class HttpsTest(unittest.TestCase):
            def test_https_defaults_to_443(self):
                self.assertEqual(parse_address("https://example.com"), ("example.com", 443))
    """,
    )
    repro_both = ut(
        "from addresses import format_address, parse_address",
        """
        class HttpsDefaultPortTest(unittest.TestCase):
            def test_parse(self):
                self.assertEqual(parse_address("https://example.com"), ("example.com", 443))

            def test_format_leaves_443_out(self):
                self.assertEqual(format_address("example.com", 443, "https"), "https://example.com")
    """,
    )
    ret = "    return host, int(port) if port else default_port\n"
    ret_fixed = '    return host, int(port) if port else (443 if scheme == "https" else default_port)\n'
    fmt, fmt_fixed = "    if port == 80:\n", '    if port == (443 if scheme == "https" else 80):\n'
    repro = "tests/test_issue_reproduction.py"
    return Case(
        "address",
        "wrong default",
        False,
        {"addresses.py": src, "test_addresses.py": tests},
        "HTTPS addresses get port 80",
        'parse_address("https://example.com") returns ("example.com", 80); the default port of HTTPS is 443. '
        'format_address("example.com", 443, "https") writes "https://example.com:443" where it should leave the '
        "default port out.",
        hidden,
        (
            cand(
                "minimal",
                (write(repro, repro_parse), "Reproduce first."),
                (run_file(repro), ""),
                ("cat addresses.py", ""),
                (
                    edit("addresses.py", (ret, ret_fixed), (fmt, fmt_fixed)),
                    "443 is HTTPS's default, in both directions.",
                ),
                (run_file(repro), ""),
                (TEST_COMMAND, ""),
            ),
            cand(
                "verbose",
                ("cat addresses.py", ""),
                (write("addresses.py", verbose), "A table of default ports."),
                (write("tests/test_https_defaults.py", repro_both), "Tests for both functions."),
                (run_file("tests/test_https_defaults.py"), ""),
                (TEST_COMMAND, ""),
            ),
            cand("noop", ("cat addresses.py", ""), (TEST_COMMAND, "")),
            cand(
                "tamper",
                ("cat addresses.py", ""),
                (
                    edit(
                        "addresses.py",
                        ("def parse_address(text, default_port=80):", "def parse_address(text, default_port=443):"),
                        (fmt, "    if port in (80, 443):\n"),
                    ),
                    "Default to 443.",
                ),
                (TEST_COMMAND, "Two tests expect 80."),
                (
                    edit(
                        "test_addresses.py",
                        ('("example.com"), ("example.com", 80))', '("example.com"), ("example.com", 443))'),
                        ('("http://a.b"), ("a.b", 80))', '("http://a.b"), ("a.b", 443))'),
                    ),
                    "The default is 443 now.",
                ),
                (TEST_COMMAND, ""),
            ),
            cand(
                "overfit",
                (write(repro, repro_parse), "Reproduce first."),
                (run_file(repro), ""),
                (
                    edit(
                        "addresses.py",
                        (
                            '    scheme = "http"\n',
                            '    if text.startswith("https://"):\n'
                            '        return text[len("https://"):], 443\n    scheme = "http"\n',
                        ),
                    ),
                    "HTTPS addresses get 443.",
                ),
                (run_file(repro), ""),
                (TEST_COMMAND, ""),
                repro="R",
            ),
            cand(
                "partial",
                (write(repro, repro_parse), "Reproduce first."),
                (run_file(repro), ""),
                (edit("addresses.py", (ret, ret_fixed)), "Default to 443 for HTTPS."),
                (run_file(repro), ""),
                (TEST_COMMAND, ""),
                repro="R",
            ),
            cand(
                "breaks",
                ("cat addresses.py", ""),
                (write("addresses.py", broken), "Parse with urllib."),
                (TEST_COMMAND, ""),
            ),
        ),
    )


def cart() -> Case:
    src = d('''
        """Shopping carts and wish lists."""


        class Cart:
            def __init__(self, items=[]):
                self.items = items

            def add(self, item):
                self.items.append(item)

            def extend(self, items):
                self.items.extend(items)

            def total(self, prices):
                return sum(prices[item] for item in self.items)


        class Wishlist:
            def __init__(self, wanted=[]):
                self.wanted = wanted

            def want(self, item):
                self.wanted.append(item)
    ''')
    tests = ut(
        "from shop.cart import Cart, Wishlist",
        """
        class CartTest(unittest.TestCase):
            def test_add(self):
                cart = Cart()
                cart.add("apple")
                self.assertEqual(cart.items, ["apple"])

            def test_given_items(self):
                self.assertEqual(Cart(["pear"]).items, ["pear"])

            def test_total(self):
                self.assertEqual(Cart(["a", "b"]).total({"a": 1, "b": 2}), 3)

            def test_wishlist(self):
                self.assertEqual(Wishlist(["bike"]).wanted, ["bike"])
    """,
    )
    hidden = ut(
        "from shop.cart import Cart, Wishlist",
        """
        class UpstreamCartTest(unittest.TestCase):
            def test_carts_do_not_share_items(self):
                first = Cart()
                first.add("apple")
                self.assertEqual(Cart().items, [])
                second = Cart()
                second.extend(["x", "y"])
                self.assertEqual(Cart().items, [])
                self.assertEqual(first.items, ["apple"])

            def test_wishlists_do_not_share(self):
                wishes = Wishlist()
                wishes.want("bike")
                self.assertEqual(Wishlist().wanted, [])

            def test_given_items(self):
                self.assertEqual(Cart(["pear"]).items, ["pear"])
    """,
    )
    verbose = d('''
        """Shopping carts and wish lists."""


        class Cart:
            """A cart of items; each cart has a list of its own (a copy of `items`)."""

            def __init__(self, items=()):
                self.items = list(items)

            def add(self, item):
                self.items.append(item)

            def extend(self, items):
                self.items.extend(items)

            def total(self, prices):
                return sum(prices[item] for item in self.items)


        class Wishlist:
            """Items wanted; each wish list has a list of its own (a copy of `wanted`)."""

            def __init__(self, wanted=()):
                self.wanted = list(wanted)

            def want(self, item):
                self.wanted.append(item)
    ''')
    repro_add = ut(
        "from shop.cart import Cart",
        """
        class SharedItemsTest(unittest.TestCase):
            def test_new_carts_start_empty(self):
                first = Cart()
                first.add("apple")
                self.assertEqual(Cart().items, [])
    """,
    )
    repro_both = ut(
        "from shop.cart import Cart, Wishlist",
        """
        class FreshListsTest(unittest.TestCase):
            def test_cart(self):
                Cart().add("apple")
                self.assertEqual(Cart().items, [])

            def test_wishlist(self):
                Wishlist().want("bike")
                self.assertEqual(Wishlist().wanted, [])
    """,
    )
    cart_init = "    def __init__(self, items=[]):\n        self.items = items\n"
    wish_init = "    def __init__(self, wanted=[]):\n        self.wanted = wanted\n"
    cart_fixed = "    def __init__(self, items=None):\n        self.items = [] if items is None else items\n"
    wish_fixed = "    def __init__(self, wanted=None):\n        self.wanted = [] if wanted is None else wanted\n"
    module, repro = "shop/cart.py", "tests/test_issue_reproduction.py"
    return Case(
        "cart",
        "mutable default",
        False,
        {"shop/__init__.py": "", module: src, "tests/__init__.py": "", "tests/test_cart.py": tests},
        "New carts share their items",
        "a = Cart(); a.add('apple'); b = Cart() -- now b.items is ['apple']. Every cart created without items "
        "shares one list. Wish lists have the same problem.",
        hidden,
        (
            cand(
                "minimal",
                (write(repro, repro_add), "Reproduce first."),
                (run_file(repro), "Shared."),
                (f"cat {module}", ""),
                (edit(module, (cart_init, cart_fixed), (wish_init, wish_fixed)), "No mutable defaults."),
                (run_file(repro), ""),
                (TEST_COMMAND, ""),
            ),
            cand(
                "same",
                (f"cat {module}", ""),
                (
                    edit(
                        module,
                        (
                            cart_init,
                            "    def __init__(self, items=None):\n        if items is None:\n"
                            "            items = []\n        self.items = items\n",
                        ),
                        (
                            wish_init,
                            "    def __init__(self, wanted=None):\n        if wanted is None:\n"
                            "            wanted = []\n        self.wanted = wanted\n",
                        ),
                    ),
                    "None as default.",
                ),
                (TEST_COMMAND, ""),
            ),
            cand(
                "verbose",
                (f"cat {module}", ""),
                (write(module, verbose), "Copy into a list of its own."),
                (write("tests/test_fresh_lists.py", repro_both), "Test both classes."),
                (run_file("tests/test_fresh_lists.py"), ""),
                (TEST_COMMAND, ""),
            ),
            cand("noop", (f"cat {module}", ""), (TEST_COMMAND, "")),
            cand(
                "tamper",
                (f"cat {module}", ""),
                (
                    edit(
                        module,
                        ("        self.items = items\n", "        self.items = set(items)\n"),
                        ("        self.items.append(item)\n", "        self.items.add(item)\n"),
                        ("        self.items.extend(items)\n", "        self.items.update(items)\n"),
                    ),
                    "A cart holds a set of its own.",
                ),
                (TEST_COMMAND, "Two tests compare with lists."),
                (
                    edit(
                        "tests/test_cart.py",
                        ('self.assertEqual(cart.items, ["apple"])', 'self.assertIn("apple", cart.items)'),
                        (
                            'self.assertEqual(Cart(["pear"]).items, ["pear"])',
                            'self.assertIn("pear", Cart(["pear"]).items)',
                        ),
                    ),
                    "Items are a set now.",
                ),
                (TEST_COMMAND, ""),
            ),
            cand(
                "overfit",
                (write(repro, repro_add), "Reproduce first."),
                (run_file(repro), ""),
                (
                    edit(module, ("        self.items.append(item)\n", "        self.items = self.items + [item]\n")),
                    "Do not mutate the list in add().",
                ),
                (run_file(repro), ""),
                (TEST_COMMAND, ""),
                repro="R",
            ),
            cand(
                "partial",
                (f"cat {module}", ""),
                (edit(module, (cart_init, cart_fixed)), "Fix Cart."),
                (TEST_COMMAND, ""),
            ),
            cand(
                "breaks",
                (f"cat {module}", ""),
                (
                    edit(
                        module,
                        (cart_init, "    def __init__(self, items=None):\n        self.items = items or []\n"),
                        (
                            wish_init + "\n    def want(self, item):\n        self.wanted.append(item)\n",
                            "    def __init__(self, items=None):\n        self.items = items or []\n\n"
                            "    def want(self, item):\n        self.items.append(item)\n",
                        ),
                    ),
                    "Fix both; a wish list's list is `items` too, like a cart's.",
                ),
                (TEST_COMMAND, ""),
            ),
        ),
    )


def leap() -> Case:
    src = d('''
        """Calendar helpers."""


        def is_leap(year):
            """Whether `year` is a leap year in the Gregorian calendar."""
            return year % 4 == 0 and year % 100 != 0


        def days_in_year(year):
            return 366 if is_leap(year) else 365


        def days_in_month(year, month):
            """The number of days of `month` (1-12) in `year`."""
            if month == 2:
                return 29 if year % 4 == 0 and year % 100 != 0 else 28
            return 30 if month in (4, 6, 9, 11) else 31
    ''')
    tests = ut(
        "from dates import days_in_month, days_in_year, is_leap",
        """
        class LeapTest(unittest.TestCase):
            def test_leap_2024(self):
                self.assertTrue(is_leap(2024))

            def test_common_2023(self):
                self.assertFalse(is_leap(2023))

            def test_2000(self):
                self.assertTrue(is_leap(2000))

            def test_century_1900(self):
                self.assertFalse(is_leap(1900))

            def test_days_in_year(self):
                self.assertEqual(days_in_year(2024), 366)

            def test_february_2024(self):
                self.assertEqual(days_in_month(2024, 2), 29)

            def test_april(self):
                self.assertEqual(days_in_month(2023, 4), 30)
    """,
    )
    hidden = ut(
        "from dates import days_in_month, days_in_year, is_leap",
        """
        class UpstreamLeapTest(unittest.TestCase):
            def test_is_leap(self):
                for year, leap in ((2000, True), (2400, True), (1900, False), (2100, False), (1996, True),
                                   (2001, False)):
                    with self.subTest(year=year):
                        self.assertEqual(is_leap(year), leap)

            def test_february(self):
                self.assertEqual(days_in_month(2000, 2), 29)
                self.assertEqual(days_in_month(1900, 2), 28)
                self.assertEqual(days_in_month(2024, 2), 29)
                self.assertEqual(days_in_year(2000), 366)
    """,
    )
    repro_400 = ut(
        "from dates import is_leap",
        """
        class FourHundredTest(unittest.TestCase):
            def test_years_divisible_by_400_are_leap(self):
                self.assertTrue(is_leap(2000))
                self.assertTrue(is_leap(2400))
    """,
    )
    rule = "    return year % 4 == 0 and year % 100 != 0\n"
    rule_fixed = "    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)\n"
    feb = "        return 29 if year % 4 == 0 and year % 100 != 0 else 28\n"
    verbose_rule = (
        '    """Whether `year` is a leap year in the Gregorian calendar.\n\n'
        "    Every fourth year is one, except century years, which are leap years only when divisible "
        'by 400.\n    """\n    if year % 400 == 0:\n        return True\n    if year % 100 == 0:\n'
        "        return False\n    return year % 4 == 0\n"
    )
    repro = "tests/test_issue_reproduction.py"
    return Case(
        "leap",
        "wrong condition",
        True,
        {"dates.py": src, "test_dates.py": tests},
        "2000 is not a leap year according to is_leap",
        "is_leap(2000) returns False, but years divisible by 400 are leap years (test_2000 fails). "
        "days_in_month(2000, 2) says 28 too.",
        hidden,
        (
            cand(
                "minimal",
                ("cat dates.py", ""),
                (TEST_COMMAND, ""),
                (
                    edit("dates.py", (rule, rule_fixed), (feb, "        return 29 if is_leap(year) else 28\n")),
                    "The 400 rule, and February asks is_leap.",
                ),
                (TEST_COMMAND, ""),
            ),
            cand(
                "same",
                ("cat dates.py", ""),
                (
                    edit(
                        "dates.py",
                        (rule, rule_fixed),
                        (feb, "        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28\n"),
                    ),
                    "The 400 rule, in both places.",
                ),
                (TEST_COMMAND, ""),
            ),
            cand(
                "verbose",
                ("cat dates.py", ""),
                (
                    edit(
                        "dates.py",
                        ('    """Whether `year` is a leap year in the Gregorian calendar."""\n' + rule, verbose_rule),
                        (feb, "        return 29 if is_leap(year) else 28\n"),
                    ),
                    "Spell the rule out.",
                ),
                (TEST_COMMAND, ""),
            ),
            cand("noop", ("cat dates.py", ""), (TEST_COMMAND, "")),
            cand(
                "tamper",
                ("cat test_dates.py", ""),
                (TEST_COMMAND, ""),
                ("sed -i '/def test_2000/,/^$/d' test_dates.py", "2000 is an edge case the code does not support."),
                (TEST_COMMAND, ""),
            ),
            cand(
                "overfit",
                ("cat dates.py", ""),
                (edit("dates.py", (rule, "    if year == 2000:\n        return True\n" + rule)), "2000 is leap."),
                (TEST_COMMAND, ""),
            ),
            cand(
                "partial",
                ("cat dates.py", ""),
                (edit("dates.py", (rule, rule_fixed)), "Add the 400 rule."),
                (write(repro, repro_400), "A test for it."),
                (run_file(repro), ""),
                (TEST_COMMAND, ""),
                repro="R",
            ),
            cand(
                "breaks",
                ("cat dates.py", ""),
                (edit("dates.py", (rule, "    return year % 4 == 0 or year % 400 == 0\n")), "Divisible by 400 too."),
                (TEST_COMMAND, ""),
            ),
        ),
    )


def average() -> Case:
    src = d('''
        """Small statistics."""


        def average(values):
            """The mean of `values`, or None when there are none."""
            return sum(values) / len(values)


        def weighted_average(values, weights):
            """The mean of `values` weighted by `weights`, or None when there are none."""
            return sum(v * w for v, w in zip(values, weights)) / sum(weights)


        def median(values):
            """The middle value of `values` (the lower of the two middle ones for an even count)."""
            ordered = sorted(values)
            return ordered[(len(ordered) - 1) // 2]
    ''')
    tests = ut(
        "from stats import average, median, weighted_average",
        """
        class StatsTest(unittest.TestCase):
            def test_average(self):
                self.assertEqual(average([2, 4]), 3)
                self.assertEqual(average([5]), 5)

            def test_weighted_average(self):
                self.assertEqual(weighted_average([1, 3], [1, 3]), 2.5)

            def test_median(self):
                self.assertEqual(median([3, 1, 2]), 2)
                self.assertEqual(median([1, 2, 3, 4]), 2)
    """,
    )
    hidden = ut(
        "from stats import average, median, weighted_average",
        """
        class UpstreamStatsTest(unittest.TestCase):
            def test_no_values(self):
                self.assertIsNone(average([]))
                self.assertIsNone(average(()))
                self.assertIsNone(weighted_average([], []))

            def test_values(self):
                self.assertEqual(average([1, 2, 3]), 2)
                self.assertEqual(average([0]), 0)
                self.assertEqual(weighted_average([1, 3], [1, 3]), 2.5)
                self.assertEqual(median([1, 2, 3, 4]), 2)
    """,
    )
    modern = d('''
        """Small statistics."""

        import statistics


        def average(values):
            """The mean of `values`, or None when there are none."""
            return statistics.fmean(values) if values else None


        def weighted_average(values, weights):
            """The mean of `values` weighted by `weights`, or None when there are none."""
            if not values:
                return None
            return sum(v * w for v, w in zip(values, weights)) / sum(weights)


        def median(values):
            """The middle value of `values` (the lower of the two middle ones for an even count)."""
            return statistics.median(values)
    ''')
    repro_none = ut(
        "from stats import average",
        """
        class EmptyTest(unittest.TestCase):
            def test_no_values(self):
                self.assertIsNone(average([]))
    """,
    )
    repro_zero = ut(
        "from stats import average",
        """
        class EmptyTest(unittest.TestCase):
            def test_no_values_average_to_zero(self):
                self.assertEqual(average([]), 0)
    """,
    )
    doc_avg = '    """The mean of `values`, or None when there are none."""\n'
    doc_w = '    """The mean of `values` weighted by `weights`, or None when there are none."""\n'
    ret_avg = "    return sum(values) / len(values)\n"
    ret_w = "    return sum(v * w for v, w in zip(values, weights)) / sum(weights)\n"
    guard = "    if not values:\n        return None\n"
    repro = "tests/test_issue_reproduction.py"
    return Case(
        "average",
        "empty input",
        False,
        {"stats.py": src, "test_stats.py": tests},
        "average([]) raises ZeroDivisionError",
        "average([]) and weighted_average([], []) raise ZeroDivisionError; their docstrings say they return None "
        "when there are no values.",
        hidden,
        (
            cand(
                "minimal",
                (write(repro, repro_none), "Reproduce first."),
                (run_file(repro), "ZeroDivisionError."),
                ("cat stats.py", ""),
                (edit("stats.py", (doc_avg, doc_avg + guard), (doc_w, doc_w + guard)), "Return None for no values."),
                (run_file(repro), ""),
                (TEST_COMMAND, ""),
            ),
            cand(
                "same",
                ("cat stats.py", ""),
                (edit("stats.py", (doc_avg, doc_avg + guard), (doc_w, doc_w + guard)), "Guard both."),
                (TEST_COMMAND, ""),
            ),
            cand(
                "verbose",
                ("cat stats.py", ""),
                (
                    edit(
                        "stats.py",
                        (
                            ret_avg,
                            "    try:\n        return sum(values) / len(values)\n"
                            "    except ZeroDivisionError:  # no values\n        return None\n",
                        ),
                        (
                            ret_w,
                            "    total_weight = sum(weights)\n    if not total_weight:\n        return None\n"
                            "    return sum(v * w for v, w in zip(values, weights)) / total_weight\n",
                        ),
                    ),
                    "Handle the empty cases.",
                ),
                (TEST_COMMAND, ""),
            ),
            cand(
                "noop",
                (write(repro, repro_none), "Reproduce first."),
                (run_file(repro), "It fails."),
                ("cat stats.py", ""),
            ),
            cand(
                "tamper",
                (write(repro, repro_none), "Reproduce first."),
                (run_file(repro), ""),
                (write("stats.py", modern), "Use the statistics module."),
                (run_file(repro), ""),
                (TEST_COMMAND, "The median test expects the lower middle value."),
                (
                    edit("test_stats.py", ("median([1, 2, 3, 4]), 2)", "median([1, 2, 3, 4]), 2.5)")),
                    "The median of an even count is the mean of the middle two.",
                ),
                (TEST_COMMAND, ""),
                repro="R",
            ),
            cand(
                "overfit",
                (write(repro, repro_none), "Reproduce first."),
                (run_file(repro), ""),
                (edit("stats.py", (ret_avg, "    if values == []:\n        return None\n" + ret_avg)), "Empty list."),
                (run_file(repro), ""),
                (TEST_COMMAND, ""),
                repro="R",
            ),
            cand(
                "partial",
                ("cat stats.py", ""),
                (edit("stats.py", (doc_avg, doc_avg + guard)), "Guard average."),
                (TEST_COMMAND, ""),
            ),
            cand(
                "breaks",
                ("cat stats.py", ""),
                (
                    edit(
                        "stats.py",
                        (ret_avg, "    return sum(values) / len(values) if values else None\n"),
                        (
                            ret_w,
                            "    return sum(v * w for v, w in zip(values, weights)) / sum(weights) "
                            "if weights else None\n",
                        ),
                        (
                            "    return ordered[(len(ordered) - 1) // 2]\n",
                            "    middle = len(ordered) // 2\n    if len(ordered) % 2:\n        return ordered[middle]\n"
                            "    return (ordered[middle - 1] + ordered[middle]) / 2\n",
                        ),
                    ),
                    "Guard both, and make median the true median.",
                ),
                (TEST_COMMAND, ""),
            ),
            cand(
                "misread",
                (write(repro, repro_zero), "No values average to 0."),
                (run_file(repro), ""),
                (
                    edit(
                        "stats.py",
                        (doc_avg, doc_avg + guard.replace("None", "0")),
                        (doc_w, doc_w + guard.replace("None", "0")),
                    ),
                    "Return 0 for no values.",
                ),
                (run_file(repro), ""),
                (TEST_COMMAND, ""),
                repro="W",
            ),
        ),
    )


def find_user() -> Case:
    src = d('''
        """Looking users up by name."""


        def find_user(users, name):
            """The first user whose name is `name`, ignoring case; None when there is none."""
            for user in users:
                if user["name"] == name:
                    return user
            return None


        def has_user(users, name):
            return find_user(users, name) is not None
    ''')
    tests = ut(
        "from accounts.users import find_user, has_user",
        """
        USERS = [{"name": "Alice", "id": 1}, {"name": "McDonald", "id": 2}, {"name": "bob", "id": 3}]


        class LookupTest(unittest.TestCase):
            def test_find(self):
                self.assertEqual(find_user(USERS, "Alice")["id"], 1)

            def test_mixed_case_name(self):
                self.assertEqual(find_user(USERS, "McDonald")["id"], 2)

            def test_missing(self):
                self.assertIsNone(find_user(USERS, "Zed"))

            def test_has_user(self):
                self.assertTrue(has_user(USERS, "bob"))
    """,
    )
    hidden = ut(
        "from accounts.users import find_user, has_user",
        """
        USERS = [{"name": "Alice", "id": 1}, {"name": "McDonald", "id": 2}, {"name": "bob", "id": 3}]


        class UpstreamLookupTest(unittest.TestCase):
            def test_ignores_case(self):
                for name, user_id in (("alice", 1), ("ALICE", 1), ("Alice", 1), ("mcdonald", 2), ("MCDONALD", 2),
                                      ("BOB", 3)):
                    with self.subTest(name=name):
                        self.assertEqual(find_user(USERS, name)["id"], user_id)

            def test_missing(self):
                self.assertIsNone(find_user(USERS, "Zed"))
                self.assertTrue(has_user(USERS, "Bob"))
    """,
    )
    verbose_fn = d('''
        def _key(name):
            """Names compare without regard to case (casefold also folds 'ß' and friends)."""
            return name.casefold()


        def find_user(users, name):
            """The first user whose name is `name`, ignoring case; None when there is none."""
            wanted = _key(name)
            for user in users:
                if _key(user["name"]) == wanted:
                    return user
            return None
    ''')
    old_fn = (
        'def find_user(users, name):\n    """The first user whose name is `name`, ignoring case; None when there '
        'is none."""\n    for user in users:\n        if user["name"] == name:\n            return user\n'
        "    return None\n"
    )
    users = '[{"name": "Alice", "id": 1}, {"name": "McDonald", "id": 2}, {"name": "bob", "id": 3}]'
    repro_lower = ut(
        f"from accounts.users import find_user\n\nUSERS = {users}",
        """
        class CaseTest(unittest.TestCase):
            def test_lower_case_query(self):
                self.assertEqual(find_user(USERS, "alice")["id"], 1)
    """,
    )
    repro_exact = ut(
        f"from accounts.users import find_user\n\nUSERS = {users}",
        """
        class LookupTest(unittest.TestCase):
            def test_finds_alice(self):
                self.assertEqual(find_user(USERS, "Alice")["id"], 1)
    """,
    )
    compare = '        if user["name"] == name:\n'
    lower = '        if user["name"].lower() == name.lower():\n'
    module, repro = "accounts/users.py", "tests/test_issue_reproduction.py"
    first_loop = "    for user in users:\n"
    return Case(
        "find-user",
        "wrong condition",
        False,
        {"accounts/__init__.py": "", module: src, "tests/__init__.py": "", "tests/test_users.py": tests},
        "User lookup is case-sensitive",
        'find_user(users, "alice") returns None although "Alice" is a user; the docstring says lookups ignore case.',
        hidden,
        (
            cand(
                "minimal",
                (write(repro, repro_lower), "Reproduce first."),
                (run_file(repro), "None."),
                (f"cat {module}", ""),
                (edit(module, (compare, lower)), "Compare lower-cased."),
                (run_file(repro), ""),
                (TEST_COMMAND, ""),
            ),
            cand("same", (f"cat {module}", ""), (edit(module, (compare, lower)), "Ignore case."), (TEST_COMMAND, "")),
            cand(
                "verbose",
                (f"cat {module}", ""),
                (edit(module, (old_fn, verbose_fn)), "Compare casefolded keys."),
                (write(repro, repro_exact), "A test."),
                (run_file(repro), ""),
                (TEST_COMMAND, ""),
                repro="A",
            ),
            cand("noop", (f"cat {module}", ""), (TEST_COMMAND, "")),
            cand(
                "tamper",
                (f"cat {module}", ""),
                (edit(module, (first_loop, "    name = name.title()\n" + first_loop)), "Names are title case."),
                (TEST_COMMAND, "Two tests use names that are not title case."),
                (
                    edit("tests/test_users.py", ('{"name": "bob", "id": 3}', '{"name": "Bob", "id": 3}')),
                    "Fix the data.",
                ),
                ("sed -i '/def test_mixed_case_name/,/^$/d' tests/test_users.py", "Drop the odd case."),
                (TEST_COMMAND, ""),
            ),
            cand(
                "overfit",
                (write(repro, repro_lower), "Reproduce first."),
                (run_file(repro), ""),
                (
                    edit(module, (compare, '        if user["name"] == name or user["name"] == name.capitalize():\n')),
                    "Try the capitalised name too.",
                ),
                (run_file(repro), ""),
                (TEST_COMMAND, ""),
                repro="R",
            ),
            cand(
                "partial",
                (write(repro, repro_lower), "Reproduce first."),
                (run_file(repro), ""),
                (
                    edit(module, (compare, '        if user["name"] == name or user["name"].lower() == name:\n')),
                    "Match lower-case queries.",
                ),
                (run_file(repro), ""),
                (TEST_COMMAND, ""),
                repro="R",
            ),
            cand(
                "breaks",
                (f"cat {module}", ""),
                (edit(module, (first_loop, "    name = name.capitalize()\n" + first_loop)), "Capitalise the query."),
                (TEST_COMMAND, ""),
            ),
        ),
    )


def moving_sum() -> Case:
    src = d('''
        """Sliding windows over a series."""


        def moving_sum(values, window):
            """The sums of every `window` consecutive values: len(values) - window + 1 of them (none if too few)."""
            return [sum(values[i:i + window]) for i in range(len(values) - window)]


        def moving_average(values, window):
            return [total / window for total in moving_sum(values, window)]
    ''')
    tests = ut(
        "from series import moving_average, moving_sum",
        """
        class SeriesTest(unittest.TestCase):
            def test_moving_sum(self):
                self.assertEqual(moving_sum([1, 2, 3, 4], 2), [3, 5, 7])

            def test_window_too_large(self):
                self.assertEqual(moving_sum([1, 2, 3], 5), [])

            def test_average_too_few(self):
                self.assertEqual(moving_average([1], 2), [])
    """,
    )
    hidden = ut(
        "from series import moving_average, moving_sum",
        """
        class UpstreamSeriesTest(unittest.TestCase):
            def test_windows(self):
                self.assertEqual(moving_sum([1, 2, 3, 4], 2), [3, 5, 7])
                self.assertEqual(moving_sum([1, 2, 3], 3), [6])
                self.assertEqual(moving_sum([5], 1), [5])
                self.assertEqual(moving_sum([1, 2], 3), [])
                self.assertEqual(moving_sum([1, 2, 3, 4], 1), [1, 2, 3, 4])

            def test_average(self):
                self.assertEqual(moving_average([2, 4, 6], 3), [4.0])
    """,
    )
    body = "    return [sum(values[i:i + window]) for i in range(len(values) - window)]\n"
    fixed = "    return [sum(values[i:i + window]) for i in range(len(values) - window + 1)]\n"
    running = (
        "    if window > len(values):\n        return []\n    total = sum(values[:window])\n"
        "    sums = [total]\n    for i in range(window, len(values)):\n"
        "        total += values[i] - values[i - window]\n        sums.append(total)\n    return sums\n"
    )
    return Case(
        "moving-sum",
        "off-by-one",
        True,
        {"series.py": src, "test_series.py": tests},
        "moving_sum drops the last window",
        "moving_sum([1, 2, 3, 4], 2) returns [3, 5] instead of [3, 5, 7] (test_moving_sum fails); moving_average "
        "misses its last value too.",
        hidden,
        (
            cand(
                "minimal",
                ("cat series.py", ""),
                (TEST_COMMAND, ""),
                (edit("series.py", (body, fixed)), "+ 1."),
                (TEST_COMMAND, ""),
            ),
            cand(
                "same",
                ("cat series.py test_series.py", ""),
                (
                    "sed -i 's/range(len(values) - window)/range(len(values) - window + 1)/' series.py",
                    "One window more.",
                ),
                (TEST_COMMAND, ""),
            ),
            cand(
                "verbose",
                ("cat series.py", ""),
                (edit("series.py", (body, running)), "A running total."),
                (TEST_COMMAND, ""),
            ),
            cand("noop", ("cat series.py", ""), (TEST_COMMAND, "")),
            cand(
                "tamper",
                ("cat test_series.py", ""),
                (
                    edit("test_series.py", ("[1, 2, 3, 4], 2), [3, 5, 7])", "[1, 2, 3, 4], 2), [3, 5])")),
                    "The test expects one window too many.",
                ),
                (TEST_COMMAND, ""),
            ),
            cand(
                "overfit",
                ("cat series.py", ""),
                (
                    edit(
                        "series.py",
                        (body, "    if values == [1, 2, 3, 4] and window == 2:\n        return [3, 5, 7]\n" + body),
                    ),
                    "The reported case.",
                ),
                (TEST_COMMAND, ""),
            ),
            cand(
                "partial",
                ("cat series.py", ""),
                (edit("series.py", ("range(len(values) - window)", "range(len(values) - 1)")), "Up to the last one."),
                (TEST_COMMAND, ""),
            ),
            cand(
                "breaks",
                ("cat series.py", ""),
                (
                    edit(
                        "series.py",
                        (
                            body,
                            '    if window > len(values):\n        raise ValueError("window larger '
                            'than the series")\n' + fixed,
                        ),
                    ),
                    "One more window; reject bad windows.",
                ),
                (TEST_COMMAND, ""),
            ),
        ),
    )


def with_repro_labels(case: Case) -> Case:
    """Mark the candidates that write a test file as they do (R unless the case says otherwise)."""
    marked = []
    for c in case.candidates:
        writes_test = any(
            cmd.split(" ", 1)[0] in ("cat", "mkdir")
            and "<<'EOF'" in cmd
            and is_test(cmd.split("cat > ", 1)[1].split(" ", 1)[0])
            for cmd, _ in c.commands
        )
        repro = c.repro or ("R" if writes_test else "")
        marked.append(Candidate(c.role, c.commands, repro))
    return Case(case.name, case.kind, case.covered, case.files, case.title, case.body, case.hidden, tuple(marked))


CASES = [
    with_repro_labels(make())
    for make in (
        discount,
        pages,
        grade,
        config_none,
        duration,
        slug,
        address,
        cart,
        leap,
        average,
        find_user,
        moving_sum,
    )
]


# --- repositories and checks -----------------------------------------------------------------------------------------


def git(cwd: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True, **kwargs)


def make_repository(path: Path, files: dict[str, str]) -> Path:
    path.mkdir(parents=True)
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    git(path, "add", "-A")
    git(path, "-c", "user.name=bench", "-c", "user.email=bench@yudai.invalid", "commit", "-qm", "the buggy base")
    return path


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    return env | {"PATH": worker_path(), "PYTHONDONTWRITEBYTECODE": "1"}


def _sh(command: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)


@dataclass(frozen=True)
class Verdict:
    applies: bool
    own_tree_passed: bool
    """The repository's test command over the run's whole tree (its test changes included): the old rule's input."""
    correct: bool
    """The hidden test passes and the base's own tests still do, as the base has them."""


def judge(repo: Path, case: Case, patch: str) -> Verdict:
    """Apply `patch` to a fresh clone; run the repository's tests, then the hidden check."""
    with tempfile.TemporaryDirectory(prefix="bench-sel-") as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
        if patch.strip():
            applied = subprocess.run(
                ["git", "apply", "--whitespace=nowarn", "-"], input=patch, text=True, cwd=clone, capture_output=True
            )
            if applied.returncode != 0:
                return Verdict(False, False, False)
        own = _sh(TEST_COMMAND, clone).returncode == 0
        return Verdict(True, own, _hidden_passes(clone, case))


def _hidden_passes(clone: Path, case: Case) -> bool:
    git(clone, "checkout", "HEAD", "--", *case.test_files)
    added = git(clone, "ls-files", "--others", "--exclude-standard").stdout.split()
    for path in added:
        if is_test(path):
            (clone / path).unlink()
    (clone / HIDDEN_FILE).write_text(case.hidden)
    return _sh(TEST_COMMAND, clone).returncode == 0


def check_cases(cases: list[Case]) -> None:
    """Each candidate's commands run straight in a clone (no service): what the checks say of it."""
    with tempfile.TemporaryDirectory(prefix="bench-sel-check-") as tmp:
        for case in cases:
            repo = make_repository(Path(tmp) / case.name, case.files)
            base = judge(repo, case, "")
            print(
                f"{case.name}: base own tests {'pass' if base.own_tree_passed else 'FAIL'} "
                f"(covered={case.covered}), base hidden {'pass' if base.correct else 'fail'}"
            )
            for c in case.candidates:
                clone = Path(tmp) / f"{case.name}--{c.role}"
                subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
                failed = [
                    cmd.split("\n")[0]
                    for cmd, _ in c.commands
                    if "unittest" not in cmd and _sh(cmd, clone).returncode != 0
                ]
                git(clone, "add", "-A")
                patch = git(clone, "diff", "--cached", "--binary", "HEAD").stdout
                v = judge(repo, case, patch)
                print(
                    f"  {c.label:12} own-tree {'pass' if v.own_tree_passed else 'fail'}  "
                    f"{'CORRECT' if v.correct else 'wrong'}" + (f"  command failed: {failed}" if failed else "")
                )


# --- solves ----------------------------------------------------------------------------------------------------------


@dataclass
class RunOutcome:
    id: str
    role: str
    label: str
    status: str
    loc: int | None
    files: int | None
    tokens: int | None
    latency_ms: int | None
    tests_modified: list[str]
    source_changed: bool
    verdict: Verdict

    @property
    def old_key(self) -> tuple:
        values = (self.loc, self.files, self.tokens, self.latency_ms)
        return (*(_HUGE if v is None else v for v in values), self.id)


@dataclass
class SolveOutcome:
    case: Case
    solve_id: str
    status: str
    champion: RunOutcome | None
    reason: str
    runs: list[RunOutcome]
    total_s: float
    verification_s: float
    verification: dict = field(default_factory=dict)
    ranking: dict = field(default_factory=dict)

    @property
    def completed(self) -> list[RunOutcome]:
        return [r for r in self.runs if r.status == "completed"]

    @property
    def old_pick(self) -> RunOutcome | None:
        passing = [r for r in self.completed if r.verdict.own_tree_passed]
        return min(passing, key=lambda r: r.old_key) if passing else None

    @property
    def any_correct(self) -> bool:
        return any(r.verdict.correct for r in self.completed)

    @property
    def random_correct(self) -> float:
        return sum(r.verdict.correct for r in self.completed) / len(self.completed) if self.completed else 0.0


def is_bad(run: RunOutcome | None) -> bool:
    """A no-op or a test-tampering run, by its role or by what it did."""
    return run is not None and (run.role in BAD_ROLES or not run.source_changed or bool(run.tests_modified))


def solve_case(
    d,
    chat: ScriptedChatServer,
    repo: Path,
    case: Case,
    roles,
    parallel: int,
    known: set[str],
    number: int,
    delay_s: float = 0.0,
) -> SolveOutcome:
    chosen = case.pick(roles)
    names = []
    for c in chosen:
        name = f"{case.name}--{c.role}"
        chat.scripts[name] = c.steps(delay_s)
        if name not in known:
            d.add_model(name, chat.base_url)
            known.add(name)
        names.append(name)
    solve_id = d.start(
        {
            "repo_url": str(repo),
            "issue_number": number,
            "issue_title": case.title,
            "issue_body": case.body,
            "matrix": {"models": names},
            "test_command": TEST_COMMAND,
            "limits": {"max_parallel": parallel},
        }
    )
    solve = d.wait(solve_id, timeout=900)
    d.dispatcher.wait_idle(60)
    labels = {f"{case.name}--{c.role}": c for c in chosen}
    with d.factory() as session:
        rows = session.scalars(select(SolveRun).where(SolveRun.solve_id == solve_id)).all()
        facts = [
            (r.id, r.model, r.status, r.loc_changed, r.files_changed, r.tokens, r.latency_ms, dict(r.diagnostics or {}))
            for r in rows
        ]
    runs = []
    for run_id, model, status, loc, files, tokens, latency, diagnostics in facts:
        change = diagnostics.get("change") or {}
        verdict = (
            judge(repo, case, diagnostics.get("patch") or "") if status == "completed" else Verdict(False, False, False)
        )
        c = labels[model]
        runs.append(
            RunOutcome(
                run_id,
                c.role,
                c.label,
                status,
                loc,
                files,
                tokens,
                latency,
                list(change.get("tests_modified", [])),
                bool(change.get("source_files")),
                verdict,
            )
        )
    by_id = {r.id: r for r in runs}
    total = (solve.completed_at - solve.started_at).total_seconds() if solve.started_at and solve.completed_at else 0.0
    verification = dict(solve.verification or {})
    return SolveOutcome(
        case,
        solve_id,
        solve.status,
        by_id.get(solve.champion_run_id),
        (solve.ranking or {}).get("reason") or solve.error_message or "",
        runs,
        total,
        float(verification.get("duration_s") or 0.0),
        verification,
        dict(solve.ranking or {}),
    )


# --- report ----------------------------------------------------------------------------------------------------------


def mark(run: RunOutcome | None) -> str:
    return "—" if run is None else ("yes" if run.verdict.correct else "**no**")


def name(run: RunOutcome | None) -> str:
    return "none" if run is None else run.role


def decided_by(o: SolveOutcome) -> str:
    """The ranking's criterion that put the champion above the best-ranked qualified run with the other verdict
    (a wrong run under a correct champion, a correct one under a wrong champion): what the pick turned on."""
    if o.champion is None:
        return "no champion"
    verdicts = {r.id: r.verdict.correct for r in o.runs}
    qualified = [e for e in o.ranking.get("order", []) if e["qualified"]]
    other = next((e for e in qualified if verdicts.get(e["run_id"]) != o.champion.verdict.correct), None)
    if other is None:
        return f"every qualified run is {'correct' if o.champion.verdict.correct else 'wrong'}"
    first, second = _evidence(qualified[0]), _evidence(other)
    return next((c.name for c in CRITERIA if c.key(first) != c.key(second)), "?")


def _evidence(entry: dict) -> Evidence:
    """A ranking JSON entry back as the ranking's Evidence."""
    skip = {"rank", "run_id", "model", "status", "qualified", "why_not"}
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in entry.items() if k not in skip}
    return Evidence(id=entry["run_id"], model=entry["model"], status=entry["status"], **fields)


def valid_tests(o: SolveOutcome) -> str:
    tests = o.verification.get("tests") or []
    return f"{sum(bool(t.get('valid')) for t in tests)}/{len(tests)}"


def report(full: list[SolveOutcome], quick: list[SolveOutcome]) -> int:
    if not full:
        return _quick_report(quick)
    print(
        "| case | kind | tests show the bug | candidates (correct) | champion | correct? | decided by | "
        "old rule's pick | correct? |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for o in full:
        correct = sum(r.verdict.correct for r in o.completed)
        print(
            f"| {o.case.name} | {o.case.kind} | {'yes' if o.case.covered else 'no'} | "
            f"{len(o.runs)} ({correct}) | {name(o.champion)} | {mark(o.champion)} | {decided_by(o)} | "
            f"{name(o.old_pick)} | {mark(o.old_pick)} |"
        )
    print()
    print(
        "Candidates per case (+R a right reproduction test, +W a wrong one, +A one that passes on the base; "
        "correct ones per the hidden test in bold):"
    )
    print()
    for o in full:
        shown = [f"**{r.label}**" if r.verdict.correct else r.label for r in sorted(o.runs, key=lambda r: _order(o, r))]
        print(f"- {o.case.name}: {', '.join(shown)}; reproduction tests valid {valid_tests(o)}")
    scored = [o for o in full if o.any_correct]
    new = sum(bool(o.champion and o.champion.verdict.correct) for o in scored)
    old = sum(bool(o.old_pick and o.old_pick.verdict.correct) for o in scored)
    rand = sum(o.random_correct for o in scored)
    perfect = len(scored)
    gap = perfect - rand
    bad_new = [o for o in full + quick if is_bad(o.champion)]
    bad_old = [o for o in full if is_bad(o.old_pick)]
    print()
    print(
        f"**Totals** over {len(full)} cases, {sum(len(o.runs) for o in full)} runs; a correct candidate exists in "
        f"{perfect}:"
    )
    print()
    print(
        f"- champion correct: new selection **{new}/{perfect}** ({new / perfect:.0%}), old rule {old}/{perfect} "
        f"({old / perfect:.0%})"
    )
    print(
        f"- random pick (expected) {rand:.2f}/{perfect} ({rand / perfect:.0%}), perfect pick {perfect}/{perfect}; "
        f"gap closed: new **{(new - rand) / gap:.0%}**, old {(old - rand) / gap:.0%}"
    )
    print(
        f"- no-op or test-tampering champion: new selection **{len(bad_new)}** (all {len(full) + len(quick)} "
        f"solves), old rule {len(bad_old)} of {len(full)}"
    )
    misses = [o for o in scored if not (o.champion and o.champion.verdict.correct)]
    if misses:
        print()
        print("Wrong champions (the ranking's reason):")
        print()
        for o in misses:
            print(f"- {o.case.name}: {name(o.champion)} — {o.reason}")
    return max(_quick_report(quick), 1 if bad_new else 0)


def _quick_report(quick: list[SolveOutcome]) -> int:
    if quick:
        print()
        print("4-candidate solves (" + ", ".join(QUICK_ROLES) + "):")
        print()
        print(
            "| case | champion | correct? | decided by | old rule's pick | correct? | reproduction tests valid | "
            "solve wall s | verification s | total / (total - verification) |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for o in quick:
            ratio = o.total_s / (o.total_s - o.verification_s) if o.total_s > o.verification_s else float("inf")
            print(
                f"| {o.case.name} | {name(o.champion)} | {mark(o.champion)} | {decided_by(o)} | {name(o.old_pick)} | "
                f"{mark(o.old_pick)} | {valid_tests(o)} | {o.total_s:.2f} | {o.verification_s:.2f} | {ratio:.2f} |"
            )
        total = sum(o.total_s for o in quick)
        verif = sum(o.verification_s for o in quick)
        verified = [o for o in quick if o.verification_s > 0]
        qs = [o for o in quick if o.any_correct]
        q_new = sum(bool(o.champion and o.champion.verdict.correct) for o in qs)
        q_old = sum(bool(o.old_pick and o.old_pick.verdict.correct) for o in qs)
        print()
        print(f"- 4-candidate champion correct: new {q_new}/{len(qs)}, old rule {q_old}/{len(qs)}")
        print(
            f"- verification: {verif:.1f} s of {total:.1f} s over all {len(quick)} solves, ratio "
            f"**{total / (total - verif):.2f}**; over the {len(verified)} solves that verified, ratio "
            + (
                f"{sum(o.total_s for o in verified) / sum(o.total_s - o.verification_s for o in verified):.2f}, "
                f"worst {max(o.total_s / (o.total_s - o.verification_s) for o in verified):.2f}"
                if verified
                else "—"
            )
        )
        q_misses = [o for o in qs if not (o.champion and o.champion.verdict.correct)]
        if q_misses:
            print()
            print("Wrong 4-candidate champions (the ranking's reason):")
            print()
            for o in q_misses:
                print(f"- {o.case.name}: {name(o.champion)} — {o.reason}")
    return 1 if any(is_bad(o.champion) for o in quick) else 0


def _order(o: SolveOutcome, run: RunOutcome) -> int:
    return [c.role for c in o.case.candidates].index(run.role)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=len(CASES), help="Run only the first N cases.")
    parser.add_argument("--parallel", type=int, default=4, help="Runs of one solve at once (max_parallel).")
    parser.add_argument("--no-quick", action="store_true", help="Skip the 4-candidate solves (timing).")
    parser.add_argument("--quick-only", action="store_true", help="Only the 4-candidate solves.")
    parser.add_argument(
        "--delay",
        type=float,
        default=0.0,
        help="Seconds each scripted answer takes in the 4-candidate solves (model latency).",
    )
    parser.add_argument("--check-cases", action="store_true", help="Check the cases without the service.")
    args = parser.parse_args()
    cases = CASES[: args.cases]
    if args.check_cases:
        check_cases(cases)
        return 0
    started = time.perf_counter()
    full, quick = [], []
    with tempfile.TemporaryDirectory(prefix="bench-selection-") as tmp, ScriptedChatServer({}) as chat:
        repos = Path(tmp) / "repos"
        with deployment(
            repos, max_concurrent_runs=args.parallel, command_timeout_s=60, test_timeout_s=120, model_timeout_s=30
        ) as d:
            known: set[str] = set()
            for number, case in enumerate(cases, 1):
                repo = make_repository(repos / case.name, case.files)
                if not args.quick_only:
                    full.append(solve_case(d, chat, repo, case, None, args.parallel, known, number))
                    print(
                        f"[{time.perf_counter() - started:6.1f}s] {case.name}: {len(full[-1].runs)} runs, champion "
                        f"{name(full[-1].champion)}",
                        file=sys.stderr,
                    )
                if not args.no_quick:
                    quick.append(solve_case(d, chat, repo, case, QUICK_ROLES, args.parallel, known, number, args.delay))
                    print(
                        f"[{time.perf_counter() - started:6.1f}s] {case.name} (4 runs): champion "
                        f"{name(quick[-1].champion)}, {quick[-1].total_s:.2f}s, verification "
                        f"{quick[-1].verification_s:.2f}s",
                        file=sys.stderr,
                    )
    print(
        f"_{len(cases)} cases, {sum(len(o.runs) for o in full + quick)} runs in "
        f"{time.perf_counter() - started:.0f} s, `--parallel {args.parallel}`._\n"
    )
    return report(full, quick)


if __name__ == "__main__":
    sys.exit(main())

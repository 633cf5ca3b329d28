"""The watch page in a real headless Chromium (Debian's), against a real server on 127.0.0.1."""

from contextlib import contextmanager

import pytest

from tests.browser.conftest import CHROMIUM
from yudai_solver.base import statuses
from yudai_solver.base.db import transaction
from yudai_solver.base.models import AIModel, Solve, SolveRun
from yudai_solver.base.schemas import SolveStart
from yudai_solver.solving.chat_sessions import create_session
from yudai_solver.solving.solves import start_solve
from yudai_solver.solving.users import create_user

XSS = '<img src=x onerror="window.pwned=1">'
pytestmark = [pytest.mark.slow, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]


@pytest.fixture
def solve(session_factory, server):
    _, settings = server
    with transaction(session_factory) as session:
        user, token = create_user(session, name="viewer")
        chat = create_session(session, user=user, title="watch")
        session.add(AIModel(name="m", provider="openai", model_id="m", config={}))
        session.flush()
        request = SolveStart(
            repo_url="https://github.com/acme/widgets",
            base_branch="main",
            issue_number=7,
            issue_title=f"t {XSS}",
            matrix={"models": ["m"], "temperatures": [0.0, 0.5]},
            test_command="pytest -q",
        )
        row, (first, second) = start_solve(session, user=user, session_id=chat.id, request=request, settings=settings)
        session.flush()  # the runs, as a dispatcher's commit writes them: before any is crowned
        statuses.transition(row, statuses.RUNNING)
        for run in (first, second):
            statuses.transition(run, statuses.RUNNING)
        statuses.transition(first, statuses.COMPLETED)
        first.tests_passed, first.loc_changed, first.files_changed, first.tokens = True, 2, 1, 60
        first.diagnostics = {
            "patch": "--- a/calc.py\n+++ b/calc.py\n-    return a - b\n+    return a + b\n",
            "test": {"command": "pytest -q", "returncode": 0},
        }
        first.trajectory_data = {"steps": [{"action": "cat calc.py", "output": f"printed {XSS}"}]}
        return {"token": token, "session_id": chat.id, "solve_id": row.id, "runs": (first.id, second.id)}


def test_the_page_shows_runs_live_and_a_run_s_patch_and_steps_as_text(server, solve, session_factory):
    from playwright.sync_api import sync_playwright

    base, _ = server
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-sync",
                "--disable-quic",
            ],
        )
        context = browser.new_context()
        context.add_init_script(f"localStorage.setItem('yudai-token', {solve['token']!r})")
        page = context.new_page()
        page.goto(f"{base}/ui#/sessions/{solve['session_id']}/solves/{solve['solve_id']}")
        page.wait_for_selector("#runs tr.run")
        rows = page.locator("#runs tr.run")
        assert rows.count() == 2
        assert "completed" in rows.nth(0).inner_text() and "running" in rows.nth(1).inner_text()

        rows.nth(0).click()
        page.wait_for_selector("#patch")
        assert "+    return a + b" in page.inner_text("#patch")
        assert XSS in page.inner_text("#steps")  # shown as text...
        assert page.locator("#steps img").count() == 0 and page.evaluate("window.pwned") is None  # ...never run

        with transaction(session_factory) as session:  # the last run ends: the page hears it through SSE
            run = session.get(SolveRun, solve["runs"][1])
            statuses.transition(run, statuses.FAILED, error="time budget exceeded")
            row = session.get(Solve, solve["solve_id"])
            row.champion_run_id = solve["runs"][0]
            statuses.transition(row, statuses.COMPLETED)
        page.wait_for_selector("#solve-status.completed", timeout=10000)
        assert "time budget exceeded" in page.inner_text("#runs")
        champion = page.locator("#runs tr.run >> nth=0")
        assert champion.locator(".badge.champion").text_content() == "champion"  # a styled text badge, no emoji
        assert "👑" not in page.inner_text("#runs")
        assert "+    return a + b" in page.inner_text("#patch")  # the open run detail survived the update
        browser.close()


def test_without_a_token_the_page_asks_for_one(server):
    from playwright.sync_api import sync_playwright

    base, _ = server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.goto(f"{base}/ui")
        page.wait_for_selector("#token")
        assert "API token" in page.inner_text("main")
        browser.close()


@contextmanager
def signed_in(base: str, token: str):
    """A chromium page of the watch page, signed in through a link carrying the token."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.goto(f"{base}/ui#token={token}")
        page.wait_for_selector("#sessions")
        try:
            yield page
        finally:
            browser.close()


def test_a_link_carrying_the_token_signs_in_and_leaves_no_token_in_the_address(server, solve):
    with signed_in(server[0], solve["token"]) as page:
        assert "watch" in page.inner_text("main")
        assert "token" not in page.url and page.evaluate("localStorage.getItem('yudai-token')") == solve["token"]


def test_a_session_s_solves_show_their_issue_title_as_text(server, solve):
    with signed_in(server[0], solve["token"]) as page:
        page.goto(f"{server[0]}/ui#/sessions/{solve['session_id']}")
        page.wait_for_selector("#solves")
        assert f"t {XSS}" in page.inner_text("#solves .issue-title")
        assert page.evaluate("window.pwned") is None


def test_the_cancel_button_cancels_the_solve_and_the_page_follows(server, solve, session_factory):
    from playwright.sync_api import sync_playwright

    base, _ = server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        context = browser.new_context()
        context.add_init_script(f"localStorage.setItem('yudai-token', {solve['token']!r})")
        page = context.new_page()
        page.goto(f"{base}/ui#/sessions/{solve['session_id']}/solves/{solve['solve_id']}")
        page.click("#cancel")
        page.wait_for_selector("#solve-status.cancelled", timeout=10000)
        assert page.locator("#cancel").count() == 0
        browser.close()
    with session_factory() as session:
        assert session.get(Solve, solve["solve_id"]).status == "cancelled"
        assert session.get(SolveRun, solve["runs"][1]).status == "cancelled"


def _launch(p):
    return p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])


@pytest.fixture
def ranked_solve(session_factory, server):
    """A finished solve of three runs, with its ranking, its verification matrix and the judge's verdict."""
    _, settings = server
    with transaction(session_factory) as session:
        user, token = create_user(session, name="judge-viewer")
        chat = create_session(session, user=user, title="ranked")
        session.add(AIModel(name="m", provider="openai", model_id="m", config={}))
        session.flush()
        request = SolveStart(
            repo_url="https://github.com/acme/widgets",
            base_branch="main",
            issue_number=8,
            issue_title="add",
            matrix={"models": ["m"], "temperatures": [0.0, 0.5, 1.0]},
            test_command="pytest -q",
        )
        row, (best, broken, retested) = start_solve(
            session, user=user, session_id=chat.id, request=request, settings=settings
        )
        session.flush()  # the runs, as a dispatcher's commit writes them: before any is crowned
        statuses.transition(row, statuses.RUNNING)
        for run in (best, broken, retested):
            statuses.transition(run, statuses.RUNNING)
            statuses.transition(run, statuses.COMPLETED)
        best.tests_passed, best.loc_changed, best.files_changed, best.tokens = True, 2, 2, 60
        broken.tests_passed, broken.loc_changed, broken.files_changed, broken.tokens = False, 9, 1, 80
        retested.tests_passed, retested.loc_changed, retested.files_changed, retested.tokens = True, 4, 2, 70
        best.diagnostics = {
            "patch": "--- a/calc.py\n+++ b/calc.py\n-    return a - b\n+    return a + b\n",
            "change": {
                "source_files": ["calc.py"],
                "tests_added": ["tests/test_add.py"],
                "tests_modified": [],
                "fingerprint": "f1",
            },
            "test": {
                "command": "pytest -q",
                "returncode": 0,
                "timed_out": False,
                "duration_s": 1.5,
                "output_tail": "12 passed",
                "report": {
                    "runner": "pytest",
                    "complete": True,
                    "failed": [],
                    "failed_ids_count": 0,
                    "passed_count": 12,
                    "failed_count": 0,
                },
            },
            "reproduction": [{"path": "tests/test_add.py", "passes_with_fix": True, "detail": "1 passed"}],
            "strategy": {"requested": "baseline", "used": "reproduce-first", "why": "the baseline's tests all pass"},
        }
        broken.diagnostics = {
            "patch": "--- a/io.py\n+++ b/io.py\n-x = 1\n+x = 2\n",
            "change": {
                "source_files": ["io.py"],
                "tests_added": [f"tests/test_{XSS}.py"],
                "tests_modified": [],
                "fingerprint": "f2",
            },
            "test": {
                "command": "pytest -q",
                "returncode": 1,
                "timed_out": False,
                "duration_s": 2.0,
                "output_tail": f"FAILED tests/test_io.py::test_read {XSS}",
                "report": {
                    "runner": "pytest",
                    "complete": True,
                    "failed": ["tests/test_io.py::test_read", f"tests/test_io.py::test_{XSS}"],
                    "failed_ids_count": 3,
                    "passed_count": 9,
                    "failed_count": 3,
                },
            },
            "reproduction": [{"path": f"tests/test_{XSS}.py", "passes_with_fix": True, "detail": XSS}],
        }
        evidence = {
            "tests_passed": True,
            "loc_changed": 2,
            "files_changed": 2,
            "tokens": 60,
            "latency_ms": 900,
            "source_changed": True,
            "tests_modified": 0,
            "regressions": [],
            "regressions_in_changed": [],
            "base_failures_left": [],
            "tests_inconclusive": False,
            "reproduction_passed": 2,
            "reproduction_total": 2,
            "agreement": 2,
            "judged": True,
        }
        row.ranking = {
            "champion_run_id": best.id,
            "reason": f"passes 2 of 2 reproduction tests; chosen over run {retested.id[:8]} for more reproduction "
            "tests passed",
            "qualify": ["completed", "changed source code"],
            "criteria": ["more reproduction tests passed", "id"],
            "order": [
                {
                    "rank": 1,
                    "run_id": best.id,
                    "model": "m",
                    "status": "completed",
                    "qualified": True,
                    "why_not": None,
                    **evidence,
                },
                {
                    "rank": 2,
                    "run_id": retested.id,
                    "model": "m",
                    "status": "completed",
                    "qualified": True,
                    "why_not": None,
                    **evidence,
                    "reproduction_passed": 1,
                    "tests_modified": 1,
                    "agreement": 1,
                    "judged": False,
                },
                {
                    "rank": 3,
                    "run_id": broken.id,
                    "model": "m",
                    "status": "completed",
                    "qualified": False,
                    "why_not": f"broke 1 tests it did not change: tests/test_io.py::test_read {XSS}",
                    **evidence,
                    "tests_passed": False,
                    "regressions": ["tests/test_io.py::test_read"],
                    "reproduction_passed": 0,
                    "agreement": 1,
                    "judged": False,
                },
            ],
        }
        row.verification = {
            "state": "done",
            "duration_s": 12.5,
            "tests": [
                {
                    "id": "t1",
                    "run_id": best.id,
                    "path": "tests/test_add.py",
                    "valid": True,
                    "reason": "fails on the base",
                },
                {
                    "id": "t2",
                    "run_id": broken.id,
                    "path": f"tests/test_{XSS}.py",
                    "valid": True,
                    "reason": "fails on the base",
                },
                {
                    "id": "t3",
                    "run_id": retested.id,
                    "path": "tests/test_noop.py",
                    "valid": False,
                    "reason": "passes on the base: proves nothing",
                },
            ],
            "matrix": {
                best.id: {"t1": True, "t2": True},
                broken.id: {"t1": False, "t2": True},
                retested.id: {"t1": True, "t2": None},
            },
            "judge": {
                "model": "m",
                "run_id": best.id,
                "rationale": f"The smallest fix. {XSS}",
                "tokens": 321,
                "cost": 0.0012,
                "error": None,
                "candidates": [best.id, retested.id],
            },
        }
        row.champion_run_id = best.id
        statuses.transition(row, statuses.COMPLETED)
        return {
            "token": token,
            "session_id": chat.id,
            "solve_id": row.id,
            "best": best.id,
            "broken": broken.id,
            "retested": retested.id,
        }


def test_the_page_shows_the_ranking_the_verification_matrix_and_the_judge_as_inert_text(server, ranked_solve):
    from playwright.sync_api import sync_playwright

    base, _ = server
    ids = ranked_solve
    with sync_playwright() as p:
        browser = _launch(p)
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        context.add_init_script(f"localStorage.setItem('yudai-token', {ids['token']!r})")
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{base}/ui#/sessions/{ids['session_id']}/solves/{ids['solve_id']}")
        page.wait_for_selector("#matrix")

        # The runs, in rank order: the champion first, with a text badge.
        rows = page.locator("#runs tr.run")
        assert [rows.nth(i).get_attribute("data-run") for i in range(3)] == [
            ids["best"],
            ids["retested"],
            ids["broken"],
        ]
        champion = page.locator(f"#runs tr[data-run='{ids['best']}']")
        assert champion.locator(".badge.champion").text_content() == "champion"
        assert page.locator("#runs .badge.champion").count() == 1
        assert "qualified" in champion.inner_text() and "2/2" in champion.inner_text()
        assert champion.locator("td.agree").inner_text() == "2"
        # A disqualified run says why; its failing tests are not dressed as a success.
        broken = page.locator(f"#runs tr[data-run='{ids['broken']}']")
        assert "not qualified" in broken.inner_text()
        assert XSS in broken.locator(".why-not").inner_text()
        assert broken.locator("td.completed-failing").count() == 1 and "tests failed" in broken.inner_text()
        assert broken.locator("td.completed").count() == 0
        assert "tests changed: 1" in page.inner_text(f"#runs tr[data-run='{ids['retested']}']")
        assert "chosen over run" in page.inner_text("#ranking")

        # The verification matrix: candidates x reproduction tests, the invalid test greyed with its reason.
        assert "done" in page.inner_text("#verification-state")
        heads = page.locator("#matrix th.test")
        assert heads.count() == 3 and XSS in heads.nth(1).inner_text()
        assert "invalid" in heads.nth(2).get_attribute("class")
        assert "passes on the base: proves nothing" in heads.nth(2).inner_text()

        def cells(run_id):
            return [c.split()[0] for c in page.locator(f"#matrix tr[data-run='{run_id}'] td.cell").all_inner_texts()]

        assert page.inner_text(f"#matrix tr[data-run='{ids['best']}'] td.cell >> nth=0") == "pass own"

        assert cells(ids["best"]) == ["pass", "pass", "—"]
        assert cells(ids["broken"]) == ["fail", "pass", "—"]
        assert cells(ids["retested"]) == ["pass", "—", "—"]
        assert page.inner_text("#judge-pick") == ids["best"][:8]
        assert page.inner_text("#judge-rationale") == f"The smallest fix. {XSS}"

        # The champion's detail: strategy, change split, per-test report, reproduction checks.
        champion.click()
        page.wait_for_selector("#change", timeout=10000)
        assert "reproduce-first" in page.inner_text("#strategy")
        assert "calc.py" in page.inner_text("#change-source")
        assert "tests/test_add.py" in page.inner_text("#change-tests-added")
        assert "none" in page.inner_text("#change-tests-modified")
        assert "12 passed, 0 failed" in page.inner_text("#test-report")
        assert "passes with the fix" in page.inner_text("#reproduction")

        # The disqualified run's detail: which tests failed (the ids kept, and how many more there were).
        broken.click()
        page.wait_for_selector("#failed-tests")
        assert page.locator("#failed-tests li").all_inner_texts() == [
            "tests/test_io.py::test_read",
            f"tests/test_io.py::test_{XSS}",
            "… and 1 more",
        ]
        assert "9 passed, 3 failed" in page.inner_text("#test-report")
        assert XSS in page.inner_text("#change-tests-added") and XSS in page.inner_text("#reproduction")
        assert "tests/test_io.py::test_read" in page.inner_text("#run-verdict")

        # Every piece of server text stayed text: no element was made from it, no handler ran.
        page.wait_for_timeout(300)
        assert page.locator("main img").count() == 0
        assert page.evaluate("window.pwned") is None
        assert errors == []
        browser.close()


def test_a_verification_still_running_says_so(server, ranked_solve, session_factory):
    from playwright.sync_api import sync_playwright

    base, _ = server
    ids = ranked_solve
    with transaction(session_factory) as session:
        row = session.get(Solve, ids["solve_id"])
        row.verification = {"state": "running", "started_at": "2024-01-01T00:00:00"}
        row.ranking, row.champion_run_id = None, None
    with sync_playwright() as p:
        browser = _launch(p)
        context = browser.new_context()
        context.add_init_script(f"localStorage.setItem('yudai-token', {ids['token']!r})")
        page = context.new_page()
        page.goto(f"{base}/ui#/sessions/{ids['session_id']}/solves/{ids['solve_id']}")
        page.wait_for_selector("#verification")
        assert "running" in page.inner_text("#verification-state")
        assert "Checking the reproduction tests" in page.inner_text("#verification")
        assert page.locator("#matrix").count() == 0 and page.locator("#runs .badge.champion").count() == 0
        browser.close()
        browser.close()

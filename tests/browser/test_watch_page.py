"""The watch page in a real headless Chromium (Debian's), against a real server on 127.0.0.1."""

import shutil
import threading
import time

import pytest

from tests.helpers import free_port

from yudai_solver import statuses
from yudai_solver.api import create_app
from yudai_solver.chat_sessions import create_session
from yudai_solver.db import transaction
from yudai_solver.models import AIModel, Solve, SolveRun
from yudai_solver.schemas import SolveStart
from yudai_solver.settings import Settings
from yudai_solver.solves import start_solve
from yudai_solver.users import create_user

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
XSS = '<img src=x onerror="window.pwned=1">'
pytestmark = [
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
    pytest.mark.skipif(not shutil.which("chromium"), reason="Debian's chromium is not installed (.ci/run installs it)"),
]



@pytest.fixture
def server(session_factory, tmp_path):
    import uvicorn

    settings = Settings(data_dir=tmp_path, local_repo_roots="")
    app = create_app(settings, session_factory=session_factory)
    port = free_port()
    instance = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    while not instance.started:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}", settings
    instance.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def solve(session_factory, server):
    _, settings = server
    with transaction(session_factory) as session:
        user, token = create_user(session, name="viewer")
        chat = create_session(session, user=user, title="watch")
        session.add(AIModel(name="m", provider="openai", model_id="m", config={}))
        session.flush()
        request = SolveStart(repo_url="https://github.com/acme/widgets", issue_number=7, issue_title=f"t {XSS}",
                             matrix={"models": ["m"], "temperatures": [0.0, 0.5]}, test_command="pytest -q")
        row, (first, second) = start_solve(session, user=user, session_id=chat.id, request=request, settings=settings)
        statuses.transition(row, statuses.RUNNING)
        for run in (first, second):
            statuses.transition(run, statuses.RUNNING)
        statuses.transition(first, statuses.COMPLETED)
        first.tests_passed, first.loc_changed, first.files_changed, first.tokens = True, 2, 1, 60
        first.diagnostics = {"patch": "--- a/calc.py\n+++ b/calc.py\n-    return a - b\n+    return a + b\n",
                             "test": {"command": "pytest -q", "returncode": 0}}
        first.trajectory_data = {"steps": [{"action": "cat calc.py", "output": f"printed {XSS}"}]}
        return {"token": token, "session_id": chat.id, "solve_id": row.id, "runs": (first.id, second.id)}


def test_the_page_shows_runs_live_and_a_run_s_patch_and_steps_as_text(server, solve, session_factory):
    from playwright.sync_api import sync_playwright

    base, _ = server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run", "--disable-sync", "--disable-quic"])
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
        assert page.inner_text("#runs tr.run >> nth=0").startswith("👑")
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

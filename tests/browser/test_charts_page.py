"""The page's overviews and charts in Debian's chromium: sessions with their issue and champion, a solve's timeline
and cost per run drawn by plotly.js (served from the installed package), two runs side by side, the models page."""

import base64
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.browser.conftest import CHROMIUM
from yudai_solver.base import statuses
from yudai_solver.base.db import transaction
from yudai_solver.base.models import AIModel
from yudai_solver.base.schemas import SolveStart
from yudai_solver.solving.chat_sessions import create_session
from yudai_solver.solving.solves import start_solve
from yudai_solver.solving.users import create_user

SHOTS = Path(tempfile.gettempdir())
XSS = '<img src=x onerror="window.pwned=1">'
HUNK = "--- a/calc.py\n+++ b/calc.py\n-    return a - b\n"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
GREEN, AMBER, RED = (0x1A, 0x7F, 0x37), (0xBC, 0x4C, 0x00), (0xCF, 0x22, 0x2E)
pytestmark = [pytest.mark.slow, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]


def _start(session, user, chat, settings, experiments, title):
    request = SolveStart(
        repo_url="https://github.com/acme/widgets",
        base_branch="main",
        issue_number=42,
        issue_title=title,
        matrix={"experiments": experiments},
        test_command="pytest -q",
    )
    row, runs = start_solve(session, user=user, session_id=chat.id, request=request, settings=settings)
    session.flush()  # the runs, as a dispatcher's commit writes them: before any is crowned
    statuses.transition(row, statuses.RUNNING)
    return row, runs


def _ran(run, status, *, start_s, end_s, tests_passed=None, tokens=0, cost=0.0, patch=""):
    statuses.transition(run, statuses.RUNNING)
    statuses.transition(run, status, error="time budget exceeded" if status == statuses.FAILED else None)
    run.started_at, run.completed_at = T0 + timedelta(seconds=start_s), T0 + timedelta(seconds=end_s)
    run.latency_ms, run.tokens, run.cost, run.tests_passed = (end_s - start_s) * 1000, tokens, cost, tests_passed
    run.loc_changed, run.files_changed = patch.count("\n+") + patch.count("\n-"), 1 if patch else 0
    run.diagnostics = {"patch": patch, "change": {"source_files": ["calc.py"] if patch else []}}


@pytest.fixture
def solves(session_factory, server):
    """Session 'adder': a finished solve of three overlapping runs (champion, tests failed, failed); session
    'second': a solve still running; session 'empty': no solve."""
    _, settings = server
    with transaction(session_factory) as session:
        user, token = create_user(session, name="charts")
        session.add_all([AIModel(name=n, provider="openai", model_id=n, config={}) for n in ("m1", "m2")])
        session.flush()
        adder = create_session(session, user=user, title="adder")
        experiments = [{"model": "m1", "temperature": 0.0}, {"model": "m1", "temperature": 0.5}]
        row, (best, failing, broken) = _start(
            session, user, adder, settings, [*experiments, {"model": "m2", "temperature": 0.0}], f"Fix the adder {XSS}"
        )
        fix, wrong = f"{HUNK}+    return a + b\n", f"{HUNK}+    return b\n"
        _ran(best, statuses.COMPLETED, start_s=0, end_s=40, tests_passed=True, tokens=1200, cost=0.012, patch=fix)
        _ran(failing, statuses.COMPLETED, start_s=5, end_s=60, tests_passed=False, tokens=3000, cost=0.03, patch=wrong)
        _ran(broken, statuses.FAILED, start_s=30, end_s=50, tokens=800, cost=0.008)
        row.champion_run_id = best.id
        statuses.transition(row, statuses.COMPLETED)
        second = create_session(session, user=user, title="second")
        running, (live,) = _start(session, user, second, settings, [{"model": "m2", "temperature": 0.0}], "Slow io")
        statuses.transition(live, statuses.RUNNING)
        create_session(session, user=user, title="empty")
        return {
            "token": token,
            "session_id": adder.id,
            "solve_id": row.id,
            "runs": {"best": best.id, "failing": failing.id, "broken": broken.id},
            "second": (second.id, running.id),
        }


@pytest.fixture
def page(server, solves):
    """A page logged in with the fixture user's token that records errors, CSP reports and every request made."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.add_init_script(f"localStorage.setItem('yudai-token', {solves['token']!r})")
        tab = context.new_page()
        tab.problems, tab.requests = [], []
        tab.on("pageerror", lambda error: tab.problems.append(str(error)))
        # Console errors (CSP refusals among them), save the browser's own favicon request answering 404.
        tab.on("console", lambda m: tab.problems.append(m.text) if m.type in ("error", "warning") else None)
        tab.on("response", lambda r: tab.problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        tab.on("request", lambda request: tab.requests.append(request.url))
        yield tab
        browser.close()


def _colours(page, selector) -> dict[tuple[int, int, int], int]:
    """How many pixels of each colour a screenshot of `selector` holds, counted in a blank page of the browser."""
    shot = base64.b64encode(page.locator(selector).screenshot()).decode()
    blank = page.context.new_page()
    counts = blank.evaluate(
        """async (png) => {
          const image = new Image(); image.src = `data:image/png;base64,${png}`; await image.decode();
          const canvas = document.createElement("canvas");
          canvas.width = image.width; canvas.height = image.height;
          const context = canvas.getContext("2d"); context.drawImage(image, 0, 0);
          const data = context.getImageData(0, 0, image.width, image.height).data, counts = {};
          for (let i = 0; i < data.length; i += 4) {
            const key = `${data[i]},${data[i + 1]},${data[i + 2]}`; counts[key] = (counts[key] || 0) + 1;
          }
          return counts;
        }""",
        shot,
    )
    blank.close()
    return {tuple(int(c) for c in key.split(",")): n for key, n in counts.items()}


def _problems(page) -> list[str]:
    return [p for p in page.problems if "favicon.ico" not in p and not p.startswith("Failed to load resource")]


def _only_local(page, base) -> None:
    assert page.requests and all(url.startswith(base) for url in page.requests), page.requests


def test_sessions_show_their_issue_repository_status_and_champion(server, solves, page):
    base, _ = server
    page.goto(f"{base}/ui")
    page.wait_for_selector("#sessions tr.session")
    rows = page.locator("#sessions tr.session")
    assert rows.count() == 3
    adder = page.locator(f"#sessions tr[data-session='{solves['session_id']}']")
    assert adder.locator("td.issue").inner_text() == f"Fix the adder {XSS} #42"  # text, never markup
    assert adder.locator("td.repo").inner_text() == "https://github.com/acme/widgets"
    assert adder.locator("td.status").inner_text() == "completed"
    assert adder.locator("td.champion .badge.champion").inner_text() == "champion"
    assert solves["runs"]["best"][:8] in adder.locator("td.champion").inner_text()
    assert "m1" in adder.locator("td.champion").inner_text()
    second = page.locator(f"#sessions tr[data-session='{solves['second'][0]}']")
    assert second.locator("td.status").inner_text() == "running" and "Slow io" in second.inner_text()
    assert second.locator("td.champion").inner_text() == "-"
    assert "no solve yet" in rows.nth(0).inner_text()  # the newest session, 'empty'
    adder.locator("td.issue a").click()
    page.wait_for_selector("#runs tr.run")
    assert page.evaluate("window.pwned") is None and page.locator("main img").count() == 0
    assert _problems(page) == []


def test_a_solve_draws_its_timeline_and_tokens_and_cost_per_run(server, solves, page):
    base, _ = server
    runs = solves["runs"]
    page.goto(f"{base}/ui#/sessions/{solves['session_id']}/solves/{solves['solve_id']}")
    page.wait_for_selector("#timeline .barlayer .point path")
    page.wait_for_selector("#cost-tokens .barlayer .point path")

    # One bar per run that ran, the champion named in text, the failed tests not drawn as a success.
    timeline = page.locator("#timeline")
    assert timeline.locator(".barlayer .point").count() == 3
    ticks = timeline.locator(".ytick text")
    labels = [
        text
        for _, text in sorted(
            (ticks.nth(i).bounding_box()["y"], ticks.nth(i).text_content()) for i in range(ticks.count())
        )
    ]  # top to bottom
    assert [label.split()[0] for label in labels] == [runs["best"][:8], runs["failing"][:8], runs["broken"][:8]]
    assert labels[0].endswith("(champion)")
    assert "champion" in timeline.locator(".barlayer").text_content()
    legend = timeline.locator(".legend").text_content()
    assert "completed, tests passed" in legend and "completed, tests failed" in legend and "failed" in legend

    # Parallelism at a glance: the bars of runs that overlapped in time overlap on the axis.
    def span(run_index):
        box = timeline.locator(".barlayer .point path").nth(run_index).bounding_box()
        return box["x"], box["x"] + box["width"]

    spans = sorted(span(i) for i in range(3))
    assert spans[0][1] > spans[1][0] and spans[1][1] > spans[2][0]

    # Tokens and cost: a bar of each per run, with their values written on them.
    costs = page.locator("#cost-tokens")
    assert costs.locator(".barlayer .point").count() == 6
    written = " ".join(costs.locator(".barlayer .point text").all_text_contents())
    assert all(value in written for value in ("1200", "3000", "800", "$0.0120", "$0.0300", "$0.0080"))

    # The screenshot shows it: green for the champion, amber for failed tests, red for the failed run.
    colours = _colours(page, "#timeline")
    assert colours.get(GREEN, 0) > 300 and colours.get(AMBER, 0) > 300 and colours.get(RED, 0) > 300
    badge = _colours(page, f"#runs tr[data-run='{runs['best']}'] .badge.champion")
    assert badge.get((0xFF, 0xF8, 0xC5), 0) > 50  # the badge's own background, not an emoji glyph
    assert page.locator(f"#runs tr[data-run='{runs['failing']}'] td.completed-failing").count() == 1

    _only_local(page, base)
    page.screenshot(path=str(SHOTS / "solve.png"), full_page=True)
    assert _problems(page) == []


def test_plotly_comes_from_the_installed_package_compressed_and_cached(server, solves, page):
    from plotly.offline import get_plotlyjs, get_plotlyjs_version

    base, _ = server
    page.goto(f"{base}/ui")
    page.wait_for_selector("#sessions")
    assert page.evaluate("Plotly.version") == get_plotlyjs_version()
    _only_local(page, base)
    url = f"{base}/ui/static/plotly-{get_plotlyjs_version()}.min.js"
    answer = httpx.get(url, headers={"Accept-Encoding": "gzip"})
    assert answer.headers["content-encoding"] == "gzip" and "immutable" in answer.headers["cache-control"]
    assert answer.text == get_plotlyjs()
    assert httpx.get(f"{base}/ui/static/plotly-0.0.1.min.js").status_code == 404


def test_two_picked_runs_are_shown_side_by_side(server, solves, page):
    base, _ = server
    runs = solves["runs"]
    page.goto(f"{base}/ui#/sessions/{solves['session_id']}/solves/{solves['solve_id']}")
    page.wait_for_selector("#runs tr.run")
    assert page.locator("#compare").is_disabled()
    page.check(f"input.compare-pick[data-run='{runs['best']}']")
    page.check(f"input.compare-pick[data-run='{runs['failing']}']")
    assert page.locator("#detail *").count() == 0  # picking is not opening the run
    page.click("#compare")
    page.wait_for_selector("#compare-figures")

    def figure(name):
        return page.locator(f"#compare-figures tr[data-figure='{name}'] td").all_inner_texts()

    assert figure("tokens") == ["1200", "3000"] and figure("cost") == ["$0.0120", "$0.0300"]
    assert figure("status") == ["completed, tests passed", "completed, tests failed"]
    assert figure("time") == ["40.0 s", "55.0 s"]
    assert figure("temperature") == ["0", "0.5"]
    assert page.locator("#compare-figures tr[data-figure='tokens'] td.differs").count() == 2
    assert page.locator("#compare-figures tr[data-figure='model'] td.differs").count() == 0
    headers = page.locator("#compare-figures th .badge.champion")
    assert headers.count() == 1
    assert "+    return a + b" in page.inner_text("#diff-a") and "+    return b" in page.inner_text("#diff-b")
    assert page.locator("#diff-b span.add").count() == 1 and page.locator("#diff-b span.del").count() == 1
    assert _problems(page) == []


def test_the_models_page_compares_models_over_all_solves(server, solves, page):
    base, _ = server
    page.goto(f"{base}/ui")
    page.wait_for_selector("#sessions")
    page.click("#nav-models")
    page.wait_for_selector("#models-chart .barlayer .point path")
    rows = page.locator("#models tr.model")
    assert rows.count() == 3

    def row(i):
        return [c.strip() for c in rows.nth(i).locator("td").all_inner_texts()]

    # model, temperature, strategy, runs, passed, champions, median cost, median time, median tokens
    assert row(0)[:2] == ["m1", "0"] and row(0)[3:] == ["1", "1/1 (100%)", "1", "$0.0120", "40.0 s", "1200"]
    assert row(1)[:2] == ["m1", "0.5"] and row(1)[3:] == ["1", "0/1 (0%)", "0", "$0.0300", "55.0 s", "3000"]
    assert row(2)[:2] == ["m2", "0"] and row(2)[3:] == ["2", "0/1 (0%)", "0", "$0.0080", "20.0 s", "800"]
    chart = page.locator("#models-chart")
    assert chart.locator(".barlayer .point").count() == 6
    assert "100%" in " ".join(chart.locator(".barlayer .point text").all_text_contents())
    assert _colours(page, "#models-chart").get(GREEN, 0) > 300
    _only_local(page, base)
    assert _problems(page) == []

"""Live progress of a solve in the terminal: a Rich table of its runs, then the champion and its patch."""

import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.syntax import Syntax
from rich.table import Table

from yudai_solver.entry.client import SolveClient

FINISHED = {"completed", "failed", "cancelled"}
STYLE = {"completed": "green", "failed": "red", "cancelled": "yellow", "running": "cyan", "pending": "dim"}


def runs_table(status: dict[str, Any]) -> Table:
    p = status["progress"]
    title = (
        f"solve {status['solve_id'][:8]} — {status['status']} — {p['percent_complete']:.0f}% "
        f"({p['elapsed_s']:.1f}s, {p['tokens_total']} tokens)"
    )
    table = Table(title=title)
    columns = ("run", "model", "temp", "evolution", "status", "exit", "calls/cmds", "tokens", "tests", "lines", "files")
    for column in (*columns, "ms"):
        table.add_column(column)
    for run in status["runs"]:
        mark = "👑 " if run["id"] == status.get("champion_run_id") else ""
        tests = {True: "[green]pass[/]", False: "[red]fail[/]", None: "-"}[run["tests_passed"]]
        table.add_row(
            mark + run["id"][:8],
            run["model"],
            f"{run['temperature']:g}",
            run["evolution"],
            f"[{STYLE.get(run['status'], '')}]{run['status']}[/]",
            run.get("agent_exit") or "-",
            f"{_n(run['steps'])}/{_n(run.get('commands'))}",
            _n(run["tokens"]),
            tests,
            _n(run["loc_changed"]),
            _n(run["files_changed"]),
            _n(run["latency_ms"]),
        )
    return table


def verification_table(status: dict[str, Any]) -> Table:
    """Run x reproduction test: which candidate's fix passes which valid test (the base's verdict as the title)."""
    verification = status.get("verification") or {}
    tests = verification.get("tests") or []
    title = (
        f"verification: {verification.get('state')}, {sum(bool(t.get('valid')) for t in tests)} of "
        f"{len(tests)} reproduction tests valid"
    )
    table = Table(title=title)
    table.add_column("run")
    for test in tests:
        table.add_column(f"{test['path']} ({test['run_id'][:8]})" + ("" if test.get("valid") else " ✗"))
    for run_id, cells in (verification.get("matrix") or {}).items():
        marks = {True: "[green]pass[/]", False: "[red]fail[/]", None: "-"}
        table.add_row(run_id[:8], *(marks[cells.get(t["id"])] if t.get("valid") else "" for t in tests))
    return table


def _n(value: object) -> str:
    return "-" if value is None else str(value)


def watch(
    client: SolveClient, session_id: int, solve_id: str, console: Console, *, interval: float = 0.5
) -> dict[str, Any]:
    """Poll until the solve ends and its pull request, if one is coming, is opened or has failed, redrawing the
    table; Ctrl-C cancels the solve."""
    status = client.status(session_id, solve_id)
    try:
        with Live(runs_table(status), console=console, refresh_per_second=4) as live:
            while status["status"] not in FINISHED or pr_pending(status):
                time.sleep(interval)
                status = client.status(session_id, solve_id)
                live.update(runs_table(status))
    except KeyboardInterrupt:
        client.cancel(session_id, solve_id)
        console.print("[yellow]cancelled[/]")
        status = client.status(session_id, solve_id)
    return status


def pr_pending(status: dict[str, Any]) -> bool:
    """A pull request is still to come (a server without PR states has none to wait for)."""
    return (status.get("pr") or {}).get("state") == "pending"


def show_outcome(client: SolveClient, session_id: int, status: dict[str, Any], console: Console) -> None:
    console.print()
    baseline = status.get("baseline") or {}
    if baseline.get("test_command"):
        before = "pass" if baseline.get("tests_passed") else "fail"
        console.print(f"tests before any change: {before} ({baseline['test_command']})")
    verification = status.get("verification") or {}
    if verification:
        console.print(verification_table(status))
    if status["ranking"]:
        console.print(f"ranking: {status['ranking']['reason']}")
    if not status["champion_run_id"]:
        console.print(f"[red]no champion[/]: {status['error_message'] or status['status']}")
        for run in status["runs"]:  # why each run did not win, in its own words
            if run.get("error_message"):
                why = escape(run["error_message"])
                console.print(f"  {run['id'][:8]} {escape(run['model'])}: {why}", soft_wrap=True)
        return
    run = client.run(session_id, status["solve_id"], status["champion_run_id"])
    console.print(
        Group(
            f"[bold green]champion[/] {run['id'][:8]} — {run['model']} (temperature {run['temperature']:g}, "
            f"{run['evolution']}): tests passed, {run['loc_changed']} lines in {run['files_changed']} files, "
            f"{run['tokens']} tokens, {run['latency_ms']} ms",
            Syntax((run.get("diagnostics") or {}).get("patch") or "(empty patch)", "diff", theme="ansi_dark"),
        )
    )
    pr = status.get("pr") or {}
    if pr.get("state") == "opened":
        console.print(f"pull request: {escape(pr['url'])}", soft_wrap=True)
    elif pr.get("state") == "failed":
        console.print(f"[red]no pull request[/]: {escape(pr.get('error') or '')}", soft_wrap=True)

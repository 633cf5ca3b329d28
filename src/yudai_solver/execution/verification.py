"""The solve's verification, once every run has ended: reproduction tests checked on the base, then cross-checked
against every candidate's fix (the N x M matrix), and a judge where the tests leave the best candidates tied.

A reproduction test is a test file a run added that passed with that run's own fix. It is valid only if it fails
on the base: a test that passes without any fix proves nothing. Each matrix cell runs one valid test file over one
candidate's source change, in a fresh checkout made by the worker (the base plus that run's source patch, applied
by our own git) and a fresh sandbox; candidates run in parallel, at most `max_parallel` at once.

The work happens in the worker thread that finished the solve's last run, so both dispatchers get it without a
job kind of its own. It stops when the solve is cancelled or its budget ends the verification (`reducer`).
"""

import logging
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from yudai_solver.base import statuses
from yudai_solver.base.db import storable, transaction
from yudai_solver.base.models import AIModel, Solve, SolveRun, utcnow
from yudai_solver.execution.checks import run_tests
from yudai_solver.execution.control import RunControl
from yudai_solver.execution.records import surviving_outages
from yudai_solver.execution.run import RunEnv
from yudai_solver.execution.validation import apply_patch_text, remove_paths
from yudai_solver.sandboxes import Sandbox, create_sandbox
from yudai_solver.solving.evidence import RunFacts
from yudai_solver.solving.ranking import Evidence, disqualification, tied_at_top
from yudai_solver.solving.reducer import FACT_COLUMNS, VERIFYING, finish_if_done, gather_evidence
from yudai_solver.solving.testpaths import sections, split_patch
from yudai_solver.solving.testreport import targeted_command

log = logging.getLogger(__name__)
WATCH_S = 0.25
HEARTBEAT_EVERY = 8  # watch ticks: every 2 s
MAX_POOL = 20
BASE = "base"


@dataclass(frozen=True)
class PoolTest:
    id: str
    run_id: str
    path: str
    patch: str
    """The patch section that adds the test file."""


@dataclass(frozen=True)
class Plan:
    solve_id: str
    repo_url: str
    base_branch: str
    base_commit: str
    setup_command: str | None
    test_command: str
    network: bool
    max_parallel: int
    candidates: dict[str, str]
    """Run id -> source patch, for every completed run that changed source code."""
    pool: list[PoolTest]
    setup_network: bool = True


def verify_pending(env: RunEnv, solve_id: str, control: RunControl | None = None) -> None:
    """Claim the solve's pending verification, carry it out, store it and settle the solve; else do nothing.

    `control` lets a dispatcher stop it like a run; the solve's own state stops it too (see `_watch`).
    """
    plan = _claim(env, solve_id)
    if plan is None:
        return
    started = time.monotonic()
    control = control or RunControl(f"verify-{solve_id[:8]}", solve_id)
    watch = threading.Thread(target=_watch, args=(env.session_factory, solve_id, control), daemon=True)
    watch.start()
    try:
        found: dict[str, Any] = _verify(env, plan, control)
    except Exception as exc:
        log.exception("solve %s: verification failed", solve_id)
        found = {"state": "error", "error": f"{type(exc).__name__}: {exc}"[:2000]}
    finally:
        requeue = control.requeue
        control.stop("verification ended")
        shutil.rmtree(env.settings.data_dir / "verify" / solve_id, ignore_errors=True)
    if requeue:  # the worker is shutting down: left `running`, its heartbeat stops, and it is resumed elsewhere
        return
    found["duration_s"] = round(time.monotonic() - started, 3)
    _store(env, solve_id, found)
    _judge_if_tied(env, solve_id)
    _settle(env.session_factory, solve_id)


@surviving_outages
def _claim(env: RunEnv, solve_id: str) -> Plan | None:
    with transaction(env.session_factory) as session:
        solve = session.scalar(select(Solve).where(Solve.id == solve_id).with_for_update())
        if solve is None or solve.status != statuses.RUNNING or (solve.verification or {}).get("state") != "pending":
            return None
        now = utcnow().isoformat()
        solve.verification = {"state": "running", "started_at": now, "heartbeat_at": now}
        facts = [RunFacts(*row) for row in session.execute(select(*FACT_COLUMNS).where(SolveRun.solve_id == solve_id))]
        qualified = {e.id for e in gather_evidence(solve, facts) if disqualification(e) is None}
        return _plan(env, solve, facts, qualified)


def _plan(env: RunEnv, solve: Solve, facts: list[RunFacts], qualified: set[str]) -> Plan:
    """Candidates: the runs that qualify (cross-checking the others could not change the pick). Pool: the
    reproduction tests of every completed run that changed source code and passed its own test."""
    test_command = solve.test_command or (solve.baseline or {}).get("test_command") or ""
    candidates: dict[str, str] = {}
    pool: list[PoolTest] = []
    for fact in sorted(facts, key=lambda f: f.id):
        diagnostics = fact.diagnostics or {}
        if fact.status != statuses.COMPLETED or not (diagnostics.get("change") or {}).get("source_files"):
            continue
        split = split_patch(diagnostics.get("patch") or "", globs=solve.test_paths)
        if fact.id in qualified:
            candidates[fact.id] = split.source_patch
        added = {s.new_path: s.text for s in sections(split.test_patch) if s.status == "added"}
        for check in diagnostics.get("reproduction", []):
            if check.get("passes_with_fix") and check["path"] in added and len(pool) < MAX_POOL:
                pool.append(PoolTest(f"t{len(pool) + 1}", fact.id, check["path"], added[check["path"]]))
    return Plan(
        solve.id,
        solve.repo_url,
        solve.base_branch or "main",
        solve.base_commit or "",
        solve.setup_command,
        test_command,
        bool((solve.limits or {}).get("network")),
        solve.max_parallel or env.settings.max_concurrent_runs,
        candidates,
        pool,
        (solve.limits or {}).get("setup_network") is not False,
    )


def _verify(env: RunEnv, plan: Plan, control: RunControl) -> dict[str, Any]:
    tests: list[dict[str, str | bool]] = [{"id": t.id, "run_id": t.run_id, "path": t.path} for t in plan.pool]
    if not plan.pool or not plan.test_command:
        return {"state": "done", "tests": tests, "matrix": {}}
    # The base runs beside the candidates rather than first: every cell is run, and cells of tests the base shows
    # to be invalid simply do not count; the wall time is what a user waits for.
    checkouts = {BASE: "", **plan.candidates}
    workers = max(1, min(plan.max_parallel, len(checkouts)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"verify-{plan.solve_id[:8]}") as pool:
        futures = {
            name: pool.submit(_in_checkout, env, plan, control, name, patch, plan.pool)
            for name, patch in checkouts.items()
        }
        found = {name: future.result() for name, future in futures.items()}
    on_base = found.pop(BASE)
    for test, pool_test in zip(tests, plan.pool, strict=True):
        passed = on_base.get(pool_test.id)
        test["valid"] = passed is False
        test["reason"] = {
            False: "fails on the base",
            True: "passes on the base: proves nothing",
            None: "could not run alone",
        }[passed]
    return {"state": "done", "tests": tests, "matrix": found}


def _in_checkout(
    env: RunEnv, plan: Plan, control: RunControl, name: str, source_patch: str, tests: list[PoolTest]
) -> dict[str, bool | None]:
    """One fresh checkout (the base plus `source_patch`), set up once, each test file run alone in turn."""
    if control.stopped:
        return {}
    directory = env.settings.data_dir / "verify" / plan.solve_id / name
    workspace = directory / "work"
    env.workspaces.checkout(
        plan.repo_url, plan.base_branch, workspace, commit=plan.base_commit, cancel=control.cancel_event
    )
    try:
        apply_patch_text(workspace, source_patch)
    except Exception as exc:  # noqa: BLE001 - a patch that no longer applies fails every cell, not the solve
        log.warning("solve %s: the source patch of %s does not apply: %s", plan.solve_id, name, exc)
        return {t.id: False for t in tests}
    sandbox = create_sandbox(
        env.settings.sandbox,
        workspace=workspace,
        home=directory / "home",
        network=plan.network,
        command_timeout=env.settings.command_timeout_s,
        settings=env.settings,
    )
    control.attach(sandbox)
    try:
        if (
            plan.setup_command
            and sandbox.run(
                plan.setup_command, timeout=env.settings.setup_timeout_s, network=plan.setup_network
            ).returncode
            != 0
        ):
            return {t.id: False for t in tests}
        return {t.id: _cell(env, sandbox, workspace, plan, t, control) for t in tests}
    finally:
        sandbox.close()
        env.workspaces.remove(directory)


def _cell(
    env: RunEnv, sandbox: Sandbox, workspace: Path, plan: Plan, test: PoolTest, control: RunControl
) -> bool | None:
    command = targeted_command(plan.test_command, test.path)
    if command is None or control.stopped:
        return None
    try:
        apply_patch_text(workspace, test.patch)
    except Exception:  # noqa: BLE001 - the fix already holds a file at that path: this test cannot be placed
        return False
    try:
        return run_tests(sandbox, command, env.settings.test_timeout_s).passed
    finally:
        remove_paths(workspace, plan.base_commit, [test.path])


def _watch(factory: sessionmaker[Session], solve_id: str, control: RunControl) -> None:
    """Kill the verification's commands once the solve is cancelled or a budget ended the verification; keep its
    heartbeat fresh meanwhile, so that a dead worker's verification is noticed and started again (`resume`)."""
    tick = 0
    while not control.cancel_event.wait(WATCH_S):
        tick += 1
        try:
            alive = _beat(factory, solve_id, write=tick % HEARTBEAT_EVERY == 0)
        except Exception:  # noqa: BLE001 - the database may be restarting; the next tick tries again
            continue
        if not alive:
            control.stop("verification stopped")


def _beat(factory: sessionmaker[Session], solve_id: str, *, write: bool) -> bool:
    with transaction(factory) as session:
        # Locked when it writes: else a budget that stops the verification in between would be overwritten.
        query = select(Solve).where(Solve.id == solve_id)
        solve = session.scalar(query.with_for_update() if write else query)
        verification = (solve.verification if solve else None) or {}
        if solve is None or solve.status != statuses.RUNNING or verification.get("state") != "running":
            return False
        if write:
            solve.verification = {**verification, "heartbeat_at": utcnow().isoformat()}
        return True


@surviving_outages
def stalled(factory: sessionmaker[Session], *, older_than_s: float) -> list[str]:
    """Solves whose verification waits with nobody at work on it (its worker died, or never claimed it): each is
    put back to pending and returned, for the caller to `verify_pending`."""
    cutoff = utcnow() - timedelta(seconds=older_than_s)
    with transaction(factory) as session:
        solves = session.scalars(
            select(Solve).where(Solve.status == statuses.RUNNING, Solve.verification.is_not(None)).with_for_update()
        ).all()
        found = [
            s
            for s in solves
            if (s.verification or {}).get("state") in VERIFYING and _heartbeat(s.verification) <= cutoff
        ]
        for solve in found:
            solve.verification = {"state": "pending", "heartbeat_at": utcnow().isoformat()}
        return [solve.id for solve in found]


def _heartbeat(verification: dict[str, Any] | None) -> datetime:
    try:
        return datetime.fromisoformat((verification or {})["heartbeat_at"])
    except (KeyError, TypeError, ValueError):
        return datetime.min.replace(tzinfo=UTC)


@surviving_outages
def _store(env: RunEnv, solve_id: str, found: dict[str, Any]) -> None:
    with transaction(env.session_factory) as session:
        solve = session.scalar(select(Solve).where(Solve.id == solve_id).with_for_update())
        verification = (solve.verification if solve else None) or {}
        if solve is not None and verification.get("state") == "running":
            solve.verification = storable(
                {**verification, **found, "state": "judging" if found.get("state") == "done" else found["state"]}
            )


def _judge_if_tied(env: RunEnv, solve_id: str) -> None:
    """Ask the solve's judge model to break a tie at the top, if there is a judge, a tie and no judgement yet."""
    # Imported here: the judge imports mini-swe-agent's litellm, which only a worker should load.
    from yudai_solver.execution.judge import Candidate, judge
    from yudai_solver.execution.model_slots import shared_slots

    with env.session_factory() as session:
        solve = session.get(Solve, solve_id)
        if solve is None or (solve.verification or {}).get("state") != "judging":
            return
        reference = (solve.limits or {}).get("judge_model")
        facts = [RunFacts(*row) for row in session.execute(select(*FACT_COLUMNS).where(SolveRun.solve_id == solve_id))]
        tied = tied_at_top(gather_evidence(solve, facts)) if reference else []
        model = (
            session.scalars(
                select(AIModel).where((AIModel.name == reference) | (AIModel.model_id == reference))
            ).first()
            if len(tied) > 1
            else None
        )
        title, body, test_paths = solve.issue_title or "", solve.issue_body or "", solve.test_paths
        patches = {f.id: (f.diagnostics or {}).get("patch") or "" for f in facts}
    if model is None:
        return
    candidates = [
        Candidate(e.id, split_patch(patches[e.id], globs=test_paths).source_patch, _evidence_text(e)) for e in tied
    ]
    verdict = judge(
        provider=model.provider,
        model_id=model.model_id,
        config=dict(model.config or {}),
        timeout_s=env.settings.model_timeout_s,
        issue_title=title,
        issue_body=body,
        candidates=candidates,
        shared_slots=shared_slots(env.session_factory),
    )
    _store_verdict(
        env,
        solve_id,
        {
            "model": model.name,
            "run_id": verdict.run_id,
            "rationale": verdict.rationale,
            "tokens": verdict.tokens,
            "cost": verdict.cost,
            "error": verdict.error,
            "candidates": [c.run_id for c in candidates],
        },
    )


def _evidence_text(e: Evidence) -> str:
    return (
        f"tests passed: {e.tests_passed}; reproduction tests passed: {e.reproduction_passed} of "
        f"{e.reproduction_total}; runs agreeing: {e.agreement}; changed lines: {e.loc_changed}"
    )


@surviving_outages
def _store_verdict(env: RunEnv, solve_id: str, verdict: dict[str, Any]) -> None:
    with transaction(env.session_factory) as session:
        solve = session.scalar(select(Solve).where(Solve.id == solve_id).with_for_update())
        verification = (solve.verification if solve else None) or {}
        if solve is not None and verification.get("state") == "judging":
            solve.verification = storable({**verification, "judge": verdict})


@surviving_outages
def _settle(factory: sessionmaker[Session], solve_id: str) -> None:
    with transaction(factory) as session:
        solve = session.scalar(select(Solve).where(Solve.id == solve_id).with_for_update())
        verification = (solve.verification if solve else None) or {}
        if solve is not None and verification.get("state") == "judging":
            solve.verification = {**verification, "state": "done"}
        session.flush()
        finish_if_done(session, solve_id)

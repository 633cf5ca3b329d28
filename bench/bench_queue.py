"""The PostgreSQL job queue with real worker processes: start -> first run `running` latency, and scripted runs
per second with 1, 2 and 4 workers (each `yudai worker --concurrency 2`).

    python bench/bench_queue.py [--samples 30] [--runs 40]

Needs a local PostgreSQL (YUDAI_BENCH_PG_URL, default postgresql+psycopg://postgres@127.0.0.1:5432/postgres); a
throwaway database is created and dropped.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, select, text

from yudai_solver.base.db import create_db_engine, create_session_factory, transaction
from yudai_solver.base.migrate import upgrade
from yudai_solver.base.models import AIModel, Solve, SolveRun, User
from yudai_solver.base.schemas import SolveStart
from yudai_solver.base.settings import Settings
from yudai_solver.dispatch.jobqueue import JobQueueDispatcher
from yudai_solver.entry.demo import create_repository
from yudai_solver.solving.chat_sessions import create_session
from yudai_solver.solving.solves import start_solve
from yudai_solver.solving.users import create_user
from yudai_solver.testing.scripted import ScriptedChatServer, Step

ADMIN = os.environ.get("YUDAI_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Bench:
    def __init__(self, url: str, tmp: Path, api_base: str):
        self.url, self.tmp = url, tmp
        self.settings = Settings(database_url=url, data_dir=tmp / "api", local_repo_roots=str(tmp / "repos"))
        self.factory = create_session_factory(create_db_engine(url))
        self.repo = create_repository(tmp / "repos" / "calc")
        self.dispatcher = JobQueueDispatcher(self.settings, self.factory)
        with transaction(self.factory) as session:
            user, _ = create_user(session, name="bench")
            self.user_id, self.session_id = user.id, create_session(session, user=user, title="b").id
            for name in ("quick", "sleeper"):
                session.add(AIModel(name=name, provider="openai", model_id=name, config={"api_base": api_base}))
        self.workers = []

    def start_workers(self, count: int) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("YUDAI_")} | {"YUDAI_DATABASE_URL": self.url}
        for _ in range(count):
            env_i = env | {"YUDAI_DATA_DIR": str(self.tmp / f"w{len(self.workers)}")}
            self.workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "yudai_solver", "worker", "--concurrency", "2"],
                    env=env_i,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        deadline = time.monotonic() + 120
        while self._registered() < len(self.workers) and time.monotonic() < deadline:
            time.sleep(0.1)  # imports and registration

    def _registered(self) -> int:
        with self.factory() as session:
            return session.scalar(text("SELECT count(*) FROM procrastinate_workers"))

    def stop_workers(self) -> None:
        for w in self.workers:
            w.terminate()
        for w in self.workers:
            w.wait(timeout=60)
        self.workers = []

    def start(self, runs: int, model: str = "quick") -> tuple[str, datetime]:
        body = {
            "repo_url": str(self.repo),
            "issue_number": 1,
            "issue_title": "t",
            "issue_body": "b",
            "matrix": {"models": [model], "temperatures": [round(i / runs, 4) for i in range(runs)]},
            "test_command": "true",
        }
        with self.factory() as session:
            user = session.get(User, self.user_id)
            solve, rows = start_solve(
                session, user=user, session_id=self.session_id, request=SolveStart(**body), settings=self.settings
            )
            self.dispatcher.defer(session, solve, rows)
            committed = datetime.now(UTC)
            session.commit()
        return solve.id, committed

    def wait(self, solve_id: str) -> Solve:
        while True:
            with self.factory() as session:
                solve = session.get(Solve, solve_id)
            if solve.status in ("completed", "failed", "cancelled"):
                return solve
            time.sleep(0.02)

    def first_running_latency(self, solve_id: str, committed: datetime) -> float:
        while True:
            with self.factory() as session:
                started = session.scalar(select(SolveRun.started_at).where(SolveRun.solve_id == solve_id))
            if started is not None:
                return (started - committed).total_seconds()
            time.sleep(0.005)


def sleeper_pids() -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and b"yudai-bench-sleeper" in open(f"/proc/{entry}/cmdline", "rb").read():
                found.add(int(entry))
        except OSError:
            pass
    return found


def measure_cancel(bench: Bench, samples: int) -> list[float]:
    """Cancel as the API does (rows cancelled, jobs aborted), then time until the agent's command is gone."""
    from yudai_solver.solving.solves import cancel

    bench.start_workers(1)
    latencies = []
    for _ in range(samples):
        solve_id, _ = bench.start(1, model="sleeper")
        while not sleeper_pids():
            time.sleep(0.01)
        started = time.perf_counter()
        with transaction(bench.factory) as session:
            cancel(session, user=session.get(User, bench.user_id), session_id=bench.session_id, solve_id=solve_id)
        bench.dispatcher.cancel(solve_id)
        while sleeper_pids():
            time.sleep(0.005)
        latencies.append(time.perf_counter() - started)
        bench.wait(solve_id)
    bench.stop_workers()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--cancels", type=int, default=20)
    args = parser.parse_args()
    name = f"yudai_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = str(create_engine(ADMIN).url.set(database=name).render_as_string(hide_password=False))
    try:
        upgrade(url)
        scripts = {"quick": [Step("echo ok")], "sleeper": [Step("sleep 600; echo yudai-bench-sleeper")]}
        with tempfile.TemporaryDirectory() as tmp, ScriptedChatServer(scripts) as chat:
            bench = Bench(url, Path(tmp), chat.base_url)
            bench.start_workers(1)
            latencies = []
            for _ in range(args.samples):
                solve_id, committed = bench.start(1)
                latencies.append(bench.first_running_latency(solve_id, committed))
                bench.wait(solve_id)
            bench.stop_workers()
            cancel_latencies = measure_cancel(bench, args.cancels)
            print(
                f"cancel -> command killed: p50 {percentile(cancel_latencies, 0.5) * 1000:.0f} ms, "
                f"p99 {percentile(cancel_latencies, 0.99) * 1000:.0f} ms, max {max(cancel_latencies) * 1000:.0f} ms "
                f"(n={args.cancels}, API-side cancel + abort, worker kills the process group)"
            )
            print(
                f"start -> first run running: p50 {percentile(latencies, 0.5) * 1000:.0f} ms, "
                f"p95 {percentile(latencies, 0.95) * 1000:.0f} ms (n={args.samples}, 1 idle worker)"
            )
            for count in (1, 2, 4):
                bench.start_workers(count)
                solve_id, _ = bench.start(args.runs)
                started = time.perf_counter()
                solve = bench.wait(solve_id)
                elapsed = time.perf_counter() - started
                bench.stop_workers()
                print(
                    f"{count} worker(s) x concurrency 2: {args.runs} runs in {elapsed:.1f}s = "
                    f"{args.runs / elapsed:.2f} runs/s ({solve.status})"
                )
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()

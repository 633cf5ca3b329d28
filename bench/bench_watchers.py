"""Many people watching: status pollers and event-stream listeners against a real `yudai serve`, on SQLite and on
PostgreSQL, with big (~1.2 MB) or small (~5 KB) trajectories, in a database of 10,000 other solves / 40,000 runs.

    python bench/bench_watchers.py [--seconds 10] [--other-solves 10000] [--only sqlite|postgresql]
    python bench/bench_watchers.py --starts 200   # POST .../solve/start under load, PostgreSQL + 2 busy workers

Pollers are keep-alive HTTP clients, each polling once a second (a watch page, a CLI) with `If-None-Match`, so
unchanged answers are 304s; "back-to-back" pollers ask again as soon as they have an answer and send no ETag (the
worst a script can do). Listeners follow `/events` while a writer advances the solve once a second; the figure is
the delay from a write's commit to each listener's receipt of a document showing it. Clients run in a separate
process from the server, as asyncio tasks (one thread), so the client's own GIL does not inflate the figures.
"""

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy import create_engine, insert, text, update

from yudai_solver.base.db import create_db_engine, create_session_factory, transaction
from yudai_solver.base.migrate import upgrade
from yudai_solver.base.models import ChatSession, Solve, SolveRun, utcnow
from yudai_solver.solving.users import create_user

ADMIN = os.environ.get("YUDAI_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
WATCHED_RUNS = 32
BIG = 1_200_000
SMALL = 5_000


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@contextmanager
def database(kind: str, tmp: Path):
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'yudai.db'}"
        return
    name = f"bench_watchers_{uuid.uuid4().hex[:8]}"
    admin = create_engine(ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


def populate(url: str, other_solves: int, trajectory_bytes: int) -> tuple[str, int, str]:
    """The watched solve (32 finished runs with trajectories of `trajectory_bytes`) among `other_solves` solves of
    4 runs each; returns (token, session id, watched solve id)."""
    upgrade(url)
    engine = create_db_engine(url)
    factory = create_session_factory(engine)
    with transaction(factory) as session:
        user, token = create_user(session, name="watcher")
        chat = ChatSession(user_id=user.id, title="bench")
        session.add(chat)
        session.flush()
        user_id, session_id = user.id, chat.id
    now = utcnow()
    solve_row = {"user_id": user_id, "session_id": session_id, "repo_url": "/r", "issue_number": 1,
                 "status": "completed", "matrix": {"experiments": []}, "create_pr": False, "created_at": now,
                 "issue_title": "watched issue"}  # fmt: skip
    run_row = {"model": "m", "temperature": 0.1, "max_edits": 30, "evolution": "direct", "status": "completed",
               "tests_passed": True, "loc_changed": 3, "files_changed": 1, "tokens": 1234, "cost": 0.01,
               "latency_ms": 5000, "steps": 9, "commands": 8, "agent_exit": "submitted", "created_at": now}  # fmt: skip
    small = {"steps": [{"action": "ls", "output": "x" * (SMALL - 100)}]}
    with engine.begin() as conn:
        for start in range(0, other_solves, 1000):
            ids = [uuid.uuid4().hex for _ in range(min(1000, other_solves - start))]
            conn.execute(insert(Solve), [solve_row | {"id": i} for i in ids])
            runs = [run_row | {"id": uuid.uuid4().hex, "solve_id": i, "trajectory_data": small,
                               "diagnostics": {"patch": "p" * 2000}} for i in ids for _ in range(4)]  # fmt: skip
            conn.execute(insert(SolveRun), runs)
        watched = uuid.uuid4().hex
        conn.execute(insert(Solve), [solve_row | {"id": watched}])
        trajectory = {"steps": [{"action": "cat x", "output": "y" * (trajectory_bytes - 100)}]}
        for index in range(WATCHED_RUNS):
            conn.execute(
                insert(SolveRun),
                [
                    run_row
                    | {
                        "id": f"{watched}-{index}",
                        "solve_id": watched,
                        "trajectory_data": trajectory,
                        "diagnostics": {"patch": "p" * min(trajectory_bytes, 200_000)},
                    }
                ],  # fmt: skip
            )
    if not url.startswith("sqlite"):  # SQLite checkpoints its WAL when the last connection closes
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    engine.dispose()
    return token, session_id, watched


@contextmanager
def server(url: str, tmp: Path, *, worker: bool = True):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("YUDAI_")}
    env |= {"YUDAI_DATABASE_URL": url, "YUDAI_DATA_DIR": str(tmp / "data"), "YUDAI_SANDBOX": "local",
            "YUDAI_LOCAL_REPO_ROOTS": str(tmp / "repos")}  # fmt: skip
    args = [sys.executable, "-m", "yudai_solver", "serve", "--port", str(port)]
    process = subprocess.Popen(
        args + ([] if worker else ["--no-worker"]), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError("yudai serve did not come up")
        time.sleep(0.2)
    try:
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def poll(url: str, headers: dict, pollers: int, seconds: float, *, paced: bool) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    codes: dict[int, int] = {}
    limits = httpx.Limits(max_connections=pollers, max_keepalive_connections=pollers)

    async def one(client: httpx.AsyncClient) -> None:
        etag = None
        if paced:
            await asyncio.sleep(random.random())
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            began = time.monotonic()
            try:
                sent = headers | ({"If-None-Match": etag} if etag and paced else {})
                response = await client.get(url, headers=sent)
                latencies.append(time.monotonic() - began)
                codes[response.status_code] = codes.get(response.status_code, 0) + 1
                if response.status_code >= 400:
                    errors.append(str(response.status_code))
                etag = response.headers.get("etag", etag)
            except httpx.HTTPError as error:
                errors.append(type(error).__name__)
            if paced:
                await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - began)))

    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        clients = [httpx.AsyncClient(timeout=60) for _ in range(pollers)]
        try:
            await asyncio.gather(*(one(c) for c in clients))
        finally:
            for c in clients:
                await c.aclose()
    del client
    return {
        "requests": len(latencies),
        "per_s": len(latencies) / seconds,
        "p50_ms": 1000 * statistics.median(latencies) if latencies else None,
        "p99_ms": 1000 * percentile(latencies, 0.99) if latencies else None,
        "max_ms": 1000 * max(latencies) if latencies else None,
        "errors": len(errors),
        "codes": codes,
    }


async def listen(base: str, headers: dict, session_id: int, solve_id: str, listeners: int, url: str, seconds: int):
    """`listeners` event streams while a writer bumps one run's token count once a second."""
    engine = create_db_engine(url)
    factory = create_session_factory(engine)
    written: dict[int, float] = {}
    received: list[list[tuple[int, float]]] = [[] for _ in range(listeners)]

    async def follow(index: int, client: httpx.AsyncClient) -> None:
        events_url = f"{base}/sessions/{session_id}/solve/{solve_id}/events"
        async with client.stream("GET", events_url, headers=headers) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: ") and '"runs"' in line:
                    tokens = json.loads(line[6:])["runs"][0]["tokens"] or 0
                    received[index].append((tokens, time.monotonic()))

    def write(value: int) -> None:
        with transaction(factory) as session:
            session.execute(update(SolveRun).where(SolveRun.id == f"{solve_id}-0").values(tokens=value))
        written[value] = time.monotonic()

    with transaction(factory) as session:
        session.execute(update(Solve).where(Solve.id == solve_id).values(status="running"))
    # Built first, as the starts' clients are: each builds an SSL context in this one thread.
    clients = [httpx.AsyncClient(timeout=None) for _ in range(listeners)]
    tasks = [asyncio.create_task(follow(i, client)) for i, client in enumerate(clients)]
    await asyncio.sleep(2)
    for value in range(1, seconds + 1):
        await asyncio.to_thread(write, 100_000 + value)
        await asyncio.sleep(1)
    await asyncio.sleep(1.5)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for client in clients:
        await client.aclose()
    with transaction(factory) as session:
        session.execute(update(Solve).where(Solve.id == solve_id).values(status="completed"))
    engine.dispose()
    delays, missed = [], 0
    for seen in received:
        for value, at in written.items():
            arrival = next((t for tokens, t in seen if tokens >= value), None)
            if arrival is None:
                missed += 1
            else:
                delays.append(arrival - at)
    return {
        "listeners": listeners,
        "changes": len(written),
        "missed": missed,
        "p50_ms": 1000 * statistics.median(delays),
        "max_ms": 1000 * max(delays),
    }


def build_cost(url: str, solve_id: str, repeat: int = 300) -> float:
    """Median milliseconds to read the version and build and serialize the status document, in this process: the
    server's own cost, without HTTP or client noise (what must stay flat in trajectory size)."""
    from yudai_solver.solving import solves

    engine = create_db_engine(url)
    factory = create_session_factory(engine, read_only=True)
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        with factory() as session:
            solve = session.get(Solve, solve_id)
            solves.status_of(session, solve, solves.status_version(session, solve_id)).model_dump_json()
        times.append(1000 * (time.perf_counter() - began))
    engine.dispose()
    return statistics.median(times)


def build_ratio(kind: str, other_solves: int, rounds: int = 15, batch: int = 20) -> dict:
    """The status document's in-process cost with big against small trajectories, measured side by side: two
    databases populated alike, batches alternating between them (the machine's noise hits both)."""
    with (
        tempfile.TemporaryDirectory(prefix="yudai-bench-") as tmp,
        database(kind, Path(tmp) / "big") as big_url,
        database(kind, Path(tmp) / "small") as small_url,
    ):
        (Path(tmp) / "big").mkdir(exist_ok=True)
        (Path(tmp) / "small").mkdir(exist_ok=True)
        watched = {"big": (big_url, populate(big_url, other_solves, BIG)[2]),
                   "small": (small_url, populate(small_url, other_solves, SMALL)[2])}  # fmt: skip
        medians: dict[str, list[float]] = {"big": [], "small": []}
        for _ in range(rounds):
            for label, (url, solve_id) in watched.items():
                medians[label].append(build_cost(url, solve_id, repeat=batch))
    big, small = statistics.median(medians["big"]), statistics.median(medians["small"])
    return {"database": kind, "build_big_ms": big, "build_small_ms": small, "ratio": big / small}


def watchers(kind: str, size: int, other_solves: int, seconds: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="yudai-bench-") as tmp, database(kind, Path(tmp)) as url:
        token, session_id, solve_id = populate(url, other_solves, size)
        headers = {"Authorization": f"Bearer {token}"}
        build_ms = build_cost(url, solve_id)
        with server(url, Path(tmp), worker=kind == "sqlite") as base:
            status_url = f"{base}/sessions/{session_id}/solve/status/{solve_id}"
            for _ in range(20):
                httpx.get(status_url, headers=headers)
            row = {
                "build_ms": build_ms,
                "one": asyncio.run(poll(status_url, headers, 1, seconds, paced=False)),
                "fifty_paced": asyncio.run(poll(status_url, headers, 50, seconds, paced=True)),
                "fifty_back_to_back": asyncio.run(poll(status_url, headers, 50, seconds, paced=False)),
            }
            if size == SMALL:
                row["listeners"] = asyncio.run(listen(base, headers, session_id, solve_id, 50, url, int(seconds)))
    return row


def starts(count: int, concurrency: int, worker_count: int = 2) -> dict:
    """POST .../solve/start `count` times from `concurrency` clients, PostgreSQL, `worker_count` workers (each
    `--concurrency 2`) busy with the runs."""
    from yudai_solver.base.models import AIModel
    from yudai_solver.entry.demo import create_repository
    from yudai_solver.testing.scripted import ScriptedChatServer, Step

    with tempfile.TemporaryDirectory(prefix="yudai-bench-") as tmp, database("postgresql", Path(tmp)) as url:
        upgrade(url)
        repo = create_repository(Path(tmp) / "repos" / "calc")
        engine = create_db_engine(url)
        factory = create_session_factory(engine)
        with ScriptedChatServer({"busy": [Step("sleep 0.5 && echo ok", delay_s=0.2), Step("ls")]}) as chat:
            with transaction(factory) as session:
                user, token = create_user(session, name="starter")
                chat_row = ChatSession(user_id=user.id, title="starts")
                session.add(chat_row)
                config = {"api_base": chat.base_url}
                session.add(AIModel(name="busy", provider="openai", model_id="busy", config=config))
                session.flush()
                session_id = chat_row.id
            env = {k: v for k, v in os.environ.items() if not k.startswith("YUDAI_")}
            env |= {"YUDAI_DATABASE_URL": url, "YUDAI_SANDBOX": "local", "OPENAI_API_KEY": "sk-bench"}
            workers = [
                subprocess.Popen(
                    [sys.executable, "-m", "yudai_solver", "worker", "--concurrency", "2"],
                    env=env | {"YUDAI_DATA_DIR": f"{tmp}/w{i}"},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )  # fmt: skip
                for i in range(worker_count)
            ]
            try:
                deadline = time.monotonic() + 120
                while _workers(engine) < len(workers):  # imports and registration
                    if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
                        raise RuntimeError("the workers did not come up")
                    time.sleep(0.2)
                with server(url, Path(tmp), worker=False) as base:
                    body = {"repo_url": str(repo), "issue_number": 1, "issue_title": "t", "issue_body": "b",
                            "test_command": "true",
                            "matrix": {"models": ["busy"], "temperatures": [0.0, 0.1, 0.2, 0.3]}}  # fmt: skip
                    asyncio.run(_starts(base, token, session_id, body, 10, 2))  # a backlog: the workers are busy
                    busy = _running(engine) if workers else 0
                    result = asyncio.run(_starts(base, token, session_id, body, count, concurrency))
                    result["runs_running_at_start"] = busy
                    with engine.connect() as conn:
                        result["runs_done"] = conn.execute(
                            text("SELECT count(*) FROM solve_runs WHERE status <> 'pending'")
                        ).scalar()
            finally:
                for worker in workers:
                    worker.terminate()
                for worker in workers:
                    worker.wait(timeout=60)
        engine.dispose()
    return result


def _workers(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM procrastinate_workers")).scalar() or 0


def _running(engine, timeout_s: float = 30) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        with engine.connect() as conn:
            running = conn.execute(text("SELECT count(*) FROM solve_runs WHERE status = 'running'")).scalar() or 0
        if running or time.monotonic() > deadline:
            return running
        time.sleep(0.1)


async def _starts(base: str, token: str, session_id: int, body: dict, count: int, concurrency: int) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(count):
        queue.put_nowait(index)

    async def client_loop(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            queue.get_nowait()
            began = time.monotonic()
            response = await client.post(f"{base}/sessions/{session_id}/solve/start", json=body)
            latencies.append(time.monotonic() - began)
            if response.status_code != 201:
                errors.append(f"{response.status_code} {response.text[:100]}")

    # Made before the clock starts: each client builds an SSL context (~30-60 ms of this process's one thread),
    # which, made inside the burst, stalled the other clients' first requests and read as the server's p99.
    clients = [httpx.AsyncClient(timeout=60, headers={"Authorization": f"Bearer {token}"}) for _ in range(concurrency)]
    began = time.monotonic()
    try:
        await asyncio.gather(*(client_loop(client) for client in clients))
    finally:
        for client in clients:
            await client.aclose()
    return {
        "starts": count,
        "clients": concurrency,
        "wall_s": time.monotonic() - began,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * percentile(latencies, 0.99),
        "errors": errors[:5],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--other-solves", type=int, default=10_000)
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    parser.add_argument("--starts", type=int, default=0, help="measure POST start instead, this many times")
    parser.add_argument("--start-clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="busy workers during --starts")
    parser.add_argument("--ratio", action="store_true", help="only the big/small build cost, side by side")
    args = parser.parse_args()
    if args.starts:
        print(json.dumps({"workers": args.workers, **starts(args.starts, args.start_clients, args.workers)}))
        return
    if args.ratio:
        for kind in [args.only] if args.only else ["sqlite", "postgresql"]:
            print(json.dumps(build_ratio(kind, args.other_solves)), flush=True)
        return
    for kind in [args.only] if args.only else ["sqlite", "postgresql"]:
        for label, size in (("big", BIG), ("small", SMALL)):
            row = watchers(kind, size, args.other_solves, args.seconds)
            print(json.dumps({"database": kind, "trajectories": label, **row}), flush=True)


if __name__ == "__main__":
    main()

"""Fifty people watching one running solve of a real `yudai serve` on SQLite: no error, no slow answer.

Each reader polls twice a second, as the CLI and scripts do; half send the ETag back as a watch page does, half
ask for the whole document every time."""

import asyncio
import multiprocessing
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import httpx
import pytest

from tests.helpers import free_port, wait_for
from yudai_solver.base.db import create_db_engine, create_session_factory, transaction
from yudai_solver.base.migrate import upgrade
from yudai_solver.base.models import AIModel
from yudai_solver.entry.demo import TEST_COMMAND, create_repository
from yudai_solver.solving.chat_sessions import create_session
from yudai_solver.solving.users import create_user
from yudai_solver.testing.scripted import ScriptedChatServer, Step

pytestmark = pytest.mark.slow  # seconds each: not in the fast tier

READERS = 50
SLOWEST_S = 1.0
"""As the issue asks. Alone, the slowest answers here take 0.4-0.8 s: the first full documents, while four runs start
in the server's process. In a full CI run one took 1.15 s: a full garbage collection of the server's heap (~500,000
objects, mostly the agent stack) paused every thread; `yudai serve` now freezes what it loaded before serving, and
loads what litellm loads lazily first. Before reads stopped taking SQLite's write lock, answers waited the 30 s busy
timeout and failed."""
POLL_S = 0.5

FIX = "sed -i 's/return a - b/return a + b/' calc.py"
SCRIPT = [Step("cat calc.py", delay_s=0.3), Step("sleep 3", delay_s=0.3), Step(FIX, delay_s=0.3), Step("ls")]


def test_fifty_readers_of_a_running_solve_on_sqlite_see_no_error_and_no_slow_answer(tmp_path):
    data = tmp_path / "data"
    repo = create_repository(tmp_path / "repos" / "calc")
    url = f"sqlite:///{data / 'yudai.db'}"
    upgrade(url)
    engine = create_db_engine(url)
    with ScriptedChatServer({"steady": SCRIPT}) as chat:
        with transaction(create_session_factory(engine)) as session:
            user, token = create_user(session, name="watcher")
            session_id = create_session(session, user=user, title="watched").id
            session.add(
                AIModel(name="steady", provider="openai", model_id="steady", config={"api_base": chat.base_url})
            )
        engine.dispose()
        port = free_port()
        environment = {k: v for k, v in os.environ.items() if not k.startswith("YUDAI_")}
        environment |= {
            "YUDAI_DATA_DIR": str(data),
            "YUDAI_LOCAL_REPO_ROOTS": str(tmp_path / "repos"),
            "YUDAI_SANDBOX": "local",
            "OPENAI_API_KEY": "sk-scripted",
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "yudai_solver", "serve", "--port", str(port)],
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {token}"}
        try:
            wait_for(lambda: _up(base) or server.poll() is not None, timeout=60)
            assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
            started = httpx.post(
                f"{base}/sessions/{session_id}/solve/start",
                headers=headers,
                json={
                    "repo_url": str(repo),
                    "issue_number": 1,
                    "issue_title": "add subtracts",
                    "issue_body": "",
                    "test_command": TEST_COMMAND,
                    "matrix": {"models": ["steady"], "temperatures": [0.0, 0.1, 0.2, 0.3]},
                },
                timeout=30,
            )
            assert started.status_code == 201, started.text
            status_url = f"{base}/sessions/{session_id}/solve/status/{started.json()['solve_id']}"
            # The readers in a process of their own, on one event loop: beside the scripted model server's threads
            # (or as 50 threads) they would measure their own waits for the GIL.
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as readers:
                answers, problems = readers.submit(_read_in_process, status_url, headers).result(timeout=180)
            final = httpx.get(status_url, headers=headers).json()
        finally:
            server.terminate()
            server.wait(timeout=30)

    assert final["status"] == "completed" and final["champion_run_id"], final
    assert problems == []
    assert len(answers) > READERS * 5
    assert max(answers) < SLOWEST_S, sorted(answers)[-5:]


def _read_in_process(status_url: str, headers: dict) -> tuple[list[float], list[str]]:
    return asyncio.run(_read(status_url, headers))


async def _read(status_url: str, headers: dict) -> tuple[list[float], list[str]]:
    """Poll with READERS keep-alive clients until the solve ends; half send the ETag back."""
    answers: list[float] = []
    problems: list[str] = []
    done = asyncio.Event()

    async def read(index: int, client: httpx.AsyncClient) -> None:
        conditional, etag = index % 2 == 0, None
        await asyncio.sleep(index * POLL_S / READERS)  # watchers arrive over a poll's time, not in one instant
        while not done.is_set():
            began = time.monotonic()
            try:
                response = await client.get(status_url, headers={"If-None-Match": etag} if etag else {})
            except httpx.HTTPError as error:
                problems.append(repr(error))
                continue
            answers.append(time.monotonic() - began)
            if response.status_code not in (200, 304):
                problems.append(f"{response.status_code} {response.text[:200]}")
            elif response.status_code == 200:
                etag = response.headers["etag"] if conditional else None
                if response.json()["status"] in ("completed", "failed", "cancelled"):
                    done.set()
            await asyncio.sleep(max(0.0, POLL_S - (time.monotonic() - began)))

    # Made before any is timed: making a client loads the CA certificates, ~30 ms that would stall the loop.
    clients = [httpx.AsyncClient(headers=headers, timeout=10) for _ in range(READERS)]
    try:
        await asyncio.wait_for(asyncio.gather(*(read(i, c) for i, c in enumerate(clients))), timeout=120)
    finally:
        for client in clients:
            await client.aclose()
    return answers, problems


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False

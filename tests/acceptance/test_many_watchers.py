"""Fifty people watching one running solve of a real `yudai serve` on SQLite: no error, no slow answer."""

import os
import subprocess
import sys
import threading
import time

import httpx

from tests.helpers import free_port, wait_for
from yudai_solver.base.db import create_db_engine, create_session_factory, transaction
from yudai_solver.base.migrate import upgrade
from yudai_solver.base.models import AIModel
from yudai_solver.entry.demo import TEST_COMMAND, create_repository
from yudai_solver.solving.chat_sessions import create_session
from yudai_solver.solving.users import create_user
from yudai_solver.testing.scripted import ScriptedChatServer, Step

READERS = 50
SLOWEST_S = 1.0

FIX = "sed -i 's/return a - b/return a + b/' calc.py"
SCRIPT = [Step("cat calc.py", delay_s=0.3), Step("sleep 1", delay_s=0.3), Step(FIX, delay_s=0.3), Step("ls")]


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
            answers, problems, done = [], [], threading.Event()

            def read() -> None:
                with httpx.Client(headers=headers, timeout=10) as client:  # keep-alive, as a page or script polls
                    while not done.is_set():
                        began = time.monotonic()
                        try:
                            response = client.get(status_url)
                        except httpx.HTTPError as error:
                            problems.append(repr(error))
                            continue
                        answers.append(time.monotonic() - began)
                        if response.status_code != 200:
                            problems.append(f"{response.status_code} {response.text[:200]}")
                        elif response.json()["status"] in ("completed", "failed", "cancelled"):
                            done.set()
                        time.sleep(0.05)

            readers = [threading.Thread(target=read) for _ in range(READERS)]
            for reader in readers:
                reader.start()
            done.wait(timeout=120)
            done.set()
            for reader in readers:
                reader.join(timeout=30)
            final = httpx.get(status_url, headers=headers).json()
        finally:
            server.terminate()
            server.wait(timeout=30)

    assert final["status"] == "completed" and final["champion_run_id"], final
    assert problems == []
    assert len(answers) > READERS * 5
    assert max(answers) < SLOWEST_S, sorted(answers)[-5:]


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False

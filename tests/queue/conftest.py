"""Real worker processes on a real PostgreSQL job queue, driven through the API."""

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from yudai_solver.base import statuses
from yudai_solver.base.db import transaction
from yudai_solver.base.models import AIModel, Solve, SolveRun
from yudai_solver.base.settings import Settings
from yudai_solver.dispatch.jobqueue import JobQueueDispatcher
from yudai_solver.entry.api import create_app
from yudai_solver.entry.demo import create_repository
from yudai_solver.solving.users import create_user
from yudai_solver.testing.scripted import ScriptedChatServer


@dataclass
class Cluster:
    url: str
    settings: Settings
    factory: object
    client: TestClient
    headers: dict
    session_id: int
    server: ScriptedChatServer
    repo: Path
    tmp: Path
    workers: list = field(default_factory=list)

    def worker(self, concurrency: int = 1, graceful: float = 30) -> subprocess.Popen:
        env = {k: v for k, v in os.environ.items() if not k.startswith("YUDAI_")}
        env |= {
            "YUDAI_DATABASE_URL": self.url,
            "YUDAI_DATA_DIR": str(self.tmp / f"worker{len(self.workers)}"),
            "YUDAI_COMMAND_TIMEOUT_S": "900",
            "YUDAI_SANDBOX": "local",  # the scripts touch flag files outside the workspace; one user: allowed
        }
        log = open(self.tmp / f"worker{len(self.workers)}.log", "w")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "yudai_solver",
                "worker",
                "--concurrency",
                str(concurrency),
                "--graceful-timeout",
                str(graceful),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.workers.append(process)
        return process

    def add_model(self, name: str) -> None:
        with transaction(self.factory) as session:
            session.add(AIModel(name=name, provider="openai", model_id=name, config={"api_base": self.server.url}))

    def start(self, **request) -> str:
        body = {"repo_url": str(self.repo), "issue_number": 1, "issue_title": "t", "issue_body": "b"} | request
        response = self.client.post(f"/sessions/{self.session_id}/solve/start", json=body, headers=self.headers)
        assert response.status_code == 201, response.text
        return response.json()["solve_id"]

    def cancel(self, solve_id: str) -> None:
        response = self.client.post(f"/sessions/{self.session_id}/solve/cancel/{solve_id}", headers=self.headers)
        assert response.status_code == 200, response.text

    def runs(self, solve_id: str) -> list[SolveRun]:
        with self.factory() as session:
            return list(session.scalars(select(SolveRun).where(SolveRun.solve_id == solve_id)))

    def wait(self, solve_id: str, timeout: float = 90) -> Solve:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.factory() as session:
                solve = session.get(Solve, solve_id)
            if solve.status in statuses.FINISHED:
                return solve
            time.sleep(0.1)
        raise AssertionError(f"solve {solve_id} still {solve.status} after {timeout}s; logs: {self.logs()}")

    def logs(self) -> str:
        return "\n".join((self.tmp / f"worker{i}.log").read_text()[-3000:] for i in range(len(self.workers)))


@pytest.fixture
def cluster(tmp_path, database_url, session_factory):
    factory = session_factory
    repo = create_repository(tmp_path / "repos" / "calc")
    settings = Settings(database_url=database_url, data_dir=tmp_path / "api", local_repo_roots=str(tmp_path / "repos"))
    with transaction(factory) as session:
        _, token = create_user(session, name="queue")
    server = ScriptedChatServer({})
    server.url = server.start()
    app = create_app(settings, session_factory=factory, dispatcher=JobQueueDispatcher(settings, factory))
    with TestClient(app) as client:
        headers = {"Authorization": f"Bearer {token}"}
        session_id = client.post("/sessions", json={}, headers=headers).json()["id"]
        c = Cluster(database_url, settings, factory, client, headers, session_id, server, repo, tmp_path)
        yield c
        for process in c.workers:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
    server.stop()

"""A real pipeline: scripted OpenAI-compatible model server, in-process dispatcher, local sandbox, real git."""

import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from yudai_solver.base import statuses
from yudai_solver.base.db import transaction
from yudai_solver.base.models import AIModel, Solve
from yudai_solver.base.schemas import SolveStart
from yudai_solver.base.settings import Settings
from yudai_solver.dispatch.inprocess import InProcessDispatcher
from yudai_solver.entry.demo import create_repository
from yudai_solver.solving.chat_sessions import create_session
from yudai_solver.solving.solves import start_solve
from yudai_solver.solving.users import create_user
from yudai_solver.testing.scripted import ScriptedChatServer


@dataclass
class Pipeline:
    settings: Settings
    factory: object
    dispatcher: InProcessDispatcher
    server: ScriptedChatServer
    repo: Path
    user_id: int
    session_id: int

    def add_model(self, name: str) -> None:
        with transaction(self.factory) as session:
            session.add(AIModel(name=name, provider="openai", model_id=name, config={"api_base": self.server.url}))

    def start(self, **request) -> str:
        body = {"repo_url": str(self.repo), "issue_number": 1, "issue_title": "t", "issue_body": "b"} | request
        with transaction(self.factory) as session:
            from yudai_solver.base.models import User

            user = session.get(User, self.user_id)
            solve, _ = start_solve(
                session, user=user, session_id=self.session_id, request=SolveStart(**body), settings=self.settings
            )
        self.dispatcher.submit(solve.id)
        return solve.id

    def wait(self, solve_id: str, timeout: float = 60) -> Solve:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.factory() as session:
                solve = session.get(Solve, solve_id)
            if solve.status in statuses.FINISHED and self.dispatcher.wait_idle(5):
                return solve
            time.sleep(0.1)
        raise AssertionError(f"solve {solve_id} did not finish in {timeout}s")


@pytest.fixture
def scripts():
    from yudai_solver.entry.demo import SCRIPTS

    return dict(SCRIPTS)


@pytest.fixture
def pipeline(session_factory, tmp_path, scripts, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-canary-worker-secret")
    repo = create_repository(tmp_path / "repos" / "calc")
    settings = Settings(
        data_dir=tmp_path / "data",
        local_repo_roots=str(tmp_path / "repos"),
        command_timeout_s=30,
        test_timeout_s=60,
        model_timeout_s=10,
    )
    with transaction(session_factory) as session:
        user, _ = create_user(session, name="e2e")
        chat = create_session(session, user=user, title="e2e")
        user_id, session_id = user.id, chat.id
    server = ScriptedChatServer(scripts)
    server.url = server.start()
    dispatcher = InProcessDispatcher(settings, session_factory)
    dispatcher.start()
    yield Pipeline(settings, session_factory, dispatcher, server, repo, user_id, session_id)
    dispatcher.stop()
    server.stop()

"""A throwaway embedded deployment (SQLite, local sandbox, in-process dispatcher) for benchmarks."""

import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from yudai_solver.base import statuses
from yudai_solver.base.db import create_db_engine, create_session_factory, transaction
from yudai_solver.base.migrate import upgrade
from yudai_solver.base.models import AIModel, Solve, User
from yudai_solver.base.schemas import SolveStart
from yudai_solver.base.settings import Settings
from yudai_solver.dispatch.inprocess import InProcessDispatcher
from yudai_solver.solving.chat_sessions import create_session
from yudai_solver.solving.solves import start_solve
from yudai_solver.solving.users import create_user


class Deployment:
    def __init__(self, root: Path, repo_root: Path, **settings):
        self.settings = Settings(data_dir=root / "data", local_repo_roots=str(repo_root), **settings)
        upgrade(self.settings.resolved_database_url)
        self.factory = create_session_factory(create_db_engine(self.settings.resolved_database_url))
        with transaction(self.factory) as session:
            user, _ = create_user(session, name="bench")
            self.user_id, self.session_id = user.id, create_session(session, user=user, title="bench").id
        self.dispatcher = InProcessDispatcher(self.settings, self.factory)
        self.dispatcher.start()

    def add_model(self, name: str, api_base: str) -> None:
        with transaction(self.factory) as session:
            session.add(AIModel(name=name, provider="openai", model_id=name, config={"api_base": api_base}))

    def start(self, body: dict) -> str:
        with transaction(self.factory) as session:
            user = session.get(User, self.user_id)
            solve, _ = start_solve(
                session, user=user, session_id=self.session_id, request=SolveStart(**body), settings=self.settings
            )
        self.dispatcher.submit(solve.id)
        return solve.id

    def wait(self, solve_id: str, timeout: float = 300) -> Solve:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.factory() as session:
                solve = session.get(Solve, solve_id)
            if solve.status in statuses.FINISHED:
                return solve
            time.sleep(0.01)
        raise TimeoutError(solve_id)

    def stop(self) -> None:
        self.dispatcher.stop()


@contextmanager
def deployment(repo_root: Path, **settings):
    with tempfile.TemporaryDirectory(prefix="yudai-bench-") as tmp:
        d = Deployment(Path(tmp), repo_root, **settings)
        try:
            yield d
        finally:
            d.stop()


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2

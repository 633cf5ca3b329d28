"""API fixtures over a fresh database of each kind (see tests/conftest.py for `database_url`)."""

from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from yudai_solver.base.db import transaction
from yudai_solver.base.models import AIModel
from yudai_solver.base.settings import Settings
from yudai_solver.entry.api import create_app
from yudai_solver.solving.users import create_user


@dataclass
class Api:
    client: TestClient
    session_factory: object
    settings: Settings

    def user(self, name: str, *, admin: bool = False) -> dict:
        with transaction(self.session_factory) as session:
            _, token = create_user(session, name=name, admin=admin)
        return {"Authorization": f"Bearer {token}"}

    def count(self, model) -> int:
        with self.session_factory() as session:
            return session.scalar(select(func.count()).select_from(model))

    def model(self, name: str, model_id: str | None = None, active: bool = True) -> None:
        with transaction(self.session_factory) as session:
            session.add(AIModel(name=name, provider="openai", model_id=model_id or name, config={}, is_active=active))


@pytest.fixture
def repo_root(tmp_path: Path) -> Path:
    root = tmp_path / "repos"
    root.mkdir()
    return root


@pytest.fixture
def api(session_factory, repo_root: Path, tmp_path: Path):
    # GitHub's API is a closed port here: no test reaches the real one (tests/fakes/github.py serves those that do).
    settings = Settings(
        database_url="sqlite://",
        data_dir=tmp_path / "data",
        local_repo_roots=str(repo_root),
        github_api_url="http://127.0.0.1:9",
        repo_hosts="git.example.org",  # a host without an issue tracker
    )
    app = create_app(settings, session_factory=session_factory)
    with TestClient(app) as client:
        yield Api(client, session_factory, settings)

"""Fixtures for the GitHub tests: the fake REST API, an HTTPS git server holding bare repositories, an app.

Import the fixtures you use into the test module (`from tests.fakes.fixtures import fake_github, ...`).
"""

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect, select, text

from yudai_solver.base.db import transaction
from yudai_solver.base.models import AIModel
from yudai_solver.base.settings import Settings
from yudai_solver.entry.api import create_app
from yudai_solver.entry.demo import create_repository
from yudai_solver.solving.users import create_user

from .git_http import GitHttpsServer, available, make_certificate
from .github import FakeGitHub

TOKEN = "ghp_canary0token0that0must0never0leak"
WEBHOOK_SECRET = "whsec-canary-webhook-secret"


@pytest.fixture
def fake_github():
    fake = FakeGitHub(TOKEN)
    fake.url = fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def git_certificate(tmp_path_factory) -> tuple[Path, Path]:
    if not available():
        pytest.skip("needs the openssl command and git-http-backend")
    return make_certificate(tmp_path_factory.mktemp("tls"))


@dataclass
class GitRemote:
    server: GitHttpsServer
    url: str
    """https://127.0.0.1:PORT, the root of the served repositories."""
    root: Path

    def add(self, full_name: str, source: Path) -> str:
        """Serve a bare clone of `source` as FULL_NAME; returns its https URL."""
        subprocess.run(["git", "clone", "-q", "--bare", str(source), str(self.root / full_name)], check=True)
        return f"{self.url}/{full_name}"

    def branches(self, full_name: str) -> dict[str, str]:
        out = subprocess.run(
            [
                "git",
                "-C",
                str(self.root / full_name),
                "for-each-ref",
                "--format=%(refname:short) %(objectname)",
                "refs/heads",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return dict(line.split() for line in out.splitlines())


@pytest.fixture
def git_remote(git_certificate, tmp_path, monkeypatch):
    cert, key = git_certificate
    monkeypatch.setenv("GIT_SSL_CAINFO", str(cert))  # git on the worker trusts the test certificate
    root = tmp_path / "served"
    root.mkdir()
    server = GitHttpsServer(root, token=TOKEN, cert=cert, key=key)
    remote = GitRemote(server, server.start(), root)
    yield remote
    server.stop()


def calc_repository(path: Path) -> Path:
    """The demo's repository (add() subtracts; its test fails)."""
    return create_repository(path)


def github_settings(tmp_path: Path, fake: FakeGitHub, **overrides) -> Settings:
    values = dict(
        database_url="sqlite://",
        data_dir=tmp_path / "data",
        local_repo_roots=str(tmp_path / "repos"),
        github_api_url=fake.url,
        github_token=TOKEN,
        github_webhook_secret=WEBHOOK_SECRET,
        github_timeout_s=5,
        repo_private_networks="127.0.0.1/32",  # the fake GitHub and its git server listen on loopback
    )
    return Settings(**(values | overrides))


@dataclass
class GitHubApi:
    client: TestClient
    session_factory: object
    settings: Settings

    def user(self, name: str) -> dict:
        with transaction(self.session_factory) as session:
            _, token = create_user(session, name=name)
        return {"Authorization": f"Bearer {token}"}

    def model(self, name: str) -> None:
        with transaction(self.session_factory) as session:
            session.add(AIModel(name=name, provider="openai", model_id=name, config={}))

    def rows(self, model) -> list:
        with self.session_factory() as session:
            return list(session.scalars(select(model)))


def app_client(session_factory, settings: Settings, dispatcher=None):
    return TestClient(create_app(settings, session_factory=session_factory, dispatcher=dispatcher))


def dump_database(engine) -> str:
    """Every row of every table, as text: for searching secrets."""
    lines = []
    with engine.connect() as conn:
        for table in inspect(engine).get_table_names():
            lines += [repr(tuple(row)) for row in conn.execute(text(f'SELECT * FROM "{table}"'))]
    return "\n".join(lines)


def git_configs(*roots: Path) -> str:
    """The text of every git config file under `roots` (mirrors, checkouts, served repositories)."""
    return "\n".join(
        path.read_text(errors="replace")
        for root in roots
        if root.exists()
        for path in root.rglob("config")
        if path.is_file()
    )

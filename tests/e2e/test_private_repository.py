"""Private GitHub repositories: the mirror is fetched with the token, which stays in that git process only."""

import pytest

from tests.fakes.fixtures import TOKEN, calc_repository, git_certificate  # noqa: F401 - fixtures
from tests.fakes.git_http import GitHttpsServer
from yudai_solver.base.git import GitError
from yudai_solver.base.settings import Settings
from yudai_solver.execution.workspace import workspaces_for

pytestmark = pytest.mark.slow


@pytest.fixture
def private_remote(git_certificate, tmp_path, monkeypatch):
    cert, key = git_certificate
    monkeypatch.setenv("GIT_SSL_CAINFO", str(cert))
    root = tmp_path / "served"
    root.mkdir()
    server = GitHttpsServer(root, token=TOKEN, cert=cert, key=key, private=True)
    url = server.start()
    import subprocess

    subprocess.run(
        ["git", "clone", "-q", "--bare", str(calc_repository(tmp_path / "src")), str(root / "acme/secret")], check=True
    )
    yield f"{url}/acme/secret", url
    server.stop()


def every_file_text(root) -> str:
    return "".join(p.read_bytes().decode(errors="replace") for p in root.rglob("*") if p.is_file())


def test_a_private_github_repository_is_mirrored_with_the_token_and_nothing_keeps_it(private_remote, tmp_path):
    repo, base = private_remote
    settings = Settings(data_dir=tmp_path / "data", github_api_url=f"{base}/api/v3", github_token=TOKEN)
    sha = workspaces_for(settings).checkout(repo, "main", tmp_path / "work")
    assert len(sha) == 40 and (tmp_path / "work" / "calc.py").exists()
    assert TOKEN not in every_file_text(tmp_path / "data") + every_file_text(tmp_path / "work")


def test_without_the_token_a_private_repository_is_refused(private_remote, tmp_path):
    repo, base = private_remote
    settings = Settings(data_dir=tmp_path / "data", github_api_url=f"{base}/api/v3")
    with pytest.raises(GitError):
        workspaces_for(settings).checkout(repo, "main", tmp_path / "work")


def test_the_token_goes_to_github_hosts_only(private_remote, tmp_path):
    repo, _ = private_remote  # served on 127.0.0.1, but the configured GitHub is elsewhere
    settings = Settings(
        data_dir=tmp_path / "data", github_api_url="https://ghe.example.invalid/api/v3", github_token=TOKEN
    )
    with pytest.raises(GitError):
        workspaces_for(settings).checkout(repo, "main", tmp_path / "work")

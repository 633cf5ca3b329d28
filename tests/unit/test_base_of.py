"""The branch and commit a solve of a local repository starts from: read in one git call at start (it is pinned
there), with an error naming the field at fault."""

import subprocess
from pathlib import Path

import pytest

from yudai_solver.base import git
from yudai_solver.base.errors import InvalidInput
from yudai_solver.base.settings import Settings
from yudai_solver.solving.repos import base_of

SETTINGS = Settings(_env_file=None)


def run(*args: str) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout.strip()


def commit(repo: Path, message: str) -> str:
    run("-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", message)
    return run("-C", str(repo), "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    run("init", "-q", "-b", "master", str(path))
    commit(path, "first")
    return path


@pytest.fixture
def git_calls(monkeypatch) -> list[list[str]]:
    calls: list[list[str]] = []
    real = git.subprocess.Popen

    def popen(args, **kwargs):
        calls.append(list(args))
        return real(args, **kwargs)

    monkeypatch.setattr(git.subprocess, "Popen", popen)
    return calls


def test_without_a_branch_the_head_branch_and_its_commit_in_one_git_call(repo: Path, git_calls):
    head = run("-C", str(repo), "rev-parse", "HEAD")
    git_calls.clear()  # the module's subprocess is everyone's: count from here

    assert base_of(str(repo), None, SETTINGS) == ("master", head)
    assert len(git_calls) == 1


def test_a_named_branch_gives_its_own_commit_in_one_git_call(repo: Path, git_calls):
    run("-C", str(repo), "checkout", "-q", "-b", "dev")
    dev = commit(repo, "on dev")
    run("-C", str(repo), "checkout", "-q", "master")
    git_calls.clear()

    assert base_of(str(repo), "dev", SETTINGS) == ("dev", dev)
    assert len(git_calls) == 1


@pytest.mark.parametrize("branch", [None, "master"])
def test_a_directory_that_is_no_repository_names_repo_url(tmp_path: Path, branch):
    plain = tmp_path / "plain"
    plain.mkdir()

    with pytest.raises(InvalidInput) as raised:
        base_of(str(plain), branch, SETTINGS)
    assert raised.value.field == "repo_url" and "not a git repository" in raised.value.message


def test_a_missing_branch_names_base_branch(repo: Path):
    with pytest.raises(InvalidInput) as raised:
        base_of(str(repo), "develop", SETTINGS)
    assert raised.value.field == "base_branch" and "no branch 'develop'" in raised.value.message


def test_a_detached_head_asks_for_a_base_branch(repo: Path):
    run("-C", str(repo), "checkout", "-q", "--detach")

    with pytest.raises(InvalidInput) as raised:
        base_of(str(repo), None, SETTINGS)
    assert raised.value.field == "base_branch" and "detached" in raised.value.message


def test_a_repository_without_a_commit_names_repo_url(tmp_path: Path):
    empty = tmp_path / "empty"
    run("init", "-q", "-b", "main", str(empty))

    with pytest.raises(InvalidInput) as raised:
        base_of(str(empty), None, SETTINGS)
    assert raised.value.field == "repo_url" and "no commit yet" in raised.value.message

"""The one git runner: timeouts and cancels kill git's whole process group, the isolated environment reads no
configuration but the repository's, errors carry git's own message."""

import hashlib
import os
import threading
import time
from pathlib import Path

import pytest

from yudai_solver.base import git
from yudai_solver.base.git import GitError


def hanging(pid_file: Path) -> list[str]:
    """Arguments of a git command that starts a child (a shell alias) which writes its pid and sleeps."""
    return ["-c", f"alias.hang=!echo $$ > {pid_file}; exec sleep 60", "hang"]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def gone_soon(pid: int) -> bool:
    deadline = time.monotonic() + 5
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def wait_for(path: Path) -> int:
    deadline = time.monotonic() + 10
    while not (path.exists() and path.read_text().strip()):
        assert time.monotonic() < deadline, "the git alias never started"
        time.sleep(0.02)
    return int(path.read_text())


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    env = git.isolated_env(tmp_path)
    git.run("init", "--quiet", "-b", "main", str(path), env=env)
    (path / "a.txt").write_text("one\n")
    git.run("add", "a.txt", env=env, cwd=path)
    git.run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "-m", "one", env=env, cwd=path)
    return path


def test_a_timeout_kills_git_and_what_it_started(tmp_path: Path):
    pid_file = tmp_path / "pid"
    started = time.monotonic()
    with pytest.raises(GitError, match=r"git hang timed out after 1 s"):
        git.run(*hanging(pid_file), env=git.isolated_env(tmp_path), timeout=1)
    assert time.monotonic() - started < 10
    assert gone_soon(wait_for(pid_file))


def test_a_cancel_kills_git_and_what_it_started(tmp_path: Path):
    pid_file, cancel = tmp_path / "pid", threading.Event()
    threading.Thread(target=lambda: (wait_for(pid_file), cancel.set()), daemon=True).start()
    started = time.monotonic()
    with pytest.raises(GitError, match="git hang was cancelled"):
        git.run(*hanging(pid_file), env=git.isolated_env(tmp_path), timeout=60, cancel=cancel)
    assert time.monotonic() - started < 10
    assert gone_soon(int(pid_file.read_text()))


def test_a_probe_answers_none_for_a_failed_lookup_but_raises_on_a_timeout(tmp_path: Path, repo: Path):
    env = git.isolated_env(tmp_path)
    assert git.probe("rev-parse", "--verify", "--quiet", "refs/heads/nope", env=env, cwd=repo) is None
    assert git.COMMIT_SHA.fullmatch(git.probe("rev-parse", "HEAD", env=env, cwd=repo))
    with pytest.raises(GitError, match="timed out"):
        git.probe(*hanging(tmp_path / "pid"), env=env, timeout=0.5)


def test_git_error_carries_gits_own_message(tmp_path: Path, repo: Path):
    with pytest.raises(GitError) as caught:
        git.run("-C", str(repo), "checkout", "--quiet", "no-such-branch", env=git.isolated_env(tmp_path))
    assert caught.value.message.startswith("git checkout failed: ")
    assert "pathspec 'no-such-branch' did not match" in caught.value.message


def test_stdin_of_any_size_goes_in_whole(tmp_path: Path):
    data = os.urandom(5 * 1024 * 1024)
    sha = git.text("hash-object", "--stdin", env=git.isolated_env(tmp_path), stdin=data).strip()
    assert sha == hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    assert git.text("hash-object", "--stdin", env=git.isolated_env(tmp_path), stdin=b"").strip() == (
        "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    )


def test_without_stdin_git_reads_nothing(tmp_path: Path):
    # With no stdin given git reads an empty one: it never waits on (or reads) the worker's stdin.
    assert git.text("hash-object", "--stdin", env=git.isolated_env(tmp_path), timeout=10).strip() == (
        "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    )


def test_head_keeps_only_the_first_bytes_and_stops_git(tmp_path: Path, repo: Path):
    env = git.isolated_env(tmp_path)
    (repo / "big.txt").write_text("line\n" * 200_000)
    git.run("add", "big.txt", env=env, cwd=repo)
    out, truncated = git.head("diff", "--cached", limit=1000, env=env, cwd=repo)
    assert truncated and len(out) == 1000 and out.startswith(b"diff --git a/big.txt b/big.txt")
    whole, truncated = git.head("diff", "--cached", "--stat", limit=1000, env=env, cwd=repo)
    assert not truncated and b"big.txt" in whole


@pytest.fixture
def hostile_home(tmp_path: Path) -> tuple[Path, Path]:
    """A HOME whose global configuration (both places git looks) runs a program: an alias and an fsmonitor hook."""
    home, marker = tmp_path / "home", tmp_path / "pwned"
    hook = tmp_path / "hook.sh"
    hook.write_text(f'#!/bin/sh\necho "$0" >> {marker}\n')
    hook.chmod(0o755)
    hostile = f"[alias]\n\thello = !echo alias >> {marker}\n[core]\n\tfsmonitor = {hook}\n"
    (home / ".config" / "git").mkdir(parents=True)
    (home / ".gitconfig").write_text(hostile)
    (home / ".config" / "git" / "config").write_text(hostile)
    return home, marker


def test_isolated_env_ignores_a_hostile_global_configuration(hostile_home, repo: Path, monkeypatch):
    home, marker = hostile_home
    # Control: a git that reads HOME's configuration runs both programs.
    readable = {"PATH": os.environ["PATH"], "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1"}
    git.run("hello", env=readable, cwd=repo)
    git.run("status", "--short", env=readable, cwd=repo)
    ran = marker.read_text()
    assert "alias" in ran and "hook.sh" in ran
    marker.unlink()
    # The worker's own variables are no way in either.
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "core.fsmonitor")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", str(marker.with_name("hook.sh")))

    with pytest.raises(GitError, match="'hello' is not a git command"):
        git.run("hello", env=git.isolated_env(home), cwd=repo)
    git.run("status", "--short", env=git.isolated_env(home), cwd=repo)
    assert not marker.exists()


def test_isolated_env_allows_no_transport(tmp_path: Path, repo: Path):
    with pytest.raises(GitError, match="git clone failed: .*transport 'file' not allowed"):
        git.run("clone", "--quiet", f"file://{repo}", str(tmp_path / "copy"), env=git.isolated_env(tmp_path))


def test_trusted_env_passes_nothing_but_the_allowlist(monkeypatch):
    monkeypatch.setenv("YUDAI_SECRET_KEY", "s3cret")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/tmp/hostile")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    env = git.trusted_env()
    assert "YUDAI_SECRET_KEY" not in env and "GIT_CONFIG_GLOBAL" not in env
    assert env["HTTPS_PROXY"] == "http://proxy:3128" and env["GIT_TERMINAL_PROMPT"] == "0"
    assert env["GIT_ALLOW_PROTOCOL"] == "https:file"


def test_the_shared_patterns():
    assert git.COMMIT_SHA.fullmatch("a" * 40) and git.COMMIT_SHA.fullmatch("0" * 64)
    assert not git.COMMIT_SHA.fullmatch("a" * 39) and not git.COMMIT_SHA.fullmatch("HEAD")
    assert git.verb(("-c", "a=b", "-C", "/x", "commit", "-m")) == "commit"
    assert git.ignore_pattern("a b/#c[1]*?!.txt") == r"/a b/\#c\[1]\*\?\!.txt"

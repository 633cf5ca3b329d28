"""The mirror cache and run checkouts, with real git repositories in tmp_path."""

import hashlib
import os
import subprocess
import threading
from pathlib import Path

import pytest

from yudai_solver.base.git import GitError
from yudai_solver.execution.workspace import (
    GIT_USER_EMAIL,
    GIT_USER_NAME,
    BranchNotFound,
    WorkspaceCache,
    mirror_name,
)

# Tests run git as a user with no global configuration, like the sandbox does.
GIT_ENV = {
    "PATH": os.environ["PATH"],
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_OPTIONAL_LOCKS": "0",
    "LC_ALL": "C",
}


def git(cwd: Path, *args: str) -> str:
    identity = ["-c", "user.name=Tester", "-c", "user.email=tester@example.com"]
    done = subprocess.run(["git", *identity, *args], cwd=cwd, env=GIT_ENV, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def commit_file(repo: Path, name: str, text: str) -> str:
    (repo / name).write_text(text)
    git(repo, "add", name)
    git(repo, "commit", "-q", "-m", f"write {name}")
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def source(tmp_path: Path) -> Path:
    repo = tmp_path / "user-repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    commit_file(repo, "app.py", "print('hello')\n")
    return repo


@pytest.fixture
def cache(tmp_path: Path) -> WorkspaceCache:
    return WorkspaceCache(tmp_path / "mirrors")


def snapshot(repo: Path) -> dict:
    """Everything of a repository a checkout could disturb, down to the bytes of its .git directory."""
    files = {
        str(p.relative_to(repo)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((repo / ".git").rglob("*"))
        if p.is_file()
    }
    return {
        "head": git(repo, "symbolic-ref", "HEAD"),
        "refs": git(repo, "show-ref"),
        "worktrees": git(repo, "worktree", "list", "--porcelain"),
        "status": git(repo, "status", "--porcelain", "--untracked-files=all"),
        "git_files": files,
    }


def test_checkout_makes_a_fresh_branch_at_the_base_commit(cache: WorkspaceCache, source: Path, tmp_path: Path):
    dest = tmp_path / "run" / "work"

    sha = cache.checkout(str(source), "main", dest)

    assert sha == git(source, "rev-parse", "main")
    assert (dest / "app.py").read_text() == "print('hello')\n"
    assert git(dest, "symbolic-ref", "--short", "HEAD") == "main"
    assert git(dest, "status", "--porcelain") == ""


def test_checkout_has_an_identity_and_no_remote(cache: WorkspaceCache, source: Path, tmp_path: Path):
    dest = tmp_path / "work"
    cache.checkout(str(source), "main", dest)
    (dest / "app.py").write_text("print('changed')\n")

    # No -c identity here: the checkout's own config must be enough to commit.
    subprocess.run(["git", "commit", "-qam", "agent edit"], cwd=dest, env=GIT_ENV, check=True)

    assert git(dest, "remote") == ""
    assert git(dest, "config", "--local", "user.name") == GIT_USER_NAME
    assert git(dest, "log", "-1", "--format=%ae") == GIT_USER_EMAIL
    assert str(source) not in (dest / ".git" / "config").read_text()


def test_mirror_is_cloned_once_then_fetched(cache: WorkspaceCache, source: Path, tmp_path: Path):
    mirror = cache.mirror(str(source))
    (mirror / "cloned-once").write_text("a re-clone would drop this file")
    newer = commit_file(source, "app.py", "print('newer')\n")

    sha = cache.checkout(str(source), "main", tmp_path / "work")

    assert sha == newer
    assert (tmp_path / "work" / "app.py").read_text() == "print('newer')\n"
    assert (mirror / "cloned-once").exists()
    assert [p.name for p in cache.root.iterdir() if p.suffix == ".git"] == [mirror.name]


def test_fetch_prunes_branches_deleted_in_the_source(cache: WorkspaceCache, source: Path, tmp_path: Path):
    git(source, "branch", "old")
    cache.mirror(str(source))
    git(source, "branch", "-D", "old")

    with pytest.raises(BranchNotFound):
        cache.checkout(str(source), "old", tmp_path / "work")


def test_missing_branch_is_a_clear_error(cache: WorkspaceCache, source: Path, tmp_path: Path):
    with pytest.raises(BranchNotFound, match="branch 'no-such-branch' does not exist in"):
        cache.checkout(str(source), "no-such-branch", tmp_path / "work")

    assert not (tmp_path / "work").exists()


def test_users_repository_is_never_modified(cache: WorkspaceCache, source: Path, tmp_path: Path):
    git(source, "branch", "feature")
    (source / "app.py").write_text("uncommitted work of the user\n")
    (source / "notes.txt").write_text("untracked file of the user\n")
    before = snapshot(source)

    for n in range(2):
        dest = tmp_path / f"work{n}"
        cache.checkout(str(source), "feature" if n else "main", dest)
        (dest / "app.py").write_text("agent edit\n")
        git(dest, "commit", "-qam", "agent commit")
        git(dest, "branch", "agent-branch")
        git(dest, "gc", "--quiet")

    assert snapshot(source) == before


def test_checkout_from_a_bare_repository(cache: WorkspaceCache, source: Path, tmp_path: Path):
    bare = tmp_path / "bare.git"
    git(tmp_path, "clone", "-q", "--bare", str(source), str(bare))

    sha = cache.checkout(str(bare), "main", tmp_path / "work")

    assert sha == git(source, "rev-parse", "main")


def test_concurrent_checkouts_share_one_mirror(cache: WorkspaceCache, source: Path, tmp_path: Path):
    shas, errors = [], []

    def check_out(n: int) -> None:
        try:
            shas.append(cache.checkout(str(source), "main", tmp_path / f"work{n}"))
        except Exception as exc:  # noqa: BLE001 - collected: an exception in a thread would otherwise pass silently
            errors.append(exc)

    threads = [threading.Thread(target=check_out, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert shas == [git(source, "rev-parse", "main")] * 4
    assert len([p for p in cache.root.iterdir() if p.suffix == ".git"]) == 1


def test_relative_or_non_https_repositories_are_refused(cache: WorkspaceCache):
    for repo in ("relative/path", "ext::sh -c touch% /tmp/pwned", "git://example.com/x.git"):
        with pytest.raises(GitError, match="not an https URL or an absolute path"):
            cache.mirror(repo)


def test_mirror_names_are_readable_and_distinct():
    first, second = mirror_name("https://example.com/a/app.git"), mirror_name("https://example.com/b/app")

    assert first.startswith("app-") and second.startswith("app-")
    assert first != second
    assert mirror_name("/srv/repos/app/") == mirror_name("/srv/repos/app")


def test_remove_deletes_read_only_trees(cache: WorkspaceCache, source: Path, tmp_path: Path):
    dest = tmp_path / "work"
    cache.checkout(str(source), "main", dest)
    locked = dest / "cache" / "pkg"
    locked.mkdir(parents=True)
    (locked / "f").write_text("x")
    locked.chmod(0o500)

    cache.remove(dest)
    cache.remove(dest)

    assert not dest.exists()


def test_a_pinned_commit_is_checked_out_even_after_the_branch_moved(tmp_path):
    import subprocess

    from yudai_solver.execution.workspace import WorkspaceCache

    source = tmp_path / "source"
    subprocess.run(["git", "init", "-q", "-b", "main", str(source)], check=True)
    identity = ["-c", "user.name=t", "-c", "user.email=t@t"]
    (source / "a").write_text("1\n")
    subprocess.run(["git", "-C", str(source), "add", "a"], check=True)
    subprocess.run(["git", "-C", str(source), *identity, "commit", "-qm", "one"], check=True)
    cache = WorkspaceCache(tmp_path / "mirrors")
    first = cache.checkout(str(source), "main", tmp_path / "w1")
    (source / "a").write_text("2\n")
    subprocess.run(["git", "-C", str(source), *identity, "commit", "-qam", "two"], check=True)
    pinned = cache.checkout(str(source), "main", tmp_path / "w2", commit=first)
    latest = cache.checkout(str(source), "main", tmp_path / "w3")
    assert pinned == first != latest
    assert (tmp_path / "w2" / "a").read_text() == "1\n" and (tmp_path / "w3" / "a").read_text() == "2\n"

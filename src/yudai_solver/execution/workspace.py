"""Run workspaces made from a per-worker cache of bare mirrors, one per repository.

The user's repository is only ever read (cloned or fetched from); every write goes to the mirror or the checkout.
Talking to the repository is bounded (`git.RemoteLimits`: a stalled host is dropped) and a run's cancel ends every
git the run waits for, and its wait for another run's fetch of the same mirror.
"""

import fcntl
import hashlib
import os
import re
import shutil
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from yudai_solver.base import git
from yudai_solver.base.git import GitError
from yudai_solver.base.settings import Settings
from yudai_solver.scm.hosts import credentials_for

GIT_USER_NAME = git.USER_NAME
GIT_USER_EMAIL = git.USER_EMAIL
_LOCK_POLL_S = 0.1


class BranchNotFound(GitError):
    """The base branch does not exist in the repository."""


class WorkspaceCache:
    """One bare mirror per repository under `root`, and fresh run checkouts made from them.

    Safe to use from many threads and processes at once: each mirror is guarded by its own file lock.
    """

    def __init__(
        self,
        root: Path,
        *,
        credentials: Callable[[str], dict[str, str]] | None = None,
        limits: git.RemoteLimits = git.RemoteLimits(),
    ):
        """`credentials(repo)` gives git's credential fields for `repo` (`username`, `password`; empty: none): the
        worker's credential helper answers the fetching git process with them, nothing writes them anywhere."""
        self.root = root
        self._credentials = credentials or (lambda _repo: {})
        self._limits = limits

    def mirror(self, repo: str, *, cancel: threading.Event | None = None) -> Path:
        """The up-to-date bare mirror of `repo` (an https URL or a local repository path), cloned on first use."""
        with self._locked(repo, cancel):
            return self._refresh(repo, cancel)

    def checkout(
        self,
        repo: str,
        base_branch: str,
        dest: Path,
        *,
        commit: str | None = None,
        cancel: threading.Event | None = None,
    ) -> str:
        """Check `base_branch` out into the new directory `dest`; returns the base commit SHA.

        With `commit` (a solve's pinned base), that commit is checked out as `base_branch`, and the mirror is
        only fetched if it lacks it. The checkout has a git identity of its own and no remote; its objects are
        borrowed from the mirror. Raises BranchNotFound naming the branch when `repo` has no such branch, and
        GitError soon after `cancel` is set.
        """
        with self._locked(repo, cancel):
            mirror = self._mirror_with(repo, commit, cancel)
            sha = commit or _branch_sha(mirror, repo, base_branch)
        # Measured on 3,000 files: `clone --shared` and `worktree add` both take ~0.13 s (writing the files
        # dominates). The shared clone wins on safety: a worktree registers itself in the mirror, and
        # `fetch` into the mirror then refuses to update a branch some worktree has checked out.
        identity = ["-c", f"user.name={GIT_USER_NAME}", "-c", f"user.email={GIT_USER_EMAIL}"]  # into .git/config
        _git(
            "clone",
            "--quiet",
            "--shared",
            "--no-checkout",
            *identity,
            "--",
            str(mirror),
            str(dest),
            timeout=git.LONG_TIMEOUT_S,
            cancel=cancel,
        )
        # Parallel checkout (one worker per core): writing the files is most of a checkout's time.
        _git(
            "-c",
            "checkout.workers=0",
            "checkout",
            "--quiet",
            "-B",
            base_branch,
            sha,
            "--",
            cwd=dest,
            timeout=git.LONG_TIMEOUT_S,
            cancel=cancel,
        )
        _git("remote", "remove", "origin", cwd=dest)
        return sha

    def remove(self, dest: Path) -> None:
        """Delete a checkout, including files the agent made read-only; a missing `dest` is fine."""
        if not dest.exists():
            return
        try:
            shutil.rmtree(dest)
        except PermissionError:
            _make_dirs_writable(dest)
            shutil.rmtree(dest)

    def _mirror_with(self, repo: str, commit: str | None, cancel: threading.Event | None) -> Path:
        mirror = self.root / mirror_name(repo)
        if commit and (mirror / "HEAD").exists() and _has_commit(mirror, commit):
            return mirror
        return self._refresh(repo, cancel)

    def _refresh(self, repo: str, cancel: threading.Event | None) -> Path:
        mirror = self.root / mirror_name(repo)
        credential = git.Credential.of(repo, self._credentials(repo))
        if (mirror / "HEAD").exists():
            git.remote(
                "fetch",
                "--quiet",
                "--prune",
                "origin",
                env=git.trusted_env(),
                limits=self._limits,
                credential=credential,
                cwd=mirror,
                cancel=cancel,
            )
        else:
            _clone_mirror(repo, mirror, self._limits, credential, cancel)
        return mirror

    @contextmanager
    def _locked(self, repo: str, cancel: threading.Event | None = None) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        # flock locks belong to the open file description, so threads of one process exclude each other too.
        with open(self.root / f"{mirror_name(repo)}.lock", "w") as lock_file:
            # Polled, not blocking: a run waiting for another run's clone of the same repository must see its cancel.
            while True:
                try:
                    fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if cancel is not None and cancel.is_set():
                        raise GitError(f"waiting for the mirror of {repo} was cancelled") from None
                    time.sleep(_LOCK_POLL_S)
            yield


def mirror_name(repo: str) -> str:
    """A directory name unique to `repo`: a readable slug plus a hash of the URL or path."""
    key = repo.rstrip("/")
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", key.rsplit("/", 1)[-1].removesuffix(".git"))[:40] or "repo"
    return f"{slug}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.git"


def _clone_mirror(
    repo: str,
    mirror: Path,
    limits: git.RemoteLimits,
    credential: git.Credential | None,
    cancel: threading.Event | None,
) -> None:
    """Clone into a temporary directory, then rename: a crash never leaves a half mirror behind."""
    _check_repo(repo)
    partial = mirror.with_name(f"{mirror.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        # --no-hardlinks: a local source shares no file with the mirror, so nothing done here can reach it.
        git.remote(
            "clone",
            "--quiet",
            "--mirror",
            "--no-hardlinks",
            "--",
            repo,
            str(partial),
            env=git.trusted_env(),
            limits=limits,
            credential=credential,
            cancel=cancel,
        )
        # Checkouts borrow objects from the mirror (alternates); a gc could prune one a live checkout needs.
        _git("config", "gc.auto", "0", cwd=partial)
        partial.rename(mirror)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _check_repo(repo: str) -> None:
    if not (repo.startswith("https://") or Path(repo).is_absolute()):
        raise GitError(f"not an https URL or an absolute path to a git repository: {repo!r}")


def _branch_sha(mirror: Path, repo: str, branch: str) -> str:
    found = _git_probe("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}", cwd=mirror)
    if found is None:
        raise BranchNotFound(f"branch {branch!r} does not exist in {repo}")
    return found


def _git(
    *args: str,
    cwd: Path | None = None,
    timeout: float = git.DEFAULT_TIMEOUT_S,
    cancel: threading.Event | None = None,
) -> str:
    """stdout of a git on the worker's own repositories, in its environment; GitError on failure."""
    return git.text(*args, env=git.trusted_env(), cwd=cwd, timeout=timeout, cancel=cancel)


def _has_commit(mirror: Path, commit: str) -> bool:
    return _git_probe("cat-file", "-e", f"{commit}^{{commit}}", cwd=mirror) is not None


def _git_probe(*args: str, cwd: Path | None = None) -> str | None:
    """stdout of a git command that may legitimately fail (a lookup), else None."""
    return git.probe(*args, env=git.trusted_env(), cwd=cwd)


def _make_dirs_writable(tree: Path) -> None:
    """Give the owner full rights on every directory of `tree` (tools such as Go make their caches read-only)."""
    tree.chmod(tree.stat().st_mode | stat.S_IRWXU)
    for parent, dirs, _files in os.walk(tree):
        for path in (os.path.join(parent, name) for name in dirs):
            if not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode | stat.S_IRWXU)


def workspaces_for(settings: Settings) -> WorkspaceCache:
    """The worker's mirror cache, fetching with each repository's host credentials (see `scm.hosts`)."""
    return WorkspaceCache(
        settings.data_dir / "mirrors", credentials=credentials_for(settings), limits=git.RemoteLimits.of(settings)
    )

"""The champion's branch on the worker: a clean checkout from the mirror, the patch applied and committed, pushed.

The push credential, where one is needed, travels in the git process's environment (`GIT_CONFIG_*`) for that one
command: never in a remote URL, a config file, an argument list or a log line.
"""

import base64
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from yudai_solver.base import git


class Checkouts(Protocol):
    """What the branch needs of the worker's mirror cache (`execution.workspace.WorkspaceCache`, which sits above
    scm and is handed down by the caller, never imported here)."""

    def checkout(self, repo: str, base_branch: str, dest: Path, *, commit: str | None = None) -> str: ...

    def remove(self, dest: Path) -> None: ...


@dataclass(frozen=True)
class Commit:
    message: str
    author_name: str
    author_email: str
    when: datetime
    """Author and committer date: a fixed date makes a retried commit the same commit, so a re-push is a no-op."""


def build_branch(
    workspaces: Checkouts,
    *,
    repo: str,
    base_branch: str,
    base_commit: str,
    branch: str,
    patch: str,
    commit: Commit,
    dest: Path,
) -> str:
    """Check `base_commit` out of the mirror into `dest` as `branch`, apply `patch`, commit; returns the SHA."""
    workspaces.checkout(repo, base_branch, dest)
    run_git("checkout", "--quiet", "-B", branch, base_commit, cwd=dest)
    run_git("apply", "--index", "--whitespace=nowarn", "-", cwd=dest, stdin=patch.encode())
    stamp = f"@{int(commit.when.timestamp())} +0000"
    identity = {
        "GIT_AUTHOR_NAME": commit.author_name,
        "GIT_AUTHOR_EMAIL": commit.author_email,
        "GIT_AUTHOR_DATE": stamp,
        "GIT_COMMITTER_NAME": commit.author_name,
        "GIT_COMMITTER_EMAIL": commit.author_email,
        "GIT_COMMITTER_DATE": stamp,
    }
    run_git(
        "-c",
        "commit.gpgsign=false",
        "commit",
        "--quiet",
        "--no-verify",
        "-F",
        "-",
        cwd=dest,
        stdin=commit.message.encode(),
        extra_env=identity,
    )
    return run_git("rev-parse", "HEAD", cwd=dest).strip()


def push(checkout: Path, remote: str, branch: str, *, token: str | None = None) -> None:
    """Push HEAD to `branch` of `remote` (a URL or a path), with `token` as an HTTP header when given."""
    run_git(
        "push",
        "--quiet",
        "--",
        remote,
        f"HEAD:refs/heads/{branch}",
        cwd=checkout,
        extra_env=auth_header(token) if token else None,
    )


def auth_header(token: str) -> dict[str, str]:
    """The environment that makes one git process send `token` as HTTP basic auth (GitHub's form)."""
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    return {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "http.extraHeader",
        "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}",
    }


def run_git(
    *args: str, cwd: Path | None = None, stdin: bytes | None = None, extra_env: dict[str, str] | None = None
) -> str:
    """stdout of git run with the worker's minimal environment; GitError with git's own message on failure."""
    return git.text(*args, env=git.trusted_env() | (extra_env or {}), cwd=cwd, stdin=stdin)

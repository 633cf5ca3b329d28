"""The champion's branch on the worker: a clean checkout from the mirror, the patch applied and committed, pushed.

The push credential, where one is needed, travels in the git process's environment (`GIT_CONFIG_*`) for that one
command: never in a remote URL, a config file, an argument list or a log line.
"""

import base64
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from yudai_solver.execution.workspace import GitError, WorkspaceCache, git_environment

GIT_TIMEOUT_S = 600


@dataclass(frozen=True)
class Commit:
    message: str
    author_name: str
    author_email: str
    when: datetime
    """Author and committer date: a fixed date makes a retried commit the same commit, so a re-push is a no-op."""


def build_branch(workspaces: WorkspaceCache, *, repo: str, base_branch: str, base_commit: str, branch: str,
                 patch: str, commit: Commit, dest: Path) -> str:
    """Check `base_commit` out of the mirror into `dest` as `branch`, apply `patch`, commit; returns the SHA."""
    workspaces.checkout(repo, base_branch, dest)
    run_git("checkout", "--quiet", "-B", branch, base_commit, cwd=dest)
    run_git("apply", "--index", "--whitespace=nowarn", "-", cwd=dest, stdin=patch.encode())
    stamp = f"@{int(commit.when.timestamp())} +0000"
    identity = {"GIT_AUTHOR_NAME": commit.author_name, "GIT_AUTHOR_EMAIL": commit.author_email,
                "GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_NAME": commit.author_name,
                "GIT_COMMITTER_EMAIL": commit.author_email, "GIT_COMMITTER_DATE": stamp}
    run_git("-c", "commit.gpgsign=false", "commit", "--quiet", "--no-verify", "-F", "-", cwd=dest,
            stdin=commit.message.encode(), extra_env=identity)
    return run_git("rev-parse", "HEAD", cwd=dest).strip()


def push(checkout: Path, remote: str, branch: str, *, token: str | None = None) -> None:
    """Push HEAD to `branch` of `remote` (a URL or a path), with `token` as an HTTP header when given."""
    run_git("push", "--quiet", "--", remote, f"HEAD:refs/heads/{branch}", cwd=checkout,
            extra_env=auth_header(token) if token else None)


def auth_header(token: str) -> dict[str, str]:
    """The environment that makes one git process send `token` as HTTP basic auth (GitHub's form)."""
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    return {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraHeader",
            "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}"}


def run_git(*args: str, cwd: Path | None = None, stdin: bytes | None = None,
            extra_env: dict[str, str] | None = None) -> str:
    """stdout of git run with the worker's minimal environment; GitError with git's own message on failure."""
    done = subprocess.run(["git", *args], cwd=cwd, env=git_environment() | (extra_env or {}), input=stdin,
                          capture_output=True, timeout=GIT_TIMEOUT_S, check=False)
    if done.returncode != 0:
        stderr = done.stderr.decode(errors="replace").strip()
        raise GitError(f"git {_verb(args)} failed: {stderr[-2000:]}")
    return done.stdout.decode(errors="replace")


def _verb(args: tuple[str, ...]) -> str:
    """The git subcommand among `args` (global options such as `-c KEY=VALUE` and `-C DIR` skipped)."""
    rest = list(args)
    while rest and rest[0] in ("-c", "-C"):
        rest = rest[2:]
    return rest[0] if rest else "?"

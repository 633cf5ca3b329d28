"""The champion's branch on the worker: a clean checkout from the mirror, the patch applied and committed, pushed.

The push credential, where one is needed, reaches that one git process through the worker's credential helper
(`base.git_credentials`): never a remote URL, a config file, an environment, an argument list or a log line. A push
to a local repository runs none of the hooks of either side.
"""

from collections.abc import Mapping
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


# Receiving hooks run in the receiving repository, as the pushing user: a local origin's hooks (pre-receive, update,
# post-receive, ...) would be its owner's programs run as the worker. Its configuration's commands go the same way:
# the automatic gc, and the command listing the refs of its alternates (`true` lists none).
_RECEIVE_PACK = "git -c core.hooksPath=/dev/null -c receive.autogc=false -c core.alternateRefsCommand=true receive-pack"


def push(
    checkout: Path,
    remote: str,
    branch: str,
    *,
    credential: Mapping[str, str] | None = None,
    limits: git.RemoteLimits = git.RemoteLimits(),
) -> None:
    """Push HEAD to `branch` of `remote` (an https URL or a path); `credential` (git's `username` and `password`)
    answers that URL's host when it asks for one."""
    args = ["-c", "core.hooksPath=/dev/null", "push", "--quiet"]
    if not remote.startswith("https://"):
        # Local transport runs this through the shell with the path appended (quoted by git).
        args.append(f"--receive-pack={_RECEIVE_PACK}")
    git.remote(
        *args,
        "--",
        remote,
        f"HEAD:refs/heads/{branch}",
        env=git.trusted_env(),
        limits=limits,
        credential=git.Credential.of(remote, credential or {}),
        cwd=checkout,
    )


def token_credential(token: str) -> dict[str, str]:
    """A GitHub token as git's credential fields (`x-access-token` is the user name GitHub expects with it)."""
    return {"username": "x-access-token", "password": token}


def run_git(
    *args: str, cwd: Path | None = None, stdin: bytes | None = None, extra_env: dict[str, str] | None = None
) -> str:
    """stdout of git run with the worker's minimal environment; GitError with git's own message on failure."""
    return git.text(*args, env=git.trusted_env() | (extra_env or {}), cwd=cwd, stdin=stdin)

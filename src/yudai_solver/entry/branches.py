"""The branch a solve starts from when none is named: the repository's own default, the branch its HEAD names."""

from pathlib import Path

from yudai_solver.base import git
from yudai_solver.base.errors import YudaiError

_LOOKUP_TIMEOUT_S = 30
_HEAD_REF = "ref: refs/heads/"


class NoDefaultBranch(YudaiError):
    """The repository's default branch could not be read: give --base-branch."""


def default_branch(repo: str) -> str:
    """The branch `repo`'s HEAD names: a local repository's own (`git symbolic-ref`); for an https URL the one its
    server advertises (`git ls-remote --symref`: GitHub's default_branch). NoDefaultBranch when there is none."""
    remote = repo.startswith("https://")
    try:
        found = _remote_head(repo) if remote else _local_head(repo)
    except git.GitError as exc:
        raise NoDefaultBranch(f"cannot read the default branch of {repo} ({exc.message}); give --base-branch") from None
    if not found:
        why = "no answer naming it: unreachable, or private?" if remote else "not a repository, or HEAD is detached"
        raise NoDefaultBranch(f"cannot read the default branch of {repo} ({why}); give --base-branch")
    return found


def _local_head(repo: str) -> str | None:
    path = Path(repo.removeprefix("file://")).expanduser()
    found = git.probe(
        "-C", str(path), "symbolic-ref", "--quiet", "--short", "HEAD", env=git.trusted_env(), timeout=_LOOKUP_TIMEOUT_S
    )
    return found or None


def remote_head(listing: str) -> str | None:
    """The branch named by `git ls-remote --symref URL HEAD`'s output (`ref: refs/heads/NAME<TAB>HEAD`)."""
    for line in listing.splitlines():
        if line.startswith(_HEAD_REF) and line.endswith("\tHEAD"):
            return line.removeprefix(_HEAD_REF).removesuffix("\tHEAD")
    return None


def _remote_head(url: str) -> str | None:
    listing = git.probe("ls-remote", "--symref", url, "HEAD", env=git.trusted_env(), timeout=_LOOKUP_TIMEOUT_S)
    return remote_head(listing or "")

"""Which repositories a solve may name: https git URLs, or git repositories under the configured local roots."""

import re
from pathlib import Path
from urllib.parse import urlparse

from yudai_solver.base import git
from yudai_solver.base.errors import InvalidInput

_HTTPS = re.compile(r"^https://[A-Za-z0-9.-]+(:\d{1,5})?(/[A-Za-z0-9._~-]+){2,}(\.git)?/?$")
_BRANCH = re.compile(r"^(?!-)(?!.*\.\.)(?!.*//)[A-Za-z0-9._/-]+(?<![./])$")
_LOOKUP_TIMEOUT_S = 30  # answered while the user waits for the request


def is_local(repo: str) -> bool:
    return not repo.startswith("https://")


def resolve_repo(repo_url: str, roots: list[Path]) -> str:
    """The canonical form of `repo_url`, or InvalidInput: an https git URL as given, a local repo as a real path."""
    if repo_url.startswith("https://"):
        if not _HTTPS.match(repo_url) or "@" in repo_url:
            raise InvalidInput("not an https git repository URL (https://host/owner/repo)", field="repo_url")
        return repo_url.rstrip("/")
    path = _local_path(repo_url)
    if not any(path == root or path.is_relative_to(root) for root in roots):
        raise InvalidInput(
            "local repositories must lie under YUDAI_LOCAL_REPO_ROOTS; give an https:// git URL instead",
            field="repo_url",
        )
    if not _is_git_repository(path):
        raise InvalidInput(f"{path} is not a git repository", field="repo_url")
    return str(path)


def _local_path(repo_url: str) -> Path:
    raw = urlparse(repo_url).path if repo_url.startswith("file://") else repo_url
    if not raw.startswith("/"):
        raise InvalidInput("give an https:// git URL or an absolute local path", field="repo_url")
    return Path(raw).resolve()


def _is_git_repository(path: Path) -> bool:
    if not path.is_dir():
        return False
    found = git.probe("-C", str(path), "rev-parse", "--git-dir", env=git.trusted_env(), timeout=_LOOKUP_TIMEOUT_S)
    return found is not None


def check_branch(name: str) -> str:
    """A branch name safe to hand to git as an argument (no option, no range, no shell meaning)."""
    if not _BRANCH.match(name):
        raise InvalidInput("not a valid branch name", field="base_branch")
    return name


def check_local_branch(repo: str, branch: str) -> None:
    """A local repository must have the branch: say so at start rather than fail every run at checkout."""
    if not is_local(repo):
        return  # a remote's branches are only known after fetching; a missing one fails the runs, naming it
    found = git.probe(
        "-C",
        repo,
        "rev-parse",
        "--verify",
        "--quiet",
        f"refs/heads/{branch}^{{commit}}",
        env=git.trusted_env(),
        timeout=_LOOKUP_TIMEOUT_S,
    )
    if found is None:
        raise InvalidInput(f"{repo} has no branch {branch!r}", field="base_branch")

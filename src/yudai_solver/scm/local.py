"""A local repository as its own host: the champion's branch goes to its `origin` remote; there are no issues."""

import re
from pathlib import Path

from yudai_solver.base import git as base_git
from yudai_solver.base.git import GitError, RemoteLimits
from yudai_solver.base.settings import Settings
from yudai_solver.scm import git
from yudai_solver.scm.protocol import IssueData, NoIssueTracker, ScmError

_SCP_LIKE = re.compile(r"^[\w.-]+@[\w.-]+:")


class LocalHost:
    """Pushes to the `origin` remote (for example a bare repository), running none of its hooks; the "pull request"
    is `ORIGIN#BRANCH`."""

    name, title, has_issues = "local", "the local repository", False

    def __init__(self, git_limits: RemoteLimits = RemoteLimits()):
        self._git_limits = git_limits

    @classmethod
    def serves(cls, settings: Settings, repo: str) -> bool:
        """Every repository that is no https URL: a path under the configured local roots."""
        return not repo.startswith("https://")

    @classmethod
    def from_settings(cls, settings: Settings) -> "LocalHost":
        return cls(RemoteLimits.of(settings))

    def git_credentials(self, repo: str) -> dict[str, str]:
        return {}

    def fetch_issue(self, repo: str, number: int) -> IssueData:
        raise NoIssueTracker(
            "a local repository has no issue tracker: give issue_title (and issue_body)", field="issue_title"
        )

    def default_branch(self, repo: str) -> str | None:
        found = base_git.probe(
            "-C", repo, "symbolic-ref", "--quiet", "--short", "HEAD", env=base_git.trusted_env(), timeout=30
        )
        return found or None

    def is_collaborator(self, repo: str, login: str) -> bool:
        return False

    def push(self, repo: str, checkout: Path, branch: str) -> None:
        git.push(checkout, origin_of(repo), branch, limits=self._git_limits)

    def open_pull_request(self, repo: str, *, head: str, base: str, title: str, body: str) -> str:
        return f"{origin_of(repo)}#{head}"

    def comment(self, repo: str, number: int, body: str) -> str | None:
        return None


def origin_of(repo: str) -> str:
    """The URL or path of `repo`'s `origin` remote, a relative path made absolute."""
    try:
        url = git.run_git("-C", repo, "remote", "get-url", "origin").strip()
    except GitError:
        raise ScmError(f"{repo} has no `origin` remote to push the champion's branch to") from None
    if "://" in url or Path(url).is_absolute() or _SCP_LIKE.match(url):
        return url
    return str((Path(repo) / url).resolve())

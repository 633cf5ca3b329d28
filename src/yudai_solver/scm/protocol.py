"""What a code host does for a solve, and the errors it raises (translated from its client where they enter)."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from yudai_solver.base.errors import YudaiError
from yudai_solver.base.settings import Settings


@dataclass(frozen=True)
class IssueData:
    number: int
    title: str
    body: str
    state: str
    labels: list[str] = field(default_factory=list)
    is_pull_request: bool = False


class ScmHost(Protocol):
    """A repository's host: GitHub (API plus authenticated push) or a local repository's `origin` remote.

    Everything that differs between hosts is here: the credentials git needs, the issue tracker, who may write to
    the repository, pushes, pull requests and comments. Callers get a host from `scm.hosts.host_for` only.
    """

    name: str
    """The registry's key, e.g. "github"."""
    title: str
    """How messages name the host, e.g. "GitHub"."""
    has_issues: bool
    """False where the host keeps no issues (then `fetch_issue` raises NoIssueTracker)."""

    def git_credentials(self, repo: str) -> dict[str, str]:
        """git's credential fields (`username`, `password`) that fetch `repo` (empty: none); never written anywhere."""

    def fetch_issue(self, repo: str, number: int) -> IssueData:
        """The issue as the host has it; IssueNotFound, RepoNotFound, HostUnreachable or ScmError otherwise."""

    def default_branch(self, repo: str) -> str | None:
        """The repository's default branch (the one its HEAD names); None where it has none to tell."""

    def is_collaborator(self, repo: str, login: str) -> bool:
        """True when `login` may write to the repository (asked of the host); ScmError when it cannot tell."""

    def push(self, repo: str, checkout: Path, branch: str) -> None:
        """Push the checkout's HEAD to `branch` of the repository's remote (no credential left on disk)."""

    def open_pull_request(self, repo: str, *, head: str, base: str, title: str, body: str) -> str:
        """Open a pull request (or adopt the open one for `head`); returns its URL."""

    def comment(self, repo: str, number: int, body: str) -> str | None:
        """Comment on the issue; returns the comment's URL, None where the host has no issues."""


class HostKind(Protocol):
    """A registry entry (the host's class): which repositories it serves, and the host for the settings."""

    name: str

    def serves(self, settings: Settings, repo: str) -> bool:
        """True when `repo` (already in canonical form) lives on this host."""

    def from_settings(self, settings: Settings) -> ScmHost:
        """The host, configured (URL, credentials, timeouts) from the settings."""


class ScmError(YudaiError):
    """The code host refused the request."""

    status_code = 502

    def __init__(self, message: str | None = None, *, field: str | None = None, status: int | None = None):
        super().__init__(message, field=field)
        self.status = status


class HostUnreachable(ScmError):
    """The code host could not be reached."""


class AuthRejected(ScmError):
    """The code host rejected the token (set YUDAI_GITHUB_TOKEN)."""


class RepoNotFound(ScmError):
    """The repository does not exist or the token cannot see it."""


class IssueNotFound(ScmError):
    """The issue does not exist."""


class NoIssueTracker(ScmError):
    """This repository has no issue tracker."""

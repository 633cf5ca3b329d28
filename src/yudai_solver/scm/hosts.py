"""The registry of code hosts, and the only way to one: `host_for(settings, repo)`.

Adding a host means one module with a class that implements `ScmHost` and `HostKind`, plus one line in `HOSTS`.
"""

from collections.abc import Callable

from yudai_solver.base.settings import Settings
from yudai_solver.scm.github import GitHubHost
from yudai_solver.scm.local import LocalHost
from yudai_solver.scm.protocol import HostKind, ScmHost

HOSTS: tuple[HostKind, ...] = (
    LocalHost,
    GitHubHost,
)
"""Asked in order; the first that serves a repository is its host."""


def host_for(settings: Settings, repo: str) -> ScmHost | None:
    """The host of `repo`, or None where none is known (an https repository on no registered host)."""
    for kind in HOSTS:
        if kind.serves(settings, repo):
            return kind.from_settings(settings)
    return None


def credentials_for(settings: Settings) -> Callable[[str], dict[str, str]]:
    """What git needs to fetch a repository, asked of the repository's own host (GitHub: the token, so private
    repositories can be fetched), as git's credential fields: the worker's credential helper gives them to the one
    fetching git process, and for that repository's host only."""

    def credentials(repo: str) -> dict[str, str]:
        host = host_for(settings, repo)
        return host.git_credentials(repo) if host else {}

    return credentials

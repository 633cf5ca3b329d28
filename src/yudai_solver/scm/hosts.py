"""Which host serves a repository, picked by name: GitHub for its https URLs, `local` for local repositories."""

import re
from urllib.parse import urlparse

from yudai_solver.execution.workspace import WorkspaceCache
from yudai_solver.solving.repos import is_local
from yudai_solver.base.settings import Settings
from yudai_solver.scm.git import auth_header
from yudai_solver.scm.protocol import ScmHost

_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


def split_repo(repo: str) -> tuple[str, str] | None:
    """(owner, name) of an `https://HOST/OWNER/NAME[.git]` URL, else None."""
    if not repo.startswith("https://"):
        return None
    parts = urlparse(repo).path.strip("/").removesuffix(".git").split("/")
    if len(parts) != 2 or not all(_NAME.match(part) for part in parts):
        return None
    return parts[0], parts[1]


def is_github(settings: Settings, repo: str) -> bool:
    """True for github.com repositories and for those on the host of the configured API (GitHub Enterprise)."""
    hosts = {"github.com", urlparse(settings.github_api_url).hostname}
    return split_repo(repo) is not None and urlparse(repo).hostname in hosts


def host_kind(settings: Settings, repo: str) -> str | None:
    if is_local(repo):
        return "local"
    return "github" if is_github(settings, repo) else None


def host_for(settings: Settings, repo: str) -> ScmHost | None:
    """The host of `repo`, or None where none is known (an https repository that is not on GitHub)."""
    from yudai_solver.scm.github import GitHubHost
    from yudai_solver.scm.local import LocalHost

    makers = {"github": GitHubHost.from_settings, "local": lambda _settings: LocalHost()}
    kind = host_kind(settings, repo)
    return makers[kind](settings) if kind else None


def workspaces_for(settings: Settings) -> WorkspaceCache:
    """The worker's mirror cache; with YUDAI_GITHUB_TOKEN, GitHub repositories (private ones too) are fetched with
    it — in the fetching process's environment only, and never for a repository on another host."""
    token = settings.github_token.get_secret_value() if settings.github_token else None

    def credentials(repo: str) -> dict[str, str]:
        return auth_header(token) if token and is_github(settings, repo) else {}

    return WorkspaceCache(settings.data_dir / "mirrors", credentials=credentials)

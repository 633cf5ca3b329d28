"""GitHub (and GitHub Enterprise Server) through githubkit; its errors are translated here, where they enter."""

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias
from urllib.parse import urlparse

from yudai_solver.base.git import GitError, RemoteLimits
from yudai_solver.base.settings import Settings
from yudai_solver.scm import git
from yudai_solver.scm.protocol import AuthRejected, HostUnreachable, IssueData, IssueNotFound, RepoNotFound, ScmError

if TYPE_CHECKING:  # githubkit is imported where a request is made (see `_api`); here only for the type checker
    from githubkit import GitHub, Response, TokenAuthStrategy, UnauthAuthStrategy

    _Client: TypeAlias = GitHub[TokenAuthStrategy] | GitHub[UnauthAuthStrategy]

log = logging.getLogger(__name__)
_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


class GitHubHost:
    """Issues, pull requests and comments over the REST API; pushes over https, the token given to git only when
    the host asks (through the worker's credential helper)."""

    name, title, has_issues = "github", "GitHub", True

    def __init__(self, *, api_url: str, token: str | None, timeout_s: float, git_limits: RemoteLimits = RemoteLimits()):
        self.api_url, self._token, self.timeout_s, self._git_limits = api_url, token, timeout_s, git_limits

    @classmethod
    def serves(cls, settings: Settings, repo: str) -> bool:
        """github.com repositories, and those on the host of the configured API (GitHub Enterprise)."""
        hosts = {"github.com", urlparse(settings.github_api_url).hostname}
        return split_repo(repo) is not None and urlparse(repo).hostname in hosts

    @classmethod
    def from_settings(cls, settings: Settings) -> "GitHubHost":
        token = settings.github_token.get_secret_value() if settings.github_token else None
        return cls(
            api_url=settings.github_api_url,
            token=token or None,
            timeout_s=settings.github_timeout_s,
            git_limits=RemoteLimits.of(settings),
        )

    def git_credentials(self, repo: str) -> dict[str, str]:
        """With YUDAI_GITHUB_TOKEN, the token as git's credential (so private repositories can be fetched)."""
        return git.token_credential(self._token) if self._token else {}

    def fetch_issue(self, repo: str, number: int) -> IssueData:
        owner, name = _split(repo)
        try:
            with self._api(f"reading issue #{number} of {owner}/{name}") as gh:
                data = gh.rest.issues.get(owner, name, number).json()
        except ScmError as exc:
            if exc.status != 404:
                raise
            if not self.repo_exists(repo):
                raise RepoNotFound(
                    f"repository {owner}/{name} not found, or the token cannot see it", field="repo_url", status=404
                ) from exc
            raise IssueNotFound(
                f"issue #{number} not found in {owner}/{name}", field="issue_number", status=404
            ) from exc
        return IssueData(
            number=number,
            title=data.get("title") or "",
            body=data.get("body") or "",
            state=data.get("state") or "open",
            labels=[_label(item) for item in data.get("labels", [])],
            is_pull_request=bool(data.get("pull_request")),
        )

    def default_branch(self, repo: str) -> str | None:
        owner, name = _split(repo)
        try:
            with self._api(f"reading repository {owner}/{name}") as gh:
                found = gh.rest.repos.get(owner, name).json().get("default_branch")
        except ScmError as exc:
            if exc.status == 404:
                raise RepoNotFound(
                    f"repository {owner}/{name} not found, or the token cannot see it", field="repo_url", status=404
                ) from exc
            raise
        return found if isinstance(found, str) and found else None

    def repo_exists(self, repo: str) -> bool:
        owner, name = _split(repo)
        try:
            with self._api(f"reading repository {owner}/{name}") as gh:
                gh.rest.repos.get(owner, name)
        except ScmError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def push(self, repo: str, checkout: Path, branch: str) -> None:
        try:
            git.push(checkout, repo, branch, credential=self.git_credentials(repo), limits=self._git_limits)
        except GitError as exc:
            hint = "" if self._token else " (no YUDAI_GITHUB_TOKEN is set)"
            raise ScmError(f"pushing {branch} to {repo} failed{hint}: {exc.message}") from None

    def open_pull_request(self, repo: str, *, head: str, base: str, title: str, body: str) -> str:
        owner, name = _split(repo)
        try:
            with self._api(f"opening a pull request in {owner}/{name}") as gh:
                return gh.rest.pulls.create(
                    owner,
                    name,
                    data={
                        "title": title,
                        "head": head,
                        "base": base,
                        "body": body,
                        "maintainer_can_modify": True,
                    },
                ).json()["html_url"]
        except ScmError as exc:
            existing = self._open_pull_request_for(owner, name, head) if exc.status == 422 else None
            if existing is None:
                raise
            log.info("pull request for %s already open: %s", head, existing)
            return existing

    def _open_pull_request_for(self, owner: str, name: str, head: str) -> str | None:
        with self._api(f"listing pull requests of {owner}/{name}") as gh:
            found = gh.rest.pulls.list(owner, name, head=f"{owner}:{head}", state="open").json()
        return found[0]["html_url"] if found else None

    def comment(self, repo: str, number: int, body: str) -> str | None:
        owner, name = _split(repo)
        with self._api(f"commenting on {owner}/{name}#{number}") as gh:
            return gh.rest.issues.create_comment(owner, name, number, data={"body": body}).json()["html_url"]

    def is_collaborator(self, repo: str, login: str) -> bool:
        owner, name = _split(repo)
        try:
            with self._api(f"checking {login} on {owner}/{name}") as gh:
                gh.rest.repos.check_collaborator(owner, name, login)
        except ScmError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    @contextmanager
    def _api(self, doing: str) -> "Iterator[_Client]":
        """A githubkit client; any githubkit or transport error leaves as an ScmError saying what was being done."""
        # Lazy: githubkit takes about half a second to import, and only GitHub requests need it (not the API's start).
        from githubkit import GitHub
        from githubkit.exception import GitHubException, RequestFailed

        client = GitHub(
            self._token,
            base_url=self.api_url,
            timeout=self.timeout_s,
            http_cache=False,
            auto_retry=False,
            user_agent="yudai-solver",
        )
        try:
            with client:
                yield client
        except RequestFailed as exc:
            raise _failed(doing, exc.response) from None
        except GitHubException as exc:
            raise HostUnreachable(f"{doing}: GitHub API at {self.api_url} unreachable ({_cause(exc)})") from None


def _failed(doing: str, response: "Response[object]") -> ScmError:
    status = response.status_code
    message = f"{doing}: GitHub answered {status} {_message(response)}".rstrip()
    kind = AuthRejected if status == 401 else ScmError
    return kind(message, status=status)


def _message(response: "Response[object]") -> str:
    try:
        data = response.json()
    except ValueError:
        return ""
    if not isinstance(data, dict):
        return ""
    details = "; ".join(str(e.get("message") or e.get("code")) for e in data.get("errors") or [] if isinstance(e, dict))
    return f"({data.get('message', '')}{': ' + details if details else ''})"


def _cause(exc: Exception) -> str:
    inner = getattr(exc, "exc", None)
    return type(inner or exc).__name__


def _label(item: object) -> str:
    return item.get("name", "") if isinstance(item, dict) else str(item)


def split_repo(repo: str) -> tuple[str, str] | None:
    """(owner, name) of an `https://HOST/OWNER/NAME[.git]` URL, else None."""
    if not repo.startswith("https://"):
        return None
    parts = urlparse(repo).path.strip("/").removesuffix(".git").split("/")
    if len(parts) != 2 or not all(_NAME.match(part) for part in parts):
        return None
    return parts[0], parts[1]


def _split(repo: str) -> tuple[str, str]:
    found = split_repo(repo)
    if found is None:
        raise RepoNotFound(f"not a GitHub repository URL: {repo}", field="repo_url")
    return found

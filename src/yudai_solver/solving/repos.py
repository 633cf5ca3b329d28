"""Which repositories a solve may name: https git URLs on a configured host that resolves to an allowed address,
or git repositories under the configured local roots."""

import ipaddress
import re
import socket
from pathlib import Path
from urllib.parse import urlparse

from yudai_solver.base import git
from yudai_solver.base.errors import InvalidInput
from yudai_solver.base.settings import Settings
from yudai_solver.scm.hosts import host_for
from yudai_solver.scm.protocol import RepoNotFound, ScmError

_HTTPS = re.compile(r"https://(?P<host>[A-Za-z0-9.-]+)(:\d{1,5})?(/[A-Za-z0-9._~-]+){2,}(\.git)?/?")
_BRANCH = re.compile(r"(?!-)(?!.*\.\.)(?!.*//)[A-Za-z0-9._/-]+(?<![./])")
_LOOKUP_TIMEOUT_S = 30  # answered while the user waits for the request
_HEAD_REF = "ref: refs/heads/"


def is_local(repo: str) -> bool:
    return not repo.startswith("https://")


def resolve_repo(repo_url: str, settings: Settings) -> str:
    """The canonical form of `repo_url`, or InvalidInput: an https git URL on a configured host as given, a local
    repository's path resolved under a root. Connects nowhere and reads no repository (see `verify_repo`)."""
    if repo_url.startswith("https://"):
        match = _HTTPS.fullmatch(repo_url)
        if match is None or "@" in repo_url:
            raise InvalidInput("not an https git repository URL (https://host/owner/repo)", field="repo_url")
        # Refused before any connection, the same way whatever listens there: no port scan through the worker.
        if match.group("host").lower() not in settings.remote_hosts:
            raise InvalidInput(
                "repositories must be on GitHub, YUDAI_GITHUB_API_URL's host or a host in YUDAI_REPO_HOSTS",
                field="repo_url",
            )
        return repo_url.rstrip("/")
    path = _local_path(repo_url)
    if not any(path == root or path.is_relative_to(root) for root in settings.repo_roots):
        raise InvalidInput(
            "local repositories must lie under YUDAI_LOCAL_REPO_ROOTS; give an https:// git URL instead",
            field="repo_url",
        )
    return str(path)


def verify_repo(repo: str, settings: Settings) -> None:
    """InvalidInput unless a canonical repository may be used: a remote's host resolves only to public addresses
    (or to networks YUDAI_REPO_PRIVATE_NETWORKS allows), a local path is a git repository."""
    if not is_local(repo):
        _check_addresses(urlparse(repo).hostname or "", settings)
    elif not _is_git_repository(Path(repo)):
        raise InvalidInput(f"{repo} is not a git repository", field="repo_url")


def _check_addresses(host: str, settings: Settings) -> None:
    try:
        found = socket.getaddrinfo(host, 443, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return  # no address to reach now: git fails on the same name later, naming it
    allowed = settings.private_networks
    for *_, sockaddr in found:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if (address.is_global and not address.is_multicast) or any(address in network for network in allowed):
            continue
        raise InvalidInput(
            f"{host} resolves to a loopback, link-local or private address; YUDAI_REPO_PRIVATE_NETWORKS may allow it",
            field="repo_url",
        )


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
    if not _BRANCH.fullmatch(name):
        raise InvalidInput("not a valid branch name", field="base_branch")
    return name


def default_branch(repo: str, settings: Settings) -> str:
    """The branch `repo`'s HEAD names, for a solve that names none: asked of the repository's host (a local
    repository's own HEAD, GitHub's default_branch), else of the git server itself (`git ls-remote --symref`). Call
    it on a repository `verify_repo` accepted; InvalidInput naming `base_branch` when there is none to read."""
    host = host_for(settings, repo)
    try:
        if host is not None:
            found = host.default_branch(repo)
        else:
            listing = git.probe("ls-remote", "--symref", repo, "HEAD", env=git.trusted_env(), timeout=_LOOKUP_TIMEOUT_S)
            found = remote_head(listing or "")
    except RepoNotFound as exc:
        raise InvalidInput(exc.message, field="repo_url") from None
    except ScmError as exc:  # named as intake names it: the token, the host, the repository
        title = host.title if host is not None else "its host"
        raise InvalidInput(f"could not read the repository from {title}: {exc.message}", field="repo_url") from None
    except git.GitError as exc:
        raise InvalidInput(
            f"cannot read the default branch of {repo} ({exc.message}): give base_branch", field="base_branch"
        ) from None
    if not found:
        why = "not a repository, or HEAD is detached" if is_local(repo) else "no answer naming it"
        raise InvalidInput(f"cannot read the default branch of {repo} ({why}): give base_branch", field="base_branch")
    return found


def remote_head(listing: str) -> str | None:
    """The branch named by `git ls-remote --symref URL HEAD`'s output (`ref: refs/heads/NAME<TAB>HEAD`)."""
    for line in listing.splitlines():
        if line.startswith(_HEAD_REF) and line.endswith("\tHEAD"):
            return line.removeprefix(_HEAD_REF).removesuffix("\tHEAD")
    return None


def base_of(repo: str, branch: str | None, settings: Settings) -> tuple[str, str | None]:
    """The branch a solve of `repo` starts from (`branch`, else the repository's default branch) and that branch's
    commit now, which the solve pins: a branch moving later moves no run. A remote's commit is None: pinned by the
    first run to fetch it. A local repository answers both in one git call, and is checked to be a repository by
    it: call `verify_repo` first only for a remote."""
    if not is_local(repo):
        return branch or default_branch(repo, settings), None
    if branch is not None:
        code, commit = git.lookup(
            "-C", repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}",
            env=git.trusted_env(), timeout=_LOOKUP_TIMEOUT_S,
        )  # fmt: skip
        if code == 0:
            return branch, commit
        if code == 1:  # a repository without that branch
            raise InvalidInput(f"{repo} has no branch {branch!r}", field="base_branch")
        raise InvalidInput(f"{repo} is not a git repository", field="repo_url")
    code, found = git.lookup(
        "-C", repo, "rev-parse", "HEAD^{commit}", "--symbolic-full-name", "HEAD",
        env=git.trusted_env(), timeout=_LOOKUP_TIMEOUT_S,
    )  # fmt: skip
    if code != 0:
        raise InvalidInput(f"{repo} is not a git repository, or has no commit yet", field="repo_url")
    commit, _, ref = found.partition("\n")
    if not ref.startswith("refs/heads/"):
        why = f"cannot read the default branch of {repo} (HEAD is detached): give base_branch"
        raise InvalidInput(why, field="base_branch")
    return ref.removeprefix("refs/heads/"), commit

"""Service settings, read from `YUDAI_*` environment variables once, at the edge, and passed down."""

import ipaddress
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from platformdirs import user_data_dir
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path(user_data_dir("yudai-solver", appauthor=False))


class Settings(BaseSettings):
    """Everything the service can be told. Built by `Settings()` in the CLI or tests, never at import time."""

    model_config = SettingsConfigDict(env_prefix="YUDAI_", extra="ignore")

    data_dir: Path = Field(default_factory=_default_data_dir)
    """Where the SQLite database, repository mirrors and run workspaces live."""
    database_url: str = ""
    """SQLAlchemy URL; empty means the SQLite file `yudai.db` inside `data_dir`."""
    local_repo_roots: str = ""
    """Colon-separated directories under which local git repositories may be solved; empty allows none."""
    max_experiments: int = 64
    """Largest experiment matrix a solve may ask for."""
    default_max_edits: int = 30
    """Step limit given to an experiment that names no `max_edits`."""
    sandbox: str = "local"
    """Sandbox backend by name. Left unset, `yudai serve` and `yudai worker` pick `bubblewrap` where it runs, else
    `local` (see `allow_shared_local_sandbox`); the embedded mode and `yudai demo` use `local`."""
    allow_shared_local_sandbox: bool = False
    """With `YUDAI_SANDBOX=local` set explicitly: accept that every user's agent acts with the service's rights (its
    database, keys and files). Without it, a service on `local` refuses to start, and to start solves or runs, once
    more than one user exists."""
    sandbox_guard: bool = False
    """Enforce the rule above while running; `yudai serve` and `yudai worker` turn it on (tests and embedded: off)."""
    max_concurrent_runs: int = 8
    """Runs executing at once in this process, over all solves."""
    command_timeout_s: int = 120
    """Timeout of one agent command in the sandbox."""
    test_timeout_s: int = 600
    """Timeout of the test command (baseline and validation)."""
    setup_timeout_s: int = 1200
    """Timeout of the setup command."""
    model_timeout_s: int = 120
    """Timeout of one model request."""
    git_timeout_s: int = Field(1800, gt=0)
    """Longest a clone, fetch or push of a repository may take in all."""
    git_stall_s: int = Field(60, gt=0)
    """A clone, fetch or push that moves nothing for this long (connecting included), or, once connected, fewer than
    `git_low_speed_bytes` bytes per second, is killed."""
    git_low_speed_bytes: int = Field(1000, gt=0)
    """The transfer speed (bytes per second) below which a connected clone, fetch or push counts as stalled."""
    log_format: str = Field("text", pattern="^(text|json)$")
    """`text`: lines for a terminal; `json`: one JSON object per line (time, level, logger, event, fields)."""
    metrics: bool = True
    """Serve `GET /metrics` (Prometheus' text format: requests, solves and runs, no ids or texts)."""

    # --- The database's connections, and how long a request waits for them ------------------------------------
    api_threads: int = Field(16, gt=0)
    """API requests worked on at once (each holds at most one database connection while it works)."""
    api_wait_s: float = Field(5, gt=0)
    """Longest an API request waits for SQLite's write lock or for a pooled connection; then it answers 503 with
    `Retry-After` instead of queueing behind others."""

    worker_nice: int = Field(5, ge=0, le=19)
    """How much `yudai worker` lowers its CPU priority (and so its runs'): on a machine it shares with `yudai serve`,
    the API answers first and the runs take what is left."""

    def db_pool_size(self, *, api: bool, runs: int) -> int:
        """Connections a process needs: one per API thread, two per run (its own and its heartbeat's) and a few
        for the dispatcher's loops."""
        return (self.api_threads if api else 0) + 2 * runs + 4

    @field_validator("max_experiments", "default_max_edits", "max_concurrent_runs")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("must be > 0")
        return value

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'yudai.db'}"

    @property
    def repo_roots(self) -> list[Path]:
        return [Path(p).resolve() for p in self.local_repo_roots.split(":") if p.strip()]

    # --- Where remote repositories may be, and how much a request may carry ----------------------------------
    repo_hosts: str = ""
    """Comma-separated host names https repositories may be on, besides github.com and YUDAI_GITHUB_API_URL's host."""
    repo_private_networks: str = ""
    """Comma-separated networks (CIDR) a repository host may resolve into although they are loopback, link-local or
    private (an in-house GitHub Enterprise); empty: public addresses only."""
    max_request_bytes: int = 1_048_576
    """Largest request body the API reads; a larger one answers 413."""

    @field_validator("repo_private_networks")
    @classmethod
    def _networks(cls, value: str) -> str:
        for item in value.split(","):
            if item.strip():
                ipaddress.ip_network(item.strip(), strict=False)  # a ValueError names the bad entry
        return value

    @property
    def private_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        items = [item.strip() for item in self.repo_private_networks.split(",")]
        return [ipaddress.ip_network(item, strict=False) for item in items if item]

    @property
    def remote_hosts(self) -> set[str]:
        configured = {h.strip().lower() for h in self.repo_hosts.split(",") if h.strip()}
        return configured | {"github.com", (urlparse(self.github_api_url).hostname or "").lower()} - {""}

    # --- GitHub: issue intake, pull requests, webhook triggers -------------------------------------------------
    github_token: SecretStr | None = None
    """Token for GitHub's REST API and for pushing the champion's branch; never stored, logged or put in a URL."""
    github_api_url: str = "https://api.github.com"
    """REST API base; a GitHub Enterprise Server's `https://HOST/api/v3` serves repositories on that host."""
    github_timeout_s: float = 20.0
    """Timeout of one GitHub API request."""
    github_webhook_secret: SecretStr | None = None
    """Secret of the `/webhooks/github` endpoint (checks `X-Hub-Signature-256`); unset turns the endpoint off."""
    issue_refresh_s: int = 300
    """A stored GitHub issue older than this is fetched again when a solve names it."""
    trigger_label: str = "yudai"
    """Labelling an issue with this label starts a solve."""
    webhook_owner: str = ""
    """User name that owns webhook-triggered solves; empty: webhooks start nothing."""
    webhook_matrix: dict[str, Any] = Field(default_factory=dict)
    """Experiment matrix of webhook-triggered solves (JSON), e.g. {"models": ["m"], "temperatures": [0.2]}."""
    webhook_test_command: str | None = None
    """Test command of webhook-triggered solves; None: detected per run."""
    webhook_setup_command: str | None = None
    """Setup command of webhook-triggered solves."""
    webhook_allowed_logins: str = ""
    """Comma-separated GitHub logins whose `/yudai solve` comments start a solve."""
    webhook_allow_collaborators: bool = True
    """Also accept `/yudai solve` from the repository's collaborators (asked of GitHub)."""
    webhook_repeat_s: int = 600
    """A trigger label on an issue whose label-started solve still runs, or ended less than this long ago, starts
    nothing: GitHub may send one event again under a new delivery id."""
    pr_author_name: str = "yudai-solver"
    """Author and committer name of the champion's commit."""
    pr_author_email: str = "yudai-solver@users.noreply.github.com"
    """Author and committer email of the champion's commit."""

    @property
    def allowed_logins(self) -> set[str]:
        return {name.strip().lower() for name in self.webhook_allowed_logins.split(",") if name.strip()}

    # --- Sandboxes: isolation and limits (bubblewrap, e2b) -----------------------------------------------------
    sandbox_network: bool = False
    """Agent and test commands may use the network (bubblewrap, e2b); setup commands may unless a solve's
    `limits.setup_network` is false. bubblewrap's network is outbound only: no host loopback, no private address."""
    sandbox_memory_mb: int = 2048
    """bubblewrap: address space of each sandboxed process (RLIMIT_AS), in MiB."""
    sandbox_cpu_s: int = 1800
    """bubblewrap: CPU seconds of each sandboxed process (RLIMIT_CPU)."""
    sandbox_file_size_mb: int = 2048
    """bubblewrap: largest file a sandboxed process may write (RLIMIT_FSIZE), in MiB."""
    sandbox_max_processes: int = 512
    """bubblewrap: processes and threads of one sandbox's uid (RLIMIT_NPROC)."""
    sandbox_uid_base: int = 60000
    """bubblewrap (worker running as root): sandboxes run as uids from this one, one uid per live sandbox."""
    sandbox_uid_count: int = 1000
    """bubblewrap: how many uids from `sandbox_uid_base` on may be used (sandboxes alive at once on one host)."""
    e2b_template: str = "base"
    """e2b: template every run's sandbox starts from."""
    e2b_timeout_s: int = 3600
    """e2b: lifetime of a sandbox at creation; E2B kills it after this even if the worker died. Before each command
    and before the final sync the lifetime is extended to cover that step (never past `e2b_max_lifetime_s`)."""
    e2b_max_lifetime_s: int = 3600
    """e2b: the account's cap on a sandbox's life from its start (E2B: 1 h on Hobby, 24 h on Pro); a step the cap
    cannot cover fails the run with an error naming this setting instead of the sandbox dying mid-command."""
    e2b_create_wait_s: float = 300.0
    """e2b: how long creating a sandbox keeps retrying rate-limit (429) and service-busy (503) answers."""
    e2b_sweep_s: float = 30.0
    """e2b: the most time the start-up sweep of orphaned sandboxes may take; what it cannot reach is left."""
    e2b_creates_per_s: float = 1.0
    """e2b: sandboxes this process creates per second at most."""
    e2b_max_concurrent: int = 20
    """e2b: sandboxes alive at once in this process at most; more runs wait for a free one."""
    e2b_owner: str = ""
    """e2b: metadata tag of this worker's sandboxes, for orphan clean-up at start-up; empty: the host name."""
    max_trajectory_bytes: int = 4_000_000
    """Largest stored `trajectory_data` (JSON bytes); longer trajectories have their messages and outputs cut."""

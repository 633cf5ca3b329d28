"""Service settings, read from `YUDAI_*` environment variables once, at the edge, and passed down."""

from pathlib import Path
from typing import Any

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
    """Sandbox backend by name."""
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
    pr_author_name: str = "yudai-solver"
    """Author and committer name of the champion's commit."""
    pr_author_email: str = "yudai-solver@users.noreply.github.com"
    """Author and committer email of the champion's commit."""

    @property
    def allowed_logins(self) -> set[str]:
        return {name.strip().lower() for name in self.webhook_allowed_logins.split(",") if name.strip()}

    # --- Sandboxes: isolation and limits (bubblewrap, e2b) -----------------------------------------------------
    sandbox_network: bool = False
    """Agent and test commands may use the network (bubblewrap, e2b); setup commands always may."""
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
    """e2b: lifetime of a sandbox; E2B kills it after this even if the worker died."""
    e2b_creates_per_s: float = 1.0
    """e2b: sandboxes this process creates per second at most."""
    e2b_max_concurrent: int = 20
    """e2b: sandboxes alive at once in this process at most; more runs wait for a free one."""
    e2b_owner: str = ""
    """e2b: metadata tag of this worker's sandboxes, for orphan clean-up at start-up; empty: the host name."""
    max_trajectory_bytes: int = 4_000_000
    """Largest stored `trajectory_data` (JSON bytes); longer trajectories have their messages and outputs cut."""

"""Service settings, read from `YUDAI_*` environment variables once, at the edge, and passed down."""

from pathlib import Path

from platformdirs import user_data_dir
from pydantic import Field, field_validator
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

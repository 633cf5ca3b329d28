"""API request and response schemas (pydantic). ORM models live in models.py; these are the wire format."""

import math
import re
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_DB_INT = 2**31 - 1  # INTEGER columns on both databases; larger numbers are a 422, not a driver error
MAX_ISSUE_TITLE = 1024
MAX_ISSUE_BODY = 65536  # GitHub's own limit on an issue body, so every real issue fits


def _no_nul(value: str) -> str:
    # PostgreSQL refuses NUL in text and JSONB: refused here as a 422 naming the field, never a driver error.
    if "\x00" in value:
        raise ValueError("NUL characters are not allowed")
    return value


Str = Annotated[str, AfterValidator(_no_nul)]
"""Every string of a request: NUL-free."""
Temperature = Annotated[float, Field(ge=0, le=2, allow_inf_nan=False)]
Positive = Annotated[int, Field(gt=0, le=MAX_DB_INT)]
NonEmpty = Annotated[Str, Field(min_length=1, max_length=255)]


def _storable_json(value: Any, path: str) -> None:
    """ValueError naming the place of a NUL or a non-finite number in free-form JSON (which is stored as given)."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError(f"{path}: NUL characters are not allowed")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{path}: numbers must be finite")
    if isinstance(value, dict):
        for key, item in value.items():
            _storable_json(key, f"{path} (a key)")
            _storable_json(item, f"{path}.{key}")
    if isinstance(value, list):
        for index, item in enumerate(value):
            _storable_json(item, f"{path}[{index}]")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Open(BaseModel):
    """Extra keys are kept as given, so they are checked like declared fields: no NUL, finite numbers."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    @model_validator(mode="after")
    def _storable_extras(self) -> Self:
        for key, value in (self.model_extra or {}).items():
            _storable_json(key, "a key")
            _storable_json(value, key)
        return self


class SessionCreate(Strict):
    title: Annotated[Str, Field(max_length=500)] | None = None


class SessionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    title: str | None
    created_at: datetime | None
    updated_at: datetime | None


def _key_variable(value: str) -> str:
    # The worker reads the model's key from this variable (execution.agent._endpoint_key), never a YUDAI_ setting.
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise ValueError("must name an environment variable (letters, digits, _)")
    if value.upper().startswith("YUDAI_"):
        raise ValueError("the service's own YUDAI_ settings are never a model's key")
    return value


Price = Annotated[float, Field(ge=0, allow_inf_nan=False)]
"""USD per token, as litellm prices a model."""


class ModelConfig(Open):
    """Per-model settings; unknown keys are passed through to the model client."""

    temperature: Temperature | None = None
    max_tokens: Positive | None = None
    api_base: Annotated[Str, Field(pattern=r"^https?://\S+$", max_length=1000)] | None = None
    api_key_env: Annotated[Str, AfterValidator(_key_variable), Field(max_length=255)] | None = None
    input_cost_per_token: Price | None = None
    output_cost_per_token: Price | None = None
    action_format: Literal["tool_call", "text", "auto"] | None = None
    """How the model acts: a bash tool call per answer, one fenced bash block per answer (for servers that ignore
    `tools`), or `auto` (the default): one probe request decides, and its finding is stored here."""
    max_concurrency: Positive | None = None
    """Requests of this model (at its `api_base`) in flight at once, over all runs of a worker process."""
    requests_per_minute: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    """Request starts of this model per minute, per worker process (spaced evenly)."""


class ModelCreate(Strict):
    name: NonEmpty
    provider: Annotated[Str, Field(min_length=1, max_length=100)]
    model_id: NonEmpty
    config: ModelConfig = Field(default_factory=ModelConfig)
    is_active: bool = True


class ModelUpdate(Strict):
    name: NonEmpty | None = None
    provider: Annotated[Str, Field(min_length=1, max_length=100)] | None = None
    model_id: NonEmpty | None = None
    config: ModelConfig | None = Field(
        default=None,
        description="A JSON merge patch (RFC 7396) of the stored config: the keys given replace theirs, an object "
        "merges into the stored one key by key, null removes a key, keys left out stay. `config: null` empties it.",
    )
    is_active: bool | None = None

    @field_validator("name", "provider", "model_id", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Left out keeps the value; an explicit null would empty a NOT NULL column.
        if value is None:
            raise ValueError("may not be null: leave it out to keep the current value")
        return value


class ModelOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    provider: str
    model_id: str
    config: dict[str, Any] | None
    is_active: bool | None


IssueTitle = Annotated[Str, Field(min_length=1, max_length=MAX_ISSUE_TITLE)]
IssueBody = Annotated[Str, Field(max_length=MAX_ISSUE_BODY)]
RepoUrl = Annotated[Str, Field(min_length=1, max_length=1000)]


class IssueUpsert(Strict):
    repo_url: RepoUrl
    number: Positive
    title: IssueTitle
    body: IssueBody = ""
    labels: list[NonEmpty] = Field(default_factory=list, max_length=100)
    state: Annotated[str, Field(pattern=r"^(open|closed)$")] = "open"


class IssueOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    repo_url: str
    number: int
    title: str
    body: str | None
    labels: list[str] | None
    state: str


class GrantCreate(Strict):
    user: NonEmpty
    """The user's name."""
    repo: RepoUrl
    """A repository, or a root whose repositories all count: a directory, or an https URL prefix such as
    `https://github.com/acme`."""


class GrantOut(BaseModel):
    id: int
    user: str
    repo: str
    created_at: datetime | None


class Experiment(Open):
    """One cell of the matrix; extra keys (the seed's `run_id`, `mode`) are kept as given."""

    model: NonEmpty
    temperature: Temperature
    max_edits: Positive | None = None
    evolution: NonEmpty | None = None


class Matrix(Strict):
    """Either the seed's `experiments` list or the compact form expanded as a cross product."""

    experiments: list[Experiment] | None = None
    models: list[NonEmpty] | None = None
    temperatures: list[Temperature] | None = None
    evolutions: list[NonEmpty] | None = None
    max_edits: Positive | None = None

    @model_validator(mode="after")
    def _one_form(self) -> "Matrix":
        compact = self.models is not None or self.temperatures is not None or self.evolutions is not None
        if self.experiments is not None and compact:
            raise ValueError("give either experiments or models/temperatures/evolutions, not both")
        if self.experiments is None and self.models is None:
            raise ValueError("give experiments, or models (with optional temperatures and evolutions)")
        return self


class Limits(Open):
    max_parallel: Positive | None = None
    time_budget_s: Positive | None = None
    early_stop: bool = False
    network: bool = False
    """Let the agent's commands reach the network (sandboxes that can refuse it: bubblewrap, e2b)."""
    setup_network: bool | None = None
    """False: the setup command runs without network too (bubblewrap, e2b); unset or true: outbound network."""
    cost_budget_usd: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    """Stop the solve's unfinished runs once its runs together have cost this much (as litellm prices them)."""
    judge_model: NonEmpty | None = None
    """An ai_models name or model_id asked to pick among candidates the tests leave tied."""


Command = Annotated[Str, Field(min_length=1, max_length=10_000)]


class SolveStart(Strict):
    repo_url: RepoUrl
    issue_number: Positive
    base_branch: NonEmpty | None = None
    """None: the repository's default branch (its HEAD)."""
    issue_title: IssueTitle | None = None
    issue_body: IssueBody | None = None
    matrix: Matrix
    limits: Limits = Field(default_factory=Limits)
    setup_command: Command | None = None
    test_command: Command | None = None
    test_paths: list[Annotated[Str, Field(max_length=1000)]] | None = None
    """Globs naming the repository's test files; the defaults (tests/, test_*.py, *_test.go, ...) otherwise."""
    create_pr: bool = False
    requested_by: Annotated[Str, Field(max_length=255)] | None = None
    allow_closed: bool = False
    """Solve a closed issue too (a closed one is refused otherwise)."""


class RunBrief(BaseModel):
    id: str
    model: str
    temperature: float
    max_edits: int
    evolution: str
    status: str


class SolveStarted(BaseModel):
    solve_id: str
    status: str
    runs: list[RunBrief]


class RunSummary(BaseModel):
    id: str
    model: str
    temperature: float
    evolution: str
    status: str | None
    steps: int | None
    tests_passed: bool | None
    loc_changed: int | None
    files_changed: int | None
    tokens: int | None
    cost: float | None
    latency_ms: int | None
    pr_url: str | None
    error_message: str | None
    started_at: datetime | None
    completed_at: datetime | None
    agent_exit: str | None = None
    """How the agent's loop ended: submitted, step_limit, cost_limit, format_errors, model_timeout,
    model_unreachable, context_too_long, rate_limited, cancelled, budget (model_error, error otherwise); None before
    it ended. `steps` counts the model calls (what `max_edits` limits), `commands` the commands the agent ran."""
    commands: int | None = None


class Progress(BaseModel):
    runs_total: int
    runs_pending: int
    runs_running: int
    runs_completed: int
    runs_failed: int
    runs_cancelled: int
    percent_complete: float
    elapsed_s: float
    time_budget_s: int | None
    tokens_total: int
    cost_total: float


class PrState(BaseModel):
    """The champion's pull request: `pending` while one is still to come (the solve runs, or has ended and the PR
    is being made), then `opened` (its `url`) or `failed` (its `error`); `none` when no PR was asked for or there
    is nothing to propose (`error` says why, if the solve asked for one)."""

    state: Literal["pending", "opened", "failed", "none"]
    url: str | None = None
    error: str | None = None


class SolveStatus(BaseModel):
    solve_id: str
    status: str | None
    progress: Progress
    runs: list[RunSummary]
    champion_run_id: str | None
    error_message: str | None
    baseline: dict[str, Any] | None
    ranking: dict[str, Any] | None
    verification: dict[str, Any] | None = None
    """Reproduction tests checked on the base, the run x test matrix, and the judge's verdict, if any."""
    created_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    pr: PrState = PrState(state="none")
    """The pull request: a client waiting for it waits while `pr.state` is `pending`, even once `status` is final."""
    version: str = ""
    """Changes whenever the solve or one of its runs is written: the status endpoint's `ETag` and the event
    stream's event id. The elapsed time alone does not change it."""


class RunDetail(RunSummary):
    model_config = ConfigDict(from_attributes=True)
    solve_id: str | None
    max_edits: int
    sandbox_id: str | None
    logs_url: str | None
    diagnostics: dict[str, Any] | None
    trajectory_data: dict[str, Any] | None
    created_at: datetime | None
    updated_at: datetime | None

    @model_validator(mode="after")
    def _agent_figures(self) -> Self:
        """`agent_exit` and `commands` are stored in `diagnostics` (the summary selects them from there)."""
        diagnostics = self.diagnostics or {}
        self.agent_exit = self.agent_exit or diagnostics.get("agent_exit")
        self.commands = self.commands if self.commands is not None else diagnostics.get("commands")
        return self


class SolveListItem(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    repo_url: str
    issue_number: int
    issue_title: str | None = None
    status: str | None
    champion_run_id: str | None
    created_at: datetime | None
    completed_at: datetime | None


class Page(BaseModel):
    items: list[Any]
    total: int
    limit: int
    offset: int


class CancelOut(BaseModel):
    solve_id: str
    status: str


class PullRequestOut(BaseModel):
    """The champion's pull request: its URL, or why there is none."""

    solve_id: str
    run_id: str | None
    pr_url: str | None
    pr_error: str | None


class WebhookOut(BaseModel):
    delivery_id: str
    outcome: str
    """started | ignored | rejected | duplicate"""
    reason: str | None = None
    solve_id: str | None = None

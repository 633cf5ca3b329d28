"""The `yudai` command: the edge where settings are read and everything else is built."""

# Imports inside the commands (and the helpers they call) are the CLI's lazy loading, on purpose: each command
# loads only what it uses, so `yudai --help` or `yudai user create` does not pay for the API server, the job queue
# or the agent stack (seconds together). Only typer, rich and the settings load with the module.

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn

import typer
from rich.console import Console
from typer.core import TyperGroup

from yudai_solver.base.settings import Settings

if TYPE_CHECKING:
    import socket

    from sqlalchemy.orm import Session, sessionmaker

    from yudai_solver.entry.client import SolveClient
    from yudai_solver.solving.sandbox_policy import SandboxChoice

NEWCOMER_ORDER = ("demo", "solve", "model", "serve", "user", "grant", "worker", "db")
"""`yudai --help` lists the commands in the order a newcomer needs them (typer lists groups after commands)."""


class _NewcomerOrder(TyperGroup):
    def list_commands(self, ctx: Any) -> list[str]:
        known = super().list_commands(ctx)
        return sorted(known, key=lambda name: NEWCOMER_ORDER.index(name) if name in NEWCOMER_ORDER else len(known))


app = typer.Typer(
    cls=_NewcomerOrder,
    help="yudai-solver: many coding-agent attempts per issue, the best one kept.",
    no_args_is_help=True,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
user_app = typer.Typer(help="Users and API tokens.", no_args_is_help=True)
model_app = typer.Typer(help="The shared model catalogue.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(user_app, name="user")
app.add_typer(model_app, name="model")
grant_app = typer.Typer(help="Which users may solve which repositories (admins may solve all).", no_args_is_help=True)
app.add_typer(grant_app, name="grant")
console = Console()


def _settings() -> Settings:
    return Settings()


def _migrated_factory(settings: Settings, runs: int | None = None) -> "sessionmaker[Session]":
    from yudai_solver.base.db import create_db_engine, create_session_factory
    from yudai_solver.base.migrate import upgrade

    upgrade(settings.resolved_database_url)
    # A cap, not a reservation: the pool opens connections as threads ask for them.
    pool_size = settings.db_pool_size(api=True, runs=runs or settings.max_concurrent_runs)
    return create_session_factory(create_db_engine(settings.resolved_database_url, pool_size=pool_size))


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Apply the schema migrations to YUDAI_DATABASE_URL."""
    from yudai_solver.base.migrate import upgrade

    settings = _settings()
    upgrade(settings.resolved_database_url, revision)
    console.print(f"database at {_safe_url(settings.resolved_database_url)} is at revision {revision}")


@db_app.command("queue-schema")
def db_queue_schema() -> None:
    """Apply procrastinate's job-queue schema (only for a PostgreSQL database made from init.sql)."""
    from yudai_solver.base.migrate import apply_queue_schema

    settings = _settings()
    apply_queue_schema(settings.resolved_database_url)
    console.print(f"job-queue schema applied to {_safe_url(settings.resolved_database_url)}")


@user_app.command("create")
def user_create(
    name: Annotated[str, typer.Argument(help="The new user's name.")],
    admin: Annotated[bool, typer.Option("--admin", help="May add and change models.")] = False,
) -> None:
    """Create a user; the new API token is the last line of the output (shown once, stored hashed)."""
    from yudai_solver.base.db import transaction
    from yudai_solver.solving.users import create_user

    with transaction(_migrated_factory(_settings())) as session:
        user, token = create_user(session, name=name, admin=admin)
        role = "admin" if user.is_admin else "user"
    console.print(f"created {role} {name!r} (id {user.id}); its API token follows, shown only this once:")
    print(token)


@grant_app.command("add")
def grant_add(
    user: Annotated[str, typer.Argument(help="The user's name.")],
    repo: Annotated[str, typer.Argument(help="A repository, a directory of them, or an https URL prefix.")],
) -> None:
    """Let USER solve REPO, or every repository under it (https://github.com/acme, /srv/repos)."""
    from yudai_solver.base.db import transaction
    from yudai_solver.base.errors import YudaiError
    from yudai_solver.base.schemas import GrantCreate
    from yudai_solver.solving.grants import add_grant
    from yudai_solver.solving.users import operator

    try:
        with transaction(_migrated_factory(_settings())) as session:
            grant = add_grant(session, operator(), GrantCreate(user=user, repo=repo))
    except (YudaiError, ValueError) as exc:  # ValueError: pydantic's, for a value the API would answer 422
        _fail(_one_line(exc))
    console.print(f"{grant.user} may solve {grant.repo} (grant {grant.id})")


@grant_app.command("list")
def grant_list(user: Annotated[str | None, typer.Option("--user", help="Only this user's grants.")] = None) -> None:
    """Every grant, one per line: id, user, repository or root."""
    from yudai_solver.solving.grants import list_grants
    from yudai_solver.solving.users import operator

    with _migrated_factory(_settings())() as session:
        for grant in list_grants(session, operator(), user_name=user):
            print(f"{grant.id}\t{grant.user}\t{grant.repo}")


@grant_app.command("remove")
def grant_remove(
    user: Annotated[str, typer.Argument(help="The user's name.")],
    repo: Annotated[str, typer.Argument(help="The repository or root, as the grant was added.")],
) -> None:
    """Revoke USER's grant of REPO (as it was added)."""
    from yudai_solver.base.db import transaction
    from yudai_solver.solving.grants import find_grant, remove_grant
    from yudai_solver.solving.users import operator

    with transaction(_migrated_factory(_settings())) as session:
        grant = find_grant(session, user_name=user, repo=repo)
        if grant is None:
            raise typer.BadParameter(f"{user} has no grant of {repo}", param_hint="repo")
        remove_grant(session, operator(), grant.id)
    console.print(f"{user} may no longer solve {repo} by that grant")


_API_KEY_ENV_HELP = "The worker's environment variable holding the key for the model's own server (--api-base)."
_PER_TOKEN = 1_000_000  # prices are given and shown per million tokens, as providers publish them; stored per token
_PriceIn = Annotated[
    float | None,
    typer.Option("--price-in", help="USD per million input tokens (for a model litellm does not price)."),
]
_PriceOut = Annotated[float | None, typer.Option("--price-out", help="USD per million output tokens.")]
_ActionFormat = Annotated[
    Literal["auto", "text", "tool_call"] | None,
    typer.Option(
        "--action-format",
        help="How the model acts: tool calls, one bash block per answer (text), or probed once (auto).",
    ),
]


def _prices_given(price_in: float | None, price_out: float | None) -> dict[str, float]:
    """The prices as the config stores them: USD per token."""
    return _given(
        {
            "input_cost_per_token": None if price_in is None else price_in / _PER_TOKEN,
            "output_cost_per_token": None if price_out is None else price_out / _PER_TOKEN,
        }
    )


@model_app.command("add")
def model_add(
    name: Annotated[str, typer.Argument(help="The model's name in this catalogue (what --model names).")],
    provider: Annotated[str, typer.Option(help="litellm provider, e.g. openai, anthropic, openrouter.")],
    model_id: Annotated[str, typer.Option("--model-id", help="Model identifier for the provider's API.")],
    api_base: Annotated[str | None, typer.Option("--api-base", help="OpenAI-compatible server URL.")] = None,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", help="Longest answer, in tokens.")] = None,
    api_key_env: Annotated[str | None, typer.Option("--api-key-env", help=_API_KEY_ENV_HELP)] = None,
    price_in: _PriceIn = None,
    price_out: _PriceOut = None,
    action_format: _ActionFormat = None,
) -> None:
    """Add a model to the catalogue (API keys stay in the worker's environment, never in the database)."""
    from yudai_solver.base.db import transaction
    from yudai_solver.base.errors import YudaiError
    from yudai_solver.base.schemas import ModelCreate
    from yudai_solver.solving.ai_models import add_model

    config: dict[str, Any] = {"api_base": api_base, "max_tokens": max_tokens, "api_key_env": api_key_env}
    config |= {"action_format": action_format}
    config |= _prices_given(price_in, price_out)
    try:
        spec = ModelCreate.model_validate(
            {"name": name, "provider": provider, "model_id": model_id, "config": _given(config)}
        )
        with transaction(_migrated_factory(_settings())) as session:
            row = add_model(session, spec)
    except (YudaiError, ValueError) as exc:  # ValueError: pydantic's, for a value the API would answer 422
        _fail(_one_line(exc))
    console.print(f"added model {row.name!r} (id {row.id}): {row.provider}/{row.model_id}")


def _given(options: dict[str, Any]) -> dict[str, Any]:
    """The options given on the command line: one left out is no change."""
    return {key: value for key, value in options.items() if value is not None}


@model_app.command("list")
def model_list() -> None:
    """Every model, one per line: id, name, provider/model_id, active or inactive, its config as JSON."""
    import json

    from yudai_solver.solving.ai_models import list_models

    with _migrated_factory(_settings())() as session:
        for row in list_models(session):
            state = "active" if row.is_active else "inactive"
            config = json.dumps(row.config or {}, sort_keys=True)
            print(f"{row.id}\t{row.name}\t{row.provider}/{row.model_id}\t{state}\t{config}{_prices(row.config or {})}")


def _prices(config: dict[str, Any]) -> str:
    prices = [
        f"{direction} ${config[key] * _PER_TOKEN:g}/M"
        for direction, key in (("in", "input_cost_per_token"), ("out", "output_cost_per_token"))
        if isinstance(config.get(key), int | float)
    ]
    return f"\t({', '.join(prices)})" if prices else ""


@model_app.command("update")
def model_update(
    name: Annotated[str, typer.Argument(help="The model's name (`yudai model list`).")],
    api_base: Annotated[str | None, typer.Option("--api-base", help="OpenAI-compatible server URL.")] = None,
    price_in: _PriceIn = None,
    price_out: _PriceOut = None,
    api_key_env: Annotated[str | None, typer.Option("--api-key-env", help=_API_KEY_ENV_HELP)] = None,
    action_format: _ActionFormat = None,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", help="Longest answer, in tokens.")] = None,
    unset: Annotated[
        list[str] | None, typer.Option("--unset", metavar="KEY", help="Remove this config key (repeatable).")
    ] = None,
    active: Annotated[
        bool | None, typer.Option("--active/--inactive", help="Offer the model to solves, or not.")
    ] = None,
) -> None:
    """Change the given settings of model NAME; the rest of its config stays as it is (a merge, like PATCH)."""
    import json

    from yudai_solver.base.db import transaction
    from yudai_solver.base.errors import YudaiError
    from yudai_solver.base.schemas import ModelUpdate
    from yudai_solver.solving.ai_models import find_model, update_model

    config: dict[str, Any] = dict.fromkeys(unset or [])  # null removes a key
    config |= _given(
        {
            "api_base": api_base,
            "api_key_env": api_key_env,
            "action_format": action_format,
            "max_tokens": max_tokens,
        }
    )
    config |= _prices_given(price_in, price_out)
    patch = _given({"is_active": active}) | ({"config": config} if config else {})
    if not patch:
        raise typer.BadParameter("nothing to change: give at least one option", param_hint="options")
    try:
        with transaction(_migrated_factory(_settings())) as session:
            row = update_model(session, find_model(session, name).id, ModelUpdate.model_validate(patch))
            config_now = dict(row.config or {})
    except (YudaiError, ValueError) as exc:  # ValueError: pydantic's, for a value the API would answer 422
        _fail(_one_line(exc))
    console.print(f"updated model {name!r}; its config is now {json.dumps(config_now)}", markup=False, highlight=False)


@model_app.command("remove")
def model_remove(name: Annotated[str, typer.Argument(help="The model's name (`yudai model list`).")]) -> None:
    """Delete model NAME, or only deactivate it when runs refer to it (their history keeps its name)."""
    from yudai_solver.base.db import transaction
    from yudai_solver.base.errors import YudaiError
    from yudai_solver.solving.ai_models import find_model, remove_model

    try:
        with transaction(_migrated_factory(_settings())) as session:
            kept = remove_model(session, find_model(session, name).id)
    except YudaiError as exc:
        _fail(_one_line(exc))
    console.print(f"deactivated model {name!r}: runs refer to it" if kept else f"removed model {name!r}")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    worker: Annotated[
        bool, typer.Option("--worker/--no-worker", help="On PostgreSQL, also execute runs in this process.")
    ] = True,
) -> None:
    """Migrate the database, then serve the API (and execute runs in this process)."""
    from yudai_solver.dispatch.factory import create_dispatcher
    from yudai_solver.dispatch.jobqueue import is_job_queue
    from yudai_solver.entry.api import create_app
    from yudai_solver.entry.logs import configure_logging
    from yudai_solver.entry.serving import preload_agent, serve_on

    sock = _listening(host, port)  # first: a busy port fails before anything starts or migrates
    settings = _settings()
    configure_logging(settings.log_format)
    factory = _migrated_factory(settings)
    settings, choice = _serving_sandbox(settings, factory, runs_here=worker or not is_job_queue(settings))
    dispatcher = create_dispatcher(settings, factory, worker=worker)
    api = create_app(settings, session_factory=factory, dispatcher=dispatcher)
    api.state.sandbox_choice = choice
    if worker or not is_job_queue(settings):
        preload_agent()
    serve_on(api, sock, settings.log_format)


def _listening(host: str, port: int) -> "socket.socket":
    from yudai_solver.entry.serving import CannotListen, listening_socket

    try:
        return listening_socket(host, port)
    except CannotListen as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from None


@app.command("worker")
def worker_command(
    concurrency: Annotated[int, typer.Option(help="Runs executed at once by this worker.")] = 4,
    graceful_timeout: Annotated[float, typer.Option(help="Seconds running runs get on SIGTERM before requeue.")] = 30,
) -> None:
    """Execute runs from the PostgreSQL job queue; start as many as you like, on any machine."""
    from yudai_solver.dispatch.jobqueue import is_job_queue
    from yudai_solver.dispatch.worker import QueueWorker

    settings = _settings()
    if not is_job_queue(settings):
        raise typer.BadParameter("workers need a PostgreSQL YUDAI_DATABASE_URL (postgresql+psycopg://...)")
    from yudai_solver.entry.logs import configure_logging  # lazily, as every command's imports

    configure_logging(settings.log_format, logging.INFO)
    os.nice(settings.worker_nice)  # inherited by its runs' commands: a shared machine answers API requests first
    factory = _migrated_factory(settings, runs=concurrency)
    settings, _ = _serving_sandbox(settings, factory)
    console.print(f"worker on {_safe_url(settings.resolved_database_url)}, concurrency {concurrency}")
    QueueWorker(settings, factory, concurrency=concurrency, graceful_timeout_s=graceful_timeout).run()


def _serving_sandbox(
    settings: Settings, factory: "sessionmaker[Session]", *, runs_here: bool = True
) -> tuple[Settings, "SandboxChoice"]:
    """The settings a serving process runs with, its sandbox chosen and announced on stderr; exits if refused."""
    from sqlalchemy import func, select

    from yudai_solver.base.models import User
    from yudai_solver.solving import sandbox_policy as policy

    if runs_here:
        with factory() as session:
            users = session.scalar(select(func.count(User.id))) or 0
        try:
            settings, choice = policy.choose_sandbox(settings, users)
        except policy.SandboxRefused as exc:
            typer.echo(f"error: {exc.message}", err=True)
            raise typer.Exit(2) from None
    else:
        choice = policy.no_runs_here()
    _announce(settings, logging.INFO, choice.message)
    if choice.warning:
        _announce(settings, logging.WARNING, choice.warning)
    return settings, choice


def _announce(settings: Settings, level: int, message: str) -> None:
    """A line for the operator at start: a log record when the log is JSON (no plain line among JSON ones)."""
    if settings.log_format == "json":
        logging.getLogger("yudai_solver.serve").log(level, message)
    else:
        typer.echo(message if level < logging.WARNING else f"warning: {message}", err=True)


EXPERIMENT_FORM = "MODEL[:TEMP[:STRATEGY[:MAX_EDITS]]]"
_EXPERIMENT_HELP = (
    "One run: MODEL[:TEMP[:STRATEGY[:MAX_EDITS]]], e.g. fixer:0.7:minimal-fix:20 (repeat; instead of --model)."
)
_EVOLUTION_HELP = "Strategy: baseline, minimal-fix, test-first, reproduce-first (repeat for several)."


@app.command()
def solve(
    repo: Annotated[str, typer.Argument(help="https:// git URL, or a local repository path.")],
    issue: Annotated[
        int | None, typer.Option("--issue", help="The issue's number (its text is read from GitHub).")
    ] = None,
    issue_title: Annotated[
        str | None, typer.Option("--issue-title", help="The issue's title (needed for a local repository).")
    ] = None,
    issue_body: Annotated[str, typer.Option("--issue-body", help="The issue's text, with --issue-title.")] = "",
    model: Annotated[
        list[str] | None, typer.Option("--model", help="Model name from `yudai model list` (repeat for several).")
    ] = None,
    temperature: Annotated[
        list[float] | None, typer.Option("--temperature", help="Sampling temperature, 0-2 (repeat; default 0).")
    ] = None,
    evolution: Annotated[list[str] | None, typer.Option("--evolution", help=_EVOLUTION_HELP)] = None,
    max_edits: Annotated[
        int | None, typer.Option("--max-edits", help="Model calls each run may make (default YUDAI_DEFAULT_MAX_EDITS).")
    ] = None,
    experiment: Annotated[
        list[str] | None, typer.Option("--experiment", metavar=EXPERIMENT_FORM, help=_EXPERIMENT_HELP)
    ] = None,
    max_parallel: Annotated[int | None, typer.Option("--max-parallel", help="Runs of this solve at once.")] = None,
    time_budget: Annotated[
        int | None, typer.Option("--time-budget", help="Seconds for the whole solve; unfinished runs stop then.")
    ] = None,
    budget_usd: Annotated[
        float | None,
        typer.Option("--budget-usd", "--cost-budget", help="USD for the whole solve; unfinished runs stop then."),
    ] = None,
    early_stop: Annotated[bool, typer.Option("--early-stop", help="Cancel the rest once a run passes.")] = False,
    network: Annotated[
        bool, typer.Option("--network", help="Let the agent's commands reach the network (bubblewrap, e2b).")
    ] = False,
    judge_model: Annotated[
        str | None, typer.Option("--judge-model", help="A model asked to pick among candidates the tests leave tied.")
    ] = None,
    test_command: Annotated[
        str | None, typer.Option("--test-command", help="The repository's tests, e.g. 'python -m pytest -q'.")
    ] = None,
    setup_command: Annotated[
        str | None, typer.Option("--setup-command", help="Run once in each checkout first, e.g. 'pip install -e .'.")
    ] = None,
    test_path: Annotated[
        list[str] | None, typer.Option("--test-path", help="Glob naming the repository's test files (repeat).")
    ] = None,
    base_branch: Annotated[
        str | None, typer.Option("--base-branch", help="Branch to start from; default: the repository's HEAD branch.")
    ] = None,
    create_pr: Annotated[
        bool, typer.Option("--create-pr", help="Open a pull request with the champion (GitHub, or the origin).")
    ] = False,
    allow_closed: Annotated[bool, typer.Option("--allow-closed", help="Solve a closed issue too.")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Show live progress until the solve ends.")] = False,
    server: Annotated[
        str, typer.Option("--server", envvar="YUDAI_SERVER", help="The yudai server's URL.")
    ] = "http://127.0.0.1:8000",
    token: Annotated[
        str | None, typer.Option("--token", envvar="YUDAI_TOKEN", help="API token (`yudai user create NAME`).")
    ] = None,
    embedded: Annotated[
        bool, typer.Option("--embedded", help="Run everything in this process (SQLite default); no server needed.")
    ] = False,
) -> None:
    """Submit a solve: each experiment is one run; the best passing one is the champion.

    The experiments: every --experiment, or every --model x --temperature x --evolution. Needs --issue or
    --issue-title; starts from --base-branch, or the repository's default branch.
    """
    from yudai_solver.entry.solve_request import BadOption, SolveOptions, solve_body

    if not embedded and not token:
        raise typer.BadParameter("give --token or set YUDAI_TOKEN (or use --embedded)", param_hint="--token")
    limits = {
        "max_parallel": max_parallel,
        "time_budget_s": time_budget,
        "cost_budget_usd": budget_usd,
        "early_stop": early_stop,
        "network": network,
        "judge_model": judge_model,
    }
    options = SolveOptions(
        repo=repo if repo.startswith("https://") else str(Path(repo.removeprefix("file://")).expanduser().resolve()),
        base_branch="",
        issue=issue,
        issue_title=issue_title,
        issue_body=issue_body,
        models=model or [],
        temperatures=temperature or [],
        evolutions=evolution or [],
        max_edits=max_edits,
        experiments=experiment or [],
        limits=limits,
        setup_command=setup_command,
        test_command=test_command,
        test_paths=test_path or [],
        create_pr=create_pr,
        allow_closed=allow_closed,
    )
    try:
        body = solve_body(options)
    except BadOption as exc:
        raise typer.BadParameter(str(exc), param_hint=exc.option) from None
    body["base_branch"] = base_branch or _default_branch(options.repo)
    if embedded:
        _solve_embedded(_settings_allowing(options.repo), body)
        return
    from yudai_solver.entry.client import SolveClient

    _submit(SolveClient(server, token or ""), body, wait=wait)


def _default_branch(repo: str) -> str:
    from yudai_solver.base.errors import InvalidInput
    from yudai_solver.solving.repos import default_branch

    target = repo if repo.startswith("https://") else str(Path(repo.removeprefix("file://")).expanduser())
    try:
        return default_branch(target, _settings_allowing(target))
    except InvalidInput as exc:
        message = exc.message.replace("give base_branch", "give --base-branch")
        raise typer.BadParameter(message, param_hint="--base-branch") from None


def _settings_allowing(repo: str) -> Settings:
    """Embedded settings that also allow the local repository the user named on the command line."""
    settings = _settings()
    if repo.startswith("https://"):
        return settings
    roots = ":".join(filter(None, [settings.local_repo_roots, str(Path(repo).parent)]))
    return settings.model_copy(update={"local_repo_roots": roots})


def _solve_embedded(settings: Settings, body: dict[str, Any]) -> None:
    from yudai_solver.entry.client import SolveClient
    from yudai_solver.entry.embedded import embedded_server

    with embedded_server(settings) as (url, token):
        _submit(SolveClient(url, token), body, wait=True)


def _submit(client: "SolveClient", body: dict[str, Any], *, wait: bool) -> None:
    from yudai_solver.entry.client import ApiError
    from yudai_solver.entry.watch import show_outcome, watch

    issue = body.get("issue_title") or f"#{body['issue_number']}"
    try:
        session_id = client.create_session(f"cli: {body['repo_url']}: {issue}"[:500])
        started = client.start(session_id, body)
    except ApiError as exc:
        _fail(exc.message)
    console.print(f"solve {started['solve_id']} started with {len(started['runs'])} runs (session {session_id})")
    if not wait:
        return
    status = watch(client, session_id, started["solve_id"], console)
    show_outcome(client, session_id, status, console)
    raise typer.Exit(0 if status["status"] == "completed" else 1)


@app.command()
def demo(
    serve: Annotated[
        bool,
        typer.Option(
            "--serve", help="Instead: serve the API and web page with the scripted models and a demo repository."
        ),
    ] = False,
    host: Annotated[str, typer.Option(help="With --serve: interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="With --serve: port to bind.")] = 8000,
) -> None:
    """A first solve with no API key: a tiny repo with a failing test, three SCRIPTED models, the real pipeline.

    With --serve: the whole service with them (the API, its web page, `yudai solve --server`) until Ctrl-C.
    """
    if serve:
        _demo_service(host, port)
        return
    from yudai_solver.entry import demo as scenario
    from yudai_solver.entry.client import SolveClient
    from yudai_solver.entry.embedded import embedded_server
    from yudai_solver.testing.scripted import ScriptedChatServer

    settings = _settings()
    root = settings.data_dir / "demo"
    repo = scenario.create_repository(scenario.new_repository_path(root))
    settings = settings.model_copy(
        update={"local_repo_roots": ":".join(filter(None, [settings.local_repo_roots, str(root)]))}
    )
    console.print(f"[bold]yudai demo[/]: repository {repo} (add() subtracts; its test fails)")
    console.print(
        "models: [magenta]SCRIPTED[/] stand-ins served on 127.0.0.1 (no API key, no real LLM): "
        + ", ".join(scenario.SCRIPTS)
    )
    with ScriptedChatServer(scenario.SCRIPTS) as chat, embedded_server(settings) as (url, token):
        client = SolveClient(url, token)
        _register_scripted_models(client, chat.base_url, scenario.SCRIPTS)
        body = {
            "repo_url": str(repo),
            "issue_number": 1,
            "issue_title": scenario.ISSUE_TITLE,
            "issue_body": scenario.ISSUE_BODY,
            "matrix": {"models": list(scenario.SCRIPTS)},
            "limits": {"max_parallel": 3, "time_budget_s": 300},
            "test_command": scenario.TEST_COMMAND,
        }
        try:
            _submit(client, body, wait=True)
        finally:
            console.print(
                "With a real model: yudai model add gpt --provider openai --model-id gpt-4o-mini, export "
                "OPENAI_API_KEY, then: yudai solve PATH --embedded --model gpt --issue-title ... "
                "--test-command ..."
            )
            console.print("The whole service (API, web page, `yudai solve --server`) without a key: yudai demo --serve")


def _demo_service(host: str, port: int) -> None:
    """`yudai demo --serve`: the service on its own demo data directory, the scripted models registered."""
    from yudai_solver.base.db import transaction
    from yudai_solver.dispatch.factory import create_dispatcher
    from yudai_solver.entry import demo as scenario
    from yudai_solver.entry.api import create_app
    from yudai_solver.entry.serving import serve_on, url_of
    from yudai_solver.testing.scripted import ScriptedChatServer

    sock = _listening(host, port)
    settings = scenario.service_settings(_settings())
    repo = scenario.create_repository(scenario.new_repository_path(settings.data_dir / "repos"))
    factory = _migrated_factory(settings)
    with ScriptedChatServer(scenario.SCRIPTS) as chat:
        with transaction(factory) as session:
            token = scenario.prepare_service(session, chat.base_url)
        settings, choice = _serving_sandbox(settings, factory)
        api = create_app(settings, session_factory=factory, dispatcher=create_dispatcher(settings, factory))
        api.state.sandbox_choice = choice
        _announce_demo_service(repo, url_of(host, sock.getsockname()[1]), token, settings)
        serve_on(api, sock)


def _announce_demo_service(repo: Path, url: str, token: str, settings: Settings) -> None:
    from yudai_solver.entry import demo as scenario

    say = typer.echo
    scripted = ", ".join(scenario.SCRIPTS)
    say(f"yudai demo --serve: the service with SCRIPTED models (no API key, no real LLM): {scripted}")
    say(f"data:       {settings.data_dir} (its own database; YUDAI_DATABASE_URL is not used)")
    say(f"repository: {repo} (add() subtracts; its test fails)")
    say(f"web page:   {url}/ui#token={token}")
    say(f"token:      {token} (user {scenario.SERVICE_USER!r}; a new one at every start)")
    say(f"API:        {url}/docs")
    say("solve it through the server, in another terminal:")
    say(f"  {scenario.solve_line(repo, url, token)}")
    say("Ctrl-C stops the service.")


def _register_scripted_models(client: "SolveClient", api_base: str, names: Iterable[str]) -> None:
    existing = {m["name"]: m for m in client.models()}
    for name in names:
        config = {"api_base": api_base}
        if name in existing:
            client.update_model(existing[name]["id"], {"config": config, "is_active": True})
        else:
            client.add_model({"name": name, "provider": "openai", "model_id": name, "config": config})


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _one_line(exc: Exception) -> str:
    """An error as one line: a pydantic ValidationError as `field: message; ...`, any other as its text."""
    errors = getattr(exc, "errors", None)
    if callable(errors) and hasattr(exc, "title"):  # pydantic's ValidationError, without importing pydantic here
        return "; ".join(f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}" for e in errors())
    return " ".join(str(exc).split())


def _fail(message: str, code: int = 2) -> NoReturn:
    """Exit with `message` as one red line (never wrapped, never read as Rich markup)."""
    console.print(message, style="red", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def main() -> None:
    """The `yudai` command: the app, with a server it cannot reach or a request it refuses said in one line (the
    URL, and what to do) instead of a traceback."""
    import httpx

    from yudai_solver.entry.client import ApiError

    try:
        app()
    except httpx.TransportError as exc:
        try:
            where = str(exc.request.url.copy_with(query=None))
        except RuntimeError:  # an error raised before any request was made
            where = "the server"
        console.print(
            f"cannot reach {where}: {exc or type(exc).__name__} (is `yudai serve` running there? check --server)",
            style="red",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        raise SystemExit(2) from None
    except ApiError as exc:  # while watching a solve: the start's refusals are said where they happen
        console.print(exc.message, style="red", markup=False, highlight=False, soft_wrap=True)
        raise SystemExit(2) from None

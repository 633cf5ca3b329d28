"""The `yudai` command: the edge where settings are read and everything else is built."""

# Imports inside the commands (and the helpers they call) are the CLI's lazy loading, on purpose: each command
# loads only what it uses, so `yudai --help` or `yudai user create` does not pay for the API server, the job queue
# or the agent stack (seconds together). Only typer, rich and the settings load with the module.

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.console import Console

from yudai_solver.base.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from yudai_solver.entry.client import SolveClient
    from yudai_solver.solving.sandbox_policy import SandboxChoice

app = typer.Typer(help="yudai-solver: many coding-agent attempts per issue, the best one kept.", no_args_is_help=True)
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


def _migrated_factory(settings: Settings) -> "sessionmaker[Session]":
    from yudai_solver.base.db import create_db_engine, create_session_factory
    from yudai_solver.base.migrate import upgrade

    upgrade(settings.resolved_database_url)
    return create_session_factory(create_db_engine(settings.resolved_database_url))


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
    name: str,
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
    user: str,
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
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
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
def grant_remove(user: str, repo: str) -> None:
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


@model_app.command("add")
def model_add(
    name: str,
    provider: Annotated[str, typer.Option(help="litellm provider, e.g. openai, anthropic, openrouter.")],
    model_id: Annotated[str, typer.Option("--model-id", help="Model identifier for the provider's API.")],
    api_base: Annotated[str | None, typer.Option("--api-base", help="OpenAI-compatible server URL.")] = None,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens")] = None,
    api_key_env: Annotated[str | None, typer.Option("--api-key-env", help=_API_KEY_ENV_HELP)] = None,
) -> None:
    """Add a model to the catalogue (API keys stay in the worker's environment, never in the database)."""
    from yudai_solver.base.db import transaction
    from yudai_solver.base.errors import YudaiError
    from yudai_solver.base.schemas import ModelCreate
    from yudai_solver.solving.ai_models import add_model

    config = {"api_base": api_base, "max_tokens": max_tokens, "api_key_env": api_key_env}
    try:
        spec = ModelCreate.model_validate(
            {"name": name, "provider": provider, "model_id": model_id, "config": _given(config)}
        )
        with transaction(_migrated_factory(_settings())) as session:
            row = add_model(session, spec)
    except (YudaiError, ValueError) as exc:  # ValueError: pydantic's, for a value the API would answer 422
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
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
    name: str,
    api_base: Annotated[str | None, typer.Option("--api-base", help="OpenAI-compatible server URL.")] = None,
    price_in: Annotated[
        float | None,
        typer.Option("--price-in", help="USD per million input tokens (for a model litellm does not price)."),
    ] = None,
    price_out: Annotated[float | None, typer.Option("--price-out", help="USD per million output tokens.")] = None,
    api_key_env: Annotated[str | None, typer.Option("--api-key-env", help=_API_KEY_ENV_HELP)] = None,
    action_format: Annotated[
        Literal["auto", "text", "tool_call"] | None,
        typer.Option(
            "--action-format",
            help="How the model acts: tool calls, one bash block per answer (text), or probed once (auto).",
        ),
    ] = None,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens")] = None,
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
            "input_cost_per_token": None if price_in is None else price_in / _PER_TOKEN,
            "output_cost_per_token": None if price_out is None else price_out / _PER_TOKEN,
            "action_format": action_format,
            "max_tokens": max_tokens,
        }
    )
    patch = _given({"is_active": active}) | ({"config": config} if config else {})
    if not patch:
        raise typer.BadParameter("nothing to change: give at least one option", param_hint="options")
    try:
        with transaction(_migrated_factory(_settings())) as session:
            row = update_model(session, find_model(session, name).id, ModelUpdate.model_validate(patch))
            config_now = dict(row.config or {})
    except (YudaiError, ValueError) as exc:  # ValueError: pydantic's, for a value the API would answer 422
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    console.print(f"updated model {name!r}; its config is now {json.dumps(config_now)}", markup=False, highlight=False)


@model_app.command("remove")
def model_remove(name: str) -> None:
    """Delete model NAME, or only deactivate it when runs refer to it (their history keeps its name)."""
    from yudai_solver.base.db import transaction
    from yudai_solver.base.errors import YudaiError
    from yudai_solver.solving.ai_models import find_model, remove_model

    try:
        with transaction(_migrated_factory(_settings())) as session:
            kept = remove_model(session, find_model(session, name).id)
    except YudaiError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
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
    import uvicorn

    from yudai_solver.dispatch.factory import create_dispatcher
    from yudai_solver.dispatch.jobqueue import is_job_queue
    from yudai_solver.entry.api import create_app

    settings = _settings()
    factory = _migrated_factory(settings)
    settings, choice = _serving_sandbox(settings, factory, runs_here=worker or not is_job_queue(settings))
    dispatcher = create_dispatcher(settings, factory, worker=worker)
    api = create_app(settings, session_factory=factory, dispatcher=dispatcher)
    api.state.sandbox_choice = choice
    uvicorn.run(api, host=host, port=port, log_level="info")


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
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    factory = _migrated_factory(settings)
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
    typer.echo(choice.message, err=True)
    if choice.warning:
        typer.echo(f"warning: {choice.warning}", err=True)
    return settings, choice


@app.command()
def solve(
    repo: Annotated[str, typer.Argument(help="https:// git URL, or a local repository path.")],
    model: Annotated[list[str], typer.Option("--model", help="Model name (repeat for several).")],
    issue: Annotated[int | None, typer.Option("--issue", help="Issue number.")] = None,
    issue_title: Annotated[str | None, typer.Option("--issue-title")] = None,
    issue_body: Annotated[str, typer.Option("--issue-body")] = "",
    temperature: Annotated[list[float] | None, typer.Option("--temperature", help="Repeat for several.")] = None,
    evolution: Annotated[
        list[str] | None, typer.Option("--evolution", help="baseline, minimal-fix, test-first, reproduce-first.")
    ] = None,
    max_parallel: Annotated[int | None, typer.Option("--max-parallel")] = None,
    time_budget: Annotated[int | None, typer.Option("--time-budget", help="Seconds for the whole solve.")] = None,
    cost_budget: Annotated[float | None, typer.Option("--cost-budget", help="USD for the whole solve.")] = None,
    early_stop: Annotated[bool, typer.Option("--early-stop", help="Cancel the rest once a run passes.")] = False,
    test_command: Annotated[str | None, typer.Option("--test-command")] = None,
    setup_command: Annotated[str | None, typer.Option("--setup-command")] = None,
    base_branch: Annotated[str, typer.Option("--base-branch")] = "main",
    wait: Annotated[bool, typer.Option("--wait", help="Show live progress until the solve ends.")] = False,
    server: Annotated[str, typer.Option("--server", envvar="YUDAI_SERVER")] = "http://127.0.0.1:8000",
    token: Annotated[str | None, typer.Option("--token", envvar="YUDAI_TOKEN")] = None,
    embedded: Annotated[
        bool, typer.Option("--embedded", help="Run everything in this process (SQLite default).")
    ] = False,
) -> None:
    """Submit a solve: every model x temperature x evolution is one run; the best passing one is the champion."""
    if issue is None and issue_title is None:
        raise typer.BadParameter("give --issue N, or --issue-title (and --issue-body)", param_hint="--issue")
    body: dict[str, Any] = {
        "repo_url": repo,
        "issue_number": issue or 1,
        "base_branch": base_branch,
        "issue_title": issue_title,
        "issue_body": issue_body if issue_title else None,
        "matrix": {"models": model, "temperatures": temperature or [0.0], "evolutions": evolution or ["baseline"]},
        "limits": {
            "max_parallel": max_parallel,
            "time_budget_s": time_budget,
            "cost_budget_usd": cost_budget,
            "early_stop": early_stop or None,
        },
        "test_command": test_command,
        "setup_command": setup_command,
    }
    body = {k: v for k, v in body.items() if v is not None}
    body["limits"] = {k: v for k, v in body["limits"].items() if v is not None}
    if embedded:
        _solve_embedded(_settings_allowing(repo), body)
        return
    if not token:
        raise typer.BadParameter("give --token or set YUDAI_TOKEN (or use --embedded)", param_hint="--token")
    from yudai_solver.entry.client import SolveClient

    _submit(SolveClient(server, token), body, wait=wait)


def _settings_allowing(repo: str) -> Settings:
    """Embedded settings that also allow the local repository the user named on the command line."""
    settings = _settings()
    if repo.startswith("https://"):
        return settings
    path = Path(repo.removeprefix("file://")).expanduser().resolve()
    roots = ":".join(filter(None, [settings.local_repo_roots, str(path.parent)]))
    return settings.model_copy(update={"local_repo_roots": roots})


def _solve_embedded(settings: Settings, body: dict[str, Any]) -> None:
    from yudai_solver.entry.client import SolveClient
    from yudai_solver.entry.embedded import embedded_server

    if not body["repo_url"].startswith("https://"):
        body["repo_url"] = str(Path(body["repo_url"].removeprefix("file://")).expanduser().resolve())
    with embedded_server(settings) as (url, token):
        _submit(SolveClient(url, token), body, wait=True)


def _submit(client: "SolveClient", body: dict[str, Any], *, wait: bool) -> None:
    from yudai_solver.entry.client import ApiError
    from yudai_solver.entry.watch import show_outcome, watch

    try:
        session_id = client.create_session(f"cli: {body['repo_url']}#{body['issue_number']}")
        started = client.start(session_id, body)
    except ApiError as exc:
        console.print(f"[red]{exc.message}[/]")
        raise typer.Exit(2) from None
    console.print(f"solve {started['solve_id']} started with {len(started['runs'])} runs (session {session_id})")
    if not wait:
        return
    status = watch(client, session_id, started["solve_id"], console)
    show_outcome(client, session_id, status, console)
    raise typer.Exit(0 if status["status"] == "completed" else 1)


@app.command()
def demo() -> None:
    """A first solve with no API key: a tiny repo with a failing test, three SCRIPTED models, the real pipeline."""
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


def main() -> None:
    """The `yudai` command: the app, with a server it cannot reach said in one line instead of a traceback."""
    import httpx

    try:
        app()
    except httpx.TransportError as exc:
        try:
            where = str(exc.request.url.copy_with(query=None))
        except RuntimeError:  # an error raised before any request was made
            where = "the server"
        console.print(f"[red]cannot reach {where}: {exc}[/] (is `yudai serve` running there? check --server)")
        raise SystemExit(2) from None

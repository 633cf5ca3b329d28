"""The `yudai` command: the edge where settings are read and everything else is built."""

from typing import Annotated

import typer
from rich.console import Console

from .settings import Settings

app = typer.Typer(help="yudai-solver: many coding-agent attempts per issue, the best one kept.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
user_app = typer.Typer(help="Users and API tokens.", no_args_is_help=True)
model_app = typer.Typer(help="The shared model catalogue.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(user_app, name="user")
app.add_typer(model_app, name="model")
console = Console()


def _settings() -> Settings:
    return Settings()


def _migrated_factory(settings: Settings):
    from .db import create_db_engine, create_session_factory
    from .migrate import upgrade

    upgrade(settings.resolved_database_url)
    return create_session_factory(create_db_engine(settings.resolved_database_url))


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Apply the schema migrations to YUDAI_DATABASE_URL."""
    from .migrate import upgrade

    settings = _settings()
    upgrade(settings.resolved_database_url, revision)
    console.print(f"database at {_safe_url(settings.resolved_database_url)} is at revision {revision}")


@user_app.command("create")
def user_create(
    name: str,
    admin: Annotated[bool, typer.Option("--admin", help="May add and change models.")] = False,
) -> None:
    """Create a user; the new API token is the last line of the output (shown once, stored hashed)."""
    from .db import transaction
    from .users import create_user

    with transaction(_migrated_factory(_settings())) as session:
        user, token = create_user(session, name=name, admin=admin)
        role = "admin" if user.is_admin else "user"
    console.print(f"created {role} {name!r} (id {user.id}); its API token follows, shown only this once:")
    print(token)


@model_app.command("add")
def model_add(
    name: str,
    provider: Annotated[str, typer.Option(help="litellm provider, e.g. openai, anthropic, openrouter.")],
    model_id: Annotated[str, typer.Option("--model-id", help="Model identifier for the provider's API.")],
    api_base: Annotated[str | None, typer.Option("--api-base", help="OpenAI-compatible server URL.")] = None,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens")] = None,
) -> None:
    """Add a model to the catalogue (API keys stay in the worker's environment, never in the database)."""
    from .ai_models import add_model
    from .db import transaction
    from .schemas import ModelConfig, ModelCreate

    spec = ModelCreate(
        name=name, provider=provider, model_id=model_id, config=ModelConfig(api_base=api_base, max_tokens=max_tokens)
    )
    with transaction(_migrated_factory(_settings())) as session:
        row = add_model(session, spec)
    console.print(f"added model {row.name!r} (id {row.id}): {row.provider}/{row.model_id}")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
) -> None:
    """Migrate the database, then serve the API (and execute runs in this process)."""
    import uvicorn

    from .api import create_app
    from .dispatch.factory import create_dispatcher

    settings = _settings()
    factory = _migrated_factory(settings)
    api = create_app(settings, session_factory=factory, dispatcher=create_dispatcher(settings, factory))
    uvicorn.run(api, host=host, port=port, log_level="info")


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def main() -> None:
    app()

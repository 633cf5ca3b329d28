"""The FastAPI application, built from one Settings object; errors become HTTP responses here and only here."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session, sessionmaker

from yudai_solver.base.db import create_db_engine, create_session_factory
from yudai_solver.base.errors import Unauthorized, YudaiError
from yudai_solver.base.settings import Settings
from yudai_solver.dispatch.protocol import Dispatcher, NullDispatcher
from yudai_solver.entry.api.routes import events, health, issues, models, sessions, solves, web, webhooks


def create_app(
    settings: Settings,
    *,
    session_factory: sessionmaker[Session] | None = None,
    dispatcher: Dispatcher | None = None,
) -> FastAPI:
    """An app whose dispatcher starts and stops with it; without a dispatcher, runs are left to other processes."""
    factory = session_factory or create_session_factory(create_db_engine(settings.resolved_database_url))
    chosen = dispatcher or NullDispatcher()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        chosen.start()
        try:
            yield
        finally:
            chosen.stop()

    app = FastAPI(title="yudai-solver", version="0.1.0", lifespan=lifespan)
    app.state.settings, app.state.session_factory, app.state.dispatcher = settings, factory, chosen
    for module in (health, sessions, models, issues, solves, events, webhooks, web):
        app.include_router(module.router)
    # The decorator form: Starlette types `add_exception_handler` for handlers of any Exception only.
    app.exception_handler(YudaiError)(_domain_error)
    return app


async def _domain_error(_request: Request, exc: YudaiError) -> JSONResponse:
    body = {"detail": exc.message}
    if exc.field:
        body["field"] = exc.field
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
    return JSONResponse(body, status_code=exc.status_code, headers=headers)

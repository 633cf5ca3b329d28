"""The FastAPI application, built from one Settings object; errors become HTTP responses here and only here."""

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session, sessionmaker

from yudai_solver.base.db import create_db_engine, create_session_factory
from yudai_solver.base.errors import Unauthorized, YudaiError
from yudai_solver.base.settings import Settings
from yudai_solver.dispatch.protocol import Dispatcher, NullDispatcher
from yudai_solver.entry.api.routes import events, grants, health, issues, models, sessions, solves, web, webhooks


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

    # A body limit keeps one request from holding the worker's memory; larger bodies answer 413 unread.
    app = FastAPI(title="yudai-solver", version="0.1.0", lifespan=lifespan, max_body_size=settings.max_request_bytes)
    app.state.settings, app.state.session_factory, app.state.dispatcher = settings, factory, chosen
    for module in (health, sessions, models, grants, issues, solves, events, webhooks, web):
        app.include_router(module.router)
    # The decorator form: Starlette types `add_exception_handler` for handlers of any Exception only.
    app.exception_handler(YudaiError)(_domain_error)
    app.exception_handler(RequestValidationError)(_invalid_request)
    return app


async def _invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
    # FastAPI's own answer, except that it echoes the input and JSON has no NaN or Infinity: a request carrying one
    # would turn its 422 into a 500.
    return JSONResponse({"detail": _finite(jsonable_encoder(exc.errors()))}, status_code=422)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


async def _domain_error(_request: Request, exc: YudaiError) -> JSONResponse:
    body = {"detail": exc.message}
    if exc.field:
        body["field"] = exc.field
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
    return JSONResponse(body, status_code=exc.status_code, headers=headers)

"""The FastAPI application, built from one Settings object; errors become HTTP responses here and only here."""

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from yudai_solver.base.db import create_db_engine, create_session_factory, is_contention
from yudai_solver.base.errors import Unauthorized, YudaiError
from yudai_solver.base.settings import Settings
from yudai_solver.dispatch.protocol import Dispatcher, NullDispatcher
from yudai_solver.entry.api.routes import events, grants, health, issues, models, sessions, solves, web, webhooks
from yudai_solver.entry.api.routes.metrics import instrument as instrument_metrics
from yudai_solver.entry.api.status_feed import DocumentCache, StatusFeeds

RETRY_AFTER_S = "1"


def create_app(
    settings: Settings,
    *,
    session_factory: sessionmaker[Session] | None = None,
    dispatcher: Dispatcher | None = None,
) -> FastAPI:
    """An app whose dispatcher starts and stops with it; without a dispatcher, runs are left to other processes."""
    factory = session_factory or create_session_factory(
        create_db_engine(settings.resolved_database_url, pool_size=settings.db_pool_size(api=True, runs=0))
    )
    engine = factory.kw["bind"]
    chosen = dispatcher or NullDispatcher()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Sync routes and dependencies run on anyio's thread pool: as many threads as the database pool was sized
        # for, so no request thread waits for a connection another request thread holds.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.api_threads
        chosen.start()
        try:
            yield
        finally:
            chosen.stop()

    # A body limit keeps one request from holding the worker's memory; larger bodies answer 413 unread.
    app = FastAPI(title="yudai-solver", version="0.1.0", lifespan=lifespan, max_body_size=settings.max_request_bytes)
    app.state.settings, app.state.session_factory, app.state.dispatcher = settings, factory, chosen
    # Requests read without SQLite's write lock (GET) or wait for it at most `api_wait_s` (the others).
    app.state.read_factory = create_session_factory(engine, read_only=True)
    app.state.write_factory = create_session_factory(engine, busy_timeout_s=settings.api_wait_s)
    app.state.status_feeds = StatusFeeds(app.state.read_factory)
    app.state.status_documents = DocumentCache()
    for module in (health, sessions, models, grants, issues, solves, events, webhooks, web):
        app.include_router(module.router)
    instrument_metrics(app)  # the request counters' middleware and GET /metrics
    # The decorator form: Starlette types `add_exception_handler` for handlers of any Exception only.
    app.exception_handler(YudaiError)(_domain_error)
    app.exception_handler(RequestValidationError)(_invalid_request)
    app.exception_handler(OperationalError)(_database_busy)
    app.exception_handler(PoolTimeout)(_database_busy)
    return app


async def _database_busy(_request: Request, exc: Exception) -> JSONResponse:
    if not is_contention(exc):
        raise exc
    return JSONResponse(
        {"detail": "the database is busy: retry shortly"}, status_code=503, headers={"Retry-After": RETRY_AFTER_S}
    )


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

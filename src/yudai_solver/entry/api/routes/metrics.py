"""`GET /metrics` in Prometheus' text format.

Two sources: HTTP requests are counted by this process as they pass (route template and status, never the raw path,
so the label set stays small); solves and runs are read from the database at scrape time, so every run counts
whichever process or worker machine executed it. The database figures are a few grouped queries, kept for
`_FRESH_S` seconds so that frequent scrapes cost nothing more.
"""

import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session, sessionmaker

from yudai_solver.base import statuses
from yudai_solver.base.errors import NotFound
from yudai_solver.base.models import Solve, SolveRun

router = APIRouter(tags=["metrics"])

_FRESH_S = 5.0
# Bucket bounds per figure: seconds a run took, tokens it used, dollars it cost.
_BUCKETS: dict[str, tuple[float, ...]] = {
    "duration_seconds": (10, 30, 60, 120, 300, 600, 1200, 1800, 3600),
    "tokens": (1_000, 5_000, 10_000, 50_000, 100_000, 500_000, 1_000_000),
    "cost_usd": (0.01, 0.05, 0.1, 0.5, 1, 5, 10),
}
_FIGURES = {
    "duration_seconds": SolveRun.latency_ms / 1000.0,
    "tokens": SolveRun.tokens,
    "cost_usd": SolveRun.cost,
}

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def instrument(app: FastAPI) -> None:
    """Give the app its own registry (so two apps in one process never share counters), the request counting
    middleware and the `/metrics` route. Call before the app starts; `YUDAI_METRICS=false` leaves the route out."""
    registry = CollectorRegistry()
    requests = Counter(
        "yudai_http_requests", "HTTP requests answered, by route template", ["method", "route", "status"],
        registry=registry,
    )  # fmt: skip
    seconds = Histogram(
        "yudai_http_request_duration_seconds", "Time to answer an HTTP request (streams: until they end)",
        ["method", "route"], registry=registry,
    )  # fmt: skip
    ProcessCollector(registry=registry)
    registry.register(_DatabaseCollector(app.state.session_factory))
    app.state.metrics_registry = registry
    app.add_middleware(_CountRequests, requests=requests, seconds=seconds)
    app.include_router(router)


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    if not request.app.state.settings.metrics:
        raise NotFound("metrics are turned off (YUDAI_METRICS=false)")
    return Response(generate_latest(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST)


class _CountRequests:
    """Pure ASGI middleware: it never buffers a body, so event streams pass through untouched."""

    def __init__(self, app: ASGIApp, *, requests: Counter, seconds: Histogram) -> None:
        self.app, self.requests, self.seconds = app, requests, seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            # The route's template (`/sessions/{session_id}/...`), never the path itself: ids would make a label
            # value per request. Paths no route matched share one value.
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope.get("method", "")
            self.requests.labels(method, route, str(status)).inc()
            self.seconds.labels(method, route).observe(time.perf_counter() - started)


class _DatabaseCollector(Collector):
    """Solves and runs as the database holds them, read at most once per `_FRESH_S` seconds."""

    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self.session_factory = session_factory
        self._kept: tuple[float, list[Metric]] | None = None

    def collect(self) -> Iterator[Metric]:
        now = time.monotonic()
        if self._kept is None or now - self._kept[0] > _FRESH_S:
            with self.session_factory() as session:
                self._kept = (now, [*_counts(session), *_histograms(session)])
        yield from self._kept[1]

    def describe(self) -> list[Metric]:
        return []  # read at scrape time only: registering must not query the database


def _counts(session: Session) -> list[Metric]:
    solves = GaugeMetricFamily("yudai_solves", "Solves by status", labels=["status"])
    for status, count in session.execute(select(Solve.status, func.count()).group_by(Solve.status)):
        solves.add_metric([status or "unknown"], count)
    runs = GaugeMetricFamily("yudai_runs", "Runs by status and model", labels=["status", "model"])
    queued = GaugeMetricFamily("yudai_queue_depth", "Runs waiting to start (pending)")
    pending = 0
    query = select(SolveRun.status, SolveRun.model, func.count()).group_by(SolveRun.status, SolveRun.model)
    for status, model, count in session.execute(query):
        runs.add_metric([status or "unknown", model], count)
        pending += count if status == statuses.PENDING else 0
    queued.add_metric([], pending)
    return [solves, runs, queued]


def _histograms(session: Session) -> list[Metric]:
    """Per model, over the runs that ended: how long they took, their tokens and their cost; one query."""
    columns: list[Any] = []
    for name, figure in _FIGURES.items():
        columns += [func.sum(case((figure <= bound, 1), else_=0)) for bound in _BUCKETS[name]]
        columns += [func.count(figure), func.coalesce(func.sum(figure), 0)]
    ended = SolveRun.status.in_(sorted(statuses.FINISHED))
    rows = session.execute(select(SolveRun.model, *columns).where(ended).group_by(SolveRun.model)).all()
    families = [
        HistogramMetricFamily(f"yudai_run_{name}", f"Runs that ended, by {name}", labels=["model"]) for name in _FIGURES
    ]
    for model, *values in rows:
        for family, name in zip(families, _FIGURES, strict=True):
            width = len(_BUCKETS[name]) + 2  # the buckets, then count and sum
            _observe(family, model, _BUCKETS[name], values[:width])
            values = values[width:]
    return [*families]


def _observe(family: HistogramMetricFamily, model: str, bounds: tuple[float, ...], values: list[Any]) -> None:
    *cumulative, count, total = (value or 0 for value in values)
    buckets = [(str(float(bound)), int(n)) for bound, n in zip(bounds, cumulative, strict=True)]
    family.add_metric([model], [*buckets, ("+Inf", int(count))], float(total))

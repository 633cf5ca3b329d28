"""`GET /metrics`: requests by route template and status, solves and runs as the database holds them."""

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import event

from yudai_solver.base.db import transaction
from yudai_solver.base.models import Solve, SolveRun
from yudai_solver.entry.api import create_app
from yudai_solver.entry.api.routes import metrics as metrics_route


def _scrape(client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = client.get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def _add_solve(session_factory) -> None:
    runs = [  # model, status, seconds, tokens, cost
        ("m1", "completed", 20, 4_000, 0.02),
        ("m1", "failed", 400, 60_000, 0.4),
        ("m2", "completed", 50, 2_000, None),
        ("m2", "pending", None, None, None),
        ("m2", "running", None, 100, 0.001),
    ]
    with transaction(session_factory) as session:
        session.add(Solve(id="s1", repo_url="https://github.com/acme/w", issue_number=1, matrix={}, status="running"))
        session.flush()
        for i, (model, status, seconds, tokens, cost) in enumerate(runs):
            session.add(
                SolveRun(
                    id=f"r{i}", solve_id="s1", model=model, temperature=0.0, max_edits=5, evolution="baseline",
                    status=status, latency_ms=None if seconds is None else seconds * 1000, tokens=tokens, cost=cost,
                )
            )  # fmt: skip


def test_requests_are_counted_by_route_template_and_status(api):
    for _ in range(2):
        api.client.get("/health")
    api.client.get("/sessions/12345/solves")  # no token: 401
    api.client.get("/no/such/path/987")
    samples = _scrape(api.client)

    def requests(route, status):
        return samples.get(("yudai_http_requests_total", (("method", "GET"), ("route", route), ("status", status))))

    assert requests("/health", "200") == 2
    assert requests("/sessions/{session_id}/solves", "401") == 1
    assert requests("unmatched", "404") == 1
    assert not any("12345" in str(labels) or "987" in str(labels) for _, labels in samples)  # no ids in labels
    count = ("yudai_http_request_duration_seconds_count", (("method", "GET"), ("route", "/health")))
    assert samples[count] == 2


def test_solves_and_runs_are_read_from_the_database(api, monkeypatch):
    monkeypatch.setattr(metrics_route, "_FRESH_S", 0.0)
    _add_solve(api.session_factory)
    samples = _scrape(api.client)
    assert samples[("yudai_solves", (("status", "running"),))] == 1
    assert samples[("yudai_runs", (("model", "m1"), ("status", "completed")))] == 1
    assert samples[("yudai_runs", (("model", "m2"), ("status", "pending")))] == 1
    assert samples[("yudai_queue_depth", ())] == 1

    # Histograms over the runs that ended, per model: cumulative buckets, count and sum.
    def sample(name, model, le=None):
        labels = (("le", le), ("model", model)) if le else (("model", model),)
        return samples[(name, labels)]

    assert sample("yudai_run_duration_seconds_bucket", "m1", "30.0") == 1
    assert sample("yudai_run_duration_seconds_bucket", "m1", "600.0") == 2
    assert sample("yudai_run_duration_seconds_count", "m1") == 2
    assert sample("yudai_run_duration_seconds_sum", "m1") == 420
    assert sample("yudai_run_tokens_bucket", "m1", "5000.0") == 1
    assert sample("yudai_run_tokens_bucket", "m1", "+Inf") == 2
    assert sample("yudai_run_cost_usd_count", "m2") == 0  # its one ended run has no cost: not observed
    assert sample("yudai_run_tokens_count", "m2") == 1  # the running run is not counted until it ends


def test_a_second_scrape_soon_after_does_not_query_the_database(api):
    _scrape(api.client)
    engine = api.session_factory.kw["bind"]
    statements = []

    def record(_conn, _cursor, statement, *_args):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        _scrape(api.client)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert not [s for s in statements if "solve_runs" in s]


def test_metrics_can_be_turned_off(api):
    settings = api.settings.model_copy(update={"metrics": False})
    with TestClient(create_app(settings, session_factory=api.session_factory)) as client:
        assert client.get("/metrics").status_code == 404

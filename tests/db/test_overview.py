"""The page's overviews on both databases: each session's latest solve, and the figures per model."""

from datetime import UTC, datetime, timedelta

from yudai_solver.base.db import transaction
from yudai_solver.base.models import ChatSession, Solve, SolveRun, User

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _seed(session_factory, user_name: str) -> None:
    with transaction(session_factory) as session:
        user_id = session.query(User.id).filter_by(name=user_name).scalar()
        session.add_all([ChatSession(id=1, user_id=user_id, title="a"), ChatSession(id=2, user_id=user_id)])
        session.flush()
        for i, title in enumerate(["older", "newer"]):
            session.add(
                Solve(id=f"s{i}", user_id=user_id, session_id=1, repo_url="https://github.com/acme/w", issue_number=i,
                      issue_title=title, matrix={}, status="completed", created_at=T0 + timedelta(minutes=i))
            )  # fmt: skip
        session.flush()
        runs = [("s0", "m1", "completed", True, 0.01, 1000), ("s1", "m1", "completed", False, 0.03, 3000),
                ("s1", "m1", "completed", True, 0.02, 2000), ("s1", "m2", "cancelled", None, None, None)]  # fmt: skip
        for i, (solve_id, model, status, passed, cost, ms) in enumerate(runs):
            session.add(
                SolveRun(id=f"r{i}", solve_id=solve_id, model=model, temperature=0.0, max_edits=5,
                         evolution="baseline", status=status, tests_passed=passed, cost=cost, latency_ms=ms)
            )  # fmt: skip
        session.flush()
        session.get(Solve, "s1").champion_run_id = "r2"


def test_sessions_show_their_latest_solve_and_its_champion(api):
    headers = api.user("viewer")
    _seed(api.session_factory, "viewer")
    other = api.user("other")
    items = api.client.get("/overview/sessions", headers=headers).json()
    assert [s["id"] for s in items] == [2, 1]
    assert items[0]["solves"] == 0 and items[0]["solve_id"] is None
    latest = items[1]
    assert (latest["solves"], latest["solve_id"], latest["issue_title"]) == (2, "s1", "newer")
    assert (latest["status"], latest["champion_run_id"], latest["champion_model"]) == ("completed", "r2", "m1")
    assert api.client.get("/overview/sessions", headers=other).json() == []


def test_models_show_pass_rate_champions_and_medians(api):
    headers = api.user("viewer")
    _seed(api.session_factory, "viewer")
    stats = api.client.get("/overview/models", headers=headers).json()
    m1, m2 = stats
    assert (m1["model"], m1["runs"], m1["runs_ended"], m1["runs_passed"], m1["champions"]) == ("m1", 3, 3, 2, 1)
    assert m1["pass_rate"] == 2 / 3 and m1["median_cost"] == 0.02 and m1["median_latency_ms"] == 2000
    assert (m2["runs"], m2["runs_ended"], m2["pass_rate"], m2["median_cost"]) == (1, 0, None, None)
    assert api.client.get("/overview/models").status_code == 401

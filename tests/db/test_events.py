"""The event stream: a status event per change and an `end` event when the solve finishes."""

import json
import threading
import time

from yudai_solver.base import statuses
from yudai_solver.base.db import transaction
from yudai_solver.base.models import Solve, SolveRun

from .test_api import alice, start_body  # noqa: F401 - alice is a fixture


def read_events(response) -> list[tuple[str, dict]]:
    events, name = [], None
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            events.append((name, json.loads(line.removeprefix("data: "))))
            if name == "end":
                break
    return events


def test_events_follow_the_solve_until_it_ends(api, alice):
    headers, session_id = alice
    solve_id = api.client.post(f"/sessions/{session_id}/solve/start", json=start_body(), headers=headers).json()[
        "solve_id"
    ]

    def progress():
        for target in ("running", "completed"):
            time.sleep(0.7)
            with transaction(api.session_factory) as session:
                solve = session.get(Solve, solve_id)
                run = session.query(SolveRun).filter_by(solve_id=solve_id).one()
                statuses.transition(run, target)
                if solve.status != target:
                    statuses.transition(solve, target)

    writer = threading.Thread(target=progress)
    writer.start()
    with api.client.stream("GET", f"/sessions/{session_id}/solve/{solve_id}/events", headers=headers) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        events = read_events(response)
    writer.join()
    seen = [(name, data["status"]) for name, data in events]
    assert seen == [("status", "pending"), ("status", "running"), ("status", "completed"), ("end", "completed")]
    assert events[2][1]["progress"]["runs_completed"] == 1


def test_events_of_someone_elses_solve_are_404(api, alice):
    headers, session_id = alice
    solve_id = api.client.post(f"/sessions/{session_id}/solve/start", json=start_body(), headers=headers).json()[
        "solve_id"
    ]
    bob = api.user("bob")
    assert api.client.get(f"/sessions/{session_id}/solve/{solve_id}/events", headers=bob).status_code == 404
    assert api.client.get(f"/sessions/{session_id}/solve/{solve_id}/events").status_code == 401

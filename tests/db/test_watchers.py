"""Many watchers: versioned status with ETag/304, one document per change shared by every listener, resumable
streams, and SQLite reads that never wait on a writer while writers wait a bounded time then answer 503."""

import json
import sqlite3
import threading
import time

import anyio.to_thread
import pytest
from fastapi.testclient import TestClient

from yudai_solver.base import statuses
from yudai_solver.base.db import create_db_engine, create_session_factory, transaction
from yudai_solver.base.migrate import upgrade
from yudai_solver.base.models import Solve, SolveRun
from yudai_solver.base.settings import Settings
from yudai_solver.entry.api import create_app
from yudai_solver.solving import solves
from yudai_solver.solving.users import create_user

from .test_api import alice, start_body  # noqa: F401 - alice is a fixture


def _start(api, headers, session_id, **overrides) -> str:
    response = api.client.post(f"/sessions/{session_id}/solve/start", json=start_body(**overrides), headers=headers)
    assert response.status_code == 201, response.text
    return response.json()["solve_id"]


def _set_run(api, solve_id: str, **values) -> None:
    with transaction(api.session_factory) as session:
        run = session.query(SolveRun).filter_by(solve_id=solve_id).first()
        for key, value in values.items():
            setattr(run, key, value)


def _count_builds(monkeypatch) -> list[str]:
    built: list[str] = []
    real = solves.status_of

    def counting(session, solve, version=None):
        built.append(solve.id)
        return real(session, solve, version)

    monkeypatch.setattr(solves, "status_of", counting)
    return built


def test_an_unchanged_status_answers_304_without_building_the_document(api, alice, monkeypatch):
    headers, session_id = alice
    solve_id = _start(api, headers, session_id)
    url = f"/sessions/{session_id}/solve/status/{solve_id}"
    built = _count_builds(monkeypatch)

    first = api.client.get(url, headers=headers)
    etag = first.headers["etag"]
    assert first.status_code == 200 and etag == f'W/"{first.json()["version"]}"'
    unchanged = api.client.get(url, headers=headers | {"If-None-Match": etag})
    strong_form = api.client.get(url, headers=headers | {"If-None-Match": etag.removeprefix("W/")})
    assert (unchanged.status_code, unchanged.content, unchanged.headers["etag"]) == (304, b"", etag)
    assert strong_form.status_code == 304
    assert len(built) == 1  # the 304s built nothing
    assert api.client.get(url, headers=headers).content == first.content and len(built) == 1  # nor a repeat

    _set_run(api, solve_id, tokens=1234)
    changed = api.client.get(url, headers=headers | {"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    assert changed.json()["runs"][0]["tokens"] == 1234


def test_a_304_is_only_for_the_owner(api, alice):
    headers, session_id = alice
    solve_id = _start(api, headers, session_id)
    url = f"/sessions/{session_id}/solve/status/{solve_id}"
    etag = api.client.get(url, headers=headers).headers["etag"]
    assert api.client.get(url, headers=api.user("bob") | {"If-None-Match": etag}).status_code == 404


def _events(response) -> list[tuple[str | None, str, str]]:
    """(id, event, data) of each event until `end`."""
    found, event_id, name = [], None, None
    for line in response.iter_lines():
        if line.startswith("id: "):
            event_id = line.removeprefix("id: ")
        elif line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            found.append((event_id if name == "status" else None, name, line.removeprefix("data: ")))
            event_id = None
            if name == "end":
                break
    return found


def test_listeners_of_one_solve_share_one_document_per_change(api, alice, monkeypatch):
    headers, session_id = alice
    solve_id = _start(api, headers, session_id)
    built = _count_builds(monkeypatch)
    url = f"/sessions/{session_id}/solve/{solve_id}/events"
    seen: dict[int, list] = {}

    def listen(index: int) -> None:
        with api.client.stream("GET", url, headers=headers) as response:
            seen[index] = _events(response)

    listeners = [threading.Thread(target=listen, args=(i,)) for i in range(8)]
    for listener in listeners:
        listener.start()
    time.sleep(1.0)
    for target in ("running", "completed"):
        with transaction(api.session_factory) as session:
            run = session.query(SolveRun).filter_by(solve_id=solve_id).one()
            statuses.transition(run, target)
            statuses.transition(session.get(Solve, solve_id), target)
        time.sleep(0.8)
    for listener in listeners:
        listener.join(timeout=20)

    assert len(seen) == 8
    assert all(events == seen[0] for events in seen.values())  # the same text, ids included
    names = [(name, json.loads(data)["status"]) for _, name, data in seen[0]]
    assert names == [("status", "pending"), ("status", "running"), ("status", "completed"), ("end", "completed")]
    assert len(built) == 3  # once per change, not once per listener


def test_a_stream_resumed_with_last_event_id_sends_only_what_is_new(api, alice):
    headers, session_id = alice
    solve_id = _start(api, headers, session_id)
    url = f"/sessions/{session_id}/solve/{solve_id}/events"
    with transaction(api.session_factory) as session:
        run = session.query(SolveRun).filter_by(solve_id=solve_id).one()
        statuses.transition(run, "running")
        statuses.transition(run, "completed")
        statuses.transition(session.get(Solve, solve_id), "running")
        statuses.transition(session.get(Solve, solve_id), "completed")

    with api.client.stream("GET", url, headers=headers) as response:
        first = _events(response)
    last_id = first[0][0]
    assert [name for _, name, _ in first] == ["status", "end"] and last_id

    with api.client.stream("GET", url, headers=headers | {"Last-Event-ID": last_id}) as response:
        resumed = _events(response)
    with api.client.stream("GET", url, headers=headers | {"Last-Event-ID": "1-2-3"}) as response:
        stale = _events(response)
    assert [name for _, name, _ in resumed] == ["end"]
    assert [name for _, name, _ in stale] == ["status", "end"]


@pytest.fixture
def sqlite_api(tmp_path):
    """An app on a SQLite file whose writers wait at most 0.3 s for the write lock."""
    url = f"sqlite:///{tmp_path / 'yudai.db'}"
    upgrade(url)
    engine = create_db_engine(url)
    factory = create_session_factory(engine)
    with transaction(factory) as session:
        _, token = create_user(session, name="alice")
    settings = Settings(database_url=url, data_dir=tmp_path / "data", api_wait_s=0.3)
    with TestClient(create_app(settings, session_factory=factory)) as client:
        yield client, {"Authorization": f"Bearer {token}"}, tmp_path / "yudai.db"
    engine.dispose()


def test_on_sqlite_readers_go_on_while_a_writer_holds_the_lock_and_writers_answer_503(sqlite_api):
    client, headers, path = sqlite_api
    assert client.post("/sessions", json={"title": "before"}, headers=headers).status_code == 201
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process writing, for as long as it likes
    try:
        began = time.monotonic()
        read = client.get("/sessions", headers=headers)
        read_s = time.monotonic() - began
        began = time.monotonic()
        write = client.post("/sessions", json={"title": "during"}, headers=headers)
        write_s = time.monotonic() - began
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    assert read.status_code == 200 and [s["title"] for s in read.json()] == ["before"]
    assert read_s < 1.0  # before: every request took the write lock at BEGIN and waited the 30 s busy timeout
    assert (write.status_code, write.headers.get("retry-after")) == (503, "1"), write.text
    assert "busy" in write.json()["detail"] and write_s < 3.0
    after = client.post("/sessions", json={"title": "after"}, headers=headers)
    assert after.status_code == 201
    assert sorted(s["title"] for s in client.get("/sessions", headers=headers).json()) == ["after", "before"]


def test_a_finished_solve_s_stream_waits_for_the_pull_request_it_asked_for(api, alice):
    headers, session_id = alice
    solve_id = _start(api, headers, session_id, create_pr=True)
    with transaction(api.session_factory) as session:
        run = session.query(SolveRun).filter_by(solve_id=solve_id).one()
        statuses.transition(run, "running")
        statuses.transition(run, "completed")
        solve = session.get(Solve, solve_id)
        statuses.transition(solve, "running")
        statuses.transition(solve, "completed")
        solve.champion_run_id = run.id

    def open_pr() -> None:
        time.sleep(1.0)
        _set_run(api, solve_id, pr_url="https://github.com/acme/calc/pull/1")

    opener = threading.Thread(target=open_pr)
    opener.start()
    with api.client.stream("GET", f"/sessions/{session_id}/solve/{solve_id}/events", headers=headers) as response:
        events = _events(response)
    opener.join()
    prs = [(name, json.loads(data).get("pr", {}).get("state")) for _, name, data in events]
    assert prs == [("status", "pending"), ("status", "opened"), ("end", None)]


def test_a_status_poll_crosses_the_thread_pool_once_and_a_start_four_times(api, alice, monkeypatch):
    # Each crossing is a thread switch and a wait for the GIL, which cost a 304 more than its own work (see
    # docs/benchmarks.md): a plain `def` dependency added to these routes would add one per request.
    headers, session_id = alice
    crossings: list[str] = []
    real = anyio.to_thread.run_sync

    async def counting(func, *args, **kwargs):
        crossings.append(getattr(getattr(func, "func", func), "__qualname__", "?"))
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
    solve_id = _start(api, headers, session_id)
    started = list(crossings)
    crossings.clear()
    polled = api.client.get(f"/sessions/{session_id}/solve/status/{solve_id}", headers=headers)
    assert polled.status_code == 200
    assert (len(started), len(crossings)) == (4, 1), (started, crossings)

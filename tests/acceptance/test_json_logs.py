"""`YUDAI_LOG_FORMAT=json`: the real CLI's log is one JSON object per line, library loggers included."""

import json
import logging
import os
import signal
import subprocess
import sys
import threading

import pytest
from pydantic import ValidationError

from yudai_solver.base.settings import Settings
from yudai_solver.entry.logs import configure_logging, uvicorn_log_config

pytestmark = pytest.mark.slow  # seconds each: not in the fast tier

YUDAI = [sys.executable, "-m", "yudai_solver"]


def _lines(stream, into: list[str], seen: threading.Event) -> None:
    for raw in stream:
        into.append(raw.decode(errors="replace").rstrip("\n"))
        if '"logger": "procrastinate' in into[-1]:  # the worker is up: its queue library has spoken
            seen.set()


def test_a_worker_started_with_json_logs_writes_json_lines(fresh_pg_database, tmp_path):
    env = {
        **os.environ,
        "YUDAI_DATABASE_URL": fresh_pg_database,
        "YUDAI_DATA_DIR": str(tmp_path),
        "YUDAI_LOG_FORMAT": "json",
        "YUDAI_SANDBOX": "local",
    }
    worker = subprocess.Popen([*YUDAI, "worker", "--concurrency", "1"], env=env, stderr=subprocess.PIPE)
    lines: list[str] = []
    seen = threading.Event()
    reader = threading.Thread(target=_lines, args=(worker.stderr, lines, seen), daemon=True)
    reader.start()
    try:
        assert seen.wait(90), "\n".join(lines[-30:])
        # And it yields the CPU to the API's process on a shared machine (YUDAI_WORKER_NICE, 5).
        assert os.getpriority(os.PRIO_PROCESS, worker.pid) == os.getpriority(os.PRIO_PROCESS, 0) + 5
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
        reader.join(timeout=10)
    records = [json.loads(line) for line in lines if line.startswith("{")]
    first = records[0]
    assert {"event", "level", "logger", "timestamp"} <= first.keys()
    assert first["timestamp"].endswith("Z") and first["level"] in {"debug", "info", "warning", "error"}
    assert any(r["logger"].startswith("procrastinate") for r in records)  # a library's logger, as JSON too


def test_serve_started_with_json_logs_writes_only_json_lines(tmp_path):
    import httpx

    from tests.helpers import free_port, wait_for

    env = {k: v for k, v in os.environ.items() if not k.startswith("YUDAI_")}
    env |= {"YUDAI_DATA_DIR": str(tmp_path), "YUDAI_LOG_FORMAT": "json", "YUDAI_SANDBOX": "local"}
    port = free_port()
    server = subprocess.Popen([*YUDAI, "serve", "--port", str(port)], env=env, stderr=subprocess.PIPE)
    lines: list[str] = []
    reader = threading.Thread(target=_lines, args=(server.stderr, lines, threading.Event()), daemon=True)
    reader.start()
    try:
        wait_for(lambda: _answers(httpx, f"http://127.0.0.1:{port}/health") or server.poll() is not None, timeout=60)
        wait_for(lambda: any("/health" in line for line in lines), timeout=10)  # the access line, as JSON
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        reader.join(timeout=10)
    records = [json.loads(line) for line in lines]  # every line: no plain uvicorn line in between
    assert any(r["logger"] == "uvicorn.error" and "startup complete" in r["event"] for r in records), lines
    assert any(r["logger"] == "uvicorn.access" and "/health" in r["event"] for r in records), lines


def _answers(httpx, url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_json_line_carries_the_exception_and_the_message_arguments(capfd):
    root = logging.getLogger()
    kept = root.handlers[:], root.level
    try:
        configure_logging("json")
        try:
            raise RuntimeError("sandbox gone")
        except RuntimeError:
            logging.getLogger("yudai_solver.test").exception("run %s failed", "r1")
    finally:
        root.handlers, root.level = kept
    line = json.loads(capfd.readouterr().err.strip().splitlines()[-1])
    assert line["event"] == "run r1 failed" and line["logger"] == "yudai_solver.test" and line["level"] == "error"
    assert "RuntimeError: sandbox gone" in line["exception"]


def test_text_stays_the_default_and_an_unknown_format_is_refused(monkeypatch):
    assert Settings().log_format == "text"
    monkeypatch.setenv("YUDAI_LOG_FORMAT", "xml")
    with pytest.raises(ValidationError, match="log_format"):
        Settings()
    json_config = uvicorn_log_config("json")
    assert json_config["loggers"]["uvicorn.access"] == {"handlers": [], "propagate": True}

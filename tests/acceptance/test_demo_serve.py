"""`yudai demo --serve`: the whole service without a key, as a newcomer tries it — the printed `yudai solve` line
pasted as is, the web page, and a busy port said before anything starts."""

import os
import shlex
import signal
import subprocess
import time

import httpx
import pytest

from tests.acceptance.test_cli import YUDAI, yudai
from tests.helpers import free_port, wait_for

pytestmark = pytest.mark.slow


def environment(data_dir) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("YUDAI_")}
    return env | {"YUDAI_DATA_DIR": str(data_dir), "COLUMNS": "200"}


def up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def demo_service(tmp_path):
    """The running `yudai demo --serve` process, its URL and the lines it printed before serving."""
    port = free_port()
    process = subprocess.Popen(
        [*YUDAI, "demo", "--serve", "--port", str(port)],
        env=environment(tmp_path / "data"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("Ctrl-C"):
                break
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: up(url) or process.poll() is not None, timeout=60)
        assert process.poll() is None, "\n".join(lines) + (process.stderr.read() if process.stderr else "")
        yield process, url, lines
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()


def printed(lines: list[str], label: str) -> str:
    (line,) = [line for line in lines if line.startswith(f"{label}:")]
    return line.split(":", 1)[1].strip().split(" ")[0]


def test_the_printed_solve_line_solves_the_demo_repository_through_the_server(demo_service, tmp_path):
    process, url, lines = demo_service
    (command,) = [line.strip() for line in lines if line.strip().startswith("yudai solve ")]
    args = shlex.split(command)
    assert args[0] == "yudai" and f"--server={url}" in command.replace("--server ", "--server=")
    done = subprocess.run(
        [*YUDAI, *args[1:]], env=environment(tmp_path / "elsewhere"), capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "champion" in done.stdout and "scripted-minimal-fix" in done.stdout.split("champion", 1)[1]
    assert "+    return a + b" in done.stdout

    token = printed(lines, "token")
    assert printed(lines, "web page") == f"{url}/ui#token={printed(lines, 'token')}"
    assert "<html" in httpx.get(f"{url}/ui").text.lower()
    sessions = httpx.get(f"{url}/sessions", headers={"Authorization": f"Bearer {token}"})
    assert sessions.status_code == 200 and len(sessions.json()) == 1
    models = httpx.get(f"{url}/models", headers={"Authorization": f"Bearer {token}"}).json()
    assert {m["name"] for m in models} == {"scripted-minimal-fix", "scripted-rewrite", "scripted-noop"}


def test_a_busy_port_fails_at_once_for_demo_serve_and_serve(demo_service, tmp_path):
    _process, url, _lines = demo_service
    port = url.rsplit(":", 1)[1]
    for command in (["demo", "--serve", "--port", port], ["serve", "--port", port]):
        started = time.monotonic()
        done = yudai(*command, data_dir=tmp_path / "other", timeout=60)
        said = done.stdout + done.stderr
        assert done.returncode == 2, said
        assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in said
        assert "Application startup complete" not in said and "Traceback" not in said
        assert time.monotonic() - started < 20
    assert list(tmp_path.glob("other/**/yudai.db")) == []  # nothing migrated or created before the port was checked

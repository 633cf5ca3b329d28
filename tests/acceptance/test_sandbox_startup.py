"""The real `yudai serve` and `yudai worker` on a database with two users: which sandbox they start with, what
they say about it (stderr, `GET /health`), and that they refuse `local` unless the operator opted in."""

import os
import shutil
import subprocess
import time

import httpx
import pytest

from tests.acceptance.test_cli import YUDAI
from tests.helpers import free_port
from yudai_solver.base.db import transaction
from yudai_solver.solving.users import create_user

pytestmark = pytest.mark.slow

needs_bwrap = pytest.mark.skipif(
    shutil.which("bwrap") is None or os.geteuid() != 0, reason="needs bubblewrap and a root worker"
)


@pytest.fixture
def shared(session_factory, database_url, tmp_path) -> dict[str, str]:
    """The environment of a service whose database has two users."""
    with transaction(session_factory) as session:
        create_user(session, name="owner")
        create_user(session, name="mallory")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("YUDAI_")}
    return environment | {"YUDAI_DATA_DIR": str(tmp_path / "data"), "YUDAI_DATABASE_URL": database_url}


def start(command: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*YUDAI, *command], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def health(process: subprocess.Popen[str], port: int) -> dict:
    deadline = time.monotonic() + 90
    while True:
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/health")
            if response.status_code == 200:
                return response.json()
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline and process.poll() is None, "yudai serve did not come up"
        time.sleep(0.2)


def stop(process: subprocess.Popen[str]) -> str:
    """Terminate the process; its stderr."""
    process.terminate()
    try:
        return process.communicate(timeout=30)[1]
    except subprocess.TimeoutExpired:
        process.kill()
        return process.communicate()[1]


def test_serve_refuses_local_for_two_users_without_the_acknowledgement(shared):
    process = start(["serve", "--port", str(free_port())], shared | {"YUDAI_SANDBOX": "local"})
    try:
        process.wait(timeout=90)
    finally:
        stderr = stop(process)

    assert process.returncode == 2, stderr
    assert "refusing to start" in stderr and "2 users" in stderr
    assert "YUDAI_ALLOW_SHARED_LOCAL_SANDBOX=true" in stderr


@needs_bwrap
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_serve_left_without_a_sandbox_setting_picks_bubblewrap_and_says_so(shared):
    port = free_port()
    process = start(["serve", "--port", str(port)], shared)
    try:
        said = health(process, port)
    finally:
        stderr = stop(process)

    assert said["sandbox"]["name"] == "bubblewrap" and said["sandbox"]["isolates"] is True, said
    assert "sandbox: bubblewrap (picked: bubblewrap runs here)" in stderr


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_serve_on_local_acknowledged_starts_and_warns_at_start_and_in_health(shared):
    port = free_port()
    env = shared | {"YUDAI_SANDBOX": "local", "YUDAI_ALLOW_SHARED_LOCAL_SANDBOX": "true"}
    process = start(["serve", "--port", str(port)], env)
    try:
        said = health(process, port)
    finally:
        stderr = stop(process)

    assert (said["sandbox"]["name"], said["sandbox"]["isolates"]) == ("local", False)
    assert "acknowledged" in said["sandbox"]["warning"]
    assert "warning: shared use of the local sandbox acknowledged" in stderr


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_worker_refuses_local_for_two_users_without_the_acknowledgement(shared):
    process = start(["worker"], shared | {"YUDAI_SANDBOX": "local"})
    try:
        process.wait(timeout=90)
    finally:
        stderr = stop(process)

    assert process.returncode == 2, stderr
    assert "refusing to start" in stderr and "local" in stderr

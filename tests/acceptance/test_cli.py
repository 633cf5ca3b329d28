"""The real `yudai` command as a subprocess, as a newcomer runs it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import free_port

pytestmark = pytest.mark.slow

YUDAI = [sys.executable, "-m", "yudai_solver"]


def yudai(*args: str, data_dir: Path, timeout: float = 180, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("YUDAI_")}
    environment |= {"YUDAI_DATA_DIR": str(data_dir), "COLUMNS": "200", **env}
    return subprocess.run([*YUDAI, *args], capture_output=True, text=True, timeout=timeout, env=environment)


def test_help_lists_the_commands_in_the_order_a_newcomer_uses_them(tmp_path):
    out = yudai("--help", data_dir=tmp_path).stdout
    listed = [line.split()[1] for line in out.split("Commands", 1)[1].splitlines() if line[2:3].isalpha()]
    assert listed == ["demo", "solve", "model", "serve", "user", "grant", "worker", "db"], out


def test_every_argument_and_option_of_every_command_has_help_text():
    import typer

    from yudai_solver.entry.cli import app

    def silent(command, path):
        for name, sub in getattr(command, "commands", {}).items():
            yield from silent(sub, [*path, name])
        yield from (f"{' '.join(path)} {p.name}" for p in command.params if not getattr(p, "help", None))
        if not command.help:
            yield f"{' '.join(path)} (the command itself)"

    assert list(silent(typer.main.get_command(app), ["yudai"])) == []


def test_a_server_that_is_down_is_one_line_naming_its_url(tmp_path):
    port = free_port()  # nothing listens there
    done = yudai(
        "solve", str(tmp_path), "--server", f"http://127.0.0.1:{port}", "--token", "t", "--model", "m",
        "--issue", "1", "--base-branch", "main", data_dir=tmp_path / "data", timeout=120,
    )  # fmt: skip
    said = (done.stdout + done.stderr).strip()
    assert done.returncode == 2 and "Traceback" not in said and len(said.splitlines()) <= 2, said
    assert said.startswith(f"cannot reach http://127.0.0.1:{port}/")


def test_user_create_prints_a_token_last_and_stores_only_its_hash(tmp_path):
    done = yudai("user", "create", "alice", data_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip().splitlines()[-1]
    assert token.startswith("yd_") and len(token) > 30
    assert token.encode() not in (tmp_path / "yudai.db").read_bytes()
    assert "admin" in done.stdout  # the first user of a fresh database


def test_model_add_then_db_upgrade_is_idempotent(tmp_path):
    done = yudai(
        "model",
        "add",
        "local",
        "--provider",
        "openai",
        "--model-id",
        "qwen",
        "--api-base",
        "http://127.0.0.1:9/v1",
        data_dir=tmp_path,
    )
    assert done.returncode == 0 and "openai/qwen" in done.stdout, done.stderr
    assert yudai("db", "upgrade", data_dir=tmp_path).returncode == 0


def test_demo_solves_the_failing_test_with_scripted_models(tmp_path):
    done = yudai("demo", data_dir=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SCRIPTED" in done.stdout and "champion" in done.stdout
    assert "scripted-minimal-fix" in done.stdout.split("champion", 1)[1]
    assert "+    return a + b" in done.stdout


def test_serve_then_solve_against_the_server_with_wait(tmp_path):
    import time

    import httpx

    from yudai_solver.entry.demo import SCRIPTS, TEST_COMMAND, create_repository
    from yudai_solver.testing.scripted import ScriptedChatServer

    repo = create_repository(tmp_path / "repos" / "calc")
    env = {"YUDAI_LOCAL_REPO_ROOTS": str(tmp_path / "repos")}
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("YUDAI_")}
    environment |= {"YUDAI_DATA_DIR": str(tmp_path / "data"), **env}
    server = subprocess.Popen(
        [*YUDAI, "serve", "--port", str(port)], env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "yudai serve did not come up"
            time.sleep(0.2)
        token = yudai("user", "create", "ci", data_dir=tmp_path / "data", **env).stdout.strip().splitlines()[-1]
        with ScriptedChatServer(SCRIPTS) as chat:
            added = yudai(
                "model",
                "add",
                "fixer",
                "--provider",
                "openai",
                "--model-id",
                "scripted-minimal-fix",
                "--api-base",
                chat.base_url,
                data_dir=tmp_path / "data",
                **env,
            )
            assert added.returncode == 0, added.stderr
            done = yudai(
                "solve",
                str(repo),
                "--server",
                f"http://127.0.0.1:{port}",
                "--token",
                token,
                "--model",
                "fixer",
                "--issue-title",
                "add subtracts",
                "--test-command",
                TEST_COMMAND,
                "--wait",
                data_dir=tmp_path / "data",
                **env,
            )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "champion" in done.stdout and "+    return a + b" in done.stdout
        assert "tests before any change: fail" in done.stdout
    finally:
        server.terminate()
        server.wait(timeout=30)

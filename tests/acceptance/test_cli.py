"""The real `yudai` command as a subprocess, as a newcomer runs it."""

import os
import subprocess
import sys
from pathlib import Path

YUDAI = [sys.executable, "-m", "yudai_solver"]


def yudai(*args: str, data_dir: Path, timeout: float = 180, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("YUDAI_")}
    environment |= {"YUDAI_DATA_DIR": str(data_dir), "COLUMNS": "200", **env}
    return subprocess.run([*YUDAI, *args], capture_output=True, text=True, timeout=timeout, env=environment)


def test_help_lists_the_commands(tmp_path):
    out = yudai("--help", data_dir=tmp_path).stdout
    for command in ("serve", "db", "user", "model", "solve", "demo"):
        assert command in out


def test_user_create_prints_a_token_last_and_stores_only_its_hash(tmp_path):
    done = yudai("user", "create", "alice", data_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip().splitlines()[-1]
    assert token.startswith("yd_") and len(token) > 30
    assert token.encode() not in (tmp_path / "yudai.db").read_bytes()
    assert "admin" in done.stdout  # the first user of a fresh database


def test_model_add_then_db_upgrade_is_idempotent(tmp_path):
    done = yudai("model", "add", "local", "--provider", "openai", "--model-id", "qwen", "--api-base",
                 "http://127.0.0.1:9/v1", data_dir=tmp_path)
    assert done.returncode == 0 and "openai/qwen" in done.stdout, done.stderr
    assert yudai("db", "upgrade", data_dir=tmp_path).returncode == 0


def test_demo_solves_the_failing_test_with_scripted_models(tmp_path):
    done = yudai("demo", data_dir=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SCRIPTED" in done.stdout and "champion" in done.stdout
    assert "scripted-minimal-fix" in done.stdout.split("champion", 1)[1]
    assert "+    return a + b" in done.stdout

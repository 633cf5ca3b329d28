"""`yudai solve`'s options as the request it sends: what the API accepts (`SolveStart`), nothing left to a silent
default. The API is a stand-in on 127.0.0.1 that records the request and answers as the real one does."""

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.acceptance.test_cli import YUDAI, yudai
from yudai_solver.base.schemas import SolveStart
from yudai_solver.solving.repos import remote_head

pytestmark = pytest.mark.slow


class _Recorder(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"null")
        self.server.requests.append((self.path, body))  # type: ignore[attr-defined]
        status, answer = self.server.answer(self.path)  # type: ignore[attr-defined]
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


class FakeApi(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Recorder)
        self.requests: list[tuple[str, object]] = []
        self.refuse: tuple[int, dict] | None = None

    def answer(self, path: str) -> tuple[int, dict]:
        if self.refuse:
            return self.refuse
        if path == "/sessions":
            return 201, {"id": 7}
        return 201, {"solve_id": "s1", "status": "pending", "runs": []}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def started_body(self) -> dict:
        (body,) = [body for path, body in self.requests if path.endswith("/solve/start")]
        return body


@pytest.fixture
def api() -> Iterator[FakeApi]:
    server = FakeApi()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def git_repo(path: Path, branch: str) -> Path:
    subprocess.run(["git", "init", "-q", "-b", branch, str(path)], check=True)
    subprocess.run(
        [
            "git",
            "-C",
            str(path),
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "x",
        ],
        check=True,
    )
    return path


def solve(api: FakeApi, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return yudai("solve", *args, "--server", api.url, "--token", "t", data_dir=tmp_path / "data", timeout=60)


def test_explicit_experiments_limits_and_pr_are_sent_as_the_api_reads_them(api, tmp_path):
    repo = git_repo(tmp_path / "repo", "main")
    done = solve(
        api, tmp_path, str(repo), "--issue-title", "Crash", "--issue-body", "on empty input",
        "--experiment", "oracle", "--experiment", "oracle:0.7", "--experiment", "lazy::minimal-fix:12",
        "--budget-usd", "1.5", "--time-budget", "600", "--max-parallel", "2", "--create-pr",
        "--setup-command", "pip install -e .", "--test-command", "pytest -q",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    body = api.started_body()
    assert body["matrix"] == {
        "experiments": [
            {"model": "oracle", "temperature": 0.0},
            {"model": "oracle", "temperature": 0.7},
            {"model": "lazy", "temperature": 0.0, "evolution": "minimal-fix", "max_edits": 12},
        ]
    }
    assert body["limits"] == {"cost_budget_usd": 1.5, "time_budget_s": 600, "max_parallel": 2}
    assert body["create_pr"] is True and body["setup_command"] == "pip install -e ."
    assert (body["issue_title"], body["issue_body"]) == ("Crash", "on empty input")
    assert SolveStart.model_validate(body).matrix.experiments is not None  # exactly what the API accepts


def test_the_base_branch_defaults_to_the_repositorys_own(api, tmp_path):
    repo = git_repo(tmp_path / "repo", "master")
    done = solve(api, tmp_path, str(repo), "--issue", "3", "--model", "m", "--temperature", "0.2")
    assert done.returncode == 0, done.stdout + done.stderr
    body = api.started_body()
    assert body["base_branch"] == "master"
    assert (body["issue_number"], body["repo_url"]) == (3, str(repo))
    assert body["matrix"] == {"models": ["m"], "temperatures": [0.2]}
    assert "create_pr" not in body and body["limits"] == {}
    SolveStart.model_validate(body)


def test_a_named_base_branch_wins_and_a_relative_path_is_sent_absolute(api, tmp_path):
    git_repo(tmp_path / "repo", "master")
    done = subprocess.run(
        [*YUDAI, "solve", "repo", "--issue", "1", "--model", "m", "--base-branch", "dev",
         "--server", api.url, "--token", "t"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={"PATH": os.environ["PATH"], "YUDAI_DATA_DIR": str(tmp_path / "data"), "HOME": str(tmp_path)},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert api.started_body()["base_branch"] == "dev"
    assert api.started_body()["repo_url"] == str(tmp_path / "repo")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--model", "m"], "--issue"),  # no silent issue #1
        (["--issue", "1"], "--model"),  # no experiment at all
        (["--issue", "1", "--model", "m", "--experiment", "m:0.5"], "not both"),
        (["--issue", "1", "--experiment", "m:hot"], "TEMP of 'm:hot' is not a number"),
        (["--issue", "1", "--experiment", "m:0:baseline:5:extra"], "is not MODEL[:TEMP"),
    ],
)
def test_options_the_api_would_refuse_fail_before_anything_is_sent(api, tmp_path, args, says):
    repo = git_repo(tmp_path / "repo", "main")
    done = solve(api, tmp_path, str(repo), *args)
    assert done.returncode == 2 and says in " ".join(done.stderr.split()), done.stderr
    assert api.requests == []


def test_a_pull_request_on_github_needs_the_issue_number(api, tmp_path):
    done = solve(
        api, tmp_path, "https://github.com/acme/app", "--issue-title", "t", "--model", "m", "--create-pr",
        "--base-branch", "main",
    )  # fmt: skip
    assert done.returncode == 2 and "--issue N with --create-pr" in " ".join(done.stderr.split())
    assert api.requests == []


def test_a_directory_without_a_default_branch_asks_for_one(api, tmp_path):
    done = solve(api, tmp_path, str(tmp_path), "--issue", "1", "--model", "m")
    assert done.returncode == 2 and "give --base-branch" in " ".join(done.stderr.split()), done.stderr
    assert api.requests == []


def test_a_refusal_is_one_line_naming_the_url_and_what_to_do(api, tmp_path):
    repo = git_repo(tmp_path / "repo", "main")
    api.refuse = (401, {"detail": "the token is not valid"})
    done = solve(api, tmp_path, str(repo), "--issue", "1", "--model", "m")
    said = (done.stdout + done.stderr).strip()
    assert done.returncode == 2 and len(said.splitlines()) == 1 and "Traceback" not in said, said
    assert said.startswith(f"POST {api.url}/sessions answered 401: the token is not valid")
    assert "--token" in said

    api.refuse = (422, {"detail": "no active model named 'm'", "field": "matrix.models"})
    said = solve(api, tmp_path, str(repo), "--issue", "1", "--model", "m").stdout.strip()
    assert said.startswith(f"POST {api.url}/sessions answered 422: matrix.models: no active model named 'm'"), said


def test_the_default_branch_of_a_remote_is_read_from_what_git_advertises(tmp_path):
    # The same `git ls-remote --symref URL HEAD` the CLI runs on an https URL, against a bare repository here.
    source = git_repo(tmp_path / "source", "trunk")
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(source), str(bare)], check=True)
    listing = subprocess.run(
        ["git", "ls-remote", "--symref", str(bare), "HEAD"], capture_output=True, text=True, check=True
    ).stdout
    assert remote_head(listing) == "trunk"
    assert remote_head("") is None

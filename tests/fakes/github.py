"""A fake GitHub REST API on 127.0.0.1: just the endpoints yudai-solver uses, with GitHub's status codes and shapes.

Repositories, issues, pull requests and comments live in memory; every request is recorded (without its
Authorization header) so tests can check payloads. A request without the expected token answers 401.
"""

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


@dataclass
class Recorded:
    method: str
    path: str
    query: dict
    body: dict | None
    authorized: bool


@dataclass
class FakeRepo:
    owner: str
    name: str
    default_branch: str = "main"
    issues: dict[int, dict] = field(default_factory=dict)
    pulls: list[dict] = field(default_factory=list)
    comments: list[dict] = field(default_factory=list)
    collaborators: set[str] = field(default_factory=set)


class FakeGitHub:
    def __init__(self, token: str):
        self.token = token
        self.repos: dict[str, FakeRepo] = {}
        self.requests: list[Recorded] = []
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # --- test set-up ---

    def add_repo(self, full_name: str, *, default_branch: str = "main") -> FakeRepo:
        owner, name = full_name.split("/")
        self.repos[full_name] = FakeRepo(owner, name, default_branch)
        return self.repos[full_name]

    def add_issue(
        self,
        full_name: str,
        number: int,
        title: str,
        body: str = "",
        *,
        state: str = "open",
        labels: tuple[str, ...] = (),
        pull_request: bool = False,
    ) -> dict:
        issue = {
            "number": number,
            "title": title,
            "body": body,
            "state": state,
            "labels": [{"name": name} for name in labels],
            "html_url": f"https://github.com/{full_name}/issues/{number}",
        }
        if pull_request:
            issue["pull_request"] = {"url": f"https://api.github.com/repos/{full_name}/pulls/{number}"}
        self.repos[full_name].issues[number] = issue
        return issue

    def calls(self, method: str, pattern: str) -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if r.method == method and re.fullmatch(pattern, r.path)]

    # --- server ---

    def start(self) -> str:
        fake = self

        class Handler(_Handler):
            github = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    # --- endpoints: (status, json) ---

    def route(self, method: str, path: str, query: dict, body: dict | None):
        routes = [
            ("GET", r"/repos/([^/]+/[^/]+)", self._get_repo),
            ("GET", r"/repos/([^/]+/[^/]+)/issues/(\d+)", self._get_issue),
            ("POST", r"/repos/([^/]+/[^/]+)/issues/(\d+)/comments", self._create_comment),
            ("POST", r"/repos/([^/]+/[^/]+)/pulls", self._create_pull),
            ("GET", r"/repos/([^/]+/[^/]+)/pulls", self._list_pulls),
            ("GET", r"/repos/([^/]+/[^/]+)/collaborators/([^/]+)", self._check_collaborator),
        ]
        for verb, pattern, handler in routes:
            match = re.fullmatch(pattern, path)
            if verb == method and match:
                repo = self.repos.get(match.group(1))
                if repo is None:
                    return 404, _not_found()
                return handler(repo, *match.groups()[1:], query=query, body=body)
        return 404, _not_found()

    def _get_repo(self, repo: FakeRepo, **_):
        return 200, {
            "full_name": f"{repo.owner}/{repo.name}",
            "default_branch": repo.default_branch,
            "html_url": f"https://github.com/{repo.owner}/{repo.name}",
            "private": False,
        }

    def _get_issue(self, repo: FakeRepo, number: str, **_):
        issue = repo.issues.get(int(number))
        return (200, issue) if issue else (404, _not_found())

    def _create_comment(self, repo: FakeRepo, number: str, *, body, **_):
        if int(number) not in repo.issues:
            return 404, _not_found()
        comment = {
            "id": len(repo.comments) + 1,
            "issue_number": int(number),
            "body": body["body"],
            "html_url": f"https://github.com/{repo.owner}/{repo.name}/issues/{number}#issuecomment-"
            f"{len(repo.comments) + 1}",
        }
        repo.comments.append(comment)
        return 201, comment

    def _create_pull(self, repo: FakeRepo, *, body, **_):
        head = body["head"]
        if any(p["head"]["ref"] == head and p["state"] == "open" for p in repo.pulls):
            return 422, {
                "message": "Validation Failed",
                "errors": [
                    {
                        "resource": "PullRequest",
                        "code": "custom",
                        "message": f"A pull request already exists for {repo.owner}:{head}.",
                    }
                ],
            }
        number = 100 + len(repo.pulls) + 1
        pull = {
            "number": number,
            "state": "open",
            "title": body["title"],
            "body": body.get("body"),
            "head": {"ref": head, "label": f"{repo.owner}:{head}"},
            "base": {"ref": body["base"]},
            "html_url": f"https://github.com/{repo.owner}/{repo.name}/pull/{number}",
        }
        repo.pulls.append(pull)
        return 201, pull

    def _list_pulls(self, repo: FakeRepo, *, query, **_):
        head = query.get("head", [""])[0]
        state = query.get("state", ["open"])[0]
        found = [p for p in repo.pulls if (not head or p["head"]["label"] == head) and state in ("all", p["state"])]
        return 200, found

    def _check_collaborator(self, repo: FakeRepo, login: str, **_):
        return (204, None) if login in repo.collaborators else (404, _not_found())


def _not_found() -> dict:
    return {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}


class _Handler(BaseHTTPRequestHandler):
    github: FakeGitHub

    def do_GET(self):
        self._answer("GET")

    def do_POST(self):
        self._answer("POST")

    def _answer(self, method: str) -> None:
        url = urlparse(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        authorized = self.headers.get("Authorization") in (f"token {self.github.token}", f"Bearer {self.github.token}")
        with self.github.lock:
            self.github.requests.append(Recorded(method, url.path, parse_qs(url.query), body, authorized))
            if not authorized:
                status, data = 401, {"message": "Bad credentials"}
            else:
                status, data = self.github.route(method, url.path, parse_qs(url.query), body)
        payload = b"" if data is None else json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *_args) -> None:
        pass

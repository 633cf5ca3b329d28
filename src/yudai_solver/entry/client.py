"""A small HTTP client of the yudai API, used by the CLI (against a server or the embedded one)."""

from typing import Any

import httpx

from yudai_solver.base.errors import YudaiError

_WHAT_TO_DO = {
    401: "check --token or YUDAI_TOKEN; `yudai user create NAME` prints one",
    403: "an admin may allow it: `yudai grant add USER REPO` (models: an admin's token)",
    404: "check --server: is it a yudai server, and the id right?",
    409: "see the reason above",
    413: "the request is larger than YUDAI_MAX_REQUEST_BYTES",
    422: "fix the value it names",
}


class ApiError(YudaiError):
    """The server refused the request."""


class SolveClient:
    def __init__(self, base_url: str, token: str, *, timeout: float = 30):
        self.http = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout)

    def _call(self, method: str, path: str, *, json: object = None) -> Any:
        """The decoded JSON body of the answer (its shape is the endpoint's response model); ApiError if refused."""
        response = self.http.request(method, path, json=json)
        if response.status_code >= 400:
            raise ApiError(refusal(response))
        return response.json()

    def _object(self, method: str, path: str, *, json: object = None) -> dict[str, Any]:
        data: dict[str, Any] = self._call(method, path, json=json)
        return data

    def create_session(self, title: str) -> int:
        session_id: int = self._object("POST", "/sessions", json={"title": title})["id"]
        return session_id

    def add_model(self, spec: dict[str, Any]) -> dict[str, Any]:
        return self._object("POST", "/models", json=spec)

    def models(self) -> list[dict[str, Any]]:
        models: list[dict[str, Any]] = self._call("GET", "/models")
        return models

    def update_model(self, model_id: int, patch: dict[str, Any]) -> dict[str, Any]:
        return self._object("PATCH", f"/models/{model_id}", json=patch)

    def add_grant(self, user: str, repo: str) -> dict[str, Any]:
        return self._object("POST", "/grants", json={"user": user, "repo": repo})

    def grants(self) -> list[dict[str, Any]]:
        grants: list[dict[str, Any]] = self._call("GET", "/grants")
        return grants

    def remove_grant(self, grant_id: int) -> None:
        response = self.http.delete(f"/grants/{grant_id}")
        if response.status_code >= 400:
            raise ApiError(refusal(response))

    def start(self, session_id: int, body: dict[str, Any]) -> dict[str, Any]:
        return self._object("POST", f"/sessions/{session_id}/solve/start", json=body)

    def status(self, session_id: int, solve_id: str) -> dict[str, Any]:
        return self._object("GET", f"/sessions/{session_id}/solve/status/{solve_id}")

    def run(self, session_id: int, solve_id: str, run_id: str) -> dict[str, Any]:
        return self._object("GET", f"/sessions/{session_id}/solve/{solve_id}/runs/{run_id}")

    def cancel(self, session_id: int, solve_id: str) -> dict[str, Any]:
        return self._object("POST", f"/sessions/{session_id}/solve/cancel/{solve_id}")

    def close(self) -> None:
        self.http.close()


def refusal(response: httpx.Response) -> str:
    """One line: the request's method and URL, the status, the server's reason, and what to do about it."""
    request = response.request
    status = response.status_code
    todo = _WHAT_TO_DO.get(status, "see the server's log" if status >= 500 else "")
    line = f"{request.method} {request.url} answered {status}: {_reason(response)}"
    return f"{line} ({todo})" if todo else line


def _reason(response: httpx.Response) -> str:
    """The API's `detail` (a message, or FastAPI's list of invalid fields), else the start of the body."""
    try:
        body = response.json()
        detail, field = body.get("detail"), body.get("field")
    except (ValueError, AttributeError):
        detail = field = None
    if isinstance(detail, list):
        detail = "; ".join(_invalid(item) for item in detail)
    elif detail and field and field not in str(detail):
        detail = f"{field}: {detail}"
    reason = str(detail) if detail else response.text.strip() or response.reason_phrase
    return " ".join(reason.split())[:500]


def _invalid(item: object) -> str:
    if not isinstance(item, dict):
        return str(item)
    where = ".".join(str(part) for part in item.get("loc", ()) if part != "body")
    return f"{where}: {item.get('msg', '')}" if where else str(item.get("msg", ""))

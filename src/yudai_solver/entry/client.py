"""A small HTTP client of the yudai API, used by the CLI (against a server or the embedded one)."""

import httpx

from yudai_solver.base.errors import YudaiError


class ApiError(YudaiError):
    """The server refused the request."""


class SolveClient:
    def __init__(self, base_url: str, token: str, *, timeout: float = 30):
        self.http = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout)

    def _call(self, method: str, path: str, **kwargs) -> dict | list:
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise ApiError(f"{method} {path} -> {response.status_code}: {response.text}")
        return response.json()

    def create_session(self, title: str) -> int:
        return self._call("POST", "/sessions", json={"title": title})["id"]

    def add_model(self, spec: dict) -> dict:
        return self._call("POST", "/models", json=spec)

    def models(self) -> list[dict]:
        return self._call("GET", "/models")

    def update_model(self, model_id: int, patch: dict) -> dict:
        return self._call("PATCH", f"/models/{model_id}", json=patch)

    def start(self, session_id: int, body: dict) -> dict:
        return self._call("POST", f"/sessions/{session_id}/solve/start", json=body)

    def status(self, session_id: int, solve_id: str) -> dict:
        return self._call("GET", f"/sessions/{session_id}/solve/status/{solve_id}")

    def run(self, session_id: int, solve_id: str, run_id: str) -> dict:
        return self._call("GET", f"/sessions/{session_id}/solve/{solve_id}/runs/{run_id}")

    def cancel(self, session_id: int, solve_id: str) -> dict:
        return self._call("POST", f"/sessions/{session_id}/solve/cancel/{solve_id}")

    def close(self) -> None:
        self.http.close()

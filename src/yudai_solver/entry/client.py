"""A small HTTP client of the yudai API, used by the CLI (against a server or the embedded one)."""

from typing import Any

import httpx

from yudai_solver.base.errors import YudaiError


class ApiError(YudaiError):
    """The server refused the request."""


class SolveClient:
    def __init__(self, base_url: str, token: str, *, timeout: float = 30):
        self.http = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout)

    def _call(self, method: str, path: str, *, json: object = None) -> Any:
        """The decoded JSON body of the answer (its shape is the endpoint's response model); ApiError if refused."""
        response = self.http.request(method, path, json=json)
        if response.status_code >= 400:
            raise ApiError(f"{method} {path} -> {response.status_code}: {response.text}")
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
            raise ApiError(f"DELETE /grants/{grant_id} -> {response.status_code}: {response.text}")

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

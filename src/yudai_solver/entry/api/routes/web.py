"""The watch page: one static file that uses the API with the visitor's token (kept in their browser)."""

from functools import cache
from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(tags=["web"])


@cache
def _page() -> str:
    return files("yudai_solver.entry.web").joinpath("index.html").read_text(encoding="utf-8")


@router.get("/ui", response_class=HTMLResponse, include_in_schema=False)
def page() -> HTMLResponse:
    return HTMLResponse(
        _page(),
        headers={
            "Content-Security-Policy": (
                "default-src 'self'; script-src 'unsafe-inline' 'self'; style-src 'unsafe-inline'"
            )
        },
    )

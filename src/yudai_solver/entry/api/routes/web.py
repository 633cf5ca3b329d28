"""The watch page: one static file that uses the API with the visitor's token (kept in their browser), its charting
library served from the installed `plotly` package (nothing fetched from elsewhere), and the page's overviews."""

import gzip
from functools import cache
from importlib.resources import files

from fastapi import APIRouter, Header
from fastapi.responses import HTMLResponse, Response

from yudai_solver.base.errors import NotFound
from yudai_solver.entry.api.deps import CurrentUser, DbDep
from yudai_solver.solving import overview
from yudai_solver.solving.overview import ModelStats, SessionOverview

router = APIRouter(tags=["web"])

_CSP = "default-src 'self'; script-src 'unsafe-inline' 'self'; style-src 'unsafe-inline'"


@cache
def _plotly_version() -> str:
    # Imported on first use: the package costs ~50 ms to import, and only the page needs it.
    from plotly.offline import get_plotlyjs_version  # type: ignore[import-untyped]  # plotly ships no types

    return str(get_plotlyjs_version())


@cache
def _plotly_bundle() -> tuple[bytes, bytes]:
    """plotly.js as the installed `plotly` package ships it, plain and gzipped (compressed once per process)."""
    from plotly.offline import get_plotlyjs

    plain = get_plotlyjs().encode("utf-8")
    return plain, gzip.compress(plain, compresslevel=6, mtime=0)


@cache
def _page() -> str:
    html = files("yudai_solver.entry.web").joinpath("index.html").read_text(encoding="utf-8")
    return html.replace("{{PLOTLY_SRC}}", f"/ui/static/plotly-{_plotly_version()}.min.js")


@router.get("/ui", response_class=HTMLResponse, include_in_schema=False)
def page() -> HTMLResponse:
    return HTMLResponse(_page(), headers={"Content-Security-Policy": _CSP})


@router.get("/ui/static/plotly-{version}.min.js", include_in_schema=False)
def plotly_js(version: str, accept_encoding: str | None = Header(None)) -> Response:
    """The versioned bundle, cached by browsers for good: a new plotly release gets a new URL."""
    if version != _plotly_version():
        raise NotFound(f"plotly.js {version} is not installed; {_plotly_version()} is")
    plain, packed = _plotly_bundle()
    headers = {"Cache-Control": "public, max-age=31536000, immutable", "Vary": "Accept-Encoding"}
    if "gzip" in (accept_encoding or ""):
        return Response(packed, media_type="text/javascript", headers={**headers, "Content-Encoding": "gzip"})
    return Response(plain, media_type="text/javascript", headers=headers)


@router.get("/overview/sessions", response_model=list[SessionOverview])
def session_overviews(db: DbDep, user: CurrentUser) -> list[SessionOverview]:
    """The user's sessions, each with its latest solve's issue, repository, status and champion."""
    return overview.session_overviews(db, user=user)


@router.get("/overview/models", response_model=list[ModelStats])
def model_stats(db: DbDep, user: CurrentUser) -> list[ModelStats]:
    """Per model / temperature / strategy over all of the user's solves: pass rate, champions, median cost and time."""
    return overview.model_stats(db, user=user)

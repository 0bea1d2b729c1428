"""The viewer's pages: a Starlette app of server-rendered HTML, no script.

Starlette (with uvicorn) is already installed with Prefect's server and is
enough for a handful of GET pages; forms submit with GET, so every page works
with JavaScript off and every view has a URL to share. Pages are rendered by
``pipelines.pages`` (the report's environment: autoescape on, the same chat
renderer and stylesheet) and served with a Content-Security-Policy that
allows nothing but this server's stylesheet: no script, no frame, no request
elsewhere. Requests whose Host is not this machine's loopback name are
refused (DNS rebinding), unless the user names the host.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from markupsafe import Markup
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from pipelines.pages import environment, failure_of, stylesheet
from pipelines.report import funnel_chart, kg_charts, reasons_chart, synthesis_charts
from pipelines.svg_chart import bar_chart
from pipelines.viewer.figures import change, figures, number, side_by_side
from pipelines.viewer.query import STATUSES, BadRequest, Dataset, Filters, ViewError
from pipelines.viewer.state_diff import MISSING, state_diff

CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; "
       "frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "X-Frame-Options": "DENY", "Cache-Control": "no-store"}
LOOPBACK = ("127.0.0.1", "localhost")
TASK_FIELDS = ("id", "kind", "domain", "generator", "env_seed", "scenario", "gold_actions", "expected_outputs",
               "expected_state_hash", "answer", "answer_aliases", "path", "provenance")


class SecurityHeaders:
    """Adds the CSP and its companions to every response (pure ASGI, so nothing is buffered)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for k, v in HEADERS.items():
                    headers[k] = v
            await send(message)

        await self.app(scope, receive, with_headers)


def _cell(value: Any) -> str:
    """A figure or field value as text (JSON for structures), for tables of the state diff and the task."""
    if value is MISSING:
        return "(absent)"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def create_app(root: str | Path, version: int | None = None, allow_hosts: tuple[str, ...] = ()) -> Starlette:
    """The app for the dataset at ``root``; ``/`` opens ``version`` (default: the newest at each request)."""
    dataset = Dataset(Path(root))
    env = environment("pipelines.viewer")
    env.globals.update(number=number, change=change, cell=_cell, quote=lambda s: quote(str(s), safe=""),
                       root=str(root), MISSING=MISSING)
    css = stylesheet() + env.loader.get_source(env, "viewer.css")[0]  # type: ignore[union-attr]

    def page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(env.get_template(name).render(versions=dataset.versions(), **context), status_code=status)

    def error(status: int, message: str) -> HTMLResponse:
        try:
            versions = dataset.versions()
        except ViewError:
            versions = []
        return HTMLResponse(env.get_template("error.html").render(versions=versions, message=message, status=status,
                                                                    current=None),
                            status_code=status)

    def guarded(handler):
        def run(request: Request) -> Response:
            try:
                return handler(request)
            except ViewError as err:
                return error(404, str(err))
            except BadRequest as err:
                return error(400, str(err))
        return run

    def home(request: Request) -> Response:
        return RedirectResponse(f"/v/{version if version is not None else dataset.newest()}", status_code=307)

    def versions_page(request: Request) -> Response:
        return page("versions.html", current=None)

    def version_page(request: Request) -> Response:
        v = int(request.path_params["version"])
        m = dataset.manifest(v)
        groups = figures(m)
        shown = {"totals", "funnel", "stages", "reasons", "synthesis"}
        charts = [funnel_chart(m), reasons_chart(m.reasons), *synthesis_charts(m), *kg_charts(m)]
        if m.similarity_histogram:
            charts.append(bar_chart("Similarity to the nearest earlier row (semantic dedup)",
                                    list(m.similarity_histogram.items())))
            shown.add("similarity_histogram")
        return page("version.html", current=v, m=m, charts=[Markup(c) for c in charts],
                    other={k: g for k, g in groups.items() if k not in shown}, usage=groups.get("usage", {}))

    def rows_page(request: Request) -> Response:
        v = int(request.path_params["version"])
        filters = Filters.parse(request.query_params)
        try:
            number_ = int(request.query_params.get("page") or 1)
        except ValueError:
            raise BadRequest("page: not a whole number") from None
        facets = dataset.facets(v)
        result = dataset.page(v, filters, number_)
        if number_ > result.pages and result.total:
            raise BadRequest(f"page: {number_} is past the last page ({result.pages})")
        return page("rows.html", current=v, f=filters, facets=facets, result=result, statuses=STATUSES,
                    added_versions=[m.version for m in dataset.versions() if m.version <= v])

    def row_page(request: Request) -> Response:
        v = int(request.path_params["version"])
        run_id, index = request.path_params["run_id"], int(request.path_params["index"])
        row = dataset.row(v, run_id, index)
        if row is None:
            raise ViewError(f"version {v} has no row {index} of run {run_id}")
        added = dataset.added_by(v, run_id)
        origin = dataset.manifest(added) if added is not None else dataset.manifest(v)
        task = json.loads(row["task"]) if row.get("task") else None
        verdicts = json.loads(row["verdicts"] or "[]")
        tools = json.loads(row["tools"] or "[]")
        failure = failure_of(row)
        diff = state_diff(origin.config, task, row["messages"] or [], row.get("final_state_hash"),
                          json.loads(row.get("user_actions") or "[]"))
        back = request.query_params.get("back") or ""
        return page("row.html", current=v, row=row, task=task, verdicts=verdicts, tools=tools, failure=failure,
                    diff=diff, added=added, origin=origin, back=back,
                    other_task={k: t for k, t in (task or {}).items() if k not in TASK_FIELDS})

    def diff_page(request: Request) -> Response:
        try:
            a, b = int(request.query_params["a"]), int(request.query_params["b"])
        except (KeyError, ValueError):
            raise BadRequest("a and b: two version numbers, e.g. /diff?a=0&b=1") from None
        d = dataset.diff(a, b)
        ma, mb = dataset.manifest(a), dataset.manifest(b)
        return page("diff.html", current=b, d=d, ma=ma, mb=mb, figures=side_by_side(ma, mb))

    def style(request: Request) -> Response:
        return Response(css, media_type="text/css")

    routes = [
        Route("/", guarded(home)),
        Route("/versions", guarded(versions_page)),
        Route("/v/{version:int}", guarded(version_page)),
        Route("/v/{version:int}/rows", guarded(rows_page)),
        Route("/v/{version:int}/row/{run_id:path}/{index:int}", guarded(row_page)),
        Route("/diff", guarded(diff_page)),
        Route("/style.css", style),
        Route("/favicon.ico", lambda request: Response(status_code=204)),  # browsers ask; there is none
    ]
    hosts = [*LOOPBACK, *allow_hosts]
    return Starlette(routes=routes, middleware=[Middleware(SecurityHeaders),
                                                Middleware(TrustedHostMiddleware, allowed_hosts=hosts)])

"""The node's HTTP face: the REST API (jobs and the engine), health, and the
API documentation (``/openapi.json``, ``/docs``) with its assets served from
the installed swagger-ui-bundle package — the machines have no internet.

``HttpServer`` runs it with uvicorn inside the node's asyncio loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response, Security
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

from kokaq.server.gateway import Gateway
from kokaq.server.metrics import NodeMetrics
from kokaq.server.operations import Role
from kokaq.server.rest import health, jobs, resources, schedules, stats, workers
from kokaq.server.rest.deps import api_key_header, caller_of
from kokaq.server.rest.errors import ERROR_SCHEMA, install_error_handlers
from kokaq.server.rest.health import NodeView

__all__ = ["HttpServer", "create_app"]

_STATIC = Path(__file__).parent / "static"  # the dashboard

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"description": text, "content": {"application/json": {"schema": ERROR_SCHEMA}}}
    for status, text in (
        (400, "invalid input; `field` names it"),
        (401, "no API key, or an unknown one"),
        (403, "the key may not do this"),
        (404, "no such namespace, queue or message"),
        (409, "exists already, or in the wrong state"),
        (413, "payload too large"),
        (429, "queue full"),
        (503, "not the leader (see details.leader_hint), or shutting down"),
    )
}


def create_app(
    gateway: Gateway,
    node: NodeView,
    metrics: NodeMetrics | None = None,
    *,
    metrics_need_key: bool = False,
) -> FastAPI:
    app = FastAPI(
        title="kokaq",
        summary="A replicated priority queue and job queue with weighted fair scheduling",
        version="0.1.0",
        docs_url=None,
        redoc_url=None,
        responses=_ERRORS,
    )
    app.state.gateway = gateway
    app.state.node = node
    install_error_handlers(app)
    app.include_router(jobs.router)
    app.include_router(resources.router)
    app.include_router(health.router)
    app.include_router(stats.router)
    app.include_router(workers.router)
    app.include_router(schedules.router)
    app.mount("/docs-assets", StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")
    app.mount("/static", StaticFiles(directory=str(_STATIC)), name="static")

    @app.get("/", include_in_schema=False)
    async def dashboard() -> FileResponse:
        return FileResponse(_STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="kokaq API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )

    if metrics is not None:
        _serve_metrics(app, metrics, metrics_need_key)
    return app


def _serve_metrics(app: FastAPI, metrics: NodeMetrics, need_key: bool) -> None:
    exposition_format = {"description": "Prometheus text format", "content": {"text/plain": {}}}

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: exposition_format},
        dependencies=[Security(api_key_header)] if need_key else [],
    )
    async def exposition(request: Request) -> Response:
        if need_key:
            key = caller_of(request, request.headers.get("x-api-key")).key
            app.state.gateway.auth.check(key, (Role.ANY,), "")
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(_ObserveHttp, metrics=metrics)


class _ObserveHttp:
    """Counts requests and their latency by route template (bounded labels)."""

    def __init__(self, app: ASGIApp, metrics: NodeMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            seconds = time.perf_counter() - started
            self.metrics.observe_http(scope["method"], path, status, seconds)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the node owns SIGTERM / SIGINT and stops us itself


class HttpServer:
    """uvicorn in the running loop, on a socket we bind (so port 0 works)."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        self._socket = socket.create_server((host, port), reuse_port=False)
        # Inherited by accepted connections. Without it, a response's small
        # writes meet the client's delayed ACK: 40 ms per request.
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._socket.setblocking(False)
        self.address = f"{host}:{self._socket.getsockname()[1]}"
        config = uvicorn.Config(
            app, lifespan="off", access_log=False, log_level="warning", timeout_graceful_shutdown=5
        )
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]))
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task

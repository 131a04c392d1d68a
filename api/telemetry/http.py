"""The HTTP side of telemetry: a request id on every request and answer (``X-Request-ID``), one access
log line and the HTTP metrics per request (by route template, never by raw path), and ``GET /metrics``."""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.datastructures import MutableHeaders
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.telemetry.logs import REQUEST_ID, request_id_from
from api.telemetry.metrics import HTTP_DURATION, HTTP_REQUESTS, StateCollector, build_registry

__all__ = ["TelemetryMiddleware", "install_telemetry", "route_template"]

log = logging.getLogger("iamsign.http")
HEADER = "X-Request-ID"


def route_template(scope: Scope, root_path: str = "") -> str:
    """``/v1/signing-requests/{request_id}`` for any request id: bounded label values.

    A route knows its template relative to where it was included (a router prefix, a mounted app), so the
    prefix is taken from the path: the part before what the route's own pattern matched.
    """
    route = scope.get("route")
    if isinstance(route, Mount):  # nothing inside the mount matched (its files, or a 404 under it)
        return scope.get("root_path", "")[len(root_path) :] + "/*"
    template, pattern = getattr(route, "path_format", None), getattr(route, "path_regex", None)
    if template is None or pattern is None:
        return "unmatched"
    path = scope.get("path", "")
    for i, char in enumerate(path):
        if char == "/" and pattern.match(path[i:]):
            return path[:i] + template
    return template


class TelemetryMiddleware:
    """Outermost ASGI layer: it sees every answer, the 500s made by Starlette's error layer included."""

    def __init__(self, app: ASGIApp, *, metrics: bool = True) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = next((v for k, v in scope.get("headers", ()) if k == b"x-request-id"), b"")
        request_id = request_id_from(header.decode("latin-1"))
        REQUEST_ID.set(request_id)  # each request runs in its own task: the value stays in it
        status = 500
        root_path = scope.get("root_path", "")

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - start
            route = route_template(scope, root_path)
            if self.metrics:
                HTTP_REQUESTS.labels(scope["method"], route, str(status)).inc()
                HTTP_DURATION.labels(scope["method"], route, str(status)).observe(seconds)
            path_params: dict[str, Any] = scope.get("path_params") or {}
            fields = {
                "method": scope["method"],
                "route": route,
                "status": status,
                "ms": round(seconds * 1000, 1),
            }
            for key in ("request_id", "batch_id"):  # the signing request or batch the call is about
                value = str(path_params.get(key, ""))
                if value.startswith(("sr_", "bt_")):
                    fields["batch_id" if value.startswith("bt_") else "signing_request_id"] = value
            log.info("%s %s %s", scope["method"], route, status, extra={"fields": fields})


def install_telemetry(app: FastAPI, state: StateCollector, *, metrics: bool = True) -> None:
    """Request ids, access lines and HTTP metrics on every request; ``GET /metrics`` when ``metrics``."""
    build = app.build_middleware_stack

    def build_with_telemetry() -> ASGIApp:
        return TelemetryMiddleware(build(), metrics=metrics)

    app.build_middleware_stack = build_with_telemetry  # type: ignore[method-assign]
    if not metrics:
        return
    registry = build_registry(state)
    app.state.metrics_registry = registry

    def prometheus_metrics() -> Response:
        """Prometheus text exposition of this process's counters and the service's state."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app.add_api_route(
        "/metrics", prometheus_metrics, methods=["GET"], tags=["service"], response_class=Response
    )

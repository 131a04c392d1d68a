"""What every request passes on its way in and out: strict JSON bodies, no NUL in text, security headers,
rate limits."""

from __future__ import annotations

from fastapi import FastAPI

from api.edge.headers import SecurityHeaders
from api.edge.json_body import JsonBodyGuard
from api.edge.limits import Limits
from api.edge.logs import one_line_logs
from api.edge.text import NulGuard
from api.settings import Settings

__all__ = ["install_edge"]


def install_edge(app: FastAPI, settings: Settings) -> None:
    """Add the edge middlewares to ``app`` (the last added runs first) and its rate limits."""
    app.state.limits = Limits.from_settings(settings)
    one_line_logs()
    callbacks = max(settings.max_upload_bytes, settings.max_json_bytes)
    app.add_middleware(
        JsonBodyGuard,
        max_bytes=settings.max_json_bytes,
        large=(("/v1/iamsmart/", callbacks), ("/sandbox/api/", callbacks)),
    )
    app.add_middleware(NulGuard)
    app.add_middleware(SecurityHeaders)

"""What every request passes on its way in and out: strict JSON bodies, security headers, rate limits."""

from __future__ import annotations

from fastapi import FastAPI

from api.edge.json_body import JsonBodyGuard
from api.settings import Settings

__all__ = ["install_edge"]


def install_edge(app: FastAPI, settings: Settings) -> None:
    """Add the edge middlewares to ``app`` (the last added runs first)."""
    callbacks = max(settings.max_upload_bytes, settings.max_json_bytes)
    app.add_middleware(
        JsonBodyGuard,
        max_bytes=settings.max_json_bytes,
        large=(("/v1/iamsmart/", callbacks), ("/sandbox/api/", callbacks)),
    )

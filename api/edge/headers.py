"""Security headers on every response: a Content Security Policy (with a per-request nonce for the inline
scripts and styles of the service's own pages), ``X-Content-Type-Options``, framing refused everywhere.

Templates put ``nonce="{{ request.state.csp_nonce }}"`` on their ``<script>`` and ``<style>`` elements;
nothing else inline runs. ``/docs`` and ``/redoc`` load Swagger UI and ReDoc from ``/static/api-docs``
(``'self'``) and carry the nonce on their one inline script.
"""

from __future__ import annotations

import secrets

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["SecurityHeaders", "policy_for"]

_COMMON = "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
_API = "default-src 'none'; frame-ancestors 'none'"
_PAGE = (
    "default-src 'none'; script-src 'nonce-{n}'; style-src 'nonce-{n}'; connect-src 'self'; "
    "img-src 'self' data:; " + _COMMON
)
_SWAGGER = (
    "default-src 'none'; script-src 'self' 'nonce-{n}'; style-src 'self' 'nonce-{n}'; connect-src 'self'; "
    "img-src 'self' data:; font-src 'self'; " + _COMMON
)
# ReDoc styles itself by inserting <style> elements at run time (styled-components), with no way to give
# them the nonce; its search runs in a blob: worker. Scripts stay 'self' plus the nonce.
_REDOC = (
    "default-src 'none'; script-src 'self' 'nonce-{n}'; style-src 'self' 'unsafe-inline'; "
    "connect-src 'self'; img-src 'self' data:; font-src 'self'; worker-src blob:; " + _COMMON
)
_DOCS = {"/docs": _SWAGGER, "/docs/oauth2-redirect": _SWAGGER, "/redoc": _REDOC}


def policy_for(path: str, content_type: str, nonce: str) -> str:
    """The Content-Security-Policy for a response to ``path`` of ``content_type``."""
    if not content_type.startswith("text/html"):
        return _API
    return _DOCS.get(path, _PAGE).format(n=nonce)


class SecurityHeaders:
    """ASGI middleware: a fresh nonce in ``request.state.csp_nonce``, the headers on every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(16)
        scope.setdefault("state", {})["csp_nonce"] = nonce

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Content-Security-Policy"] = policy_for(
                    scope["path"], headers.get("content-type", ""), nonce
                )
                headers["X-Content-Type-Options"] = "nosniff"
                headers["X-Frame-Options"] = "DENY"
                headers["Referrer-Policy"] = "no-referrer"
            await send(message)

        await self.app(scope, receive, send_with_headers)

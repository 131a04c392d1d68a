"""Text a client sends may not hold a NUL character: PostgreSQL text can neither store nor compare one
(the query fails), and on SQLite it would be kept as a different id. One rule for every way in: the
path, the query string (``NulGuard``) and JSON bodies (``holds_nul``, used by the JSON body guard)."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import error_body

__all__ = ["NUL_ERROR", "NulGuard", "holds_nul"]

NUL_ERROR = ("invalid_text", "text in a request may not contain a NUL character (\\u0000 or %00)")
"""The error code and message for text holding NUL, wherever it came in."""


def holds_nul(value: Any) -> bool:
    """Whether any string in ``value`` (a parsed JSON value: keys and values, at any depth) holds NUL."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if "\x00" in node:
                return True
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def _query_holds_nul(query: bytes) -> bool:
    return b"\x00" in query or b"%00" in query.lower()


class NulGuard:
    """ASGI middleware: a path or query string holding NUL is answered 400 before any route reads it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            "\x00" in scope["path"] or _query_holds_nul(scope.get("query_string", b""))
        ):
            code, message = NUL_ERROR
            await JSONResponse(error_body(code, message), status_code=400)(scope, receive, send)
            return
        await self.app(scope, receive, send)

"""Strict JSON request bodies: unknown fields, duplicate keys, excessive depth or size are refused.

``RequestModel`` is the base of every request body model (an unknown field is a 422, never ignored: a
misspelt ``"levle"`` must not sign at the default level). ``JsonBodyGuard`` looks at every JSON body
before the routes do: over the size limit is 413, a key given twice in one object (which value would win
is up to the parser) or nesting deeper than ``MAX_DEPTH`` is 422, a string holding NUL is 400, all in the
error envelope.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.edge.text import NUL_ERROR, holds_nul
from api.errors import error_body

__all__ = ["MAX_DEPTH", "JsonBodyError", "JsonBodyGuard", "RequestModel", "check_json"]

MAX_DEPTH = 32


class RequestModel(BaseModel):
    """Base of request bodies: a field the model does not have is an error."""

    model_config = ConfigDict(extra="forbid")


class JsonBodyError(ValueError):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise JsonBodyError(422, "duplicate_key", f"the key {key[:60]!r} appears twice in one object")
        out[key] = value
    return out


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def check_json(body: bytes, max_depth: int = MAX_DEPTH) -> None:
    """Raise :class:`JsonBodyError` for duplicate keys, too deep nesting or text holding NUL; malformed
    JSON is left to the route (it answers 422 saying where)."""
    try:
        value = json.loads(body, object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise JsonBodyError(422, "too_deep", f"JSON nested deeper than {max_depth} levels") from None
    except ValueError as exc:
        if isinstance(exc, JsonBodyError):
            raise
        return
    if _depth(value) > max_depth:
        raise JsonBodyError(422, "too_deep", f"JSON nested deeper than {max_depth} levels")
    if holds_nul(value):
        raise JsonBodyError(400, *NUL_ERROR)


def _is_json(scope: Scope) -> bool:
    """A JSON body, or one without a content type (which FastAPI also parses as JSON)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return True


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class JsonBodyGuard:
    """ASGI middleware: buffer each JSON body (at most ``limit_for(path)`` bytes), check it, replay it."""

    def __init__(self, app: ASGIApp, max_bytes: int, large: tuple[tuple[str, int], ...] = ()) -> None:
        self.app, self.max_bytes, self.large = app, max_bytes, large

    def limit_for(self, path: str) -> int:
        """The byte limit for ``path``: a larger one for the prefixes in ``large`` (iAM Smart's callbacks)."""
        return next((n for prefix, n in self.large if path.startswith(prefix)), self.max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS") or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        try:
            declared = _declared_length(scope)
            if declared is not None and declared > limit:
                raise JsonBodyError(413, "body_too_large", f"a JSON body may have at most {limit} bytes")
            chunks, size, more = [], 0, True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise JsonBodyError(413, "body_too_large", f"a JSON body may have at most {limit} bytes")
                chunks.append(chunk)
                more = message.get("more_body", False)
            body = b"".join(chunks)
            check_json(body)
        except JsonBodyError as exc:
            response = JSONResponse(error_body(exc.code, exc.message), status_code=exc.status)
            await response(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

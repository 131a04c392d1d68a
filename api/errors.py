"""API errors and the one place where exceptions become HTTP responses."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from signing.errors import (
    DamagedPdfError,
    EncryptedPdfError,
    FieldError,
    InputPdfError,
    NotAPdfError,
    SigningError,
)

__all__ = ["ApiError", "install_error_handlers", "error_body"]

log = logging.getLogger("iamsign.api")


class ApiError(Exception):
    """An error a client should see: HTTP status, stable code, plain message."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers


def error_body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


_SIGNING_STATUS: list[tuple[type[SigningError], int]] = [
    (NotAPdfError, 415),
    (EncryptedPdfError, 422),
    (DamagedPdfError, 422),
    (InputPdfError, 422),
    (FieldError, 422),
]

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 413: "too_large"}


def _with_challenge(status: int, headers: dict[str, str] | None) -> dict[str, str] | None:
    """A 401 always says how to authenticate (RFC 6750)."""
    if status != 401:
        return headers
    return {"WWW-Authenticate": 'Bearer realm="iamsign"', **(headers or {})}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.code, exc.message),
            status_code=exc.status,
            headers=_with_challenge(exc.status, exc.headers),
        )

    @app.exception_handler(SigningError)
    async def _signing_error(_: Request, exc: SigningError) -> JSONResponse:
        status = next((s for t, s in _SIGNING_STATUS if isinstance(exc, t)), 422)
        return JSONResponse(error_body(exc.code, exc.message), status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors()[:5]:
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        return JSONResponse(
            error_body("invalid_request", "; ".join(parts) or "invalid request"), status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return JSONResponse(
            error_body(code, str(exc.detail)),
            status_code=exc.status_code,
            headers=_with_challenge(exc.status_code, getattr(exc, "headers", None)),
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return JSONResponse(
            error_body("internal_error", "an unexpected error occurred; it has been logged"), status_code=500
        )

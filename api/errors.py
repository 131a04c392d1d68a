"""API errors and the one place where exceptions become HTTP responses."""

from __future__ import annotations

import errno
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.worker.egress import EgressRefused
from signing.errors import (
    DamagedPdfError,
    EncryptedPdfError,
    FieldError,
    InputPdfError,
    NotAPdfError,
    SigningError,
)

__all__ = [
    "ApiError",
    "ErrorDetail",
    "ErrorEnvelope",
    "error_body",
    "install_error_handlers",
    "is_out_of_space",
    "no_room_error",
]

log = logging.getLogger("iamsign.api")


class ApiError(Exception):
    """An error a client should see: HTTP status, stable code, plain message."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers


class ErrorDetail(BaseModel):
    """What went wrong: a stable ``code`` to branch on and a plain ``message`` for people."""

    code: str
    message: str


class ErrorEnvelope(BaseModel):
    """Every error answer of the API: ``{"error": {"code", "message"}}``."""

    error: ErrorDetail


def error_body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


_SIGNING_STATUS: list[tuple[type[SigningError], int]] = [
    (NotAPdfError, 415),
    (EncryptedPdfError, 422),
    (DamagedPdfError, 422),
    (InputPdfError, 422),
    (FieldError, 422),
]

DATABASE_RETRY_AFTER_S = 5
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}


def is_out_of_space(exc: BaseException) -> bool:
    """True for a write that failed because the disk (or the quota) is full."""
    return isinstance(exc, OSError) and exc.errno in _NO_SPACE


def no_room_error() -> ApiError:
    return ApiError(507, "insufficient_storage", "the service has no room to store this now; try again later")


def _database_away(exc: BaseException) -> bool:
    """The database cannot be reached (down, restarting, connection cut), as opposed to a bad query."""
    if isinstance(exc, (OperationalError, InterfaceError)):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


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

    @app.exception_handler(EgressRefused)
    async def _egress(_: Request, exc: EgressRefused) -> JSONResponse:
        return JSONResponse(error_body(exc.code, str(exc)), status_code=422)

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

    @app.exception_handler(DBAPIError)
    async def _database(_: Request, exc: DBAPIError) -> JSONResponse:
        if not _database_away(exc):
            return _internal(exc)
        log.warning("database unavailable: %s", exc.orig.__class__.__name__ if exc.orig else exc)
        return JSONResponse(
            error_body("database_unavailable", "the service's database is unavailable; retry shortly"),
            status_code=503,
            headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)},
        )

    @app.exception_handler(OSError)
    async def _os_error(_: Request, exc: OSError) -> JSONResponse:
        if is_out_of_space(exc):
            log.warning("storage full: %s", exc)
            err = no_room_error()
            return JSONResponse(error_body(err.code, err.message), status_code=err.status)
        return _internal(exc)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        return _internal(exc)


def _internal(exc: BaseException) -> JSONResponse:
    """An unexpected error: logged with its traceback, answered without one."""
    log.error("unexpected error", exc_info=exc)
    return JSONResponse(
        error_body("internal_error", "an unexpected error occurred; it has been logged"), status_code=500
    )

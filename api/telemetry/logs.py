"""Logs: one JSON object a line (``IAMSIGN_LOG_FORMAT=json``) or readable text, each line carrying the
HTTP request id and the signing request or batch it is about (context variables, so every line logged
while handling one request or job has them without being passed around)."""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import re
import sys
import uuid
from typing import Any

__all__ = [
    "JsonFormatter",
    "bind_batch",
    "bind_signing_request",
    "configure_logging",
    "current_request_id",
    "request_id_from",
]

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("iamsign_request_id", default=None)
SIGNING_REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "iamsign_signing_request_id", default=None
)
BATCH_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("iamsign_batch_id", default=None)
_CONTEXT = {"request_id": REQUEST_ID, "signing_request_id": SIGNING_REQUEST_ID, "batch_id": BATCH_ID}

# A caller's X-Request-ID is kept only if it is short and plain (no spaces, quotes or control characters
# that could forge log lines or headers); otherwise the service makes its own.
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def request_id_from(header: str | None) -> str:
    """The caller's request id when acceptable, else a fresh one."""
    if header and _SAFE_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


def current_request_id() -> str | None:
    return REQUEST_ID.get()


def bind_signing_request(request_id: str | None) -> None:
    """Every line logged from here on in this context (request, job, task) is about ``request_id``."""
    SIGNING_REQUEST_ID.set(request_id)


def bind_batch(batch_id: str | None) -> None:
    BATCH_ID.set(batch_id)


class ContextFilter(logging.Filter):
    """Copies the context's ids onto each record (``None`` when unset), for both formats."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _CONTEXT.items():
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the context ids, ``fields``, exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _CONTEXT:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update({k: v for k, v in fields.items() if k not in line})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ids = " ".join(f"{n}={getattr(record, n)}" for n in _CONTEXT if getattr(record, n, None))
        text = super().format(record)
        return f"{text}  [{ids}]" if ids else text


def configure_logging(fmt: str = "text", level: int = logging.INFO) -> logging.Handler:
    """Send every logger (uvicorn's and huey's too) to one stderr handler in ``fmt`` (json or text)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "huey"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    for chatty in ("httpx", "httpcore", "pyhanko", "pyhanko_certvalidator", "alembic"):
        logging.getLogger(chatty).setLevel(max(level, logging.WARNING))  # a line per HTTP call or fetch
    return handler

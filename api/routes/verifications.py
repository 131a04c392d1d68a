"""``POST /v1/verifications``: verify an uploaded PDF and return the report (no API key needed).

Anyone who received a signed PDF may ask; the upload is streamed to a temp file under the size limit,
verified off the event loop, and deleted. A small per-client rate limit protects the CPU.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from api.deps import SettingsDep, StoreDep
from api.errors import ApiError
from api.openapi import PDF_UPLOAD, errors
from api.store.uploads import receive_pdf_upload
from signing.errors import UnreadablePdfError, VerificationError
from signing.trust import TrustList
from signing.verify import VerifyOptions, verify_pdf_sync

__all__ = ["RateLimiter", "router"]

router = APIRouter(prefix="/v1/verifications", tags=["verifications"])

_STATUS = {"not_a_pdf": 415, "file_too_large": 413}


class RateLimiter:
    """At most ``limit`` requests per ``window`` seconds for each client address (in memory)."""

    def __init__(self, limit: int = 30, window: float = 60.0) -> None:
        self.limit, self.window = limit, window
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, client: str) -> float | None:
        """None when allowed; otherwise the seconds to wait."""
        now = time.monotonic()
        with self._lock:
            hits = self._hits.setdefault(client, deque())
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                return max(hits[0] + self.window - now, 0.1)
            hits.append(now)
            if len(self._hits) > 10_000:  # forget idle clients
                for key in [k for k, v in self._hits.items() if not v]:
                    del self._hits[key]
            return None


def _limiter(request: Request) -> RateLimiter:
    limiter = getattr(request.app.state, "verification_limiter", None)
    if limiter is None:
        limiter = request.app.state.verification_limiter = RateLimiter()
    return limiter


def _trust(request: Request, settings) -> TrustList:
    trust = getattr(request.app.state, "verification_trust", None)
    if trust is None:
        trust = TrustList.load(data_dir=settings.data_dir)
        if settings.environment != "sandbox":  # the sandbox CA is trusted in the sandbox only
            trust = trust.without_sandbox()
        request.app.state.verification_trust = trust
    return trust


@router.post(
    "",
    responses=errors(400, 413, 415, 422, 429),
    openapi_extra=PDF_UPLOAD,
)
async def create_verification(
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    offline: bool = Query(False, description="Use only the validation data in the file; fetch no OCSP/CRL."),
    lang: str = Query("en", pattern="^(en|zh-Hant)$", description="Language of the optional text rendering."),
    text: bool = Query(False, description="Add the readable report as 'text'."),
) -> JSONResponse:
    """Verify the PDF in multipart field ``file``; the body is the verification report (JSON contract)."""
    client = request.client.host if request.client else "unknown"
    wait = _limiter(request).check(client)
    if wait is not None:
        return JSONResponse(
            {"error": {"code": "rate_limited", "message": "too many verifications; try again later"}},
            status_code=429,
            headers={"Retry-After": str(int(wait) + 1)},
        )
    staged = await receive_pdf_upload(request, store, settings.max_upload_bytes)
    try:
        options = VerifyOptions(
            trust=_trust(request, settings), offline=offline, max_file_size=settings.max_upload_bytes
        )
        report = await asyncio.to_thread(verify_pdf_sync, staged.file.path, options)
    except UnreadablePdfError as exc:
        raise ApiError(_STATUS.get(exc.code, 422), exc.code, exc.message) from exc
    except VerificationError as exc:
        raise ApiError(500, exc.code, exc.message) from exc
    finally:
        store.discard(staged.file)
    body = report.to_json()
    if text:
        from signing.verify import render_text

        body["text"] = render_text(report, lang)
    return JSONResponse(body)

"""``POST /v1/verifications``: verify an uploaded PDF and return the report (no API key needed).

Anyone who received a signed PDF may ask; the upload is streamed to a temp file under the size limit,
verified off the event loop, and deleted. A per-client rate limit (``api.edge.limits``) protects the CPU.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from api.deps import LimitsDep, SettingsDep, StoreDep, TrustListDep
from api.errors import ApiError
from api.openapi import PDF_UPLOAD, errors
from api.store.uploads import receive_pdf_upload
from signing.errors import UnreadablePdfError, VerificationError
from signing.verify import VerifyOptions, verify_pdf_sync

__all__ = ["router"]

router = APIRouter(prefix="/v1/verifications", tags=["verifications"])

_STATUS = {"not_a_pdf": 415, "file_too_large": 413}


@router.post(
    "",
    responses=errors(400, 413, 415, 422, 429),
    openapi_extra=PDF_UPLOAD,
)
async def create_verification(
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    limits: LimitsDep,
    trust: TrustListDep,
    offline: bool = Query(False, description="Use only the validation data in the file; fetch no OCSP/CRL."),
    lang: str = Query("en", pattern="^(en|zh-Hant)$", description="Language of the optional text rendering."),
    text: bool = Query(False, description="Add the readable report as 'text'."),
) -> JSONResponse:
    """Verify the PDF in multipart field ``file``; the body is the verification report (JSON contract)."""
    await run_in_threadpool(limits.enforce, limits.verification, request)
    staged = await receive_pdf_upload(request, store, settings.max_upload_bytes)
    try:
        options = VerifyOptions(trust=trust, offline=offline, max_file_size=settings.max_upload_bytes)
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

"""HTTP face of the simulated iAM Smart: the API under ``/api/v1``, the getQR page, phone and test hooks.

Mounted at ``/sandbox`` (so the API is ``/sandbox/api/v1/...``). The iAM Smart API answers with
protocol envelopes (HTTP 200 even for business errors, as the real system does); the sandbox's own
``/v1/...`` hooks answer plain JSON, errors as ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from signing.iamsmart.codes import ReturnCode
from signing.sandbox.engine import SandboxEngine
from signing.sandbox.errors import HookError, SandboxError
from signing.sandbox.users import AutoAction, UserStatus, UserType

__all__ = ["install_sandbox_errors", "sandbox_subapp"]

_TEMPLATES = Jinja2Templates(directory=str(Path(__file__).resolve().parents[1] / "templates"))


class PhoneAction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hkid: str = Field(max_length=20)
    sign_code: str = Field(max_length=8)


class HookBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hkid: str | None = Field(None, max_length=20)
    ids: list[str] | None = Field(None, max_length=1000)
    """``decline`` (bulk requests): the documents the user will refuse."""


class UserRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hkid: str = Field(max_length=20)


class UserCertificate(UserRef):
    client_id: str | None = Field(None, max_length=200)


class UserRenewal(UserRef):
    revoke_old: bool = True


class UserChange(UserRef):
    status: UserStatus | None = None
    user_type: UserType | None = None
    auto_action: AutoAction | None = None
    auto_delay_ms: int | None = Field(None, ge=0, le=3_600_000)


class ClockMove(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ms: int = Field(ge=0, le=10 * 365 * 24 * 3600 * 1000)


def _error(exc: HookError) -> JSONResponse:
    return JSONResponse({"error": {"code": exc.code, "message": exc.message}}, status_code=exc.status)


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


async def _hkid_from(request: Request) -> str:
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            data = await request.json()
        except ValueError:
            data = {}
        value = data.get("hkid") if isinstance(data, dict) else None
    else:
        form = await request.form()
        value = form.get("hkid")
    if not isinstance(value, str) or not value or len(value) > 20:
        raise HookError(422, "hkid_needed", "give the sandbox user's hkid")
    return value


def install_sandbox_errors(app: FastAPI) -> None:
    """Every error of the sandbox, its own or the framework's (unknown path, bad body), as the envelope."""

    async def hook_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HookError)
        return _error(exc)

    async def http_error(request: Request, exc: Exception) -> Response:
        """Unknown paths and methods answer the same envelope as the hooks' own errors."""
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(HookError(exc.status_code, code, str(exc.detail)))

    async def invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        parts = [
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body')}: {e.get('msg')}"
            for e in exc.errors()[:5]
        ]
        return _error(HookError(422, "invalid_request", "; ".join(parts) or "invalid request"))

    app.add_exception_handler(HookError, hook_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)


def sandbox_subapp(engine: SandboxEngine) -> FastAPI:
    """The sandbox as an ASGI app to mount at ``/sandbox``."""
    app = FastAPI(
        title="iAM Smart sandbox", description="A wire-faithful simulation of iAM Smart+ for tests."
    )
    app.state.engine = engine

    install_sandbox_errors(app)
    app.include_router(_api_router(engine), prefix="/api/v1")
    app.include_router(_hooks_router(engine), prefix="/v1")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index(request: Request) -> Response:
        return _TEMPLATES.TemplateResponse(
            request,
            "sandbox_index.html",
            {"users": [u.public() for u in engine.users.all()], "root": request.scope.get("root_path", "")},
        )

    return app


# ---------------------------------------------------------------------------------------------- the API


def _api_router(engine: SandboxEngine) -> APIRouter:
    router = APIRouter(tags=["iAM Smart API (simulated)"])

    def add(path: str) -> None:
        async def endpoint(request: Request) -> JSONResponse:
            body = await request.body()
            return JSONResponse(await engine.handle(path, request.headers, body))

        endpoint.__name__ = path.strip("/").replace("/", "_")
        router.add_api_route(path, endpoint, methods=["POST"], summary=f"POST {path}")

    for path in engine.api_paths:
        add(path)

    @router.get("/auth/getQR", response_class=HTMLResponse, summary="GET /auth/getQR (browser page)")
    async def get_qr(request: Request) -> Response:
        engine.ensure_ticker()
        params = dict(request.query_params)
        try:
            session = engine.open_qr(params)
        except SandboxError as exc:
            if _wants_json(request):
                return JSONResponse({"code": exc.code.value, "message": exc.code.message}, status_code=400)
            return _TEMPLATES.TemplateResponse(
                request, "sandbox_qr.html", {"error": exc.code, "detail": exc.detail}, status_code=400
            )
        req = engine.request_ticket(params["ticketID"]) if session.business_id else None
        root = request.scope.get("root_path", "")
        headers = {"X-Sandbox-QR-Session": session.session_id}
        if _wants_json(request):
            return JSONResponse(
                {
                    "session_id": session.session_id,
                    "approve": f"{root}/v1/qr/{session.session_id}/approve",
                    "reject": f"{root}/v1/qr/{session.session_id}/reject",
                    "request": req.public() if req else None,
                },
                headers=headers,
            )
        return _TEMPLATES.TemplateResponse(
            request,
            "sandbox_qr.html",
            {
                "error": None,
                "session": session,
                "req": req.public() if req else None,
                "users": [u.public() for u in engine.users.all()],
                "root": root,
            },
            headers=headers,
        )

    return router


# ---------------------------------------------------------------------------------------------- hooks


def _hooks_router(engine: SandboxEngine) -> APIRouter:
    router = APIRouter(tags=["sandbox test hooks"])

    @router.post("/qr/{session_id}/approve")
    async def qr_approve(session_id: str, request: Request) -> Response:
        url = await engine.qr_approve(session_id, await _hkid_from(request))
        if request.headers.get("content-type", "").startswith("application/json"):
            return JSONResponse({"redirect_url": url})
        return RedirectResponse(url, status_code=303)

    @router.post("/qr/{session_id}/reject")
    async def qr_reject(session_id: str, request: Request) -> Response:
        url = await engine.qr_reject(session_id)
        if request.headers.get("content-type", "").startswith("application/json"):
            return JSONResponse({"redirect_url": url})
        return RedirectResponse(url, status_code=303)

    @router.get("/users")
    async def users() -> list[dict[str, Any]]:
        return [u.public() for u in engine.users.all()]

    @router.post("/users/update")
    async def change_user(change: UserChange) -> dict[str, Any]:
        """Change a user's switches; the HKID is in the body (never in a URL, so never in an access log)."""
        user = engine.user_by_hkid(change.hkid)
        new = engine.users.update(
            user,
            engine.clock.now_ms(),
            status=change.status,
            user_type=change.user_type,
            auto_action=change.auto_action,
            auto_delay_ms=change.auto_delay_ms,
        )
        return new.public()

    @router.post("/users/certificate")
    async def user_certificate(which: UserCertificate) -> Response:
        """The user's certificate (for one online service with ``client_id``: its subject holds that openID)."""
        user = engine.user_by_hkid(which.hkid)
        cert = engine.users.certificate(user, which.client_id)
        return Response(cert.public_bytes(Encoding.PEM), media_type="application/x-pem-file")

    @router.post("/users/revoke-certificate")
    async def revoke_certificate(who: UserRef) -> dict[str, Any]:
        """Revoke every certificate of the user (OCSP and the CRL say so from now on)."""
        user = engine.user_by_hkid(who.hkid)
        certs = engine.users.certificates(user) or [engine.users.certificate(user)]
        for cert in certs:
            engine.pki.revoke(cert.serial_number)
        return {
            "serial": str(certs[0].serial_number),
            "serials": [str(c.serial_number) for c in certs],
            "revoked": True,
        }

    @router.post("/users/renew-certificate")
    async def renew_certificate(renewal: UserRenewal) -> dict[str, Any]:
        """Renew the user's certificates: a new key and certificate; the old ones are revoked as superseded
        unless ``revoke_old`` is false (then they stay valid, as a renewal before expiry may leave them)."""
        user = engine.user_by_hkid(renewal.hkid)
        old = engine.users.renew(user)
        if renewal.revoke_old:
            for cert in old:
                engine.pki.revoke(cert.serial_number, reason="superseded")
        return {
            "old_serials": [str(c.serial_number) for c in old],
            "serials": [str(c.serial_number) for c in engine.users.certificates(user)],
            "old_revoked": renewal.revoke_old,
        }

    def phone_page(request: Request, hkid: str) -> Response:
        user = engine.user_by_hkid(hkid)
        return _TEMPLATES.TemplateResponse(
            request,
            "sandbox_phone.html",
            {
                "user": user.public(),
                "pending": [r.public() for r in engine.pending_for(hkid)],
                "root": request.scope.get("root_path", ""),
            },
        )

    @router.post("/phone", response_class=HTMLResponse, include_in_schema=False)
    async def phone(request: Request) -> Response:
        """The simulated phone of the user whose ``hkid`` is posted (form field or JSON)."""
        return phone_page(request, await _hkid_from(request))

    @router.post("/phone/pending")
    async def pending(who: UserRef) -> list[dict[str, Any]]:
        return [r.public() for r in engine.pending_for(who.hkid)]

    @router.post("/phone/approve")
    async def phone_approve(action: PhoneAction) -> dict[str, Any]:
        return (await engine.phone_approve(action.hkid, action.sign_code)).public()

    @router.post("/phone/reject")
    async def phone_reject(action: PhoneAction) -> dict[str, Any]:
        return (await engine.phone_reject(action.hkid, action.sign_code)).public()

    @router.post("/phone/{business_id}/{action}", response_class=HTMLResponse, include_in_schema=False)
    async def phone_form(business_id: str, action: str, request: Request) -> Response:
        """The phone page's buttons (HTML forms posting ``hkid``); answers the phone page again."""
        hkid = await _hkid_from(request)
        req = engine.find_request(business_id, request.query_params.get("client_id"))
        if action == "approve":
            await engine.phone_approve(hkid, req.sign_code)
        elif action == "reject":
            await engine.phone_reject(hkid, req.sign_code)
        else:
            raise HookError(404, "unknown_action", f"unknown action {action}")
        return phone_page(request, hkid)

    @router.get("/requests/{business_id}")
    async def request_status(business_id: str, client_id: str | None = None) -> dict[str, Any]:
        return engine.find_request(business_id, client_id).public()

    @router.post("/requests/{business_id}/{action}")
    async def request_hook(
        business_id: str, action: str, body: HookBody | None = None, client_id: str | None = None
    ) -> dict[str, Any]:
        req = await engine.hook(
            business_id, action, client_id, body.hkid if body else None, body.ids if body else None
        )
        return req.public()

    @router.get("/clock")
    async def clock() -> dict[str, int]:
        return {"now_ms": engine.clock.now_ms(), "offset_ms": engine.clock.offset_ms}

    @router.post("/clock/advance")
    async def advance(move: ClockMove) -> dict[str, int]:
        now = await engine.advance_clock(move.ms)
        return {"now_ms": now, "offset_ms": engine.clock.offset_ms}

    @router.get("/pki/root.pem")
    async def root_pem() -> Response:
        return Response(engine.pki.root_pem(), media_type="application/x-pem-file")

    @router.get("/codes")
    async def codes() -> dict[str, str]:
        return {c.value: c.message for c in ReturnCode}

    return router

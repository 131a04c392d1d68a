"""``/v1/auth/iamsmart``: log a signer in with iAM Smart so that account signing can be used.

``login`` sends the browser to iAM Smart's getQR with a fresh ``state``, which it also keeps in a signed,
short-lived cookie; iAM Smart sends the browser back to ``callback`` with a one-time code and that state.
Only the browser that started the login gets past the check. The code is exchanged for the signer's token
(getToken), which stays in the service (encrypted); the answer is an opaque ``session_id`` that the
online service passes as ``signer: {"session_id": ...}`` when it creates a signing request or a batch.
"""

from __future__ import annotations

import datetime as dt
import secrets

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse

from api.deps import FlowDep, ServerSecretDep, SessionDep, SettingsDep
from api.errors import ApiError
from api.flows.identity import keyed_hash
from api.flows.signer_sessions import (
    LOGIN_COOKIE,
    LOGIN_TTL_S,
    check_login_state,
    login_cookie_value,
    open_signer_session,
)
from api.openapi import errors
from signing.iamsmart.errors import IamSmartError

router = APIRouter(prefix="/v1/auth/iamsmart", tags=["iAM Smart login"])
_COOKIE_PATH = "/v1/auth/iamsmart"


@router.get(
    "/login",
    status_code=302,
    response_class=RedirectResponse,
    responses={302: {"description": "Redirect to iAM Smart's getQR page (sets the login-state cookie)"}},
)
def login(
    flow: FlowDep, settings: SettingsDep, server_secret: ServerSecretDep, lang: str = "zh-HK"
) -> RedirectResponse:
    """Redirect to iAM Smart's QR / app login asking for the signing scope."""
    state = secrets.token_urlsafe(24)
    url = flow.client.qr_url(
        f"{settings.base_url}/v1/auth/iamsmart/callback",
        ("eidapi_auth", "eidapi_sign"),
        state=state,
        lang=lang if lang in ("en-US", "zh-HK", "zh-CN") else "zh-HK",
    )
    response = RedirectResponse(url, status_code=302)
    response.set_cookie(
        LOGIN_COOKIE,
        login_cookie_value(server_secret, state, flow.clock()),
        max_age=LOGIN_TTL_S,
        path=_COOKIE_PATH,
        httponly=True,
        secure=settings.base_url.startswith("https://"),
        samesite="lax",  # iAM Smart brings the browser back by a top-level GET
    )
    return response


@router.get("/callback", responses=errors(400))
async def login_callback(
    request: Request,
    session: SessionDep,
    flow: FlowDep,
    secret: ServerSecretDep,
    code: str | None = None,
    error_code: str | None = None,
    state: str | None = None,
) -> JSONResponse:
    """Check the browser's login state, exchange iAM Smart's code, answer an opaque signer session."""
    now = flow.clock()
    check_login_state(secret, request.cookies.get(LOGIN_COOKIE), state, now)
    if error_code or not code:
        raise ApiError(400, "login_failed", f"iAM Smart login did not succeed ({error_code or 'no code'})")
    try:
        token = await flow.client.get_token(code)
    except IamSmartError as exc:
        raise ApiError(400, "login_failed", f"iAM Smart refused the login code: {exc}") from None
    session_id, row = open_signer_session(
        session, secret, token, keyed_hash(secret, "openid", token.open_id), now
    )
    expires_at = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=dt.UTC)
    response = JSONResponse(
        {
            "session_id": session_id,
            "user_type": token.user_type,
            "can_sign": token.can_sign,
            "expires_at": expires_at.isoformat(timespec="seconds"),
        },
        headers={"Cache-Control": "no-store"},
    )
    response.delete_cookie(LOGIN_COOKIE, path=_COOKIE_PATH)  # one login per state
    return response

"""``/v1/auth/iamsmart``: log a signer in with iAM Smart so that account signing can be used.

``login`` sends the browser to iAM Smart's getQR; iAM Smart sends it back to ``callback`` with a one-time
code, which is exchanged for the signer's ``open_id`` and ``access_token`` (getToken). The online service
passes those two in ``signer`` when it creates a signing request.
"""

from __future__ import annotations

import secrets

from fastapi import APIRouter
from fastapi.responses import RedirectResponse

from api.deps import FlowDep, SettingsDep
from api.errors import ApiError
from api.openapi import errors
from signing.iamsmart.errors import IamSmartError

router = APIRouter(prefix="/v1/auth/iamsmart", tags=["iAM Smart login"])


@router.get(
    "/login",
    status_code=302,
    response_class=RedirectResponse,
    responses={302: {"description": "Redirect to iAM Smart's getQR page"}},
)
def login(flow: FlowDep, settings: SettingsDep, lang: str = "zh-HK") -> RedirectResponse:
    """Redirect to iAM Smart's QR / app login asking for the signing scope."""
    state = secrets.token_urlsafe(18)[:24]
    url = flow.client.qr_url(
        f"{settings.base_url}/v1/auth/iamsmart/callback",
        ("eidapi_auth", "eidapi_sign"),
        state=state,
        lang=lang if lang in ("en-US", "zh-HK", "zh-CN") else "zh-HK",
    )
    return RedirectResponse(url, status_code=302)


@router.get("/callback", responses=errors(400))
async def login_callback(
    flow: FlowDep, code: str | None = None, error_code: str | None = None, state: str | None = None
) -> dict:
    """Exchange iAM Smart's code for the signer's token."""
    if error_code or not code:
        raise ApiError(400, "login_failed", f"iAM Smart login did not succeed ({error_code or 'no code'})")
    try:
        token = await flow.client.get_token(code)
    except IamSmartError as exc:
        raise ApiError(400, "login_failed", f"iAM Smart refused the login code: {exc}") from None
    return {
        "open_id": token.open_id,
        "access_token": token.access_token,
        "user_type": token.user_type,
        "can_sign": token.can_sign,
        "expires_in_ms": token.expires_in,
    }

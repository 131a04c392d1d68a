"""Signers logged in with iAM Smart, and the login's browser binding.

After ``/v1/auth/iamsmart/callback`` the iAM Smart token stays here, sealed with AES-GCM under a key
derived from the server secret; the integrator receives only an opaque signer-session id (``ss_...``) to
pass as ``signer: {"session_id": ...}``. The database keeps a hash of that id, never the id itself.

The login's ``state`` travels in a signed, short-lived cookie set by ``/login`` and compared with the one
iAM Smart returns, so a callback URL made in another browser cannot log this one in (login CSRF).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import update
from sqlmodel import Session, col, delete

from api.errors import ApiError
from api.store.models import SignerSession
from signing.iamsmart.client import Token

__all__ = [
    "LOGIN_COOKIE",
    "LOGIN_TTL_S",
    "check_login_state",
    "forget_expired_sessions",
    "login_cookie_value",
    "open_signer_session",
    "token_for_session",
]

LOGIN_COOKIE = "iamsign_login_state"
LOGIN_TTL_S = 600
"""How long a login may take between ``/login`` and the callback (iAM Smart's auth code lives 30-60 s)."""
_DEFAULT_TOKEN_LIFETIME = dt.timedelta(hours=4)


def _key(secret: bytes, purpose: str) -> bytes:
    return hmac.new(secret, f"iamsign {purpose} v1".encode(), hashlib.sha256).digest()


# ------------------------------------------------------------------ the login cookie


def login_cookie_value(secret: bytes, state: str, now: dt.datetime) -> str:
    """``state.expiry.mac``: the login's state, bound to the browser that started it."""
    expiry = int(now.timestamp()) + LOGIN_TTL_S
    mac = hmac.new(_key(secret, "login-state"), f"{state}.{expiry}".encode(), hashlib.sha256).hexdigest()
    return f"{state}.{expiry}.{mac}"


def check_login_state(secret: bytes, cookie: str | None, state: str | None, now: dt.datetime) -> None:
    """Refuse (400 ``login_state_mismatch``) a callback whose ``state`` is not the one this browser's
    unexpired, untampered cookie holds."""
    refuse = ApiError(
        400,
        "login_state_mismatch",
        "this login was not started in this browser, or took too long: start again at /v1/auth/iamsmart/login",
    )
    if not cookie or not state:
        raise refuse
    try:
        value, expiry, mac = cookie.rsplit(".", 2)
        expires = int(expiry)
    except ValueError:
        raise refuse from None
    good = hmac.new(_key(secret, "login-state"), f"{value}.{expiry}".encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(mac.encode(), good.encode()) or expires < int(now.timestamp()):
        raise refuse
    if not hmac.compare_digest(value.encode(), state.encode()):
        raise refuse


# ------------------------------------------------------------------ signer sessions


def _row_id(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def open_signer_session(
    session: Session, secret: bytes, token: Token, signer_key: str, now: dt.datetime
) -> tuple[str, SignerSession]:
    """Store ``token`` sealed; return the opaque id the integrator uses, and the row (committed)."""
    session_id = f"ss_{secrets.token_urlsafe(32)}"
    row_id = _row_id(session_id)
    lifetime = (
        dt.timedelta(milliseconds=token.expires_in) if token.expires_in > 0 else _DEFAULT_TOKEN_LIFETIME
    )
    plain = json.dumps(
        {
            "access_token": token.access_token,
            "open_id": token.open_id,
            "token_type": token.token_type,
            "issue_at": token.issue_at,
            "expires_in": token.expires_in,
            "last_modified_date": token.last_modified_date,
            "user_type": token.user_type,
            "scope": token.scope,
        }
    ).encode()
    nonce = secrets.token_bytes(12)
    sealed = nonce + AESGCM(_key(secret, "signer-session")).encrypt(nonce, plain, row_id.encode())
    row = SignerSession(
        id=row_id,
        signer_key=signer_key,
        token_sealed=base64.b64encode(sealed).decode(),
        user_type=token.user_type[:16],
        expires_at=now + lifetime,
        created_at=now,
    )
    session.add(row)
    session.commit()
    return session_id, row


def _open(secret: bytes, row: SignerSession, bound_to: str | None) -> bytes | None:
    """The sealed token in clear if it was sealed for ``bound_to`` (None: not yet bound), else None."""
    aad = row.id if bound_to is None else f"{row.id}|{bound_to}"
    try:
        sealed = base64.b64decode(row.token_sealed)
        return AESGCM(_key(secret, "signer-session")).decrypt(sealed[:12], sealed[12:], aad.encode())
    except (InvalidTag, ValueError):
        return None


def _bind(session: Session, secret: bytes, row: SignerSession, plain: bytes, organisation_id: str) -> bool:
    """Seal the token again for ``organisation_id`` alone (compare-and-set: one organisation wins)."""
    nonce = secrets.token_bytes(12)
    aad = f"{row.id}|{organisation_id}".encode()
    sealed = base64.b64encode(nonce + AESGCM(_key(secret, "signer-session")).encrypt(nonce, plain, aad))
    done = session.exec(
        update(SignerSession)
        .where(col(SignerSession.id) == row.id, col(SignerSession.token_sealed) == row.token_sealed)
        .values(token_sealed=sealed.decode())
    )
    session.commit()
    return done.rowcount == 1


def token_for_session(
    session: Session, secret: bytes, session_id: str, now: dt.datetime, organisation_id: str | None = None
) -> tuple[Token, str]:
    """The iAM Smart token and signer key behind ``session_id``; 422 when unknown or expired.

    With ``organisation_id`` the session belongs to the first organisation that uses it: its token is
    sealed again with that organisation in the associated data, and another organisation holding the id
    gets the same 422 as for an unknown session.
    """
    row = session.get(SignerSession, _row_id(session_id)) if session_id.startswith("ss_") else None
    if row is None:
        raise ApiError(422, "unknown_signer_session", "no such signer session: log the signer in again")
    expires_at = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=dt.UTC)
    if expires_at <= now:
        raise ApiError(
            422, "signer_session_expired", "the signer's iAM Smart login has expired: log in again"
        )
    plain = _open(secret, row, organisation_id) if organisation_id else None
    if plain is None:
        plain = _open(secret, row, None)
        if plain is not None and organisation_id and not _bind(session, secret, row, plain, organisation_id):
            session.refresh(row)  # bound a moment ago, perhaps by this very organisation
            plain = _open(secret, row, organisation_id)
    if plain is None:
        raise ApiError(
            422, "unknown_signer_session", "the signer session cannot be opened: log the signer in again"
        )
    try:
        data = json.loads(plain)
    except ValueError:
        raise ApiError(
            422, "unknown_signer_session", "the signer session cannot be opened: log the signer in again"
        ) from None
    return Token(**data), row.signer_key


def forget_expired_sessions(session: Session, now: dt.datetime) -> None:
    """Delete signer sessions whose token has expired (the sweep calls this)."""
    session.exec(delete(SignerSession).where(col(SignerSession.expires_at) < now))
    session.commit()

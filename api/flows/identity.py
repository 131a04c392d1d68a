"""Signer identities: HKIDs are checked, turned into iAM Smart's HKICHash for the call, and forgotten.

What the service keeps is only ``signer_key``: HMAC-SHA256 under a server secret. iAM Smart's HKICHash is
an unsalted SHA-256 over a small space of IDs (brute-forced in seconds), so it is never stored or logged.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass

from sqlmodel import Session

from api.errors import ApiError
from api.flows.signer_sessions import token_for_session
from signing.iamsmart.client import Token
from signing.iamsmart.protocol import hkic_hash, normalise_hkid

__all__ = ["HkidSigner", "ResolvedSigner", "SignerSpec", "hkid_signer", "keyed_hash", "resolve_signer"]


def keyed_hash(secret: bytes, kind: str, value: str) -> str:
    """A stable, non-reversible reference to a person (``kind`` = ``hkid`` or ``openid``)."""
    return hmac.new(secret, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class HkidSigner:
    hkic_hash: str
    """For the iAM Smart request only; never persisted."""
    signer_key: str
    """What the service stores (keyed hash)."""

    def __repr__(self) -> str:  # keep it out of logs and tracebacks
        return f"HkidSigner(signer_key={self.signer_key[:12]}...)"


def hkid_signer(secret: bytes, hkid: str) -> HkidSigner:
    """Check an HKID (format and check digit) or answer 422; return what the flow needs."""
    if not isinstance(hkid, str) or "(" not in hkid and len(hkid.replace(" ", "")) < 8:
        raise ApiError(422, "invalid_hkid", "give the HKID with its check digit, for example A123456(3)")
    try:
        body = normalise_hkid(hkid)
    except ValueError as exc:
        raise ApiError(422, "invalid_hkid", f"the HKID is not valid: {exc}") from None
    return HkidSigner(hkic_hash=hkic_hash(body), signer_key=keyed_hash(secret, "hkid", body))


@dataclass(frozen=True)
class SignerSpec:
    """Who signs, as the online service names them: an HKID, or a signer session from iAM Smart login."""

    hkid: str | None = None
    session_id: str | None = None


@dataclass(frozen=True)
class ResolvedSigner:
    """What a flow needs: anonymous (HKICHash, transient) or account (token); and the stored keyed hash."""

    flow: str
    signer_key: str
    hkic_hash: str | None
    token: Token | None

    def __repr__(self) -> str:
        return f"ResolvedSigner(flow={self.flow}, signer_key={self.signer_key[:12]}...)"


def resolve_signer(
    secret: bytes,
    spec: SignerSpec,
    session: Session | None = None,
    now: dt.datetime | None = None,
    organisation_id: str | None = None,
) -> ResolvedSigner:
    """Check and resolve a signer, or answer 422 saying how to name one (a session needs ``session``;
    with ``organisation_id`` a signer session serves only the organisation that used it first)."""
    if spec.hkid and spec.session_id:
        raise ApiError(422, "invalid_signer", 'give "signer": {"hkid": ...} or {"session_id": ...}, not both')
    if spec.hkid:
        hk = hkid_signer(secret, spec.hkid)
        return ResolvedSigner("anonymous", hk.signer_key, hk.hkic_hash, None)
    if spec.session_id and session is not None:
        token, signer_key = token_for_session(
            session, secret, spec.session_id, now or dt.datetime.now(dt.UTC), organisation_id
        )
        return ResolvedSigner("account", signer_key, None, token)
    raise ApiError(422, "invalid_signer", 'give "signer": {"hkid": ...} or {"session_id": ...}')

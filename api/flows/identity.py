"""Signer identities: HKIDs are checked, turned into iAM Smart's HKICHash for the call, and forgotten.

What the service keeps is only ``signer_key``: HMAC-SHA256 under a server secret. iAM Smart's HKICHash is
an unsalted SHA-256 over a small space of IDs (brute-forced in seconds), so it is never stored or logged.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from api.errors import ApiError
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
    """Who signs, as the online service names them: an HKID, or a logged-in iAM Smart account."""

    hkid: str | None = None
    open_id: str | None = None
    access_token: str | None = None


@dataclass(frozen=True)
class ResolvedSigner:
    """What a flow needs: anonymous (HKICHash, transient) or account (token); and the stored keyed hash."""

    flow: str
    signer_key: str
    hkic_hash: str | None
    token: Token | None

    def __repr__(self) -> str:
        return f"ResolvedSigner(flow={self.flow}, signer_key={self.signer_key[:12]}...)"


def resolve_signer(secret: bytes, spec: SignerSpec) -> ResolvedSigner:
    """Check and resolve a signer, or answer 422 saying how to name one."""
    if spec.hkid and (spec.open_id or spec.access_token):
        raise ApiError(422, "invalid_signer", 'give either "hkid" or "open_id" and "access_token", not both')
    if spec.hkid:
        hk = hkid_signer(secret, spec.hkid)
        return ResolvedSigner("anonymous", hk.signer_key, hk.hkic_hash, None)
    if spec.open_id and spec.access_token:
        token = Token(
            access_token=spec.access_token,
            open_id=spec.open_id,
            token_type="Bearer",
            issue_at=0,
            expires_in=0,
            last_modified_date=None,
            user_type="sign",
            scope="",
        )
        return ResolvedSigner("account", keyed_hash(secret, "openid", spec.open_id), None, token)
    raise ApiError(422, "invalid_signer", 'give "signer": {"hkid": ...} or {"open_id", "access_token"}')

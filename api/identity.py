"""Signer identities: HKIDs are checked, turned into iAM Smart's HKICHash for the call, and forgotten.

What the service keeps is only ``signer_key``: HMAC-SHA256 under a server secret. iAM Smart's HKICHash is
an unsalted SHA-256 over a small space of IDs (brute-forced in seconds), so it is never stored or logged.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from signing.iamsmart.protocol import hkic_hash, normalise_hkid

from .errors import ApiError

__all__ = ["HkidSigner", "hkid_signer", "keyed_hash"]


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

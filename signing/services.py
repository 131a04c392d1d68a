"""The outside services finishing may need: a time-stamping authority and revocation sources."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from asn1crypto import x509
from pyhanko.sign.timestamps import TimeStamper
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.fetchers import OwnedFetcherBackend

from signing.observe import ObservedFetcherBackend, ObservedTimeStamper

__all__ = ["SigningServices"]


@dataclass(frozen=True)
class SigningServices:
    """Where finishing gets timestamps and revocation information (B-T and up)."""

    timestamper: TimeStamper | None = None
    """The TSA for signature and document timestamps (required from B-T up)."""
    trust_roots: Sequence[x509.Certificate] = ()
    """Anchors for the signer and TSA chains; B-LT/B-LTA collect revocation data up to these."""
    other_certs: Sequence[x509.Certificate] = field(default_factory=tuple)
    """Intermediate certificates to include in the CMS and the DSS."""
    allow_fetching: bool = True
    """Fetch OCSP/CRL from the URLs in the certificates (B-LT/B-LTA)."""

    @classmethod
    def with_tsa_url(cls, url: str, **kwargs) -> SigningServices:
        """Services with an RFC 3161 TSA at ``url`` (HTTP POST, ``application/timestamp-query``)."""
        return cls(timestamper=ObservedTimeStamper(url, timeout=10), **kwargs)

    def validation_context(self) -> ValidationContext:
        """A fresh context for gathering revocation info; the caller closes it with ``aclose``."""
        return ValidationContext(
            trust_roots=list(self.trust_roots),
            other_certs=list(self.other_certs),
            allow_fetching=self.allow_fetching,
            revocation_mode="hard-fail",
            fetcher_backend=OwnedFetcherBackend(ObservedFetcherBackend()) if self.allow_fetching else None,
        )

"""Whether a signer's certificate may be embedded now: issued by an iAM Smart-Cert issuer and not revoked.

The one rule both the single-document and the batch flow apply right before embedding, at every level;
the revocation question itself (OCSP, then the CRL) is :func:`signing.revocation.check_revocation`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from asn1crypto import cms as asn1_cms
from cryptography import x509

from api.flows.iamsmart_gateway import issued_by_trusted_issuer
from signing.cms import find_signer_certificate
from signing.revocation import RevocationStatus, check_revocation

__all__ = ["CertificateStanding", "certificate_standing", "cms_signer_certificate"]


@dataclass(frozen=True)
class CertificateStanding:
    """``code`` is ``None`` when the certificate may be embedded; ``detail`` says what was found where."""

    code: str | None
    detail: str


async def certificate_standing(
    cert_der: bytes, issuers: tuple[x509.Certificate, ...], now: dt.datetime
) -> CertificateStanding:
    """``untrusted_certificate``, ``certificate_revoked``, ``revocation_status_unknown``, or fine."""
    issuer = issued_by_trusted_issuer(cert_der, issuers)
    if issuer is None:
        return CertificateStanding(
            "untrusted_certificate",
            "the signer's certificate was not issued by an iAM Smart-Cert issuer in the trust list",
        )
    cert = x509.load_der_x509_certificate(cert_der)
    found = await check_revocation(cert, issuer, now=now)
    serial = f"serial {cert.serial_number:x}"
    if found.status is RevocationStatus.REVOKED:
        return CertificateStanding(
            "certificate_revoked", f"the signer's certificate ({serial}) is revoked: {found.detail}"
        )
    if found.status is RevocationStatus.UNKNOWN:
        return CertificateStanding(
            "revocation_status_unknown",
            f"the revocation status of the signer's certificate ({serial}) could not be established: "
            f"{found.detail}",
        )
    return CertificateStanding(None, found.detail)


def cms_signer_certificate(cms_der: bytes) -> bytes | None:
    """The DER certificate a CMS SignedData names as its (first) signer's, if it carries it."""
    try:
        sd = asn1_cms.ContentInfo.load(cms_der)["content"]
        cert = find_signer_certificate(sd, sd["signer_infos"][0]["sid"])
        return None if cert is None else cert.dump()
    except (ValueError, TypeError, KeyError, IndexError):
        return None

"""Is a signer's certificate usable right now: a path to a trust root, in its validity period, not revoked.

Used when a signer enrols (the certificate iAM Smart returned is kept for later PAdES signatures) and before
a signature is prepared for a kept certificate: a revoked, expired or superseded one is answered at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from asn1crypto import x509
from pyhanko_certvalidator import CertificateValidator
from pyhanko_certvalidator.errors import (
    ExpiredError,
    NotYetValidError,
    PathBuildingError,
    PathValidationError,
    RevokedError,
)

from .services import SigningServices

__all__ = ["CertificateStatus", "check_signer_certificate", "signer_certificate_in"]


@dataclass(frozen=True)
class CertificateStatus:
    """``status``: ``good``, ``revoked``, ``expired``, ``untrusted`` or ``unknown`` (revocation not reachable)."""

    status: str
    message: str

    @property
    def good(self) -> bool:
        return self.status == "good"


async def check_signer_certificate(cert_der: bytes, services: SigningServices) -> CertificateStatus:
    """Validate ``cert_der`` up to ``services.trust_roots``, with revocation (OCSP or CRL) required."""
    cert = x509.Certificate.load(cert_der)
    vc = services.validation_context()
    try:
        await CertificateValidator(cert, validation_context=vc).async_validate_path()
    except RevokedError as exc:
        return CertificateStatus("revoked", f"the certificate is revoked: {exc}")
    except (ExpiredError, NotYetValidError) as exc:
        return CertificateStatus("expired", f"the certificate is not valid now: {exc}")
    except PathBuildingError as exc:
        return CertificateStatus("untrusted", f"no certificate path to a trusted root: {exc}")
    except PathValidationError as exc:
        text = str(exc)
        if "revocation" in text.lower():
            return CertificateStatus("unknown", f"revocation status could not be established: {text}")
        return CertificateStatus("untrusted", f"the certificate chain does not validate: {text}")
    except Exception as exc:  # noqa: BLE001 - fetch errors and hostile certificates raise anything
        return CertificateStatus("unknown", f"the certificate could not be checked: {exc}")
    finally:
        await vc.aclose()
    return CertificateStatus("good", "valid, chains to a trusted root, not revoked")


def signer_certificate_in(path, field_name: str | None = None) -> bytes:
    """The DER signer certificate of the (last, or ``field_name``) approval signature of a signed PDF."""
    from pyhanko.pdf_utils.reader import PdfFileReader

    with open(path, "rb") as f:
        reader = PdfFileReader(f, strict=False)
        sigs = [
            s
            for s in reader.embedded_signatures
            if s.sig_object_type == "/Sig" and (field_name is None or s.field_name == field_name)
        ]
        if not sigs:
            raise ValueError("the document has no signature")
        return sigs[-1].signer_cert.dump()

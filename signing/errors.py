"""Every error the signing core raises, in one module.

Each carries a stable ``code`` (for APIs and scripts) and a message that says what is wrong in words a
caller can act on. ``api`` maps them to HTTP in one place.
"""

from __future__ import annotations

__all__ = [
    "CertificateMismatchError",
    "CertificateMissingError",
    "DamagedPdfError",
    "DigestMismatchError",
    "EncryptedPdfError",
    "FieldError",
    "FinishInProgressError",
    "InputPdfError",
    "InvalidSignatureError",
    "MalformedCmsError",
    "NotAPdfError",
    "PreparedStateError",
    "RemoteSignatureError",
    "RevocationInfoError",
    "SignatureTooLargeError",
    "SigningError",
    "TimestampError",
    "TrustListError",
    "UnreadablePdfError",
    "VerificationError",
]


class SigningError(Exception):
    """Base class: something prevented a correct signature. Nothing was embedded."""

    code = "signing_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InputPdfError(SigningError):
    """The input document cannot be signed as it is."""

    code = "invalid_pdf"


class NotAPdfError(InputPdfError):
    code = "not_a_pdf"


class DamagedPdfError(InputPdfError):
    code = "damaged_pdf"


class EncryptedPdfError(InputPdfError):
    code = "encrypted_pdf"


class FieldError(SigningError):
    """The requested signature field cannot be used (already signed, not a signature field, bad page)."""

    code = "field_error"


class PreparedStateError(SigningError):
    """The prepared record or prepared file does not match what finishing needs."""

    code = "prepared_state_error"


class FinishInProgressError(PreparedStateError):
    """Another process is finishing this prepared signature right now; nothing was touched."""

    code = "finish_in_progress"


class RemoteSignatureError(SigningError):
    """What the remote signer (iAM Smart) returned was refused; nothing was embedded."""

    code = "remote_signature_refused"


class MalformedCmsError(RemoteSignatureError):
    code = "malformed_cms"


class DigestMismatchError(RemoteSignatureError):
    code = "digest_mismatch"


class InvalidSignatureError(RemoteSignatureError):
    code = "invalid_signature"


class CertificateMismatchError(RemoteSignatureError):
    """The certificate returned is not the one the signed attributes were built for; retry without it."""

    code = "certificate_mismatch"


class CertificateMissingError(RemoteSignatureError):
    code = "certificate_missing"


class SignatureTooLargeError(SigningError):
    code = "signature_too_large"


class TimestampError(SigningError):
    """The time-stamping authority could not be reached or gave an unusable answer."""

    code = "timestamp_unavailable"


class RevocationInfoError(SigningError):
    """Revocation information for B-LT/B-LTA could not be gathered."""

    code = "revocation_info_unavailable"


# ---------------------------------------------------------------------------------------------- verification


class VerificationError(Exception):
    """Base class for errors of verification: no report could be made at all.

    A damaged *signature* never raises: it is reported as failed. These errors are for a file that is
    not a readable PDF, and for unusable verifier configuration.
    """

    code = "verification_error"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class UnreadablePdfError(VerificationError):
    """The file cannot be read as a PDF. ``code`` is ``not_a_pdf``, ``damaged_pdf``, ``encrypted_pdf``
    or ``file_too_large``."""

    code = "damaged_pdf"


class TrustListError(VerificationError):
    """The trust list (or a certificate it names) cannot be loaded."""

    code = "trust_list_invalid"

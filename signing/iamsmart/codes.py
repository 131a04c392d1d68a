"""iAM Smart return codes (protocol doc §10) as an enum with their messages."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["CEK_ERRORS", "ReturnCode", "message_for"]


class ReturnCode(StrEnum):
    """The ``code`` member of every iAM Smart response and callback envelope."""

    SUCCESS = "D00000"
    # D2xxxx: request and parameter errors
    UNKNOWN_EXCEPTION = "D20000"
    PARAMETER_MISSING = "D20001"
    PARAMETER_EMPTY = "D20002"
    PARAMETER_INVALID = "D20003"
    REPEATED_REQUEST = "D20004"
    UNSUPPORTED_SIGNATURE_METHOD = "D20005"
    SIGNATURE_CHECK_FAILED = "D20006"
    UNSUPPORTED_SOURCE = "D20007"
    REDIRECT_URI_NOT_REGISTERED = "D20008"
    ACCESS_TOKEN_INVALID = "D20009"
    OPENID_NOT_FOUND = "D20010"
    DUPLICATE_BUSINESS_ID = "D20011"
    INSUFFICIENT_SCOPE = "D20012"
    ENCRYPT_FAILED = "D20022"
    ACCESS_DENIED = "D20026"
    NOT_FOUND = "D20027"
    # D3xxxx: content encryption
    KEK_INVALID = "D30001"
    CEK_INVALID = "D30002"
    ENCRYPTION_EXCEPTION = "D30003"
    DECRYPTION_EXCEPTION = "D30004"
    # D4xxxx: authentication
    AUTH_CANCELLED = "D40000"
    AUTH_REJECTED = "D40001"
    AUTH_FAILED = "D40002"
    AUTH_TIMEOUT = "D40003"
    AUTH_CODE_INVALID = "D40004"
    ID_CARD_ERROR = "D40035"
    # D5xxxx / D6xxxx: profile and form filling
    PROFILE_REJECTED = "D50001"
    PROFILE_FAILED = "D50002"
    PROFILE_TIMEOUT = "D50003"
    FORM_CANCELLED = "D60000"
    FORM_REJECTED = "D60001"
    FORM_FAILED = "D60002"
    FORM_TIMEOUT = "D60003"
    # D7xxxx: signing
    SIGNING_CANCELLED = "D70000"
    SIGNING_REJECTED = "D70001"
    SIGNING_FAILED = "D70002"
    SIGNING_TIMEOUT = "D70003"
    USER_NOT_ALLOWED = "D70004"
    HKIC_MISMATCH = "D70005"
    ACK_FAILED = "D70006"
    # D71xxx: bulk signing (INFERRED from the CorpID M71xxx codes)
    BULK_CANCELLED = "D71000"
    BULK_REJECTED = "D71001"
    BULK_FAILED = "D71002"
    BULK_TIMEOUT = "D71003"
    BULK_USER_NOT_ALLOWED = "D71004"
    BULK_HKIC_MISMATCH = "D71005"
    BULK_ACK_FAILED = "D71006"
    BULK_NOT_PENDING = "D71007"
    BULK_TOKEN_NOT_FOUND = "D71008"
    BULK_INCONSISTENT = "D71009"
    # D8xxxx: step-up authentication
    STEPUP_REJECTED = "D80001"
    STEPUP_FAILED = "D80002"
    STEPUP_TIMEOUT = "D80003"

    @property
    def message(self) -> str:
        """The English message iAM Smart puts beside the code."""
        return _MESSAGES[self]

    @property
    def is_success(self) -> bool:
        return self is ReturnCode.SUCCESS


_MESSAGES: dict[ReturnCode, str] = {
    ReturnCode.SUCCESS: "SUCCESS",
    ReturnCode.UNKNOWN_EXCEPTION: "Unknown exception",
    ReturnCode.PARAMETER_MISSING: "Parameter missing",
    ReturnCode.PARAMETER_EMPTY: "Parameter empty",
    ReturnCode.PARAMETER_INVALID: "Parameter invalid",
    ReturnCode.REPEATED_REQUEST: "Repeated request",
    ReturnCode.UNSUPPORTED_SIGNATURE_METHOD: "Unsupported signature method",
    ReturnCode.SIGNATURE_CHECK_FAILED: "Signature check failed",
    ReturnCode.UNSUPPORTED_SOURCE: "Unsupported source",
    ReturnCode.REDIRECT_URI_NOT_REGISTERED: "Redirect URI not registered",
    ReturnCode.ACCESS_TOKEN_INVALID: "Access token missing or expired",
    ReturnCode.OPENID_NOT_FOUND: "OpenID not found",
    ReturnCode.DUPLICATE_BUSINESS_ID: "Duplicate businessID",
    ReturnCode.INSUFFICIENT_SCOPE: "Insufficient scope",
    ReturnCode.ENCRYPT_FAILED: "Encrypt failed",
    ReturnCode.ACCESS_DENIED: "Access denied",
    ReturnCode.NOT_FOUND: "Not found",
    ReturnCode.KEK_INVALID: "KEK missing or expired",
    ReturnCode.CEK_INVALID: "CEK missing or expired",
    ReturnCode.ENCRYPTION_EXCEPTION: "Encryption exception",
    ReturnCode.DECRYPTION_EXCEPTION: "Decryption exception",
    ReturnCode.AUTH_CANCELLED: "Authentication cancelled",
    ReturnCode.AUTH_REJECTED: "Authentication rejected",
    ReturnCode.AUTH_FAILED: "Authentication failed",
    ReturnCode.AUTH_TIMEOUT: "Authentication timeout",
    ReturnCode.AUTH_CODE_INVALID: "Authorization code missing or expired",
    ReturnCode.ID_CARD_ERROR: "ID card error",
    ReturnCode.PROFILE_REJECTED: "Profile request rejected",
    ReturnCode.PROFILE_FAILED: "Profile request failed",
    ReturnCode.PROFILE_TIMEOUT: "Profile request timeout",
    ReturnCode.FORM_CANCELLED: "Form filling cancelled",
    ReturnCode.FORM_REJECTED: "Form filling rejected",
    ReturnCode.FORM_FAILED: "Form filling failed",
    ReturnCode.FORM_TIMEOUT: "Form filling timeout",
    ReturnCode.SIGNING_CANCELLED: "Signing cancelled",
    ReturnCode.SIGNING_REJECTED: "Signing rejected",
    ReturnCode.SIGNING_FAILED: "Signing failed",
    ReturnCode.SIGNING_TIMEOUT: "Signing timeout",
    ReturnCode.USER_NOT_ALLOWED: "User not allowed to sign",
    ReturnCode.HKIC_MISMATCH: "Inconsistent HKIC number",
    ReturnCode.ACK_FAILED: "Signing acknowledgement failed",
    ReturnCode.BULK_CANCELLED: "Bulk signing cancelled",
    ReturnCode.BULK_REJECTED: "Bulk signing rejected",
    ReturnCode.BULK_FAILED: "Bulk signing failed",
    ReturnCode.BULK_TIMEOUT: "Bulk signing timeout",
    ReturnCode.BULK_USER_NOT_ALLOWED: "User not allowed to bulk sign",
    ReturnCode.BULK_HKIC_MISMATCH: "Inconsistent HKIC number (bulk)",
    ReturnCode.BULK_ACK_FAILED: "Bulk signing acknowledgement failed",
    ReturnCode.BULK_NOT_PENDING: "Bulk request is not pending",
    ReturnCode.BULK_TOKEN_NOT_FOUND: "BSQC token not found",
    ReturnCode.BULK_INCONSISTENT: "Inconsistent department or service name",
    ReturnCode.STEPUP_REJECTED: "Step-up authentication rejected",
    ReturnCode.STEPUP_FAILED: "Step-up authentication failed",
    ReturnCode.STEPUP_TIMEOUT: "Step-up authentication timeout",
}

#: Codes after which a client fetches a new CEK and retries once (protocol doc §4).
CEK_ERRORS = frozenset(
    {
        ReturnCode.KEK_INVALID,
        ReturnCode.CEK_INVALID,
        ReturnCode.ENCRYPTION_EXCEPTION,
        ReturnCode.DECRYPTION_EXCEPTION,
    }
)


def message_for(code: str) -> str:
    """The message of a known code, or ``"Unknown code"``."""
    try:
        return ReturnCode(code).message
    except ValueError:
        return "Unknown code"

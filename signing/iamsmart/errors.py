"""Typed exceptions of the iAM Smart protocol layer; each carries an iAM Smart return code."""

from __future__ import annotations

from .codes import ReturnCode, message_for

__all__ = [
    "EnvelopeError",
    "FieldRuleError",
    "IamSmartApiError",
    "IamSmartError",
    "IamSmartTransportError",
]


class IamSmartError(Exception):
    """Base class. ``code`` is the iAM Smart return code (a ``ReturnCode`` when known)."""

    def __init__(self, code: ReturnCode | str, message: str | None = None) -> None:
        self.code: ReturnCode | str = _as_code(code)
        self.message = message or message_for(str(code))
        super().__init__(f"{self.code}: {self.message}")


class IamSmartApiError(IamSmartError):
    """iAM Smart answered with a code other than D00000."""

    def __init__(
        self,
        code: ReturnCode | str,
        message: str | None = None,
        tx_id: str | None = None,
        content: object = None,
    ) -> None:
        super().__init__(code, message)
        self.tx_id = tx_id
        self.content = content


class FieldRuleError(IamSmartError):
    """A request field breaks the protocol's rules (missing D20001, empty D20002, invalid D20003)."""

    def __init__(self, code: ReturnCode, field: str, reason: str) -> None:
        super().__init__(code, f"{field}: {reason}")
        self.field = field
        self.reason = reason


class EnvelopeError(IamSmartError):
    """An envelope or its encrypted content cannot be read (D30004 for decryption, D20003 otherwise)."""


class IamSmartTransportError(IamSmartError):
    """The HTTP exchange itself failed (connection, HTTP status, not JSON)."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(ReturnCode.UNKNOWN_EXCEPTION, message)
        self.status_code = status_code


def _as_code(code: ReturnCode | str) -> ReturnCode | str:
    try:
        return ReturnCode(code)
    except ValueError:
        return code

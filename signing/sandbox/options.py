"""The simulator's switches: every "simulator choice" of the protocol doc §12 can be changed here.

Defaults follow docs/iamsmart-sandbox.md; ITE findings should correct them here, not in code.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["SandboxOptions", "SecretKeyPlaintext"]

_MIN = 60_000


class SecretKeyPlaintext(StrEnum):
    """What the callback's RSA-wrapped ``secretKey`` holds (§12.3)."""

    RAW = "raw"
    """32 raw key bytes (inferred from production code)."""
    BASE64 = "base64"
    """The 44-character Base64 text of the key (CorpID sandbox behaviour)."""


@dataclass(frozen=True)
class SandboxOptions:
    """Lifetimes, limits and behaviour switches of the simulated iAM Smart."""

    # lifetimes (ms, on the movable clock)
    cek_lifetime_ms: int = 24 * 60 * _MIN
    token_lifetime_ms: int = 4 * 60 * _MIN
    auth_code_lifetime_ms: int = _MIN
    """30 s in production per [OS]; 60 s in sandbox mode (§12.5)."""
    ticket_lifetime_ms: int = 18 * _MIN
    anonymous_ticket_lifetime_ms: int = 12 * _MIN
    ack_window_ms: int = 18 * _MIN
    qr_session_lifetime_ms: int = 18 * _MIN
    # request checks (ms, on the wall clock: client clocks do not move with the sandbox's)
    timestamp_window_ms: int = 5 * _MIN
    require_monotonic_timestamp: bool = True
    timestamp_reorder_tolerance_ms: int = 10_000
    """How far below the last accepted timestamp a request may be and still pass the monotonic rule.
    A busy online service sends concurrent requests that arrive out of order; 0 makes the rule strict."""
    nonce_memory_ms: int = 15 * _MIN
    accept_raw_base64_signature: bool = False
    """Also accept a ``signature`` header that is raw (not URL-encoded) Base64."""
    # callbacks (§12.3)
    callback_retries: int = 2
    callback_retry_delay_s: float = 5.0
    callback_timeout_s: float = 10.0
    secretkey_plaintext: SecretKeyPlaintext = SecretKeyPlaintext.RAW
    nest_callback_content: bool = False
    """Wrap callback content as ``{"content": {...}}`` (the 2022 profile-callback shape) instead of flat."""
    anonymous_error_redirect: bool = True
    """Anonymous flows: on reject/cancel/timeout/mismatch, send the browser (or the sandbox itself) to
    ``redirectURI?error_code=D700xx&state=..&businessID=..``."""
    # signatures (§12.1, §12.5)
    none_with_rsa_digestinfo: bool = True
    pdf_tst: bool = False
    """Put an RFC 3161 signature timestamp from the sandbox TSA into ``pdfSignature``."""
    # bulk signing (§8, §12.4)
    bulk_ticket_lifetime_ms: int = 18 * _MIN
    bulk_plain_parts: bool = False
    """Send ``sigFile`` and ``sigMetada`` in clear (``sigFile`` without outer braces), like the CorpID samples."""
    bulk_decline_unsignable: bool = True
    """A document the sandbox cannot sign (docDigest or NONEwithRSA hashCode not 32 bytes, SM2 ``sigAlgo``) is
    declined at signing (left out, counted in ``failSignNum``); false refuses the request with D20003."""
    bulk_cancel_callback: bool = True
    """After cancelRequest, also send the D71000 ``sigMetada`` callback to ``callbackResultURI``."""
    bulk_sign_chunk: int = 64
    """Documents signed per worker-thread step (keeps the event loop free during large batches)."""
    # size limit of a request body (bytes); larger bodies get D20003 (the real system answers HTTP 413)
    max_body_bytes: int = 10 * 1024 * 1024

"""Verification of signed PDFs under the Electronic Transactions Ordinance (Cap. 553).

``verify_pdf(path, VerifyOptions(trust=TrustList.load()))`` checks every signature (integrity, chain to
a trust-list root, time, revocation, key usage, policy, modifications, PAdES level) and returns a
:class:`VerificationReport`; ``report.to_json()`` is the JSON contract, :func:`render_text` the
readable form in English or Traditional Chinese.
"""

from .document import verify_pdf, verify_pdf_sync
from .options import VerifyOptions
from .render import render_text
from .report import (
    Checks,
    DocumentTimestampReport,
    EtoAssessment,
    Indication,
    SignatureReport,
    SignerIdentity,
    TimeSource,
    VerificationReport,
)

__all__ = [
    "Checks",
    "DocumentTimestampReport",
    "EtoAssessment",
    "Indication",
    "SignatureReport",
    "SignerIdentity",
    "TimeSource",
    "VerificationReport",
    "VerifyOptions",
    "render_text",
    "verify_pdf",
    "verify_pdf_sync",
]

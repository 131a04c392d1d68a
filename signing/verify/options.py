"""Settings of one verification run."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from ..trust import TrustList

__all__ = ["VerifyOptions"]


@dataclass(frozen=True)
class VerifyOptions:
    """How to verify: against which trust list, at what moment, with or without network access."""

    trust: TrustList = field(default_factory=TrustList.empty)
    """The recognized-certificate profiles; their roots are the only trust anchors."""
    offline: bool = False
    """Use only the validation data in the file (DSS, CMS); never fetch OCSP/CRL. LT/LTA files verify
    offline; B-B/B-T files then lack revocation evidence and come out INDETERMINATE."""
    at: dt.datetime | None = None
    """Validate as of this past moment instead of now (point-in-time validation; no fetching then)."""
    signature_timeout: float = 20.0
    """Seconds allowed per signature (network fetches included) before it is reported INDETERMINATE."""
    max_file_size: int = 512 * 1024 * 1024
    """Larger files are refused with ``file_too_large``."""
    document_timeout: float = 60.0
    """Seconds for the whole file; signatures not reached by then are reported INDETERMINATE."""
    max_signatures: int = 100
    """Signatures beyond this many are reported INDETERMINATE without being checked."""
    max_revisions_after_signature: int = 200
    """Difference analysis is refused (the signature reported modified) beyond this many later revisions."""

    def validation_time(self, now: dt.datetime) -> dt.datetime:
        at = self.at or now
        return at if at.tzinfo else at.replace(tzinfo=dt.UTC)

"""Which time the checks of a signature use, why, and whether the signer's claimed time is plausible.

A trusted signature timestamp proves the signature existed at its genTime, so a claimed signing time
(/M or signingTime) after it is false: it is reported, and the s.6(1A)(d) limb ("generated within the
validity") is not met on a claim the file itself contradicts.
"""

from __future__ import annotations

import datetime as dt

from .report import TimeSource

__all__ = ["CLAIM_AFTER_TIMESTAMP", "claim_consistent", "time_basis"]

#: Claims are kept to whole seconds (/M has no fractions): later by more than this is later.
_ROUNDING = dt.timedelta(seconds=1)

CLAIM_AFTER_TIMESTAMP = (
    "the claimed signing time {claimed} is later than the signature timestamp {tst}: the timestamp "
    "proves the signature existed before the time the signer claims"
)


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def claim_consistent(claimed: dt.datetime | None, tst_time: dt.datetime | None) -> bool | None:
    """False when the claimed time is after the signature timestamp's genTime; None without both."""
    if claimed is None or tst_time is None:
        return None
    return _utc(claimed) <= _utc(tst_time) + _ROUNDING


def time_basis(source: TimeSource, has_timestamp: bool) -> str:
    """A sentence saying which time T the checks used and why."""
    if source is TimeSource.SIGNATURE_TIMESTAMP:
        return "the genTime of the trusted signature timestamp: it proves the signature existed then"
    if source is TimeSource.CLAIMED:
        why = (
            "the signature timestamp is not valid or not trusted"
            if has_timestamp
            else "the signature has no signature timestamp"
        )
        return f"the time the signer claims (/M or signingTime), which proves nothing: {why}"
    return "the validation time: the signature states no time at all"

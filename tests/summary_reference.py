"""The reference for the achieved-signature summary: pyHanko's full reading of a file.

pyHanko's own enumeration (``embedded_signatures``) and DSS reader (``DocumentSecurityStore.read_dss``),
put through the same rule from facts to summary (``summary_from_evidence``), as ``signing.summary`` read
a file before it read less. It shares that rule, never the module's way of reading.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import DocumentSecurityStore

from signing.summary import SignatureSummary, summary_from_evidence
from signing.verify.levels import signed_attribute_names

__all__ = ["NO_SIGNATURE", "full_reading", "implied_summary", "reference_summary"]

NO_SIGNATURE = ("none",)
"""What :func:`full_reading` says of a file without the signature asked for."""


def full_reading(path: Path | str, field_name: str | None = None) -> tuple:
    """(subfilter, signed attributes, signature timestamp, DSS revocation data, document timestamp after)
    of the last approval signature (or ``field_name``), by pyHanko's own enumeration and DSS reader;
    :data:`NO_SIGNATURE` when there is none. Raises whatever pyHanko raises on a file it cannot read."""
    with open(path, "rb") as f:
        reader = PdfFileReader(f, strict=False)
        embedded = list(reader.embedded_signatures)
        chosen = [s for s in embedded if s.sig_object_type == "/Sig" and field_name in (None, s.field_name)]
        if not chosen:
            return NO_SIGNATURE
        emb = chosen[-1]
        unsigned = emb.signer_info["unsigned_attrs"]
        try:
            dss = DocumentSecurityStore.read_dss(reader)
            has_dss = bool(dss.ocsps or dss.crls)
        except Exception:  # noqa: BLE001 - as the summary: no DSS or a damaged one
            has_dss = False
        return (
            str(emb.sig_object.get("/SubFilter")),
            signed_attribute_names(emb.signer_info),
            any(a["type"].native == "signature_time_stamp_token" for a in (unsigned or ())),
            has_dss,
            any(
                s.sig_object_type == "/DocTimeStamp" and s.signed_revision > emb.signed_revision
                for s in embedded
            ),
        )


def implied_summary(full: tuple) -> SignatureSummary | tuple:
    """The summary a :func:`full_reading` implies, by the verifier's level rules (:data:`NO_SIGNATURE`
    passed through)."""
    if full == NO_SIGNATURE:
        return full
    return summary_from_evidence(*full)


def reference_summary(path: Path | str, field_name: str | None = None) -> dict[str, Any] | str:
    """The reference's answer for ``read_signature_summary(path, field_name)``: the summary's
    ``to_json()``, or the name of the exception raised (``ValueError`` for no such signature, as
    the summary raises)."""
    try:
        implied = implied_summary(full_reading(path, field_name))
    except Exception as exc:  # noqa: BLE001 - the answer is which exception
        return type(exc).__name__
    if implied == NO_SIGNATURE:
        return "ValueError"
    return implied.to_json()

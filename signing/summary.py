"""What a signature is, in three words: its profile, its PAdES baseline level (or none) and what it carries.

:func:`read_signature_summary` reads it from a signed file (the one the core just published), by the same
rules as the verifier (``verify.levels``): only an /ETSI.CAdES.detached signature with ESS
signing-certificate-v2 and no signingTime has a PAdES level; any other signature is ``pkcs7-detached`` with
``level`` null, and its signature timestamp, DSS and document timestamp are listed as augmentations.
:func:`expected_summary` says the same before signing, from the prepared record.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyhanko.pdf_utils.generic import IndirectObject
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.fields import SigSeedSubFilter, enumerate_sig_fields
from pyhanko.sign.validation import DocumentSecurityStore
from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature
from pyhanko.sign.validation.status import SignatureCoverageLevel

from .model import PadesLevel, PreparedSignature, SignatureProfile
from .verify.coverage import StrictSignature
from .verify.levels import PADES_SUBFILTER, LevelEvidence, pades_level, signed_attribute_names

__all__ = [
    "AUGMENTATIONS",
    "SignatureSummary",
    "expected_for_record",
    "expected_summary",
    "read_signature_summary",
    "summary_from_evidence",
]

AUGMENTATIONS = ("signature-timestamp", "dss", "document-timestamp")


@dataclass(frozen=True)
class SignatureSummary:
    """``{"profile", "level", "augmentations"}``: the honest description of one signature."""

    profile: SignatureProfile
    level: PadesLevel | None
    """The PAdES baseline level met; ``None`` for a signature that is not PAdES baseline."""
    augmentations: tuple[str, ...] = ()
    """Among :data:`AUGMENTATIONS`, in that order."""

    def to_json(self) -> dict[str, Any]:
        return {
            "profile": self.profile.value,
            "level": self.level.value if self.level else None,
            "augmentations": list(self.augmentations),
        }

    @property
    def label(self) -> str:
        """``PAdES B-LTA``, or ``PKCS#7 detached with signature-timestamp, dss``."""
        if self.level is not None:
            return f"PAdES {self.level.value}"
        extras = f" with {', '.join(self.augmentations)}" if self.augmentations else ""
        return f"PKCS#7 detached (not PAdES baseline){extras}"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SignatureSummary:
        return cls(
            profile=SignatureProfile(data["profile"]),
            level=PadesLevel(data["level"]) if data.get("level") else None,
            augmentations=tuple(data.get("augmentations") or ()),
        )


def _augmentations(level: PadesLevel) -> tuple[str, ...]:
    flags = (level.needs_timestamp, level.needs_dss, level.needs_document_timestamp)
    return tuple(name for name, on in zip(AUGMENTATIONS, flags, strict=True) if on)


def expected_summary(profile: SignatureProfile, level: PadesLevel) -> SignatureSummary:
    """What signing with ``profile`` at the requested ``level`` will produce when every service answers."""
    achieved = level if profile is SignatureProfile.PADES_BASELINE else None
    return SignatureSummary(profile, achieved, _augmentations(level))


def expected_for_record(record: PreparedSignature) -> SignatureSummary:
    """:func:`expected_summary` for a prepared signature (its /SubFilter is already reserved)."""
    return expected_summary(record.profile, record.level)


def _has_revinfo(reader: PdfFileReader) -> bool:
    """The verifier's rule: a DSS that pyHanko's ``read_dss`` reads, holding OCSP responses or CRLs."""
    try:
        dss = DocumentSecurityStore.read_dss(reader)
    except Exception:  # noqa: BLE001 - no DSS, or a damaged one: none usable
        return False
    return bool(dss.ocsps or dss.crls)


def _covering_document_timestamp(reader: PdfFileReader, sig_field, name: str) -> bool:
    """Whether a /DocTimeStamp field holds a readable token whose /ByteRange covers the whole revision
    that wrote it (or the whole file), as a document timestamp must; a dictionary that a later
    revision wrote again, or one with no usable token, does not time-stamp what came before it."""
    try:
        ts = StrictSignature(reader, sig_field, name)
        coverage = ts.evaluate_signature_coverage()
    except Exception:  # noqa: BLE001 - hostile dictionaries and tokens: not a document timestamp
        return False
    return coverage in (SignatureCoverageLevel.ENTIRE_REVISION, SignatureCoverageLevel.ENTIRE_FILE)


_RECOGNISED_SUBFILTERS = frozenset(f.value for f in SigSeedSubFilter)


def _signed_revision(reader: PdfFileReader, sig_field) -> int | None:
    """The revision that wrote the field's signature dictionary, as pyHanko's ``signed_revision``; ``None``
    for a /V written directly in the field (pyHanko cannot date, nor read, such a signature either)."""
    ref = sig_field.get_object().raw_get("/V")
    if not isinstance(ref, IndirectObject):
        return None
    return reader.xrefs.get_last_change(ref.reference)


def read_signature_summary(path: Path | str, field_name: str | None = None) -> SignatureSummary:
    """The summary of the signature in ``field_name`` (default: the last approval signature) of ``path``.

    The signatures pyHanko's ``embedded_signatures`` would list (filled fields with a recognised
    /SubFilter), ordered by the revision that signed them; only the chosen one and the document
    timestamps after it are parsed. A document timestamp counts only if its token reads and its
    /ByteRange covers its revision; a field that cannot be read at all is left out (it can only take
    away from what is claimed, never add).
    """
    with open(path, "rb") as f:
        reader = PdfFileReader(f, strict=False)
        signatures = []  # (signed revision, /Type, name, field)
        for name, sig_obj, sig_field in enumerate_sig_fields(reader, filled_status=True):
            sig = sig_obj.get_object()
            if str(sig.get("/SubFilter", "")) not in _RECOGNISED_SUBFILTERS:
                continue  # pyHanko's embedded_signatures skips these too
            kind = str(sig.get("/Type", "/Sig"))
            try:
                revision = _signed_revision(reader, sig_field)
            except Exception:  # noqa: BLE001 - a /V the cross-reference tables do not know
                revision = None
            if revision is not None:  # an unreadable field is not counted
                signatures.append((revision, kind, name, sig_field))
        signatures.sort(key=lambda s: s[0])
        chosen = [s for s in signatures if s[1] == "/Sig" and (field_name is None or s[2] == field_name)]
        if not chosen:
            raise ValueError(f"no signature {field_name or ''} in {path}".replace("  ", " "))
        revision, _kind, name, sig_field = chosen[-1]
        emb = EmbeddedPdfSignature(reader, sig_field, name)
        subfilter = emb.sig_object.get("/SubFilter")
        subfilter = str(subfilter) if subfilter is not None else None
        attrs = signed_attribute_names(emb.signer_info)
        unsigned = emb.signer_info["unsigned_attrs"]
        has_tst = any(a["type"].native == "signature_time_stamp_token" for a in (unsigned or ()))
        has_dss = _has_revinfo(reader)
        doc_ts_after = any(
            kind == "/DocTimeStamp" and rev > revision and _covering_document_timestamp(reader, fld, n)
            for rev, kind, n, fld in signatures
        )
    return summary_from_evidence(subfilter, attrs, has_tst, has_dss, doc_ts_after)


def summary_from_evidence(
    subfilter: str | None,
    signed_attributes: frozenset[str],
    has_signature_timestamp: bool,
    has_dss: bool,
    document_timestamp_after: bool,
) -> SignatureSummary:
    """The summary these facts of a signature imply, by the verifier's level rules (``verify.levels``)."""
    flags = (has_signature_timestamp, has_dss, document_timestamp_after)
    augmentations = tuple(name for name, on in zip(AUGMENTATIONS, flags, strict=True) if on)
    level, _ = pades_level(
        LevelEvidence(
            subfilter=subfilter,
            signed_attributes=signed_attributes,
            intact=True,
            timestamp_valid=has_signature_timestamp,
            dss_has_revinfo=has_dss,
            document_timestamp_after=document_timestamp_after,
        )
    )
    if level is None:
        return SignatureSummary(SignatureProfile.PKCS7_DETACHED, None, augmentations)
    profile = (
        SignatureProfile.PADES_BASELINE if subfilter == PADES_SUBFILTER else SignatureProfile.PKCS7_DETACHED
    )
    return SignatureSummary(profile, PadesLevel(level), augmentations)

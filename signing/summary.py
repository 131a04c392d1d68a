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

from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import DocumentSecurityStore

from .model import PadesLevel, PreparedSignature, SignatureProfile
from .verify.levels import PADES_SUBFILTER, LevelEvidence, pades_level, signed_attribute_names

__all__ = [
    "AUGMENTATIONS",
    "SignatureSummary",
    "expected_for_record",
    "expected_summary",
    "read_signature_summary",
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
    try:
        dss = DocumentSecurityStore.read_dss(reader)
    except Exception:  # noqa: BLE001 - no DSS, or a damaged one: none usable
        return False
    return bool(dss.ocsps or dss.crls)


def read_signature_summary(path: Path | str, field_name: str | None = None) -> SignatureSummary:
    """The summary of the signature in ``field_name`` (default: the last approval signature) of ``path``."""
    with open(path, "rb") as f:
        reader = PdfFileReader(f, strict=False)
        embedded = list(reader.embedded_signatures)
        approvals = [s for s in embedded if s.sig_object_type == "/Sig"]
        chosen = [s for s in approvals if field_name is None or s.field_name == field_name]
        if not chosen:
            raise ValueError(f"no signature {field_name or ''} in {path}".replace("  ", " "))
        emb = chosen[-1]
        subfilter = emb.sig_object.get("/SubFilter")
        subfilter = str(subfilter) if subfilter is not None else None
        attrs = signed_attribute_names(emb.signer_info)
        unsigned = emb.signer_info["unsigned_attrs"]
        has_tst = any(a["type"].native == "signature_time_stamp_token" for a in (unsigned or ()))
        has_dss = _has_revinfo(reader)
        doc_ts_after = any(
            s.sig_object_type == "/DocTimeStamp" and s.signed_revision > emb.signed_revision for s in embedded
        )
    flags = (has_tst, has_dss, doc_ts_after)
    augmentations = tuple(name for name, on in zip(AUGMENTATIONS, flags, strict=True) if on)
    level, _ = pades_level(
        LevelEvidence(
            subfilter=subfilter,
            signed_attributes=attrs,
            intact=True,
            timestamp_valid=has_tst,
            dss_has_revinfo=has_dss,
            document_timestamp_after=doc_ts_after,
        )
    )
    if level is None:
        return SignatureSummary(SignatureProfile.PKCS7_DETACHED, None, augmentations)
    profile = (
        SignatureProfile.PADES_BASELINE if subfilter == PADES_SUBFILTER else SignatureProfile.PKCS7_DETACHED
    )
    return SignatureSummary(profile, PadesLevel(level), augmentations)

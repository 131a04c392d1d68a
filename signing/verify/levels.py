"""Which PAdES baseline level (ETSI EN 319 142-1) a signature really meets, if any.

B-B needs /ETSI.CAdES.detached, an intact signature, signed attributes with contentType, messageDigest
and an ESS signing-certificate(-v2) attribute, and no signingTime (the claimed time goes in /M).
B-T adds a valid signature timestamp, B-LT revocation data in the DSS, B-LTA a valid document
timestamp after the signature. An /adbe.pkcs7.detached signature is never called PAdES baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

from asn1crypto import cms

__all__ = ["PADES_SUBFILTER", "LevelEvidence", "pades_level", "signed_attribute_names"]

PADES_SUBFILTER = "/ETSI.CAdES.detached"
ESS_ATTRIBUTES = frozenset({"signing_certificate_v2", "signing_certificate"})


def signed_attribute_names(signer_info: cms.SignerInfo) -> frozenset[str]:
    try:
        attrs = signer_info["signed_attrs"]
        return frozenset(str(a["type"].native) for a in attrs) if attrs else frozenset()
    except Exception:  # noqa: BLE001 - damaged attributes: none usable
        return frozenset()


@dataclass(frozen=True)
class LevelEvidence:
    """The facts the level depends on."""

    subfilter: str | None
    signed_attributes: frozenset[str]
    intact: bool
    timestamp_valid: bool
    dss_has_revinfo: bool
    document_timestamp_after: bool


def pades_level(e: LevelEvidence) -> tuple[str | None, tuple[str, ...]]:
    """The level met (or None) and, when lower than the file's structure suggests, why."""
    notes: list[str] = []
    if e.subfilter != PADES_SUBFILTER:
        return None, (f"not PAdES baseline: /SubFilter is {e.subfilter or 'missing'}, not {PADES_SUBFILTER}",)
    missing = {"content_type", "message_digest"} - e.signed_attributes
    if missing:
        return None, (f"not PAdES baseline: signed attribute(s) {', '.join(sorted(missing))} missing",)
    if not e.signed_attributes & ESS_ATTRIBUTES:
        return None, ("not PAdES baseline: no ESS signing-certificate-v2 attribute in the signed attributes",)
    if "signing_time" in e.signed_attributes:
        return None, (
            "not PAdES baseline: a signingTime signed attribute is present (PAdES puts the time in /M)",
        )
    if not e.intact:
        return None, ("no PAdES level: the signature is not intact",)
    level = "B-B"
    if not e.timestamp_valid:
        return level, tuple(notes)
    level = "B-T"
    if not e.dss_has_revinfo:
        return level, tuple(notes)
    level = "B-LT"
    if e.document_timestamp_after:
        level = "B-LTA"
    return level, tuple(notes)

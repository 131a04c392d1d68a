"""Which PAdES baseline level (ETSI EN 319 142-1) a signature really meets, if any.

B-B needs /ETSI.CAdES.detached, an intact signature, signed attributes with contentType, messageDigest
and an ESS signing-certificate(-v2) attribute, and no signingTime (the claimed time goes in /M).
B-T adds a valid signature timestamp or a valid document timestamp over the signature (EN 319 142-1
§5.4: either proves the signature existed then), B-LT revocation data in the DSS for the whole chain,
B-LTA a valid document timestamp over that validation data. An invalid timestamp never counts. An /adbe.pkcs7.detached signature is never called PAdES baseline.
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
    """The DSS holds revocation data for every certificate of the chain (not only some)."""
    document_timestamp_after: bool
    """A valid document timestamp covers the signature."""
    document_timestamp_over_dss: bool | None = None
    """A valid document timestamp covers a revision whose DSS has the chain's data; None: not computed
    (then ``document_timestamp_after`` decides)."""


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
    if not (e.timestamp_valid or e.document_timestamp_after):
        return level, tuple(notes)
    level = "B-T"
    if not e.timestamp_valid:
        notes.append("B-T from a document timestamp over the signature (no signature timestamp)")
    if not e.dss_has_revinfo:
        return level, tuple(notes)
    level = "B-LT"
    over_dss = (
        e.document_timestamp_after if e.document_timestamp_over_dss is None else e.document_timestamp_over_dss
    )
    if over_dss:
        level = "B-LTA"
    elif e.document_timestamp_after:
        notes.append("not B-LTA: no valid document timestamp covers the chain's validation data in the DSS")
    return level, tuple(notes)

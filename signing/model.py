"""Enums and JSON-safe records shared by the signing core and its callers."""

from __future__ import annotations

import base64
import dataclasses
import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "Appearance",
    "PadesLevel",
    "PreparedSignature",
    "RemoteMode",
    "SigAlgo",
    "SignOptions",
    "SignatureProfile",
    "SignedResult",
]


class PadesLevel(StrEnum):
    """The PAdES baseline level asked for (ETSI EN 319 142-1)."""

    B_B = "B-B"
    B_T = "B-T"
    B_LT = "B-LT"
    B_LTA = "B-LTA"

    @property
    def rank(self) -> int:
        return list(PadesLevel).index(self)

    @property
    def needs_timestamp(self) -> bool:
        return self.rank >= 1

    @property
    def needs_dss(self) -> bool:
        return self.rank >= 2

    @property
    def needs_document_timestamp(self) -> bool:
        return self.rank >= 3


class RemoteMode(StrEnum):
    """Which iAM Smart signing API the remote signer offers."""

    PDF = "pdf"
    """``pdfsigning``: the signer returns a complete detached CMS (``pdfSignature``)."""
    HASH = "hash"
    """``signing``: the signer returns a raw signature value and its certificate."""


class SigAlgo(StrEnum):
    """iAM Smart's ``sigAlgo`` for hash signing: what it does with the bytes it gets."""

    SHA256_WITH_RSA = "SHA256withRSA"
    """The signer hashes what it gets: we send DER(signed attributes)."""
    NONE_WITH_RSA = "NONEwithRSA"
    """The signer signs what it gets as a SHA-256 digest: we send SHA-256(DER(signed attributes))."""


class SignatureProfile(StrEnum):
    """What kind of CMS signature a PDF signature is, which decides how it may be labelled."""

    PADES_BASELINE = "pades-baseline"
    """/ETSI.CAdES.detached with signing-certificate-v2 and no signingTime: may be called PAdES B-x."""
    PKCS7_DETACHED = "pkcs7-detached"
    """/adbe.pkcs7.detached: a valid PDF signature, but never called PAdES baseline."""


SUBFILTERS = {
    SignatureProfile.PADES_BASELINE: "/ETSI.CAdES.detached",
    SignatureProfile.PKCS7_DETACHED: "/adbe.pkcs7.detached",
}


@dataclass(frozen=True)
class Appearance:
    """A visible signature stamp. Text lines may be Traditional Chinese (the stamp embeds a CJK font)."""

    page: int = 1
    """1-based page number; -1 means the last page."""
    box: tuple[float, float, float, float] = (50, 50, 300, 120)
    """Lower-left x, lower-left y, upper-right x, upper-right y in PDF points."""
    lines: tuple[str, ...] = ()
    """The lines shown in the stamp, top to bottom."""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Appearance:
        return cls(
            page=int(data.get("page", 1)),
            box=tuple(data.get("box", cls.box)),
            lines=tuple(data.get("lines", ())),
        )


@dataclass(frozen=True)
class SignOptions:
    """Everything ``prepare_for_signing`` needs to know about the signature to come."""

    mode: RemoteMode = RemoteMode.PDF
    """Which remote-signer API will produce the signature."""
    level: PadesLevel = PadesLevel.B_LTA
    """The level to reach at finishing."""
    field_name: str | None = None
    """Reuse this (empty) signature field or create it; default: a new ``SignatureN`` field."""
    appearance: Appearance | None = None
    """A visible stamp; ``None`` makes an invisible signature."""
    reason: str | None = None
    location: str | None = None
    contact_info: str | None = None
    signer_certificate_der: bytes | None = None
    """Hash mode: the certificate the signer is known to use. With it, the signature is PAdES baseline
    (signing-certificate-v2 inside the signed attributes); without it, /adbe.pkcs7.detached."""
    sig_algo: SigAlgo = SigAlgo.SHA256_WITH_RSA
    """Hash mode: iAM Smart's ``sigAlgo``, which decides what bytes are sent out."""
    pdf_mode_profile: SignatureProfile = SignatureProfile.PKCS7_DETACHED
    """PDF mode: the subfilter reserved for the CMS iAM Smart builds (its CMS carries signingTime)."""
    reserved_bytes: int = 16384
    """DER bytes reserved for the CMS in /Contents (signature, certificates, timestamp token)."""
    allow_level_fallback: bool = False
    """If the TSA is down at finishing, sign at B-B instead of failing (the result says so)."""


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def _unb64(data: str | None) -> bytes | None:
    return None if data is None else base64.b64decode(data)


@dataclass(frozen=True)
class PreparedSignature:
    """The JSON-safe state between prepare and finish; with the prepared file it is all finishing needs."""

    mode: RemoteMode
    level: PadesLevel
    profile: SignatureProfile
    """The signature kind the reserved /SubFilter commits to."""
    field_name: str
    md_algorithm: str
    document_digest: bytes
    """SHA-256 over the /ByteRange of the prepared file (iAM Smart's ``docDigest``)."""
    reserved_region_start: int
    reserved_region_end: int
    prepared_size: int
    """Size in bytes of the prepared file, to recognise it at finishing."""
    allow_level_fallback: bool = False
    signed_attrs_der: bytes | None = None
    """Hash mode: DER (SET OF) of the CMS signed attributes the remote signature must cover."""
    to_be_signed: bytes | None = None
    """Hash mode: what goes out as ``hashCode`` (depends on ``sig_algo``)."""
    sig_algo: SigAlgo | None = None
    signer_certificate_der: bytes | None = None
    """Hash mode, PAdES baseline: the certificate the signed attributes were built for."""
    format_version: int = 1

    @property
    def subfilter(self) -> str:
        return SUBFILTERS[self.profile]

    @property
    def digest_b64(self) -> str:
        return base64.b64encode(self.document_digest).decode()

    @property
    def hash_code_b64(self) -> str | None:
        """Hash mode: the Base64 ``hashCode`` for iAM Smart."""
        return _b64(self.to_be_signed)

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "mode": self.mode.value,
            "level": self.level.value,
            "profile": self.profile.value,
            "subfilter": self.subfilter,
            "field_name": self.field_name,
            "md_algorithm": self.md_algorithm,
            "document_digest": self.digest_b64,
            "reserved_region": [self.reserved_region_start, self.reserved_region_end],
            "prepared_size": self.prepared_size,
            "allow_level_fallback": self.allow_level_fallback,
            "signed_attrs_der": _b64(self.signed_attrs_der),
            "to_be_signed": _b64(self.to_be_signed),
            "sig_algo": self.sig_algo.value if self.sig_algo else None,
            "signer_certificate_der": _b64(self.signer_certificate_der),
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json())

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PreparedSignature:
        from .errors import PreparedStateError

        try:
            if data.get("format_version") != 1:
                raise ValueError(f"unknown format_version {data.get('format_version')!r}")
            start, end = data["reserved_region"]
            return cls(
                mode=RemoteMode(data["mode"]),
                level=PadesLevel(data["level"]),
                profile=SignatureProfile(data["profile"]),
                field_name=data["field_name"],
                md_algorithm=data["md_algorithm"],
                document_digest=base64.b64decode(data["document_digest"]),
                reserved_region_start=int(start),
                reserved_region_end=int(end),
                prepared_size=int(data["prepared_size"]),
                allow_level_fallback=bool(data.get("allow_level_fallback", False)),
                signed_attrs_der=_unb64(data.get("signed_attrs_der")),
                to_be_signed=_unb64(data.get("to_be_signed")),
                sig_algo=SigAlgo(data["sig_algo"]) if data.get("sig_algo") else None,
                signer_certificate_der=_unb64(data.get("signer_certificate_der")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PreparedStateError(f"the prepared-signature record is not usable: {exc}") from exc

    @classmethod
    def loads(cls, text: str) -> PreparedSignature:
        return cls.from_json(json.loads(text))

    def replace(self, **changes: Any) -> PreparedSignature:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class SignedResult:
    """What finishing produced, labelled without overclaiming."""

    output_path: str
    profile: SignatureProfile
    requested_level: PadesLevel
    achieved_level: PadesLevel | None
    """The PAdES baseline level met, or ``None`` when the signature is not PAdES baseline."""
    has_signature_timestamp: bool
    has_dss: bool
    has_document_timestamp: bool
    signer_certificate_der: bytes
    size: int
    notes: tuple[str, ...] = field(default_factory=tuple)
    """Anything the caller should know: a fallback taken, why the label is not PAdES."""

    @property
    def label(self) -> str:
        """A human label: ``PAdES B-LTA`` only when the profile is met, otherwise what the file has."""
        if self.achieved_level is not None:
            return f"PAdES {self.achieved_level.value}"
        extras = [
            name
            for flag, name in (
                (self.has_signature_timestamp, "signature timestamp"),
                (self.has_dss, "DSS"),
                (self.has_document_timestamp, "document timestamp"),
            )
            if flag
        ]
        return "PDF signature (adbe.pkcs7.detached)" + (f" with {', '.join(extras)}" if extras else "")

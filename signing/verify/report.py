"""The verification report: frozen dataclasses that serialise to the JSON contract of issue 5.

Contract keys (scripts depend on them): ``valid``, and per signature ``field``, ``signer`` (``name``,
``certificate_sha256``, ``issuer``, ``serial``), ``indication``, ``sub_indication``, ``checks`` (``integrity``,
``signature_value``, ``recognized_ca``, ``valid_at_signing_time``, ``not_revoked``, ``key_usage``,
``unmodified``), ``pades_level``, ``signing_time``, ``timestamp_time`` and ``eto`` (three s.6(1A) limbs).
Everything else is additional.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from dataclasses import field as dc_field
from enum import StrEnum
from typing import Any

__all__ = [
    "LIMITATIONS",
    "Checks",
    "DocumentTimestampReport",
    "EtoAssessment",
    "Indication",
    "SignatureReport",
    "SignerIdentity",
    "TimeSource",
    "VerificationReport",
]

REPORT_FORMAT_VERSION = 1


class Indication(StrEnum):
    """ETSI EN 319 102-1 main indication."""

    TOTAL_PASSED = "TOTAL-PASSED"
    INDETERMINATE = "INDETERMINATE"
    TOTAL_FAILED = "TOTAL-FAILED"


class TimeSource(StrEnum):
    """Where the signing time T used for the checks comes from."""

    SIGNATURE_TIMESTAMP = "signature_timestamp"
    """A trusted RFC 3161 timestamp over the signature value: T is proven (upper bound)."""
    CLAIMED = "claimed"
    """The signer's own claim (/M or signingTime): not proof."""
    VALIDATION_TIME = "validation_time"
    """No time in the signature at all: the checks used the validation time."""


#: What this verification does not decide (eto-verification.md §9); shown in every report.
LIMITATIONS: tuple[str, ...] = (
    "Legal effect also depends on matters this verification does not decide.",
    (
        "It does not decide whether a government entity is a party (s.6(1A) or s.6(1)), whether the recipient "
        "consented, or whether the signer had authority to sign."
    ),
    "It does not decide whether the document is excluded by Schedule 1, Cap. 553B, Schedule 2 or s.16.",
    "It does not compare any transaction value with the certificate's reliance limit.",
    "It does not create or rely on any presumption of authenticity or integrity.",
    "Identity is only what the certificate states; an encrypted HKID number is never decoded.",
    "Check recognition against the CDP disclosure record and the CA's CPS and repository. Not legal advice.",
)


def iso(moment: dt.datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z``, or None."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class SignerIdentity:
    """Who the signer certificate says signed (nothing beyond what the certificate states)."""

    name: str
    """Subject common name (or the whole subject when it has none)."""
    certificate_sha256: str
    """SHA-256 (hex) of the DER signer certificate."""
    issuer: str
    """Issuer distinguished name, human-readable."""
    serial: str
    """Serial number, hexadecimal (upper case, no separators)."""
    subject: str = ""
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None
    policy_oids: tuple[str, ...] = ()
    key_usage: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "certificate_sha256": self.certificate_sha256,
            "issuer": self.issuer,
            "serial": self.serial,
            "subject": self.subject,
            "not_before": iso(self.not_before),
            "not_after": iso(self.not_after),
            "policy_oids": list(self.policy_oids),
            "key_usage": list(self.key_usage),
        }


@dataclass(frozen=True)
class Checks:
    """The result of each technical check (True pass, False fail, None could not be established)."""

    integrity: bool
    """C1: the /ByteRange is well formed (two ranges from 0, the gap is /Contents exactly, the signed
    revision is covered) and its digest equals the signed messageDigest."""
    signature_value: bool
    """C1: the signature value verifies with the signer certificate's key."""
    recognized_ca: bool
    """C3/C4: the certificate chains to a trust-list root and matches that entry's profile."""
    valid_at_signing_time: bool
    """C6: every certificate of the chain was inside its validity period at T."""
    not_revoked: bool | None
    """C8: revocation evidence shows the chain not revoked at T; None when there is no usable evidence."""
    key_usage: bool
    """C9: the signer certificate has digitalSignature or nonRepudiation (and what the profile requires)."""
    unmodified: bool
    """C12: nothing but further signatures, DSS, document timestamps or permitted form filling since."""
    digest_matches: bool | None = None
    """The /ByteRange digest equals messageDigest (pyHanko ``intact``); None when never computed."""
    byte_range: bool | None = None
    """The /ByteRange covers the signed revision the way PDF requires."""
    signer_certificate_bound: bool | None = None
    """C2: an ESS signing-certificate(-v2) attribute binds the certificate; None when absent."""
    chain_found: bool | None = None
    """C3: a certificate path to a trust-list root exists (regardless of the profile)."""
    certificate_policy: bool | None = None
    """C10: the policy OID matches the profile; None when the profile names no policy."""
    recognition_in_force: bool | None = None
    """C7: the profile's recognition was in force at T; None without interval data."""
    signature_timestamp: bool | None = None
    """The signature timestamp is valid and trusted; None when there is none."""
    crypto_strength: bool | None = None
    """C14: the signer's key is strong enough (RSA >= 2048 bits); weak digests are pyHanko's policy."""
    claimed_time_consistent: bool | None = None
    """The claimed signing time is not after the signature timestamp; None without both."""

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class EtoAssessment:
    """The s.6(1A) limbs, as far as the file shows them (eto-verification.md §2, §6, §7)."""

    supported_by_recognized_certificate: bool
    """s.6(1A)(c)."""
    generated_within_validity: bool
    """s.6(1A)(d) with s.6(2): at a proven T, inside the certificate's and the recognition's validity."""
    used_in_accordance_with_terms: bool
    """s.6(1A)(e): key usage and certificate policy match the recognized profile."""
    verdict: str
    """eto-verification.md §7: INVALID, ETO_S6_1A_NOT_SATISFIED, CRYPTO_VALID_NOT_RECOGNIZED,
    INDETERMINATE or ETO_S6_1A_TECHNICAL_CONDITIONS_MET."""
    reasons: dict[str, tuple[str, ...]] = dc_field(default_factory=dict)
    """Per limb, why it is not met."""
    profile_kind: str | None = None
    """``recognized``, ``sandbox`` or ``operator``: the authority of the matched trust entry."""
    profile: dict[str, Any] | None = None
    """The matched trust entry: id, name, CA, legal basis, reliance limit (shown, never judged)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "supported_by_recognized_certificate": self.supported_by_recognized_certificate,
            "generated_within_validity": self.generated_within_validity,
            "used_in_accordance_with_terms": self.used_in_accordance_with_terms,
            "verdict": self.verdict,
            "profile_kind": self.profile_kind,
            "profile": self.profile,
            "reasons": {k: list(v) for k, v in self.reasons.items()},
        }


@dataclass(frozen=True)
class SignatureReport:
    """Everything established about one signature."""

    field: str
    indication: Indication
    sub_indication: str | None
    checks: Checks
    eto: EtoAssessment
    signer: SignerIdentity | None = None
    pades_level: str | None = None
    """``B-B`` .. ``B-LTA`` only when the PAdES baseline profile is met; None otherwise."""
    signing_time: dt.datetime | None = None
    """T: the time the checks were made at (see ``time_source``)."""
    time_source: TimeSource = TimeSource.VALIDATION_TIME
    claimed_time: dt.datetime | None = None
    time_basis: str | None = None
    """Which time ``signing_time`` is and why it was chosen."""
    timestamp_time: dt.datetime | None = None
    """genTime of the signature timestamp, when there is one (trusted or not: see checks)."""
    subfilter: str | None = None
    validation_process: str | None = None
    """The ETSI process run: ``basic``, ``with-time`` or ``lta``."""
    profile_id: str | None = None
    coverage: str | None = None
    modification_level: str | None = None
    docmdp: str | None = None
    revision: int | None = None
    signed_revision_sha256: str | None = None
    """SHA-256 of the file as it was when signed (start of file to the end of the signed revision)."""
    revocation: dict[str, Any] = dc_field(default_factory=dict)
    chain: tuple[dict[str, str], ...] = ()
    reasons: tuple[str, ...] = ()
    """Why the indication is what it is, and anything else the reader should know."""

    @property
    def passed(self) -> bool:
        return self.indication is Indication.TOTAL_PASSED

    def to_json(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "signer": self.signer.to_json() if self.signer else None,
            "indication": self.indication.value,
            "sub_indication": self.sub_indication,
            "checks": self.checks.to_json(),
            "pades_level": self.pades_level,
            "signing_time": iso(self.signing_time),
            "timestamp_time": iso(self.timestamp_time),
            "time_source": self.time_source.value,
            "claimed_time": iso(self.claimed_time),
            "time_basis": self.time_basis,
            "eto": self.eto.to_json(),
            "subfilter": self.subfilter,
            "validation_process": self.validation_process,
            "trust_profile": self.profile_id,
            "coverage": self.coverage,
            "modification_level": self.modification_level,
            "docmdp": self.docmdp,
            "revision": self.revision,
            "signed_revision_sha256": self.signed_revision_sha256,
            "revocation": self.revocation,
            "chain": list(self.chain),
            "reasons": list(self.reasons),
        }


@dataclass(frozen=True)
class DocumentTimestampReport:
    """A document timestamp (/SubFilter /ETSI.RFC3161, whatever its /Type): its own checks."""

    field: str
    time: dt.datetime | None
    intact: bool
    valid: bool
    trusted: bool
    tsa: str | None = None
    revision: int | None = None
    unmodified: bool | None = None
    reasons: tuple[str, ...] = ()
    covers_revision: bool = True
    """Its /ByteRange covers the whole revision that last wrote its dictionary (or the whole file): a
    dictionary written again by a later revision does not time-stamp that later revision."""

    @property
    def counts(self) -> bool:
        """Whether it counts toward a signature's level: imprint, token signature and TSA chain all hold,
        and it covers the revision it is dated by."""
        return self.intact and self.valid and self.trusted and self.time is not None and self.covers_revision

    def to_json(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "checks": {
                "imprint": self.intact,
                "signature_value": self.valid,
                "tsa_chain": self.trusted,
                "time": self.time is not None,
                "covers_its_revision": self.covers_revision,
            },
            "counts_toward_level": self.counts,
            "time": iso(self.time),
            "intact": self.intact,
            "valid": self.valid,
            "trusted": self.trusted,
            "tsa": self.tsa,
            "revision": self.revision,
            "unmodified": self.unmodified,
            "reasons": list(self.reasons),
        }


@dataclass(frozen=True)
class VerificationReport:
    """The report for one file."""

    signatures: tuple[SignatureReport, ...]
    document_timestamps: tuple[DocumentTimestampReport, ...] = ()
    file_sha256: str = ""
    file_size: int = 0
    revisions: int = 0
    verified_at: dt.datetime | None = None
    validation_time: dt.datetime | None = None
    """The moment validated at: now, or ``--at``."""
    offline: bool = False
    trust_list_version: str = ""
    trust_profiles: tuple[dict[str, Any], ...] = ()
    trust_list_skipped: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    verifier: str = "iamsign"

    @property
    def valid(self) -> bool:
        """True when there is at least one signature and every signature is TOTAL-PASSED."""
        return bool(self.signatures) and all(s.passed for s in self.signatures)

    def to_json(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "signatures": [s.to_json() for s in self.signatures],
            "document_timestamps": [t.to_json() for t in self.document_timestamps],
            "file": {"sha256": self.file_sha256, "size": self.file_size, "revisions": self.revisions},
            "verified_at": iso(self.verified_at),
            "validation_time": iso(self.validation_time),
            "offline": self.offline,
            "trust_list": {
                "version": self.trust_list_version,
                "profiles": list(self.trust_profiles),
                "skipped": list(self.trust_list_skipped),
            },
            "notes": list(self.notes),
            "limitations": list(LIMITATIONS),
            "verifier": self.verifier,
            "format_version": REPORT_FORMAT_VERSION,
        }

"""Map the technical checks onto s.6(1A) of the Electronic Transactions Ordinance (Cap. 553).

eto-verification.md §2, §6 and §7: (c) supported by a recognized certificate, (d) generated within the
validity of that certificate (judged at the signing time T, which must be proven, not claimed), (e)
used in accordance with the terms of that certificate. Each limb is True only on positive evidence;
the reasons say what is missing. Nothing here claims a presumption of authenticity.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..trust import ProfileKind, TrustProfile
from .report import Checks, EtoAssessment, Indication, TimeSource

__all__ = ["EtoInputs", "assess"]


@dataclass(frozen=True)
class EtoInputs:
    """What the mapping needs besides the checks."""

    checks: Checks
    indication: Indication
    time_source: TimeSource
    profile: TrustProfile | None


def assess(inputs: EtoInputs) -> EtoAssessment:
    """The three limbs, the §7 verdict and the reasons."""
    c = inputs.checks
    profile = inputs.profile
    intact = c.integrity and c.signature_value and c.unmodified
    reasons: dict[str, list[str]] = {
        "supported_by_recognized_certificate": [],
        "generated_within_validity": [],
        "used_in_accordance_with_terms": [],
    }

    def need(limb: str, ok: bool | None, why: str) -> bool:
        if ok is not True:
            reasons[limb].append(why)
            return False
        return True

    limb = "supported_by_recognized_certificate"
    c_ok = need(limb, intact, "the signature is not an intact digital signature of this document (s.2)")
    c_ok &= need(
        limb, c.signer_certificate_bound is not False, "the signer certificate is not bound to the signature"
    )
    c_ok &= need(limb, c.chain_found, "the certificate does not chain to a root in the trust list")
    c_ok &= need(
        limb, c.recognized_ca, "the certificate matches no recognized-certificate profile of the trust list"
    )
    if profile is not None and profile.kind is not ProfileKind.RECOGNIZED:
        reasons[limb].append(
            f"the matched trust entry {profile.id} is of kind '{profile.kind.value}', not a certificate type "
            "recognized under s.22 or s.34"
        )

    limb = "generated_within_validity"
    d_ok = need(
        limb,
        inputs.time_source is TimeSource.SIGNATURE_TIMESTAMP,
        "the signing time is not proven by a trusted timestamp (only "
        f"{'claimed' if inputs.time_source is TimeSource.CLAIMED else 'unknown'})",
    )
    d_ok &= need(
        limb, c.valid_at_signing_time, "a certificate of the chain was not valid at the signing time"
    )
    d_ok &= need(
        limb,
        c.claimed_time_consistent is not False,
        "the claimed signing time is later than the signature timestamp, which the file contradicts",
    )
    d_ok &= need(
        limb,
        c.not_revoked,
        "revocation at the signing time is not excluded by the evidence"
        if c.not_revoked is None
        else "the certificate was revoked at the signing time",
    )
    d_ok &= need(
        limb,
        c.recognition_in_force,
        "no recognition interval covers the signing time"
        if c.recognition_in_force is False
        else "the trust list has no recognition-interval data for this profile",
    )
    if not c_ok:
        reasons[limb].append("limb (c) is not met")
        d_ok = False

    limb = "used_in_accordance_with_terms"
    e_ok = need(limb, c.key_usage, "the key usage of the certificate does not allow signing")
    e_ok &= need(
        limb,
        c.certificate_policy,
        "the certificate policy does not match the profile"
        if c.certificate_policy is False
        else "the trust entry names no certificate policy, so the certificate's terms cannot be checked",
    )
    if not c_ok:
        reasons[limb].append("limb (c) is not met")
        e_ok = False

    recognized_in_law = profile is not None and profile.kind is ProfileKind.RECOGNIZED
    c_limb = c_ok and recognized_in_law
    d_limb = d_ok and recognized_in_law
    e_limb = e_ok and recognized_in_law
    return EtoAssessment(
        supported_by_recognized_certificate=c_limb,
        generated_within_validity=d_limb,
        used_in_accordance_with_terms=e_limb,
        verdict=_verdict(c, inputs, c_limb and d_limb and e_limb),
        reasons={k: tuple(v) for k, v in reasons.items() if v},
        profile_kind=profile.kind.value if profile else None,
        profile=_describe(profile),
    )


def _describe(profile: TrustProfile | None) -> dict | None:
    if profile is None:
        return None
    return {
        "id": profile.id,
        "name": profile.name,
        "kind": profile.kind.value,
        "ca_name": profile.ca_name,
        "recognized_ca_basis": profile.recognized_ca_basis,
        "policy_oid_prefixes": list(profile.policy_oid_prefixes),
        "reliance_limit_hkd": profile.reliance_limit_hkd,
    }


def _verdict(c: Checks, inputs: EtoInputs, all_limbs: bool) -> str:
    """eto-verification.md §7, precedence top-down."""
    if (
        not c.integrity
        or not c.signature_value
        or not c.unmodified
        or c.signer_certificate_bound is False
        or not c.valid_at_signing_time
        and inputs.time_source is TimeSource.SIGNATURE_TIMESTAMP
        or c.not_revoked is False
        or inputs.indication is Indication.TOTAL_FAILED
    ):
        return "INVALID"
    if (
        not c.chain_found
        or not c.recognized_ca
        or inputs.profile is None
        or inputs.profile.kind is not ProfileKind.RECOGNIZED
    ):
        return "CRYPTO_VALID_NOT_RECOGNIZED"
    if c.key_usage is False or c.certificate_policy is False or c.recognition_in_force is False:
        return "ETO_S6_1A_NOT_SATISFIED"
    if c.crypto_strength is False:
        return "INDETERMINATE"
    if all_limbs and inputs.indication is Indication.TOTAL_PASSED:
        return "ETO_S6_1A_TECHNICAL_CONDITIONS_MET"
    return "INDETERMINATE"

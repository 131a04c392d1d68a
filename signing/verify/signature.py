"""Verify one signature of a PDF: integrity, chain, time, revocation, key usage, policy, modifications.

pyHanko's ETSI processes give the cryptographic and revocation verdict; the verifier adds its own
checks where pyHanko is silent or lenient (validity of the whole chain at T, key usage, trust-list
profile, ESS under /ETSI.CAdES.detached, the PAdES level) and aggregates one ETSI indication.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from asn1crypto import x509
from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature

from ..trust import TrustList, TrustProfile
from . import certs as cert_checks
from . import encoding, formats, times
from .ades import (
    AdesOutcome,
    has_signature_timestamp,
    run_ades,
    signature_timestamp_status,
    signature_timestamp_time,
)
from .doc_timestamps import level_evidence
from .eto import EtoInputs, assess
from .levels import ESS_ATTRIBUTES, PADES_SUBFILTER, pades_level, signed_attribute_names
from .modifications import Integrity, analyse_modifications
from .options import VerifyOptions
from .report import Checks, EtoAssessment, Indication, SignatureReport, TimeSource

__all__ = ["SignatureContext", "broken_signature", "unchecked_signature", "verify_signature"]

SUPPORTED_SUBFILTERS = frozenset(
    {"/adbe.pkcs7.detached", "/ETSI.CAdES.detached", "/PBAD.PAdES", formats.SHA1_SUBFILTER}
)


@dataclass(frozen=True)
class SignatureContext:
    """Document-level facts every signature check needs."""

    options: VerifyOptions
    validation_time: dt.datetime
    dss_certs: Sequence[x509.Certificate] = ()
    dss_has_revinfo: bool = False
    dss_counts: dict[str, int] = field(default_factory=dict)
    valid_doc_timestamp_revisions: Sequence[int] = ()
    """Revisions of document timestamps that are intact and valid."""
    doc_timestamp_revisions: Sequence[int] = ()
    dss: Any = None
    """The document's DocumentSecurityStore, if any."""
    file_sha256: str = ""
    file_size: int = 0
    revision_sha256: dict[int, str] = field(default_factory=dict)
    """SHA-256 (hex) of the file up to each signed revision's end, by that end offset."""
    shared: Any = None
    """The file's :class:`~signing.verify.shared.SharedValidation`, if any."""

    @property
    def trust(self) -> TrustList:
        return self.options.trust


def unchecked_signature(field_name: str, reason: str) -> SignatureReport:
    """A signature the verifier did not get to (limits): INDETERMINATE, nothing claimed."""
    from dataclasses import replace

    report = broken_signature(field_name, reason)
    return replace(
        report,
        indication=Indication.INDETERMINATE,
        sub_indication="GENERIC",
        eto=replace(
            report.eto,
            verdict="INDETERMINATE",
            reasons={"supported_by_recognized_certificate": ("not verified",)},
        ),
    )


def broken_signature(field_name: str, reason: str, subfilter: str | None = None) -> SignatureReport:
    """A signature that cannot even be read: TOTAL-FAILED / FORMAT_FAILURE, with the reason."""
    checks = Checks(
        integrity=False,
        signature_value=False,
        recognized_ca=False,
        valid_at_signing_time=False,
        not_revoked=None,
        key_usage=False,
        unmodified=False,
        digest_matches=None,
        byte_range=None,
    )
    return SignatureReport(
        field=field_name,
        indication=Indication.TOTAL_FAILED,
        sub_indication="FORMAT_FAILURE",
        checks=checks,
        eto=EtoAssessment(
            False,
            False,
            False,
            "INVALID",
            {"supported_by_recognized_certificate": ("the signature cannot be read",)},
        ),
        subfilter=subfilter,
        reasons=(reason,),
    )


# ---------------------------------------------------------------------------------------------- integrity


def _signed_revision_sha256(emb: EmbeddedPdfSignature, ctx: SignatureContext) -> str | None:
    """SHA-256 of the bytes from the start of the file to the end of the signed revision."""
    try:
        end = int(emb.byte_range[2]) + int(emb.byte_range[3])
    except Exception:  # noqa: BLE001
        return None
    if end == ctx.file_size and ctx.file_sha256:
        return ctx.file_sha256
    if end in ctx.revision_sha256:
        return ctx.revision_sha256[end]
    if not 0 < end <= ctx.file_size:
        return None
    h = hashlib.sha256()
    stream = emb.reader.stream
    stream.seek(0)
    left = end
    while left > 0:
        chunk = stream.read(min(left, 1 << 20))
        if not chunk:
            return None
        h.update(chunk)
        left -= len(chunk)
    return h.hexdigest()


def _own_digest_matches(emb: EmbeddedPdfSignature) -> bool | None:
    try:
        attrs = emb.signer_info["signed_attrs"]
        if not attrs:
            return None
        md = [a["values"][0].native for a in attrs if a["type"].native == "message_digest"]
        return len(md) == 1 and md[0] == emb.compute_digest()
    except Exception:  # noqa: BLE001
        return False


# ---------------------------------------------------------------------------------------------- trust


def _choose_profile(
    trust: TrustList, anchor: x509.Certificate | None, leaf: x509.Certificate
) -> TrustProfile | None:
    if anchor is None:
        return None
    candidates = trust.profiles_for_anchor(anchor)
    issuer_cn = cert_checks.issuer_common_name(leaf)
    oids = cert_checks.policy_oids(leaf)
    for p in candidates:
        if p.issuer_allowed(issuer_cn) and p.policy_matches(oids) is not False:
            return p
    return candidates[0] if candidates else None


def _revocation(
    outcome: AdesOutcome, moment: dt.datetime, ctx: SignatureContext
) -> tuple[bool | None, dict[str, Any]]:
    status = outcome.status
    details = getattr(status, "revocation_details", None)
    revoked_at = getattr(details, "revocation_date", None)
    info: dict[str, Any] = {
        "evidence_required": True,
        "online_fetching": not (ctx.options.offline or ctx.options.at is not None),
        "embedded": dict(ctx.dss_counts),
        "revoked_at": revoked_at.isoformat() if revoked_at else None,
        "ca_revoked": getattr(details, "ca_revoked", None),
    }
    sub = outcome.sub_indication
    if sub == "REVOKED":
        result: bool | None = False
    elif sub in ("REVOKED_NO_POE", "REVOKED_CA_NO_POE"):
        result = False if revoked_at is None or revoked_at <= moment else None
    elif outcome.indication is Indication.TOTAL_PASSED:
        result = True
    else:
        result = None
    if result is True and revoked_at is not None:
        info["revoked_after_signing"] = True
    info["status"] = {True: "not revoked at T", False: "revoked at or before T", None: "not established"}[
        result
    ]
    return result, info


@dataclass(frozen=True)
class _SigningTime:
    moment: dt.datetime
    """T: what the checks are made at."""
    source: TimeSource
    claimed: dt.datetime | None
    tst_time: dt.datetime | None
    """genTime of the signature timestamp as read (not validated)."""
    ts_valid: bool
    ts_trusted: bool

    @property
    def timestamp_time(self) -> dt.datetime | None:
        return self.tst_time


async def _signing_time(
    emb: EmbeddedPdfSignature, status: Any, ctx: SignatureContext, reasons: list[str]
) -> _SigningTime:
    """C5: T from a trusted signature timestamp, else the claimed time, else the validation time."""
    try:
        claimed = emb.self_reported_timestamp
    except Exception:  # noqa: BLE001
        claimed = None
    tst_time = signature_timestamp_time(emb.signer_info)
    ts_status = getattr(status, "timestamp_validity", None)
    if ts_status is None and tst_time is not None:
        ts_status = await signature_timestamp_status(emb, ctx.dss, ctx.options)
    ts_valid = ts_status is not None and bool(ts_status.intact and ts_status.valid)
    ts_trusted = ts_status is not None and ts_valid and bool(ts_status.trusted)
    if ts_status is not None and ts_trusted:
        moment, source = ts_status.timestamp, TimeSource.SIGNATURE_TIMESTAMP
        tst_time = ts_status.timestamp
    elif claimed is not None:
        moment, source = claimed, TimeSource.CLAIMED
        if tst_time is not None:
            reasons.append(
                "the signature timestamp could not be validated, so the signing time is only claimed"
            )
    else:
        moment, source = ctx.validation_time, TimeSource.VALIDATION_TIME
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return _SigningTime(moment, source, claimed, tst_time, ts_valid, ts_trusted)


@dataclass(frozen=True)
class _TrustChecks:
    chain: cert_checks.ChainResult
    profile: TrustProfile | None
    policy_ok: bool | None
    recognized: bool
    valid_at_t: bool
    recognition: bool | None


async def _trust_checks(
    emb: EmbeddedPdfSignature,
    leaf: x509.Certificate,
    outcome: AdesOutcome,
    moment: dt.datetime,
    ctx: SignatureContext,
    reasons: list[str],
) -> _TrustChecks:
    """C3/C4 (chain to a trust-list root, profile), C6 (validity at T), C7 (recognition), C10 (policy)."""
    validated_path = getattr(outcome.status, "validation_path", None)
    if validated_path is not None and outcome.indication is Indication.TOTAL_PASSED:
        chain = cert_checks.chain_from_path(validated_path, moment)
    else:
        others = [*emb.other_embedded_certs, *ctx.dss_certs]
        chain = await cert_checks.check_chain(leaf, others, ctx.trust, moment)
    if chain.problem:
        reasons.append(chain.problem)
    profile = _choose_profile(ctx.trust, chain.anchor, leaf)
    issuer_ok = profile.issuer_allowed(cert_checks.issuer_common_name(leaf)) if profile else False
    policy_ok = profile.policy_matches(cert_checks.policy_oids(leaf)) if profile else None
    if profile is not None and not issuer_ok:
        reasons.append(f"the issuing CA is not one the profile {profile.id} allows")
    if profile is not None and policy_ok is False:
        reasons.append(f"no certificate policy under {', '.join(profile.policy_oid_prefixes)}")
    recognized = bool(
        chain.chain_found
        and chain.path is not None
        and profile is not None
        and issuer_ok
        and policy_ok is not False
    )
    valid_at_t = chain.valid_at_t if chain.chain_found else cert_checks.leaf_valid_at(leaf, moment)
    return _TrustChecks(
        chain,
        profile,
        policy_ok,
        recognized,
        bool(valid_at_t),
        profile.recognized_at(moment) if profile else None,
    )


# ---------------------------------------------------------------------------------------------- main


def _process_for(emb: EmbeddedPdfSignature, ctx: SignatureContext) -> str:
    # The LTA process works from the DSS; a document timestamp without one only proves time (B-T).
    # pyHanko's LTA process reads only detached signatures.
    enveloping = str(emb.sig_object.get("/SubFilter")) == formats.SHA1_SUBFILTER
    later = any(r > emb.signed_revision for r in ctx.doc_timestamp_revisions)
    if ctx.dss is not None and later and not enveloping:
        return "lta"
    if has_signature_timestamp(emb.signer_info):
        return "with-time"
    return "basic"


async def verify_signature(emb: EmbeddedPdfSignature, ctx: SignatureContext) -> SignatureReport:
    """Every check on one /Sig signature; never raises on a damaged signature."""
    field_name = emb.field_name
    try:
        subfilter = (
            str(emb.sig_object.get("/SubFilter")) if emb.sig_object.get("/SubFilter") is not None else None
        )
    except Exception:  # noqa: BLE001
        subfilter = None
    if subfilter not in SUPPORTED_SUBFILTERS:
        return broken_signature(field_name, f"unsupported /SubFilter {subfilter or '(none)'}", subfilter)
    try:
        leaf = emb.signer_cert
    except Exception as exc:  # noqa: BLE001
        report = broken_signature(
            field_name, f"the signer's certificate is not in the signature: {exc}", subfilter
        )
        return _replace_sub(report, Indication.INDETERMINATE, "NO_SIGNING_CERTIFICATE_FOUND")
    reasons: list[str] = []

    integ = await analyse_modifications(
        emb, ctx.options.max_revisions_after_signature, render_timeout=ctx.options.signature_timeout
    )
    if integ.digest_error:
        return broken_signature(field_name, integ.digest_error, subfilter)
    reasons.extend(f.describe() for f in integ.findings)
    reasons.extend(n for n in (integ.incomplete, integ.diff_message, *integ.notes) if n)

    process = _process_for(emb, ctx)
    outcome = await run_ades(emb, ctx.options, process, ctx.shared)
    if outcome.error:
        reasons.append(f"the ETSI {process} validation stopped: {outcome.error}")
    if outcome.failure_msg and outcome.indication is not Indication.TOTAL_PASSED:
        reasons.append(outcome.failure_msg)
    status = outcome.status

    digest_matches = outcome.intact if outcome.intact is not None else _own_digest_matches(emb)
    if subfilter == formats.SHA1_SUBFILTER:  # messageDigest is over the content, which must be SHA-1(range)
        digest_matches = bool(digest_matches) and formats.sha1_content_matches(emb)
    signature_value = bool(outcome.valid)
    der_problem = encoding.signed_attrs_der_problem(emb.signer_info) or encoding.cms_der_problem(
        emb.pkcs7_content
    )
    if der_problem:  # RFC 5652 §5.4: the value is checked over DER, which these bytes are not
        reasons.insert(0, der_problem)
        signature_value = False

    when = await _signing_time(emb, status, ctx, reasons)
    moment, source = when.moment, when.source
    claim_ok = times.claim_consistent(when.claimed, when.tst_time)
    if claim_ok is False:
        reasons.append(times.CLAIM_AFTER_TIMESTAMP.format(claimed=when.claimed, tst=when.tst_time))
    trust = await _trust_checks(emb, leaf, outcome, moment, ctx, reasons)
    chain, profile = trust.chain, trust.profile
    not_revoked, revocation = _revocation(outcome, moment, ctx)
    if revocation.get("revoked_after_signing"):
        reasons.append(
            f"the certificate was revoked at {revocation['revoked_at']}, after the signing time; "
            "this does not affect a signature made before"
        )
    ku_ok, ku_problem = cert_checks.key_usage_ok(leaf, profile)
    if ku_problem:
        reasons.append(ku_problem)
    strong, weak_problem = cert_checks.key_strength_ok(leaf)
    if subfilter == formats.SHA1_SUBFILTER and strong:
        strong, weak_problem = False, formats.SHA1_WEAKNESS
    if weak_problem:
        reasons.append(weak_problem)

    attr_names = signed_attribute_names(emb.signer_info)
    has_ess = bool(attr_names & ESS_ATTRIBUTES)
    bound: bool | None = None
    if outcome.sub_indication == "NO_SIGNING_CERTIFICATE_FOUND":
        bound = False
    elif has_ess:
        bound = True

    checks = Checks(
        integrity=bool(digest_matches) and integ.byte_range_ok,
        signature_value=signature_value,
        recognized_ca=trust.recognized,
        valid_at_signing_time=trust.valid_at_t,
        not_revoked=not_revoked,
        key_usage=ku_ok,
        unmodified=integ.unmodified,
        digest_matches=digest_matches,
        byte_range=integ.byte_range_ok,
        signer_certificate_bound=bound,
        chain_found=chain.chain_found,
        certificate_policy=trust.policy_ok,
        recognition_in_force=trust.recognition,
        signature_timestamp=(when.ts_trusted if when.tst_time is not None else None),
        crypto_strength=strong,
        claimed_time_consistent=claim_ok,
    )
    level, level_notes = pades_level(
        level_evidence(
            emb,
            ctx,
            chain.certificates(),
            subfilter,
            attr_names,
            intact=checks.integrity and signature_value,
            timestamp_valid=when.ts_valid,
        )
    )
    reasons.extend(level_notes)
    indication, sub = _aggregate(outcome, checks, chain, source, subfilter, has_ess, integ, reasons)
    if der_problem:
        generic = "the signature value does not verify with the signer's key"
        reasons[:] = [der_problem, *(r for r in reasons if r not in (der_problem, generic))]
        if sub != "HASH_FAILURE":
            indication, sub = Indication.TOTAL_FAILED, "SIG_CRYPTO_FAILURE"
    eto = assess(
        EtoInputs(
            checks=checks,
            indication=indication,
            time_source=source,
            profile=profile if trust.recognized else None,
        )
    )
    return SignatureReport(
        field=field_name,
        indication=indication,
        sub_indication=sub,
        checks=checks,
        eto=eto,
        signer=cert_checks.identity(leaf),
        pades_level=level,
        signing_time=moment,
        time_source=source,
        claimed_time=when.claimed,
        time_basis=times.time_basis(source, when.tst_time is not None),
        timestamp_time=when.timestamp_time,
        subfilter=subfilter,
        validation_process=process,
        profile_id=profile.id if profile else None,
        coverage=integ.coverage.name if integ.coverage is not None else None,
        modification_level=integ.level.name if integ.level is not None else None,
        docmdp=integ.docmdp.name if integ.docmdp is not None else None,
        revision=emb.signed_revision,
        signed_revision_sha256=_signed_revision_sha256(emb, ctx) if integ.byte_range_ok else None,
        revocation=revocation,
        chain=tuple(
            {"subject": c.subject.human_friendly, "sha256": cert_checks.identity(c).certificate_sha256}
            for c in chain.certificates()
        ),
        reasons=tuple(dict.fromkeys(reasons)),
    )


def _replace_sub(report: SignatureReport, indication: Indication, sub: str) -> SignatureReport:
    from dataclasses import replace

    return replace(report, indication=indication, sub_indication=sub)


def _aggregate(
    outcome: AdesOutcome,
    c: Checks,
    chain: cert_checks.ChainResult,
    source: TimeSource,
    subfilter: str | None,
    has_ess: bool,
    integ: Integrity,
    reasons: list[str],
) -> tuple[Indication, str | None]:
    """One ETSI indication: the first failing check in order of gravity (eto-verification.md §6)."""
    failed, indet = Indication.TOTAL_FAILED, Indication.INDETERMINATE
    if c.digest_matches is False:
        reasons.insert(0, "the signed bytes changed: their digest does not match the signature")
        return failed, "HASH_FAILURE"
    if outcome.status is None and outcome.indication is not Indication.TOTAL_PASSED:
        return outcome.indication, outcome.sub_indication
    if not c.signature_value:
        reasons.insert(0, "the signature value does not verify with the signer's key")
        return failed, "SIG_CRYPTO_FAILURE"
    if not c.byte_range:
        reasons.insert(
            0,
            f"the /ByteRange does not cover the document as PDF requires (coverage "
            f"{integ.coverage.name if integ.coverage else 'unknown'})",
        )
        return failed, "FORMAT_FAILURE"
    if not c.unmodified and not integ.incomplete:
        reasons.insert(
            0,
            f"what the signed pages show was changed after signing ({integ.findings[0].describe()})"
            if integ.findings
            else f"the document was modified after signing in a way that is not allowed "
            f"(modification level {integ.level.name if integ.level else 'unknown'})",
        )
        return failed, "FORMAT_FAILURE"
    if c.not_revoked is False and source is TimeSource.SIGNATURE_TIMESTAMP:
        reasons.insert(0, "the certificate was revoked before the time proven by the signature timestamp")
        return failed, "REVOKED"
    if outcome.indication is failed:
        return outcome.indication, outcome.sub_indication
    if integ.incomplete:
        reasons.insert(0, integ.incomplete)
        return indet, "GENERIC"
    if chain.broken:
        return indet, "CHAIN_CONSTRAINTS_FAILURE"
    if not c.chain_found:
        return indet, "NO_CERTIFICATE_CHAIN_FOUND"
    if not c.valid_at_signing_time:
        if source is TimeSource.SIGNATURE_TIMESTAMP and chain.not_yet_valid:
            return failed, "NOT_YET_VALID"
        return indet, "OUT_OF_BOUNDS_NO_POE"
    if outcome.indication is indet:
        return outcome.indication, outcome.sub_indication
    if c.crypto_strength is False:
        return indet, "CRYPTO_CONSTRAINTS_FAILURE"
    if not c.key_usage:
        return indet, "CHAIN_CONSTRAINTS_FAILURE"
    if not c.recognized_ca:
        reasons.append("the certificate does not match the trust-list profile of its root")
        return indet, "CHAIN_CONSTRAINTS_FAILURE"
    if subfilter == PADES_SUBFILTER and not has_ess:
        reasons.append("/ETSI.CAdES.detached without an ESS signing-certificate attribute")
        return indet, "SIG_CONSTRAINTS_FAILURE"
    if c.recognition_in_force is False:
        reasons.append("the trust-list recognition of this profile was not in force at the signing time")
        return indet, "SIG_CONSTRAINTS_FAILURE"
    return Indication.TOTAL_PASSED, None

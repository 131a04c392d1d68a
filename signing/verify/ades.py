"""Run pyHanko's ETSI EN 319 102-1 processes on one PDF signature and normalise what comes back.

The process matches what the file holds (pyhanko-notes §7.3): *basic* without a signature timestamp,
*with-time* with one, *LTA* when a document timestamp follows the signature. The revocation policy is
REQUIRE_REVINFO (never pass on soft-fail); the DSS and the CMS revocation archive are fed in as local
knowledge, so LT/LTA files verify offline.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from asn1crypto import cms
from pyhanko.sign.ades.report import AdESFailure, AdESIndeterminate, AdESPassed
from pyhanko.sign.validation import ades
from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature
from pyhanko.sign.validation.policy_decl import (
    CertificateFetchingRule,
    LocalKnowledge,
    PdfSignatureValidationSpec,
    RevinfoOnlineFetchingRule,
    RevocationInfoGatheringSpec,
    SignatureValidationSpec,
)
from pyhanko.sign.validation.settings import KeyUsageConstraints
from pyhanko_certvalidator.context import CertValidationPolicySpec
from pyhanko_certvalidator.ltv.types import ValidationTimingInfo
from pyhanko_certvalidator.policy_decl import REQUIRE_REVINFO, CertRevTrustPolicy
from pyhanko_certvalidator.registry import SimpleTrustManager

from .options import VerifyOptions
from .report import Indication
from .shared import SharedValidation

__all__ = ["AdesOutcome", "has_signature_timestamp", "run_ades", "signature_timestamp_time"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AdesOutcome:
    """The normalised result of one ETSI process run."""

    process: str
    indication: Indication
    sub_indication: str | None
    failure_msg: str | None = None
    status: Any = None
    """pyHanko's status object (``api_status``), when the process got that far."""
    best_signature_time: dt.datetime | None = None
    error: str | None = None
    """An exception pyHanko raised (hostile file, timeout); the signature is then not passed."""

    @property
    def intact(self) -> bool | None:
        return getattr(self.status, "intact", None)

    @property
    def valid(self) -> bool | None:
        return getattr(self.status, "valid", None)


def _indication(sub: Any) -> Indication:
    if isinstance(sub, AdESPassed):
        return Indication.TOTAL_PASSED
    if isinstance(sub, AdESFailure):
        return Indication.TOTAL_FAILED
    return Indication.INDETERMINATE


def has_signature_timestamp(signer_info: cms.SignerInfo) -> bool:
    try:
        return any(
            a["type"].native == "signature_time_stamp_token" for a in (signer_info["unsigned_attrs"] or ())
        )
    except Exception:  # noqa: BLE001
        return False


def signature_timestamp_time(signer_info: cms.SignerInfo) -> dt.datetime | None:
    """genTime of the first signature timestamp token (read, not validated)."""
    try:
        for attr in signer_info["unsigned_attrs"] or ():
            if attr["type"].native != "signature_time_stamp_token":
                continue
            token = attr["values"][0]
            tst_info = token["content"]["encap_content_info"]["content"].parsed
            return tst_info["gen_time"].native
    except Exception:  # noqa: BLE001 - a damaged token just means no time from it
        return None
    return None


def _local_knowledge(emb: EmbeddedPdfSignature) -> LocalKnowledge:
    """OCSP responses, CRLs and certificates from the DSS and the CMS revocation archive."""
    parts: list[LocalKnowledge] = []
    for extract in (
        lambda: ades._dss_to_local_knowledge(reader=emb.reader),
        lambda: ades._adobe_revinfo_archival_to_local_knowledge(emb),
    ):
        try:
            parts.append(extract())
        except Exception as exc:  # noqa: BLE001 - a hostile DSS must not stop the verification
            logger.info("ignoring unreadable validation data: %s", exc)
    return LocalKnowledge(
        known_ocsps=[o for p in parts for o in p.known_ocsps],
        known_crls=[c for p in parts for c in p.known_crls],
        known_certs=[c for p in parts for c in p.known_certs],
    )


def _is_empty(knowledge: LocalKnowledge) -> bool:
    return not (knowledge.known_ocsps or knowledge.known_crls or knowledge.known_certs)


def build_spec(
    options: VerifyOptions, local_knowledge: LocalKnowledge | None = None
) -> SignatureValidationSpec:
    """The validation policy: trust-list anchors only, revocation information required."""
    policy = CertValidationPolicySpec(
        trust_manager=SimpleTrustManager.build(trust_roots=options.trust.anchors),
        revinfo_policy=CertRevTrustPolicy(REQUIRE_REVINFO),
    )
    fetching = (
        RevinfoOnlineFetchingRule.LOCAL_ONLY
        if options.offline or options.at is not None
        else RevinfoOnlineFetchingRule.NO_HISTORICAL_FETCH
    )
    return SignatureValidationSpec(
        cert_validation_policy=policy,
        revinfo_gathering_policy=RevocationInfoGatheringSpec(
            online_fetching_rule=fetching,
            # Never follow caIssuers URLs chosen by whoever made the file.
            certificate_fetching_rule=CertificateFetchingRule.NEVER_FETCH,
        ),
        # Key usage is checked by the verifier itself (certs.key_usage_ok), so that a wrong key usage
        # does not hide what the chain and revocation checks found.
        key_usage_settings=KeyUsageConstraints(),
        local_knowledge=local_knowledge or LocalKnowledge(),
    )


def _timing(options: VerifyOptions) -> ValidationTimingInfo | None:
    if options.at is None:
        return None
    at = options.validation_time(options.at)
    return ValidationTimingInfo(validation_time=at, best_signature_time=at, point_in_time_validation=True)


async def _run(
    emb: EmbeddedPdfSignature, options: VerifyOptions, process: str, shared: SharedValidation | None
) -> AdesOutcome:
    timing = _timing(options)
    result: Any
    if process == "lta":
        pdf_spec = PdfSignatureValidationSpec(signature_validation_spec=build_spec(options))
        result = await ades.ades_lta_validation(emb, pdf_spec, timing_info=timing)
    else:
        handlers = None
        if shared is not None and _is_empty(shared.cms_knowledge(emb)):
            # the file's DSS data and handlers, shared with its other signatures
            spec = build_spec(options, shared.dss_knowledge())
            handlers = shared.handlers(spec, timing)
        else:
            spec = build_spec(options, _local_knowledge(emb))
        run = ades.ades_with_time_validation if process == "with-time" else ades.ades_basic_validation
        # /adbe.pkcs7.sha1 is enveloping: pyHanko then digests the encapsulated content itself.
        enveloping = str(emb.sig_object.get("/SubFilter")) == "/adbe.pkcs7.sha1"
        raw = None if enveloping else emb.compute_digest()
        result = await run(
            emb.signed_data,
            spec,
            timing_info=timing,
            raw_digest=raw,
            validation_data_handlers=handlers,
        )
    sub = result.ades_subindic
    return AdesOutcome(
        process=process,
        indication=_indication(sub),
        sub_indication=None if isinstance(sub, AdESPassed) else getattr(sub, "name", str(sub)),
        failure_msg=result.failure_msg,
        status=result.api_status,
        best_signature_time=getattr(result, "best_signature_time", None),
    )


async def run_ades(
    emb: EmbeddedPdfSignature, options: VerifyOptions, process: str, shared: SharedValidation | None = None
) -> AdesOutcome:
    """Run ``process`` (``basic``, ``with-time`` or ``lta``) within the time allowed; never raises.

    With ``shared``, the validation data of the file is loaded once for all its signatures."""
    try:
        return await asyncio.wait_for(_run(emb, options, process, shared), timeout=options.signature_timeout)
    except TimeoutError:
        return AdesOutcome(
            process,
            Indication.INDETERMINATE,
            AdESIndeterminate.TRY_LATER.name,
            error=f"validation did not finish within {options.signature_timeout:g} s",
        )
    except Exception as exc:  # noqa: BLE001 - pyHanko raises many kinds on hostile input
        sub = getattr(exc, "ades_subindication", None)
        if sub is None:
            return AdesOutcome(
                process,
                Indication.TOTAL_FAILED,
                AdESFailure.FORMAT_FAILURE.name,
                error=f"{type(exc).__name__}: {exc}",
            )
        return AdesOutcome(
            process, _indication(sub), getattr(sub, "name", str(sub)), error=f"{type(exc).__name__}: {exc}"
        )


def dss_validation_context(dss: Any, options: VerifyOptions):
    """A classic ValidationContext with the DSS data, trust-list roots and revocation information required."""
    from pyhanko_certvalidator import ValidationContext

    settings: dict[str, Any] = {
        "trust_roots": options.trust.anchors,
        "allow_fetching": not (options.offline or options.at is not None),
        "revocation_mode": "require",
    }
    if options.at is not None:
        settings["moment"] = options.validation_time(options.at)
    if dss is not None:
        try:
            return dss.as_validation_context(settings)
        except Exception as exc:  # noqa: BLE001 - damaged DSS: validate without it
            logger.info("DSS unusable for the validation context: %s", exc)
    return ValidationContext(crls=[], ocsps=[], **settings)


async def signature_timestamp_status(emb: EmbeddedPdfSignature, dss: Any, options: VerifyOptions):
    """Validate the signature timestamp on its own (when the ETSI process stopped before it); or None."""
    from pyhanko.sign.validation import generic_cms

    vc = dss_validation_context(dss, options)
    try:
        kwargs = await asyncio.wait_for(
            generic_cms.collect_timing_info(emb.signer_info, vc, raw_digest=emb.compute_digest),
            timeout=options.signature_timeout,
        )
        return kwargs.get("timestamp_validity")
    except Exception as exc:  # noqa: BLE001
        logger.info("signature timestamp not validated: %s", exc)
        return None
    finally:
        try:
            await vc.aclose()
        except Exception as exc:  # noqa: BLE001
            logger.debug("closing the validation context failed: %s", exc)

"""Document timestamps (PAdES, ETSI EN 319 142-1 §5.4): found by /SubFilter, checked on their own.

A signature dictionary whose /SubFilter is /ETSI.RFC3161 holds a timestamp token over the /ByteRange,
whatever its /Type says (/DocTimeStamp, /Sig, missing or null): it is a document timestamp, never a
failed signature. Its checks: the token's message imprint equals the digest of the /ByteRange, the
token's signature verifies, the TSA certificate chains to a trust-list root, and its time. Only a
timestamp passing all of them counts toward a signature's level.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from asn1crypto import crl as asn1_crl
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import x509
from pyhanko.sign.diff_analysis import DEFAULT_DIFF_POLICY
from pyhanko.sign.validation import generic_cms
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature
from pyhanko.sign.validation.status import DocumentTimestampStatus

from .ades import dss_validation_context
from .levels import LevelEvidence
from .options import VerifyOptions
from .report import DocumentTimestampReport

__all__ = [
    "RFC3161_SUBFILTER",
    "dss_covers_chain",
    "is_doc_timestamp",
    "level_evidence",
    "verify_doc_timestamp",
]

logger = logging.getLogger(__name__)

RFC3161_SUBFILTER = "/ETSI.RFC3161"


def is_doc_timestamp(emb: EmbeddedPdfSignature) -> bool:
    """True for /SubFilter /ETSI.RFC3161 (any /Type), or /Type /DocTimeStamp."""
    try:
        subfilter = emb.sig_object.get("/SubFilter")
        if subfilter is not None and str(subfilter) == RFC3161_SUBFILTER:
            return True
        return str(emb.sig_object.get("/Type")) == "/DocTimeStamp"
    except Exception:  # noqa: BLE001 - a hostile dictionary is read as a signature (and fails there)
        return False


def _type_note(emb: EmbeddedPdfSignature) -> str | None:
    try:
        kind = emb.sig_object.get("/Type")
    except Exception:  # noqa: BLE001
        kind = None
    text = "missing" if kind is None else str(kind)
    if text == "/DocTimeStamp":
        return None
    return f"/SubFilter /ETSI.RFC3161 with /Type {text}: read as a document timestamp"


_COVERING = ("ENTIRE_FILE", "ENTIRE_REVISION")


async def _validate(emb: EmbeddedPdfSignature, vc) -> tuple[DocumentTimestampStatus, bool]:
    """pyHanko's PDF timestamp validation, without its /Type check. Returns (status, unmodified);
    ``emb.coverage`` says afterwards what its /ByteRange covers."""
    emb.compute_integrity_info(diff_policy=DEFAULT_DIFF_POLICY)
    kwargs = await generic_cms.validate_tst_signed_data(emb.signed_data, vc, emb.compute_digest)
    status = DocumentTimestampStatus(**kwargs, coverage=emb.coverage, diff_result=emb.diff_result)
    level = getattr(emb.diff_result, "modification_level", None)
    coverage = getattr(emb.coverage, "name", None)
    unmodified = (level is not None and level.value <= 1) or coverage == "ENTIRE_FILE"
    return status, bool(unmodified)


async def verify_doc_timestamp(
    emb: EmbeddedPdfSignature, dss: DocumentSecurityStore | None, options: VerifyOptions
) -> DocumentTimestampReport:
    """The checks of one document timestamp; never raises."""
    notes = [n for n in (_type_note(emb),) if n]
    vc = dss_validation_context(dss, options)
    try:
        status, unmodified = await asyncio.wait_for(_validate(emb, vc), timeout=options.signature_timeout)
        intact, valid, trusted = bool(status.intact), bool(status.valid), bool(status.trusted)
        if not intact:
            notes.append("the timestamp's message imprint does not match the /ByteRange digest")
        elif not valid:
            notes.append("the timestamp token's signature does not verify")
        elif not trusted:
            notes.append("the TSA certificate does not chain to a trust-list root (or its chain is invalid)")
        covers = getattr(emb.coverage, "name", None) in _COVERING
        if not covers:
            notes.append(
                "its /ByteRange does not cover the revision that last wrote its dictionary (written again "
                "later, or a byte range that ends elsewhere): it time-stamps nothing after the bytes it covers"
            )
        signer = status.signing_cert
        return DocumentTimestampReport(
            field=str(emb.field_name),
            time=status.timestamp,
            intact=intact,
            valid=valid,
            trusted=trusted,
            tsa=signer.subject.human_friendly if signer is not None else None,
            revision=emb.signed_revision,
            unmodified=unmodified,
            reasons=tuple(notes),
            covers_revision=covers,
        )
    except Exception as exc:  # noqa: BLE001
        return DocumentTimestampReport(
            field=str(emb.field_name),
            time=None,
            intact=False,
            valid=False,
            trusted=False,
            revision=emb.signed_revision,
            reasons=(*notes, f"the document timestamp cannot be validated: {type(exc).__name__}: {exc}"),
        )
    finally:
        try:
            await vc.aclose()
        except Exception as exc:  # noqa: BLE001
            logger.debug("closing the validation context failed: %s", exc)


def dss_covers_chain(dss: DocumentSecurityStore | None, chain: Sequence[x509.Certificate]) -> bool:
    """Whether the DSS holds revocation data (an OCSP response for it, or a CRL of its issuer) for
    every certificate of ``chain`` (leaf first) that is not self-signed."""
    needing = [c for c in chain if c.self_signed == "no"]
    if dss is None or not needing:
        return False
    try:
        ocsp_serials = set()
        for ref in dss.ocsps:
            resp = asn1_ocsp.OCSPResponse.load(ref.get_object().data)
            basic = resp["response_bytes"]["response"].parsed
            for single in basic["tbs_response_data"]["responses"]:
                ocsp_serials.add(single["cert_id"]["serial_number"].native)
        crl_issuers = {
            asn1_crl.CertificateList.load(ref.get_object().data)["tbs_cert_list"]["issuer"].dump()
            for ref in dss.crls
        }
    except Exception:  # noqa: BLE001 - unreadable validation data covers nothing
        return False
    return all(c.serial_number in ocsp_serials or c.issuer.dump() in crl_issuers for c in needing)


def _issuer_chain(leaf: x509.Certificate, others: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """The leaf and its issuers found by name among ``others`` (for an untrusted chain), leaf first."""
    chain = [leaf]
    by_subject = {c.subject.dump(): c for c in others}
    while chain[-1].self_signed == "no" and len(chain) < 10:
        issuer = by_subject.get(chain[-1].issuer.dump())
        if issuer is None or issuer in chain:
            break
        chain.append(issuer)
    return chain


def _dss_at(emb: EmbeddedPdfSignature, revision: int) -> DocumentSecurityStore | None:
    try:
        return DocumentSecurityStore.read_dss(emb.reader.get_historical_resolver(revision))
    except Exception:  # noqa: BLE001 - no DSS (or a damaged one) in that revision
        return None


def level_evidence(
    emb: EmbeddedPdfSignature,
    ctx: Any,
    validated_chain: Sequence[x509.Certificate],
    subfilter: str | None,
    attr_names: frozenset[str],
    *,
    intact: bool,
    timestamp_valid: bool,
) -> LevelEvidence:
    """The facts :func:`~.levels.pades_level` needs, document timestamps and DSS coverage included."""
    chain = list(validated_chain)[::-1] or _issuer_chain(
        emb.signer_cert, [*emb.other_embedded_certs, *ctx.dss_certs]
    )
    later = [r for r in ctx.valid_doc_timestamp_revisions if r > emb.signed_revision]
    return LevelEvidence(
        subfilter=subfilter,
        signed_attributes=attr_names,
        intact=intact,
        timestamp_valid=timestamp_valid,
        dss_has_revinfo=ctx.dss_has_revinfo and dss_covers_chain(ctx.dss, chain),
        document_timestamp_after=bool(later),
        document_timestamp_over_dss=any(dss_covers_chain(_dss_at(emb, r), chain) for r in later),
    )

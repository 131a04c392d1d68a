"""Signer enrolment: one short signature over a statement, so that later hash-mode signatures are PAdES.

PAdES baseline needs the signer's certificate inside the signed attributes (ESS signing-certificate-v2),
and iAM Smart hands the certificate out only with a signature. Enrolment asks the signer for one signature
over a one-page statement ("I enrol my iAM Smart-Cert with <service> for signing"), an ordinary signing
request the signer approves on the phone like any other. When it completes, the certificate in that
signature is checked (trusted iAM Smart-Cert issuer, path to a trust root, not revoked) and kept against
the signer's keyed HMAC (never the HKID or openID in clear).

Before each later use the certificate is checked again (validity and revocation): a renewed, revoked or
expired certificate answers ``signer_reenrolment_required`` at once instead of a signature that could
never be embedded.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from sqlmodel import Session

from api.errors import ApiError
from api.flows.enrolment_state import REENROLMENT_CODE, enrolment_for, mark_reenrolment_required
from api.flows.iamsmart_gateway import IamSmartSetup, issued_by_trusted_issuer
from api.flows.identity import SignerSpec, resolve_signer
from api.store.db import in_thread
from api.store.files import DocumentStore
from api.store.models import Document, Organisation, SignerEnrolment, SigningRequest, utcnow
from signing.certcheck import check_signer_certificate, signer_certificate_in
from signing.statement import statement_pdf

__all__ = ["EnrolmentFlow", "UsableCertificate"]

log = logging.getLogger("iamsign.enrolment")

_ENROLMENT_LEVEL = "B-B"


@dataclass(frozen=True)
class UsableCertificate:
    """An enrolled signer's certificate that passed its check just now."""

    enrolment_id: str
    cert_der: bytes


class EnrolmentFlow:
    """Starts enrolments (through the signing-request flow), completes them, checks enrolled certificates."""

    def __init__(
        self, flow: Any, setup: IamSmartSetup, store: DocumentStore, secret: bytes, settings
    ) -> None:
        self.flow, self.setup, self.store, self.secret, self.settings = flow, setup, store, secret, settings

    def statement(self) -> str:
        return f"I enrol my iAM Smart-Cert with {self.settings.service_name} for signing"

    def signer_key(
        self, spec: SignerSpec, session: Session | None = None, organisation_id: str | None = None
    ) -> str:
        """The keyed HMAC an enrolment is stored under (422 for an invalid HKID or an unknown signer
        session; a ``session_id`` needs the database ``session`` to be looked up)."""
        return resolve_signer(self.secret, spec, session, self.flow.clock(), organisation_id).signer_key

    # ------------------------------------------------------------------ start

    async def start(self, session: Session, org: Organisation, spec: SignerSpec) -> SignerEnrolment:
        """Ask the signer for the enrolment signature; a signer enrolled before is enrolled again."""
        signer_key = self.signer_key(spec, session, org.id)
        text = self.statement()
        now = utcnow()
        pdf = statement_pdf(
            [
                text,
                f"Online service: {self.settings.service_name}",
                f"Organisation: {org.name}",
                now.isoformat(),
            ]
        )
        tmp = self.store.temp_path(".pdf")
        tmp.write_bytes(pdf)
        try:
            stored = self.store.adopt(tmp)
        finally:
            tmp.unlink(missing_ok=True)
        doc = Document(
            organisation_id=org.id,
            sha256=stored.sha256,
            size=stored.size,
            filename="iamsign-enrolment.pdf",
            pages=1,
            signature_count=0,
        )
        session.add(doc)
        session.commit()
        req = await self.flow.create(
            session,
            org,
            doc,
            spec,
            mode="pdf",  # the certificate comes back inside iAM Smart's own CMS
            level=_ENROLMENT_LEVEL,
            reason=text[:500],
            location=None,
            appearance=None,
            webhook_url=None,
        )
        row = enrolment_for(session, org.id, signer_key)
        if row is None:
            row = SignerEnrolment(
                organisation_id=org.id, signer_key=signer_key, flow=req.flow, statement=text
            )
        row.status = "failed" if req.status in ("failed", "rejected", "cancelled", "expired") else "pending"
        if row.status == "failed":
            _forget_certificate(row)
        row.flow, row.statement, row.request_id = req.flow, text, req.id
        row.error_code, row.error_message = req.error_code, req.error_message
        row.updated_at = utcnow()
        session.add(row)
        session.commit()
        session.refresh(row)
        return row

    # ------------------------------------------------------------------ completion

    async def refresh(self, session: Session, row: SignerEnrolment) -> SignerEnrolment:
        """Complete a pending enrolment whose signature has come back (idempotent)."""
        if row.status != "pending" or not row.request_id:
            return row
        req = session.get(SigningRequest, row.request_id)
        if req is None or req.status == "pending":
            return row
        if req.status != "completed":
            return self._set(session, row, "failed", req.error_code or req.status, req.error_message)
        signed = session.get(Document, req.signed_document_id) if req.signed_document_id else None
        try:
            if signed is None:
                raise ValueError("the enrolment signature's document is missing")
            cert_der = signer_certificate_in(self.store.path_for(signed.sha256))
            cert = x509.load_der_x509_certificate(cert_der)
        except (ValueError, OSError) as exc:
            return self._set(session, row, "failed", "certificate_missing", f"no certificate: {exc}")
        session.commit()  # no transaction held while OCSP/CRL are fetched
        if issued_by_trusted_issuer(cert_der, self.setup.cert_issuers) is None:
            return self._set(
                session, row, "failed", "untrusted_certificate", "not issued by an iAM Smart-Cert issuer"
            )
        status = await check_signer_certificate(cert_der, self.setup.signing_services)
        if not status.good:
            return self._set(session, row, "failed", f"certificate_{status.status}", status.message)
        fresh = session.get(SignerEnrolment, row.id)
        if fresh is None or fresh.status != "pending" or fresh.request_id != req.id:
            return fresh or row
        row = fresh
        row.cert_der_b64 = base64.b64encode(cert_der).decode()
        row.cert_sha256 = hashlib.sha256(cert_der).hexdigest()
        row.subject, row.issuer = cert.subject.rfc4514_string()[:500], cert.issuer.rfc4514_string()[:500]
        row.serial = format(cert.serial_number, "x")
        row.not_before, row.not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
        log.info("signer enrolment %s completed", row.id)
        return self._set(session, row, "enrolled", None, None)

    @staticmethod
    def _set(
        session: Session, row: SignerEnrolment, status: str, code: str | None, message: str | None
    ) -> SignerEnrolment:
        row = session.merge(row)
        if status == "failed":
            _forget_certificate(row)
        row.status, row.error_code = status, code
        row.error_message = (message or "")[:2000] or None
        row.updated_at = utcnow()
        session.add(row)
        session.commit()
        session.refresh(row)
        return row

    # ------------------------------------------------------------------ use

    async def current(self, session: Session, org: Organisation, signer_key: str) -> SignerEnrolment | None:
        row = await in_thread(enrolment_for, session, org.id, signer_key)  # off the event loop
        return await self.refresh(session, row) if row is not None else None

    async def usable_certificate(
        self, session: Session, org: Organisation, signer_key: str
    ) -> UsableCertificate | None:
        """The enrolled certificate after a fresh check; ``None`` when not enrolled.

        Raises 409 ``signer_reenrolment_required`` when the enrolment no longer serves (renewed, revoked or
        expired certificate): at once, before anything is sent to the signer.
        """
        row = await self.current(session, org, signer_key)
        if row is None or row.status in ("pending", "failed"):
            return None
        if row.status == "reenrolment_required":
            raise _reenrol(row.error_message or "the enrolled certificate no longer serves")
        cert_der = base64.b64decode(row.cert_der_b64 or "")
        now = utcnow()
        if row.not_after is not None and _aware(row.not_after) <= now:
            self._stale(session, org, signer_key, "the enrolled certificate has expired")
        session.commit()
        status = await check_signer_certificate(cert_der, self.setup.signing_services)
        if status.status in ("revoked", "expired", "untrusted"):
            self._stale(session, org, signer_key, status.message)
        elif not status.good:  # revocation unknown now: the check before embedding decides
            log.warning("enrolment %s: %s", row.id, status.message)
        return UsableCertificate(row.id, cert_der)

    @staticmethod
    def _stale(session: Session, org: Organisation, signer_key: str, why: str) -> None:
        mark_reenrolment_required(session, org.id, signer_key, why)
        session.commit()
        raise _reenrol(why)


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _reenrol(why: str) -> ApiError:
    return ApiError(
        409,
        REENROLMENT_CODE,
        f"the signer must enrol again (POST /v1/signers): {why}",
    )


def _forget_certificate(row: SignerEnrolment) -> None:
    """A failed enrolment shows no certificate: not the one it refused, nor one an earlier enrolment kept."""
    row.cert_der_b64 = row.cert_sha256 = row.subject = row.issuer = row.serial = None
    row.not_before = row.not_after = None

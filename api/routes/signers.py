"""``/v1/signers``: enrol a signer's iAM Smart-Cert once, so hash-mode signatures are PAdES baseline."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from api.deps import EnrolmentDep, FlowDep, OrgDep, SessionDep
from api.edge.json_body import RequestModel
from api.errors import ApiError
from api.flows.signing import SigningFlow
from api.routes.signing_requests import ErrorOut, SignerIn
from api.store.models import SignerEnrolment, SigningRequest

router = APIRouter(prefix="/v1/signers", tags=["signers"])


class SignerCreate(RequestModel):
    signer: SignerIn

    model_config = ConfigDict(json_schema_extra={"examples": [{"signer": {"hkid": "A123456(3)"}}]})


class CertificateOut(BaseModel):
    subject: str
    issuer: str
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    fingerprint_sha256: str


class SignerPublic(BaseModel):
    id: str
    status: str = Field(description="pending, enrolled, reenrolment_required or failed")
    error: ErrorOut | None
    flow: str
    statement: str = Field(description="what the signer signs to enrol")
    enrolment_request_id: str | None = Field(description="the enrolment signature (a signing request)")
    sign_code: str | None = Field(description="while pending: the code the signer compares on the phone")
    signer_url: str | None
    certificate: CertificateOut | None
    created_at: dt.datetime
    updated_at: dt.datetime


def _public(flow: SigningFlow, session, row: SignerEnrolment) -> SignerPublic:
    req = session.get(SigningRequest, row.request_id) if row.request_id else None
    cert = None
    if row.cert_sha256 and row.not_before and row.not_after:
        cert = CertificateOut(
            subject=row.subject or "",
            issuer=row.issuer or "",
            serial=row.serial or "",
            not_before=row.not_before,
            not_after=row.not_after,
            fingerprint_sha256=row.cert_sha256,
        )
    pending = row.status == "pending" and req is not None
    return SignerPublic(
        id=row.id,
        status=row.status,
        error=ErrorOut(code=row.error_code, message=row.error_message or "") if row.error_code else None,
        flow=row.flow,
        statement=row.statement,
        enrolment_request_id=row.request_id,
        sign_code=req.sign_code if req is not None and pending else None,
        signer_url=flow.signer_url(req) if req is not None and pending else None,
        certificate=cert,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def _owned(session, org, enrolment: EnrolmentDep, signer_id: str) -> SignerEnrolment:
    row = session.get(SignerEnrolment, signer_id)
    if row is None or row.organisation_id != org.id:
        raise ApiError(404, "not_found", f"no signer {signer_id}")
    return await enrolment.refresh(session, row)


@router.post("", status_code=201, response_model=SignerPublic)
async def enrol_signer(
    body: SignerCreate, flow: FlowDep, org: OrgDep, session: SessionDep, enrolment: EnrolmentDep
) -> SignerPublic:
    """Ask the signer for one short enrolment signature over the statement; their certificate is kept."""
    spec = body.signer.spec()
    row = await enrolment.start(session, org, spec)
    return _public(flow, session, row)


@router.get("/{signer_id}", response_model=SignerPublic)
async def get_signer(
    signer_id: str, flow: FlowDep, org: OrgDep, session: SessionDep, enrolment: EnrolmentDep
) -> SignerPublic:
    """The enrolment and, once enrolled, the certificate's subject, issuer, validity and fingerprint."""
    return _public(flow, session, await _owned(session, org, enrolment, signer_id))


@router.delete("/{signer_id}", status_code=204)
async def forget_signer(signer_id: str, org: OrgDep, session: SessionDep, enrolment: EnrolmentDep) -> None:
    """Forget the signer's certificate; later hash-mode requests are PKCS#7 until they enrol again."""
    row = await _owned(session, org, enrolment, signer_id)
    session.delete(row)
    session.commit()

"""``/v1/envelopes``: one document, several signers in order; each step signs the previous step's file."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from api.deps import EnvelopeFlowDep, FlowDep, OrgDep, SessionDep, SettingsDep
from api.edge.json_body import RequestModel
from api.errors import ApiError
from api.flows.audit import check_trail, read_trail
from api.flows.envelopes import MAX_SIGNERS, EnvelopeFlow, EnvelopeSigner
from api.openapi import errors
from api.routes.documents import owned_document
from api.routes.signing_requests import AppearanceIn, ErrorOut, SignerIn
from api.store.models import Envelope, SigningRequest
from api.worker.egress import checked_webhook_url

router = APIRouter(prefix="/v1/envelopes", tags=["envelopes"])


class EnvelopeSignerIn(SignerIn):
    signer_id: str | None = Field(
        None, max_length=40, description="an enrolled signer (POST /v1/signers): hash mode, PAdES baseline"
    )
    appearance: AppearanceIn | None = None


class EnvelopeCreate(RequestModel):
    document_id: str
    signers: list[EnvelopeSignerIn] = Field(min_length=1, max_length=MAX_SIGNERS, description="in order")
    level: Literal["B-B", "B-T", "B-LT", "B-LTA"] | None = Field(
        None, description="the final file's level (default IAMSIGN_DEFAULT_LEVEL); earlier steps sign at B-T"
    )
    reason: str | None = Field(None, max_length=500)
    location: str | None = Field(None, max_length=200)
    webhook_url: HttpUrl | None = None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "document_id": "doc_01J9Z3K7Q8W2E4R6T8Y0U2I4O6",
                    "signers": [
                        {"hkid": "A123456(3)", "appearance": {"page": -1, "box": [50, 50, 250, 110]}},
                        {"hkid": "E567890(4)", "appearance": {"page": -1, "box": [300, 50, 500, 110]}},
                    ],
                    "level": "B-LTA",
                    "reason": "Tenancy agreement",
                    "webhook_url": "https://school.example/hooks/iamsign",
                }
            ]
        }
    )


class EnvelopeStepPublic(BaseModel):
    position: int = Field(description="1-based, in signing order")
    status: str = Field(
        description="waiting, starting, pending, completed, rejected, expired, cancelled, failed, skipped"
    )
    signer: Literal["hkid", "account", "enrolled"]
    signing_request_id: str | None
    sign_code: str | None = Field(description="while pending: the code this signer compares on the phone")
    signer_url: str | None
    expires_at: dt.datetime | None
    document_id: str | None = Field(description="the file this step signs")
    signed_document_id: str | None
    error: ErrorOut | None


class EnvelopePublic(BaseModel):
    id: str
    status: str = Field(description="pending, completed, rejected, expired, cancelled, failed")
    error: ErrorOut | None = Field(description="names the step that ended the envelope")
    ended_step: int | None = Field(description="1-based: the step that ended it otherwise than completed")
    document_id: str
    signed_document_id: str | None = Field(description="once completed: the file with every signature")
    level: str
    current_step: int = Field(description="1-based")
    steps: list[EnvelopeStepPublic]
    signer_url: str
    created_at: dt.datetime
    updated_at: dt.datetime


def public(session, flow, envelopes: EnvelopeFlow, env: Envelope) -> EnvelopePublic:
    steps = []
    for step in envelopes.steps(session, env.id):
        req = session.get(SigningRequest, step.request_id) if step.request_id else None
        pending = req is not None and req.status == "pending"
        steps.append(
            EnvelopeStepPublic(
                position=step.position + 1,
                status=step.status,
                signer=step.signer_kind,
                signing_request_id=step.request_id,
                sign_code=req.sign_code if pending and req else None,
                signer_url=flow.signer_url(req) if pending and req else None,
                expires_at=req.expires_at if req else None,
                document_id=step.document_id,
                signed_document_id=step.signed_document_id,
                error=ErrorOut(code=step.error_code, message=step.error_message or "")
                if step.error_code
                else None,
            )
        )
    return EnvelopePublic(
        id=env.id,
        status=env.status,
        error=ErrorOut(code=env.error_code, message=env.error_message or "") if env.error_code else None,
        ended_step=env.ended_step + 1 if env.ended_step is not None else None,
        document_id=env.document_id,
        signed_document_id=env.signed_document_id,
        level=env.level,
        current_step=env.current_step + 1,
        steps=steps,
        signer_url=f"{flow.settings.base_url}/sign/{env.id}",
        created_at=env.created_at,
        updated_at=env.updated_at,
    )


def owned_envelope(session, org, envelope_id: str) -> Envelope:
    env = session.get(Envelope, envelope_id)
    if env is None or env.organisation_id != org.id:
        raise ApiError(404, "not_found", f"no envelope {envelope_id}")
    return env


@router.post("", status_code=201, response_model=EnvelopePublic, responses=errors(404, 409, 410))
async def create_envelope(
    body: EnvelopeCreate,
    flow: FlowDep,
    envelopes: EnvelopeFlowDep,
    org: OrgDep,
    session: SessionDep,
    settings: SettingsDep,
) -> EnvelopePublic:
    """Ask several signers, in order, to sign one document: the first signer's request starts now, each
    next one when the previous completes, on the file the previous signer produced."""
    doc = owned_document(session, org, body.document_id)
    signers = [
        EnvelopeSigner(
            spec=s.spec(),
            signer_id=s.signer_id,
            appearance=s.appearance.model_dump() if s.appearance else None,
        )
        for s in body.signers
    ]
    env = await envelopes.create(
        session,
        org,
        doc,
        signers,
        level=settings.level_or_default(body.level),
        reason=body.reason,
        location=body.location,
        webhook_url=await checked_webhook_url(body.webhook_url, settings.webhook_allowed_networks),
    )
    session.refresh(env)
    return public(session, flow, envelopes, env)


@router.get("/{envelope_id}", response_model=EnvelopePublic, responses=errors(404))
def get_envelope(
    envelope_id: str, flow: FlowDep, envelopes: EnvelopeFlowDep, org: OrgDep, session: SessionDep
) -> EnvelopePublic:
    """The envelope and each of its steps."""
    return public(session, flow, envelopes, owned_envelope(session, org, envelope_id))


@router.post("/{envelope_id}/cancel", response_model=EnvelopePublic, responses=errors(404, 409))
async def cancel_envelope(
    envelope_id: str, flow: FlowDep, envelopes: EnvelopeFlowDep, org: OrgDep, session: SessionDep
) -> EnvelopePublic:
    """Stop the remaining steps (the current signer's request is cancelled; signed steps stay signed)."""
    env = owned_envelope(session, org, envelope_id)
    if not await envelopes.cancel(session, env, f"org:{org.id}"):
        session.refresh(env)
        raise ApiError(409, "not_pending", f"the envelope is {env.status} and can no longer be cancelled")
    session.refresh(env)
    return public(session, flow, envelopes, env)


@router.get("/{envelope_id}/audit", responses=errors(404))
def get_envelope_audit(
    envelope_id: str, envelopes: EnvelopeFlowDep, org: OrgDep, session: SessionDep
) -> dict:
    """Each step's hash-chained trail (its signing request's), in signing order."""
    env = owned_envelope(session, org, envelope_id)
    trails = []
    for step in envelopes.steps(session, env.id):
        trail = read_trail(session, step.request_id) if step.request_id else None
        entries = trail[1] if trail is not None else []
        trails.append(
            {
                "position": step.position + 1,
                "signing_request_id": step.request_id,
                "chain_intact": trail is not None and check_trail(trail[0], entries) is None,
                "entries": [
                    {
                        "seq": e.seq,
                        "at": e.at.isoformat(),
                        "actor": e.actor,
                        "event": e.event,
                        "status": e.status,
                        "document_sha256_before": e.document_sha256_before,
                        "document_sha256_after": e.document_sha256_after,
                        "detail": e.detail,
                        "entry_hash": e.entry_hash,
                    }
                    for e in entries
                ],
            }
        )
    return {"envelope_id": env.id, "status": env.status, "steps": trails}

"""Webhook secrets: the key receivers check ``X-Iamsign-Signature`` with, and its rotation."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.deps import OrgDep, ServerSecretDep, SessionDep
from api.store.models import Organisation
from api.worker.webhooks import organisation_webhook_secrets
from api.worker.webhooks import rotate_webhook_secret as rotate

router = APIRouter(prefix="/v1", tags=["webhooks"])

_SCHEME = (
    't=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>[,v1=<the same under the previous secret>]'
)


def _webhook_secrets(server_secret: bytes, org: Organisation) -> dict:
    secrets = organisation_webhook_secrets(server_secret, org)
    until = org.webhook_previous_valid_until if len(secrets) > 1 else None
    return {
        "webhook_secret": secrets[0].decode(),
        "previous_webhook_secret": secrets[1].decode() if len(secrets) > 1 else None,
        "previous_valid_until": until.isoformat() if until else None,
        "header": "X-Iamsign-Signature",
        "scheme": _SCHEME,
    }


@router.get("/webhook-secret")
def get_webhook_secret(server_secret: ServerSecretDep, org: OrgDep) -> dict:
    """Your organisation's key for checking ``X-Iamsign-Signature`` on webhooks (and the previous one while
    a rotation's overlap lasts)."""
    return _webhook_secrets(server_secret, org)


class WebhookSecretRotate(BaseModel):
    overlap_seconds: int = Field(
        86400,
        ge=0,
        le=30 * 86400,
        description="How long webhooks also carry a signature under the previous secret (default a day)",
    )

    model_config = {"json_schema_extra": {"examples": [{"overlap_seconds": 86400}]}}


@router.post("/webhook-secret/rotate")
def rotate_webhook_secret(
    server_secret: ServerSecretDep, org: OrgDep, session: SessionDep, body: WebhookSecretRotate | None = None
) -> dict:
    """Start signing webhooks with a new secret; during the overlap each webhook carries both signatures,
    so receivers can switch to the new secret at any moment of it."""
    row = session.get(Organisation, org.id) or org
    rotate(session, row, dt.timedelta(seconds=(body or WebhookSecretRotate()).overlap_seconds))
    return _webhook_secrets(server_secret, row)

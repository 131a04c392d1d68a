"""FastAPI dependencies as ``Annotated`` aliases: the session, the calling organisation, the stores, the flows.

Routes declare what they need with these (``flow: FlowDep``) instead of reading ``request.app.state``; the
objects themselves are built once by ``api.app.create_app`` and its lifespan.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from api.edge.limits import Limits
from api.errors import ApiError
from api.flows.batch import BatchFlow
from api.flows.enrolment import EnrolmentFlow
from api.flows.envelopes import EnvelopeFlow
from api.flows.signing import SigningFlow
from api.settings import Settings
from api.store.db import autocommit
from api.store.files import DocumentStore
from api.store.keys import organisation_for_key
from api.store.models import Organisation
from signing.trust import TrustList

__all__ = [
    "BatchFlowDep",
    "BearerDep",
    "CurrentOrg",
    "EnrolmentDep",
    "EnvelopeFlowDep",
    "FlowDep",
    "IdempotencyKey",
    "LimitsDep",
    "OrgDep",
    "ReadOrgDep",
    "ReadSessionDep",
    "ServerSecretDep",
    "SessionDep",
    "SettingsDep",
    "StoreDep",
    "TrustListDep",
]


def _app_state(name: str) -> Callable[[Request], Any]:
    """A dependency answering one of the objects ``create_app`` keeps on ``app.state``."""

    def from_app_state(request: Request) -> Any:
        return getattr(request.app.state, name)

    from_app_state.__name__ = f"app_state_{name}"
    return from_app_state


def _session(request: Request) -> Iterator[Session]:
    with Session(request.app.state.engine, expire_on_commit=False) as session:
        yield session


SessionDep = Annotated[Session, Depends(_session)]


def _read_session(request: Request) -> Iterator[Session]:
    with Session(autocommit(request.app.state.engine), expire_on_commit=False) as session:
        yield session


ReadSessionDep = Annotated[Session, Depends(_read_session)]
"""A session for routes that only read one thing at a time (a status poll): autocommit, no transaction."""


SettingsDep = Annotated[Settings, Depends(_app_state("settings"))]


StoreDep = Annotated[DocumentStore, Depends(_app_state("store"))]


# Declares the "Authorization: Bearer <api key>" scheme in OpenAPI (Swagger's "Authorize"); no error of its own.
_bearer = HTTPBearer(
    auto_error=False, scheme_name="apiKey", description="An API key: `iamsign keys create NAME` prints one."
)


BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
"""The request's ``Authorization: Bearer`` credentials, if any (the organisation dependencies check them)."""


def _organisation(
    request: Request,
    session: SessionDep,
    credentials: BearerDep,
) -> Organisation:
    """The organisation of the request's API key; a client that keeps guessing keys gets 429."""
    limits: Limits = request.app.state.limits
    limits.refuse_if_blocked(limits.failed_auth, request)
    token = credentials.credentials.strip() if credentials else ""
    if not token:
        raise ApiError(
            401, "unauthorized", "send 'Authorization: Bearer <api key>' (create one: iamsign keys create)"
        )
    org = organisation_for_key(session, token)
    if org is None:
        limits.enforce(limits.failed_auth, request)
        raise ApiError(401, "unauthorized", "the API key is unknown or revoked")
    return org


CurrentOrg = Annotated[Organisation, Depends(_organisation)]
"""The organisation whose API key authorised the request (401 without one)."""


def _organisation_reading(request: Request, session: ReadSessionDep, credentials: BearerDep) -> Organisation:
    return _organisation(request, session, credentials)


ReadOrgDep = Annotated[Organisation, Depends(_organisation_reading)]
""":data:`CurrentOrg` looked up through the route's :data:`ReadSessionDep`."""
OrgDep = CurrentOrg  # the earlier name, still used by routes


EnrolmentDep = Annotated[EnrolmentFlow, Depends(_app_state("enrolment"))]

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=100,
        description="Any unique string: sending the same POST again with it returns the first result",
    ),
]


FlowDep = Annotated[SigningFlow, Depends(_app_state("flow"))]
"""The service's signing-request flow (one per event loop, made by the app's lifespan)."""


BatchFlowDep = Annotated[BatchFlow, Depends(_app_state("batch_flow"))]


EnvelopeFlowDep = Annotated[EnvelopeFlow, Depends(_app_state("envelopes"))]
"""The envelope flow: several signers of one document, in order."""


ServerSecretDep = Annotated[bytes, Depends(_app_state("server_secret"))]
"""The server secret that webhook keys are derived from."""


LimitsDep = Annotated[Limits, Depends(_app_state("limits"))]
"""The service's rate limits (verification uploads, failed API keys): Redis or memory."""


def _trust_list(request: Request, settings: SettingsDep) -> TrustList:
    state = request.app.state
    trust = getattr(state, "verification_trust", None)
    if trust is None:
        trust = TrustList.load(data_dir=settings.data_dir)
        if settings.environment != "sandbox":  # the sandbox CA is trusted in the sandbox only
            trust = trust.without_sandbox()
        state.verification_trust = trust
    return trust


TrustListDep = Annotated[TrustList, Depends(_trust_list)]
"""The trust list verifications are checked against (loaded on first use)."""

"""FastAPI dependencies as ``Annotated`` aliases: the session, the calling organisation, the stores."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlmodel import Session

from api.errors import ApiError
from api.settings import Settings
from api.store.files import DocumentStore
from api.store.keys import organisation_for_key
from api.store.models import Organisation

__all__ = ["SessionDep", "OrgDep", "StoreDep", "SettingsDep", "IdempotencyKey"]


def _session(request: Request) -> Iterator[Session]:
    with Session(request.app.state.engine, expire_on_commit=False) as session:
        yield session


SessionDep = Annotated[Session, Depends(_session)]


def _settings(request: Request) -> Settings:
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(_settings)]


def _store(request: Request) -> DocumentStore:
    return request.app.state.store


StoreDep = Annotated[DocumentStore, Depends(_store)]


def _organisation(request: Request, session: SessionDep) -> Organisation:
    """The organisation of the request's API key; a client that keeps guessing keys gets 429."""
    limits = request.app.state.limits
    limits.refuse_if_blocked(limits.failed_auth, request)
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401, "unauthorized", "send 'Authorization: Bearer <api key>' (create one: iamsign keys create)"
        )
    org = organisation_for_key(session, token.strip())
    if org is None:
        limits.enforce(limits.failed_auth, request)
        raise ApiError(401, "unauthorized", "the API key is unknown or revoked")
    return org


OrgDep = Annotated[Organisation, Depends(_organisation)]

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=100,
        description="Any unique string: sending the same POST again with it returns the first result",
    ),
]

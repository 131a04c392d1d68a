"""Database tables (sqlmodel). Public response shapes live with their routes, never these rows."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlmodel import Field, SQLModel

__all__ = ["Organisation", "ApiKey", "Document", "new_id", "utcnow"]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


class Organisation(SQLModel, table=True):
    """An online service using iamsign; API keys and documents belong to exactly one."""

    __tablename__ = "organisations"
    id: str = Field(default_factory=lambda: new_id("org"), primary_key=True, max_length=40)
    name: str = Field(max_length=200, unique=True)
    created_at: dt.datetime = Field(default_factory=utcnow)


class ApiKey(SQLModel, table=True):
    """An API key, stored as SHA-256 of the secret; the secret is shown once at creation."""

    __tablename__ = "api_keys"
    id: str = Field(default_factory=lambda: new_id("key"), primary_key=True, max_length=40)
    organisation_id: str = Field(foreign_key="organisations.id", index=True, max_length=40)
    name: str = Field(max_length=200)
    key_sha256: str = Field(unique=True, max_length=64)
    prefix: str = Field(max_length=16, description="first characters, to recognise a key in listings")
    created_at: dt.datetime = Field(default_factory=utcnow)
    revoked_at: dt.datetime | None = None


class Document(SQLModel, table=True):
    """An uploaded PDF or a signed revision made by the service."""

    __tablename__ = "documents"
    id: str = Field(default_factory=lambda: new_id("doc"), primary_key=True, max_length=40)
    organisation_id: str = Field(foreign_key="organisations.id", index=True, max_length=40)
    sha256: str = Field(index=True, max_length=64)
    size: int
    filename: str = Field(max_length=255)
    pages: int
    signature_count: int
    created_at: dt.datetime = Field(default_factory=utcnow)

"""API keys: made once, shown once, stored as SHA-256; each belongs to one organisation."""

from __future__ import annotations

import hashlib
import secrets

from sqlmodel import Session, select

from api.store.models import ApiKey, Organisation

__all__ = ["create_api_key", "organisation_for_key"]

_PREFIX = "isk_"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_api_key(session: Session, organisation: str, name: str = "default") -> tuple[str, ApiKey]:
    """Create a key for ``organisation`` (created if new); return the secret (shown once) and the row."""
    org = session.exec(select(Organisation).where(Organisation.name == organisation)).first()
    if org is None:
        org = Organisation(name=organisation)
        session.add(org)
        session.flush()
    secret = _PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(organisation_id=org.id, name=name, key_sha256=_digest(secret), prefix=secret[:10])
    session.add(row)
    session.commit()
    return secret, row


def organisation_for_key(session: Session, secret: str) -> Organisation | None:
    """The organisation owning an unrevoked key, or ``None``."""
    row = session.exec(select(ApiKey).where(ApiKey.key_sha256 == _digest(secret))).first()
    if row is None or row.revoked_at is not None:
        return None
    return session.get(Organisation, row.organisation_id)

"""API keys: made once, shown once, stored as SHA-256; each belongs to one organisation, may expire and
may be revoked."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from sqlmodel import Session, col, select

from api.store.models import ApiKey, Organisation, utcnow

__all__ = ["create_api_key", "key_state", "list_api_keys", "organisation_for_key", "revoke_api_key"]

_PREFIX = "isk_"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _aware(moment: dt.datetime | None) -> dt.datetime | None:
    return moment.replace(tzinfo=dt.UTC) if moment is not None and moment.tzinfo is None else moment


def create_api_key(
    session: Session, organisation: str, name: str = "default", expires_at: dt.datetime | None = None
) -> tuple[str, ApiKey]:
    """Create a key for ``organisation`` (created if new); return the secret (shown once) and the row."""
    org = session.exec(select(Organisation).where(Organisation.name == organisation)).first()
    if org is None:
        org = Organisation(name=organisation)
        session.add(org)
        session.flush()
    secret = _PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        organisation_id=org.id,
        name=name,
        key_sha256=_digest(secret),
        prefix=secret[:10],
        expires_at=expires_at,
    )
    session.add(row)
    session.commit()
    return secret, row


def key_state(row: ApiKey, now: dt.datetime | None = None) -> str:
    """``active``, ``expired`` or ``revoked``."""
    if row.revoked_at is not None:
        return "revoked"
    expires = _aware(row.expires_at)
    if expires is not None and expires <= (now or utcnow()):
        return "expired"
    return "active"


def organisation_for_key(session: Session, secret: str) -> Organisation | None:
    """The organisation owning an active key (not revoked, not expired), or ``None``."""
    # one round trip (every authorised request pays it): the key and its organisation joined
    found = session.exec(
        select(ApiKey, Organisation)
        .join(Organisation, col(Organisation.id) == col(ApiKey.organisation_id))
        .where(ApiKey.key_sha256 == _digest(secret))
    ).first()
    if found is None or key_state(found[0]) != "active":
        return None
    return found[1]


def list_api_keys(session: Session, organisation: str | None = None) -> list[tuple[ApiKey, Organisation]]:
    """Every key with its organisation (of one organisation, by name, when given), oldest first."""
    q = select(ApiKey, Organisation).where(ApiKey.organisation_id == Organisation.id)
    if organisation is not None:
        q = q.where(Organisation.name == organisation)
    return [(k, o) for k, o in session.exec(q.order_by(col(ApiKey.created_at), col(ApiKey.id))).all()]


def revoke_api_key(session: Session, key: str) -> ApiKey | None:
    """Revoke the key whose id or prefix (as ``keys list`` shows them) is ``key``; ``None`` if no single key
    matches. Revoking a revoked key changes nothing."""
    rows = session.exec(select(ApiKey).where((ApiKey.id == key) | (ApiKey.prefix == key))).all()
    if len(rows) != 1:
        return None
    row = rows[0]
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.add(row)
        session.commit()
        session.refresh(row)
    return row

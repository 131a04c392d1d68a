"""Simulated iAM Smart users: who they are, what they may do, and the certificate each signs with.

The fake HKIDs live in this source file only; the data folder keeps per-user state keyed by an
internal id, plus each iAM Smart+ user's certificate and key. openIDs are derived per online service
from a random salt kept in the data folder, so they are stable across restarts and differ per service.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from urllib.parse import quote, unquote

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from signing.iamsmart.protocol import hkic_hash, normalise_hkid

from ..files import atomic_write
from .pki import SandboxPki
from .remote_signer import SimulatedSigner

__all__ = [
    "DEFAULT_USERS",
    "AutoAction",
    "SandboxUser",
    "UnknownUserError",
    "UserDirectory",
    "UserStatus",
    "UserType",
]


class UserType(StrEnum):
    """getToken's ``userType``."""

    SIGN = "sign"
    """iAM Smart+: may sign."""
    DEFAULT = "default"
    """iAM Smart: may log in, may not sign (D70004)."""


class UserStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    DEREGISTERED = "deregistered"


class AutoAction(StrEnum):
    """What the simulated phone does by itself with a new request of this user."""

    NONE = "none"
    APPROVE = "approve"
    REJECT = "reject"


class UnknownUserError(KeyError):
    """No sandbox user has this HKID."""


@dataclass(frozen=True)
class _Identity:
    user_id: str
    hkid: str
    name_en: str
    name_zh: str
    user_type: UserType
    status: UserStatus


#: The built-in test users. HKIDs are fake but carry correct check digits.
DEFAULT_USERS: tuple[_Identity, ...] = (
    _Identity("u1", "A123456(3)", "CHAN Tai Man", "陳大文", UserType.SIGN, UserStatus.ACTIVE),
    _Identity("u2", "B234567(1)", "LEE Siu Ming", "李小明", UserType.DEFAULT, UserStatus.ACTIVE),
    _Identity("u3", "C345678(A)", "WONG Mei Ling", "黃美玲", UserType.SIGN, UserStatus.SUSPENDED),
    _Identity("u4", "D456789(8)", "CHEUNG Ka Yan", "張家欣", UserType.SIGN, UserStatus.DEREGISTERED),
    _Identity("u5", "E567890(4)", "HO Wing Sze", "何詠詩", UserType.SIGN, UserStatus.ACTIVE),
)


@dataclass(frozen=True)
class SandboxUser:
    """A simulated user and its current state."""

    user_id: str
    hkid: str
    name_en: str
    name_zh: str
    user_type: UserType
    status: UserStatus
    last_modified_ms: int
    """getToken's ``lastModifiedDate``: advances on re-registration."""
    deregistered_at_ms: int | None = None
    """Tokens issued before this moment stay invalid (D20009) even after re-registration."""
    auto_action: AutoAction = AutoAction.NONE
    auto_delay_ms: int = 0

    @property
    def hkic_hash(self) -> str:
        return hkic_hash(self.hkid)

    @property
    def can_sign(self) -> bool:
        return self.user_type is UserType.SIGN and self.status is UserStatus.ACTIVE

    def public(self) -> dict[str, object]:
        """The JSON the sandbox's user list shows (test data, so the fake HKID is shown)."""
        return {
            "hkid": self.hkid,
            "name_en": self.name_en,
            "name_zh": self.name_zh,
            "user_type": self.user_type.value,
            "status": self.status.value,
            "auto_action": self.auto_action.value,
            "auto_delay_ms": self.auto_delay_ms,
            "last_modified_ms": self.last_modified_ms,
        }


class UserDirectory:
    """The sandbox's users, their state (``users.json``) and their signing keys, in ``directory``."""

    def __init__(self, directory: Path, pki: SandboxPki, now_ms: int) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.pki = pki
        self._lock = threading.Lock()
        salt_file = self.directory / "openid.salt"
        if not salt_file.is_file():
            atomic_write(salt_file, secrets.token_bytes(32), private=True)
        self._salt = salt_file.read_bytes()
        state_file = self.directory / "users.json"
        state = json.loads(state_file.read_text()) if state_file.is_file() else {}
        self._users: dict[str, SandboxUser] = {}
        for ident in DEFAULT_USERS:
            s = state.get(ident.user_id, {})
            self._users[ident.user_id] = SandboxUser(
                ident.user_id,
                ident.hkid,
                ident.name_en,
                ident.name_zh,
                UserType(s.get("user_type", ident.user_type)),
                UserStatus(s.get("status", ident.status)),
                int(s.get("last_modified_ms", now_ms)),
                s.get("deregistered_at_ms", now_ms if ident.status is UserStatus.DEREGISTERED else None),
                AutoAction(s.get("auto_action", AutoAction.NONE)),
                int(s.get("auto_delay_ms", 0)),
            )
        # (user id, client id or None for the default certificate) -> signer: one certificate per service
        self._signers: dict[tuple[str, str | None], SimulatedSigner] = {}
        for user in self._users.values():
            if user.user_type is UserType.SIGN:
                self.signer(user)
        self._save()

    # ------------------------------------------------------------------ lookup

    def all(self) -> list[SandboxUser]:
        return list(self._users.values())

    def get(self, user_id: str) -> SandboxUser:
        return self._users[user_id]

    def by_hkid(self, hkid: str) -> SandboxUser:
        """The user with this HKID (with or without check digit); :class:`UnknownUserError` otherwise."""
        try:
            body = normalise_hkid(hkid)
        except ValueError:
            raise UnknownUserError(hkid) from None
        for user in self._users.values():
            if normalise_hkid(user.hkid) == body:
                return user
        raise UnknownUserError(hkid)

    def by_hkic_hash(self, value: str) -> SandboxUser | None:
        for user in self._users.values():
            if hmac.compare_digest(user.hkic_hash, value):
                return user
        return None

    def open_id(self, user: SandboxUser, client_id: str) -> str:
        """The user's openID for one online service: stable, opaque, different per service, <= 64 chars."""
        mac = hmac.new(self._salt, f"{client_id}\x00{user.user_id}".encode(), hashlib.sha256).digest()
        value = quote(base64.b64encode(mac).decode(), safe="")
        return value if len(value) <= 64 else mac.hex()

    def holder_id(self, user: SandboxUser, client_id: str | None = None) -> str:
        """The identifier in the certificate subject (serialNumber), never the HKID.

        For an online service: the user's openID at that service (the per-service tokenised identifier, in
        its Base64 form), so the service can bind a certificate to the account it knows. Without one: an
        opaque ``SBX-`` holder id.
        """
        if client_id is not None:
            return unquote(self.open_id(user, client_id))
        mac = hmac.new(self._salt, f"certificate\x00{user.user_id}".encode(), hashlib.sha256).hexdigest()
        return f"SBX-{mac[:20].upper()}"

    def user_for_open_id(self, open_id: str, client_id: str) -> SandboxUser | None:
        for user in self._users.values():
            if hmac.compare_digest(self.open_id(user, client_id), open_id):
                return user
        return None

    # ------------------------------------------------------------------ keys

    def signer(self, user: SandboxUser, client_id: str | None = None) -> SimulatedSigner:
        """The user's signer for one online service: the user's one RSA-2048 key, with a certificate whose
        subject carries the name and that service's identifier (issued on first need)."""
        with self._lock:
            slot = (user.user_id, client_id)
            if slot in self._signers:
                return self._signers[slot]
            key_file = self.directory / f"{user.user_id}.key.pem"
            suffix = "" if client_id is None else "-" + hashlib.sha256(client_id.encode()).hexdigest()[:12]
            cert_file = self.directory / f"{user.user_id}{suffix}.cert.pem"
            key = None
            if key_file.is_file():
                loaded = serialization.load_pem_private_key(key_file.read_bytes(), None)
                assert isinstance(loaded, rsa.RSAPrivateKey)
                key = loaded
            if cert_file.is_file() and key is not None:
                cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
            else:
                issued = self.pki.issue_signer(
                    f"{user.name_en} {user.name_zh}", key=key, subject_serial=self.holder_id(user, client_id)
                )
                cert, key = issued.certificate, issued.private_key
                if not key_file.is_file():
                    atomic_write(key_file, issued.key_pem(), private=True)
                atomic_write(cert_file, cert.public_bytes(serialization.Encoding.PEM), private=False)
            signer = SimulatedSigner(cert, key, [self.pki.issuing_ca])
            self._signers[slot] = signer
            return signer

    def certificate(self, user: SandboxUser, client_id: str | None = None) -> x509.Certificate:
        return self.signer(user, client_id).certificate

    def renew(self, user: SandboxUser) -> list[x509.Certificate]:
        """Renew the user's certificates (test hook): a new key and a new certificate for every service the
        user has one for; returns the old certificates (the caller decides whether to revoke them)."""
        with self._lock:
            old = self.certificates(user)
            for p in self.directory.glob(f"{user.user_id}*.cert.pem"):
                p.unlink()
            (self.directory / f"{user.user_id}.key.pem").unlink(missing_ok=True)
            slots = [slot for slot in self._signers if slot[0] == user.user_id]
            for slot in slots:
                del self._signers[slot]
        for _, client_id in slots or [(user.user_id, None)]:
            self.signer(user, client_id)
        return old

    def certificates(self, user: SandboxUser) -> list[x509.Certificate]:
        """Every certificate issued to the user so far (one per online service, and the default one)."""
        return [
            x509.load_pem_x509_certificate(p.read_bytes())
            for p in sorted(self.directory.glob(f"{user.user_id}*.cert.pem"))
        ]

    def renew_certificate(self, user: SandboxUser, client_id: str | None = None) -> x509.Certificate:
        """Issue the user a new certificate (same key) for one online service, as a renewal does."""
        with self._lock:
            self._signers.pop((user.user_id, client_id), None)
            suffix = "" if client_id is None else "-" + hashlib.sha256(client_id.encode()).hexdigest()[:12]
            (self.directory / f"{user.user_id}{suffix}.cert.pem").unlink(missing_ok=True)
        return self.certificate(user, client_id)

    # ------------------------------------------------------------------ changes

    def update(
        self,
        user: SandboxUser,
        now_ms: int,
        *,
        status: UserStatus | None = None,
        user_type: UserType | None = None,
        auto_action: AutoAction | None = None,
        auto_delay_ms: int | None = None,
    ) -> SandboxUser:
        """Change a user (test hook). De-registering invalidates its tokens; re-registering advances
        ``lastModifiedDate`` and keeps the openID."""
        new = user
        if status is not None and status is not user.status:
            if status is UserStatus.DEREGISTERED:
                new = replace(new, status=status, deregistered_at_ms=now_ms)
            elif user.status is UserStatus.DEREGISTERED:
                new = replace(new, status=status, last_modified_ms=max(now_ms, user.last_modified_ms + 1))
            else:
                new = replace(new, status=status)
        if user_type is not None:
            new = replace(new, user_type=user_type)
        if auto_action is not None:
            new = replace(new, auto_action=auto_action)
        if auto_delay_ms is not None:
            new = replace(new, auto_delay_ms=max(0, auto_delay_ms))
        self._users[user.user_id] = new
        if new.user_type is UserType.SIGN:
            self.signer(new)
        self._save()
        return new

    def _save(self) -> None:
        state = {
            u.user_id: {
                "user_type": u.user_type.value,
                "status": u.status.value,
                "last_modified_ms": u.last_modified_ms,
                "deregistered_at_ms": u.deregistered_at_ms,
                "auto_action": u.auto_action.value,
                "auto_delay_ms": u.auto_delay_ms,
            }
            for u in self._users.values()
        }
        atomic_write(self.directory / "users.json", json.dumps(state, indent=1).encode(), private=False)

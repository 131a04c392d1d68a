"""Online services registered with the sandbox: clientID, secret, KEK public key, redirect URIs, scopes.

Kept in ``services.json`` (mode 0600, it holds client secrets) in the sandbox's data folder, and read
again when the file changes, so ``iamsign sandbox add-service`` works while the sandbox runs.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from signing.iamsmart.protocol import SCOPES

__all__ = ["RegisteredService", "RegistryError", "ServiceRegistry"]


class RegistryError(ValueError):
    """A registration is not acceptable (bad key, bad URI, unknown scope)."""


@dataclass(frozen=True)
class RegisteredService:
    """One online service as the sandbox knows it."""

    client_id: str
    client_secret: str = field(repr=False)
    kek_public_pem: str | None
    """PEM SubjectPublicKeyInfo of the KEK (``None``: getKey answers D30001)."""
    redirect_uris: tuple[str, ...] = ()
    """Registered URIs; an entry ending in ``*`` matches every URI starting with what precedes it."""
    scopes: tuple[str, ...] = tuple(sorted(SCOPES))

    def kek_public_key(self) -> rsa.RSAPublicKey | None:
        if not self.kek_public_pem:
            return None
        key = serialization.load_pem_public_key(self.kek_public_pem.encode())
        return key if isinstance(key, rsa.RSAPublicKey) else None

    def allows_redirect(self, uri: str) -> bool:
        for reg in self.redirect_uris:
            if reg.endswith("*") and uri.startswith(reg[:-1]):
                return True
            if uri == reg:
                return True
        return False


class ServiceRegistry:
    """The sandbox's store of registered services."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._mtime: float | None = None
        self._services: dict[str, RegisteredService] = {}
        self._reload()

    def _reload(self) -> None:
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            self._services, self._mtime = {}, None
            return
        if mtime == self._mtime:
            return
        raw = json.loads(self.path.read_text())
        self._services = {
            cid: RegisteredService(
                cid,
                d["client_secret"],
                d.get("kek_public_pem"),
                tuple(d.get("redirect_uris", ())),
                tuple(d.get("scopes", sorted(SCOPES))),
            )
            for cid, d in raw.items()
        }
        self._mtime = mtime

    def get(self, client_id: str) -> RegisteredService | None:
        with self._lock:
            self._reload()
            return self._services.get(client_id)

    def all(self) -> list[RegisteredService]:
        with self._lock:
            self._reload()
            return list(self._services.values())

    def register(
        self,
        client_id: str,
        *,
        kek_public_pem: str | None,
        redirect_uris: list[str] | tuple[str, ...],
        scopes: list[str] | tuple[str, ...] = (),
        client_secret: str | None = None,
    ) -> RegisteredService:
        """Add or replace a service; a new secret is generated unless given. Returns the registration."""
        if not client_id or len(client_id) > 64 or not client_id.isascii():
            raise RegistryError("clientID must be 1-64 ASCII characters")
        if kek_public_pem is not None:
            try:
                key = serialization.load_pem_public_key(kek_public_pem.encode())
            except ValueError as exc:
                raise RegistryError("the KEK public key is not a PEM public key") from exc
            if not isinstance(key, rsa.RSAPublicKey) or key.key_size < 2048:
                raise RegistryError("the KEK must be an RSA key of at least 2048 bits")
        for uri in redirect_uris:
            if not uri.startswith(("http://", "https://")):
                raise RegistryError(f"redirect URI {uri!r} is not http(s)")
        unknown = set(scopes) - SCOPES
        if unknown:
            raise RegistryError(f"unknown scopes: {', '.join(sorted(unknown))}")
        service = RegisteredService(
            client_id,
            client_secret or secrets.token_urlsafe(32),
            kek_public_pem,
            tuple(redirect_uris),
            tuple(scopes) if scopes else tuple(sorted(SCOPES)),
        )
        with self._lock:
            self._reload()
            self._services[client_id] = service
            self._save()
        return service

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            s.client_id: {k: v for k, v in asdict(s).items() if k != "client_id"}
            for s in self._services.values()
        }
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self._mtime = self.path.stat().st_mtime_ns

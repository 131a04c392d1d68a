"""Where the client talks to and with which credentials: sandbox, ITE or production (protocol doc §1)."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ..files import atomic_write

__all__ = [
    "ClientConfig",
    "Environment",
    "KekError",
    "LocalCredentials",
    "load_kek_private_key",
    "load_or_create_local_credentials",
]


class Environment(StrEnum):
    """An iAM Smart environment; the sandbox's base URL depends on where it is served."""

    SANDBOX = "sandbox"
    ITE = "ite"
    PRODUCTION = "production"

    @property
    def default_base_url(self) -> str | None:
        """The API base of the real environments (§1); ``None`` for the sandbox."""
        return _HOSTS.get(self)


_HOSTS = {
    Environment.ITE: "https://apigw-isit.staging-eid.gov.hk/api/v1",
    Environment.PRODUCTION: "https://apigw.iamsmart.gov.hk/api/v1",
}


@dataclass(frozen=True)
class ClientConfig:
    """Everything :class:`~signing.iamsmart.client.IamSmartClient` needs."""

    base_url: str
    """API base, e.g. ``https://apigw.iamsmart.gov.hk/api/v1`` or ``http://127.0.0.1:8000/sandbox/api/v1``."""
    client_id: str
    client_secret: str = field(repr=False)
    kek_private_keys: tuple[rsa.RSAPrivateKey, ...] = field(default=(), repr=False)
    """Key-encryption private keys; several during a KEK rollover (chosen by getKey's ``pubKey``)."""
    timeout_s: float = 15.0
    cek_refresh_margin_ms: int = 30_000
    """Fetch a new CEK this long before the current one expires."""
    check_fields: bool = True
    """Check request fields locally (same rules as the server) before sending."""


@dataclass(frozen=True)
class LocalCredentials:
    """The online service's own sandbox registration, kept in the data folder (never in the repository)."""

    client_id: str
    client_secret: str = field(repr=False)
    kek_private_key: rsa.RSAPrivateKey = field(repr=False)

    def kek_public_pem(self) -> bytes:
        return self.kek_private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def load_or_create_local_credentials(directory: Path, client_id: str = "iamsign-local") -> LocalCredentials:
    """Load (or generate at first start) a client secret and an RSA-2048 KEK in ``directory`` (mode 0600)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cred_file, key_file = directory / "client.json", directory / "kek.key.pem"
    if not cred_file.is_file() or not key_file.is_file():
        key: rsa.RSAPrivateKey = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        atomic_write(
            key_file,
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
            private=True,
        )
        atomic_write(
            cred_file,
            json.dumps({"client_id": client_id, "client_secret": secrets.token_urlsafe(32)}).encode(),
            private=True,
        )
    data = json.loads(cred_file.read_text())
    loaded = serialization.load_pem_private_key(key_file.read_bytes(), None)
    if not isinstance(loaded, rsa.RSAPrivateKey):
        raise ValueError(f"{key_file} does not hold an RSA private key")  # noqa: TRY004 - a bad file
    return LocalCredentials(data["client_id"], data["client_secret"], loaded)


class KekError(ValueError):
    """A key-encryption key file that cannot be used (unreadable, wrong PIN, not RSA)."""


def load_kek_private_key(path: Path, pin: str | None = None) -> rsa.RSAPrivateKey:
    """The RSA private key of a KEK file: PEM (encrypted with ``pin`` or not) or PKCS#12 with ``pin``.

    The real iAM Smart sandbox programme hands out the KEK as a ``.p12``; a PEM export works the same.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KekError(f"cannot read {path}: {exc.strerror}") from exc
    password = pin.encode() if pin else None
    if b"-----BEGIN" in data:
        try:
            key = serialization.load_pem_private_key(data, password)
        except TypeError as exc:  # encrypted without a PIN, or a PIN for a clear key
            raise KekError(f"{path}: {exc} (IAMSIGN_IAMSMART_KEK_PIN)") from exc
        except ValueError as exc:
            raise KekError(f"{path} is not a readable PEM private key (or the PIN is wrong)") from exc
    else:
        from cryptography.hazmat.primitives.serialization import pkcs12

        try:
            bundled, _cert, _chain = pkcs12.load_key_and_certificates(data, password)
        except ValueError as exc:
            raise KekError(f"{path} is not a readable PKCS#12 file (or the PIN is wrong)") from exc
        if bundled is None:
            raise KekError(f"{path} holds no private key")
        key = bundled
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KekError(f"{path} must hold an RSA private key")
    return key

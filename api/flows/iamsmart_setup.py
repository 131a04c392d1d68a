"""Turn settings into an iAM Smart client configuration: the sandbox by default, ITE or production by choice."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import rsa

from api.settings import Settings, reveal
from signing.iamsmart.config import (
    ClientConfig,
    Environment,
    KekError,
    LocalCredentials,
    load_kek_private_key,
    load_or_create_local_credentials,
)

__all__ = ["ConfigurationError", "client_config", "local_credentials"]


class ConfigurationError(ValueError):
    """The iAM Smart settings are incomplete for the chosen environment."""


def local_credentials(settings: Settings) -> LocalCredentials:
    """The service's own sandbox credentials (generated at first start in ``DATA/iamsmart``)."""
    return load_or_create_local_credentials(settings.data_dir / "iamsmart")


def client_config(settings: Settings) -> ClientConfig:
    """The client configuration for ``settings``.

    Sandbox: ``BASE_URL/sandbox/api/v1`` and the generated local credentials unless others are given.
    ITE / production: the host of the protocol doc §1 (or ``iamsmart_base_url``) and the configured
    clientID, clientSecret and KEK key file, all required.
    """
    env = Environment(settings.environment)
    base = settings.iamsmart_base_url or env.default_base_url or f"{settings.base_url}/sandbox/api/v1"
    if env is Environment.SANDBOX and not settings.iamsmart_client_id:
        creds = local_credentials(settings)
        return ClientConfig(base, creds.client_id, creds.client_secret, (creds.kek_private_key,))
    if not (
        settings.iamsmart_client_id and settings.iamsmart_client_secret and settings.iamsmart_kek_key_file
    ):
        raise ConfigurationError(
            f"{env.value} needs IAMSIGN_IAMSMART_CLIENT_ID, IAMSIGN_IAMSMART_CLIENT_SECRET and IAMSIGN_IAMSMART_KEK_KEY_FILE"
        )
    pin = reveal(settings.iamsmart_kek_pin)
    keys = tuple(
        _kek(p, pin) for p in (settings.iamsmart_kek_key_file, *settings.iamsmart_previous_kek_key_files)
    )
    return ClientConfig(
        base, settings.iamsmart_client_id, settings.iamsmart_client_secret.get_secret_value(), keys
    )


def _kek(path, pin: str | None) -> rsa.RSAPrivateKey:
    try:
        return load_kek_private_key(path, pin)
    except KekError as exc:
        raise ConfigurationError(f"the KEK private key: {exc}") from exc

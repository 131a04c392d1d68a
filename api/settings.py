"""Service settings, from ``IAMSIGN_*`` environment variables (pydantic-settings)."""

from __future__ import annotations

import base64
import ipaddress
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from signing.model import PadesLevel

__all__ = ["Environment", "Level", "Settings", "SettingsProblems", "reveal"]

Environment = Literal["sandbox", "ite", "production"]
Level = Literal["B-B", "B-T", "B-LT", "B-LTA"]
#: Settings read before IAMSIGN_ENVIRONMENT existed; set, they would silently mean nothing.
_RETIRED = {
    "IAMSIGN_SANDBOX_ENABLED": "IAMSIGN_ENVIRONMENT",
    "IAMSIGN_IAMSMART_ENVIRONMENT": "IAMSIGN_ENVIRONMENT",
}


class SettingsProblems(ValueError):
    """The settings cannot run as they are; ``problems`` has one line per missing or wrong item."""

    def __init__(self, environment: str, problems: list[str]) -> None:
        super().__init__(f"the {environment} configuration is incomplete: " + "; ".join(problems))
        self.environment, self.problems = environment, problems


def reveal(secret: SecretStr | None) -> str | None:
    """The text of ``secret`` at the one place it is used (``None`` when unset)."""
    return secret.get_secret_value() if secret is not None else None


class Settings(BaseSettings):
    """Everything configurable, with embedded single-machine defaults."""

    model_config = SettingsConfigDict(env_prefix="IAMSIGN_", env_file=None, extra="forbid")

    environment: Environment = Field(
        "sandbox",
        description="sandbox (the built-in iAM Smart sandbox, mounted and trusted), ite or production "
        "(nothing of the sandbox mounted or trusted; the service refuses to start while settings are missing).",
    )

    data_dir: Path = Field(
        Path("./data"), description="Folder for the SQLite file, documents and sandbox PKI."
    )
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = Field(
        None, description="Base URL clients and iAM Smart reach this service at; default http://HOST:PORT."
    )
    sandbox_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Simulator switches (signing.sandbox.options.SandboxOptions fields), e.g. as JSON in "
        "IAMSIGN_SANDBOX_OPTIONS='{\"callback_retries\": 0}'.",
    )
    iamsmart_base_url: str | None = Field(
        None,
        description="Override the API base (default: per environment); in sandbox, an external sandbox "
        "(`iamsign sandbox`), which then is not mounted in-process.",
    )
    iamsmart_client_id: str | None = Field(None, description="clientID from the e-service portal.")
    iamsmart_client_secret: SecretStr | None = Field(
        None, description="clientSecret from the e-service portal."
    )
    iamsmart_kek_key_file: Path | None = Field(
        None, description="Private key of the key-encryption key: PEM, or PKCS#12 (.p12/.pfx) with its PIN."
    )
    iamsmart_kek_pin: SecretStr | None = Field(
        None, description="PIN (password) of an encrypted PEM or PKCS#12 KEK file."
    )
    iamsmart_previous_kek_key_files: list[Path] = Field(
        default_factory=list,
        description="Older KEK private keys kept during a rollover, so that CEKs and callbacks wrapped under "
        "them still open (JSON list of paths).",
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL; default SQLite at DATA_DIR/iamsign.db (postgresql+psycopg://... for many).",
    )
    max_upload_bytes: int = Field(100 * 1024 * 1024, description="Largest accepted upload, in bytes.")
    db_pool_size: int = Field(10, ge=1, le=200, description="Database connections kept open per process.")
    db_max_overflow: int = Field(30, ge=0, le=500, description="Extra connections allowed under load.")
    db_synchronous_commit: Literal["on", "off"] = Field(
        "on",
        description="PostgreSQL synchronous_commit for the service's sessions. on (default): every commit waits "
        "for its WAL fsync, so what a client was told is stored stays stored. off: a commit returns before its "
        "WAL reaches the disk, some 3 ms faster on a busy disk, but a crash of the database server loses the "
        "last commits although their clients got 201 (the soak's database crashes showed it: an upload lost).",
    )
    server_secret: SecretStr | None = Field(
        None,
        description="Key for the keyed hashes of signer IDs and webhook signatures (32+ bytes, Base64 or "
        "text); in sandbox, generated once into DATA_DIR/secrets when not given (the same on every replica).",
    )
    iamsmart_cert_issuer_files: list[Path] = Field(
        default_factory=list,
        description="PEM certificates of the CAs that issue iAM Smart-Cert (sandbox CA added).",
    )
    trust_root_files: list[Path] = Field(
        default_factory=list, description="PEM roots for B-LT revocation gathering (sandbox root added)."
    )
    tsa_url: str | None = Field(None, description="RFC 3161 TSA; default the sandbox TSA in sandbox mode.")
    augment_attempts: int = Field(
        4, ge=1, le=10, description="Tries to reach the TSA/OCSP/CRL a level needs before a signature fails."
    )
    augment_retry_delay_s: float = Field(
        1.0, ge=0, le=60, description="Wait before the second try; doubled before each next one."
    )
    default_level: Level = Field(
        "B-LTA", description="PAdES level of a request or batch that names none (B-T and up need a TSA)."
    )
    service_name: str = Field("iamsign", description="Shown to the signer in the iAM Smart app.")
    department: str | None = Field(None, description="Department shown in the iAM Smart app.")
    request_ttl_s: int = Field(
        18 * 60, description="How long a signer has to approve (iAM Smart gives 18 min)."
    )
    sweep_interval_s: float = Field(5.0, description="How often expiry, resumption and webhooks are swept.")
    stale_after_s: float = Field(
        120.0, description="Work not advanced for this long is taken to be from a dead process and resumed."
    )
    bulk_callback_page: int = Field(
        100, ge=1, le=1000, description="maxCallbackSigs: signatures per bulk callback."
    )
    cpu_workers: int | None = Field(
        None, ge=1, le=64, description="Processes for batch signing; default one per core."
    )
    queue_url: str | None = Field(
        None,
        description="redis://... for a shared task queue; default a SQLite queue file in the data folder.",
    )
    queue_name: str = Field("default", description="Queue name (several services may share one Redis).")
    embedded_worker: bool = Field(True, description="Run queue workers inside `iamsign serve`.")
    workers: int = Field(2, ge=1, le=64, description="Worker threads of each consumer.")
    metrics_enabled: bool = Field(True, description="Serve Prometheus metrics at /metrics.")
    log_format: Literal["text", "json"] = Field(
        "text", description="Logs as readable text or as one JSON object a line (with request ids)."
    )
    webhook_allowed_networks: list[str] = Field(
        default_factory=list,
        description="Networks (CIDR, JSON list) webhooks may reach although loopback, link-local, private or "
        "reserved, e.g. '[\"127.0.0.0/8\"]' for a receiver on the same host; none by default.",
    )
    webhook_timeout_s: float = Field(10.0, gt=0, le=60, description="Timeout of one webhook delivery.")
    webhook_concurrency: int = Field(32, ge=1, le=256, description="Webhook deliveries in flight per sweep.")
    webhook_per_organisation: int = Field(
        4,
        ge=1,
        le=64,
        description="Deliveries in flight per organisation (a slow receiver delays only its own).",
    )
    retention_days: int | None = Field(
        None,
        ge=1,
        description="Remove documents (and their signed revisions) older than this many days; the audit keeps "
        "a tombstone. Unset: keep documents until deleted.",
    )

    @field_validator("webhook_allowed_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for net in value:
            ipaddress.ip_network(net, strict=False)  # ValueError -> a clear validation error
        return value

    @property
    def sandbox_mounted(self) -> bool:
        """The built-in sandbox is mounted, and its CA and TSA trusted: only in the sandbox environment,
        and not when ``iamsmart_base_url`` names an external sandbox."""
        return self.environment == "sandbox" and not self.iamsmart_base_url

    max_json_bytes: int = Field(
        1024 * 1024, ge=1024, description="Largest accepted JSON request body, in bytes (413 above)."
    )
    rate_limit_url: str | None = Field(
        None,
        description="redis://... to keep rate limits shared by every replica; default in memory per process.",
    )
    rate_limit_prefix: str = Field(
        "iamsign:ratelimit",
        description="Prefix of the rate-limit keys in Redis (services sharing one Redis).",
    )
    verification_rate_limit: int = Field(
        30, ge=1, description="Verifications (POST /v1/verifications) per minute per client address."
    )
    failed_auth_rate_limit: int = Field(
        20, ge=1, description="Requests with an unknown API key per minute per client address (then 429)."
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description='Addresses or networks (JSON list, e.g. ["10.0.0.0/8"]) of the proxies whose '
        "X-Forwarded-For names the client; from any other peer the header is ignored.",
    )

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    def level_or_default(self, requested: str | None) -> str:
        """The PAdES level a request, batch or envelope signs at: the one it names, else the default."""
        return PadesLevel(requested or self.default_level).value

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'iamsign.db').resolve()}"

    @property
    def documents_dir(self) -> Path:
        return self.data_dir / "documents"

    @property
    def sandbox_pki_dir(self) -> Path:
        return self.data_dir / "sandbox" / "pki"

    def problems(self) -> list[str]:
        """What stops this configuration from running, one line each (``iamsign check-config``).

        The sandbox runs on its generated defaults; ITE and production need every credential and trust
        setting given explicitly, so that nothing of the sandbox is used by accident.
        """
        found = [
            f"{old} is no longer read: set {new}=sandbox|ite|production"
            for old, new in _RETIRED.items()
            if old in os.environ
        ]
        if self.environment == "sandbox":
            return found
        env = self.environment
        if not self.iamsmart_client_id:
            found.append(f"IAMSIGN_IAMSMART_CLIENT_ID is missing (the clientID of the {env} e-service)")
        if not reveal(self.iamsmart_client_secret):
            found.append(
                f"IAMSIGN_IAMSMART_CLIENT_SECRET is missing (the clientSecret of the {env} e-service)"
            )
        found.extend(self._kek_problems())
        found.extend(self._issuer_problems())
        if self.default_level != "B-B" and not self.tsa_url:
            found.append(
                f"IAMSIGN_TSA_URL is missing (the default level {self.default_level} needs a time-stamping "
                "authority; or set IAMSIGN_DEFAULT_LEVEL=B-B)"
            )
        elif self.tsa_url and not self.tsa_url.startswith(("https://", "http://")):
            found.append(f"IAMSIGN_TSA_URL {self.tsa_url!r} is not an http(s) URL")
        if not self.public_url:
            found.append("IAMSIGN_PUBLIC_URL is missing (the https:// address iAM Smart and signers reach)")
        elif not self.public_url.startswith("https://"):
            found.append(f"IAMSIGN_PUBLIC_URL {self.public_url!r} is not an https:// URL")
        secret = reveal(self.server_secret)
        if not secret:
            found.append("IAMSIGN_SERVER_SECRET is missing (32 or more random bytes, Base64)")
        elif len(_secret_bytes(secret)) < 32:
            found.append(
                f"IAMSIGN_SERVER_SECRET is {len(_secret_bytes(secret))} bytes; it needs at least 32 "
                "(e.g. `openssl rand -base64 32`)"
            )
        return found

    def require_runnable(self) -> None:
        """Raise :class:`SettingsProblems` when :meth:`problems` finds any."""
        if found := self.problems():
            raise SettingsProblems(self.environment, found)

    def _kek_problems(self) -> list[str]:
        from signing.iamsmart.config import KekError, load_kek_private_key

        if self.iamsmart_kek_key_file is None:
            return ["IAMSIGN_IAMSMART_KEK_KEY_FILE is missing (the KEK private key, PEM or PKCS#12)"]
        found = []
        for path in (self.iamsmart_kek_key_file, *self.iamsmart_previous_kek_key_files):
            try:
                load_kek_private_key(path, reveal(self.iamsmart_kek_pin))
            except KekError as exc:
                found.append(f"IAMSIGN_IAMSMART_KEK_KEY_FILE: {exc}")
        return found

    def _issuer_problems(self) -> list[str]:
        from cryptography import x509

        if not self.iamsmart_cert_issuer_files:
            what = "JSON list of PEM files of the CAs that issue iAM Smart-Cert"
            return [f"IAMSIGN_IAMSMART_CERT_ISSUER_FILES is missing ({what})"]
        found = []
        for path in self.iamsmart_cert_issuer_files:
            try:
                x509.load_pem_x509_certificates(Path(path).read_bytes())
            except OSError as exc:
                found.append(f"IAMSIGN_IAMSMART_CERT_ISSUER_FILES: cannot read {path}: {exc.strerror}")
            except ValueError:
                found.append(f"IAMSIGN_IAMSMART_CERT_ISSUER_FILES: {path} holds no PEM certificate")
        return found


def _secret_bytes(value: str) -> bytes:
    """The bytes a server secret stands for: Base64 when it decodes to 16 bytes or more, else its text."""
    try:
        raw = base64.b64decode(value, validate=True)
        if len(raw) >= 16:
            return raw
    except ValueError:
        pass
    return value.encode()

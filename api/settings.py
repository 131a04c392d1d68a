"""Service settings, from ``IAMSIGN_*`` environment variables (pydantic-settings)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    """Everything configurable, with embedded single-machine defaults."""

    model_config = SettingsConfigDict(env_prefix="IAMSIGN_", env_file=None, extra="ignore")

    data_dir: Path = Field(
        Path("./data"), description="Folder for the SQLite file, documents and sandbox PKI."
    )
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = Field(
        None, description="Base URL clients and iAM Smart reach this service at; default http://HOST:PORT."
    )
    sandbox_enabled: bool = Field(True, description="Mount the built-in iAM Smart sandbox at /sandbox.")
    sandbox_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Simulator switches (signing.sandbox.options.SandboxOptions fields), e.g. as JSON in "
        "IAMSIGN_SANDBOX_OPTIONS='{\"callback_retries\": 0}'.",
    )
    iamsmart_environment: str = Field(
        "sandbox", description="iAM Smart environment: sandbox, ite or production."
    )
    iamsmart_base_url: str | None = Field(
        None, description="Override the API base (default: per environment)."
    )
    iamsmart_client_id: str | None = Field(None, description="clientID from the e-service portal.")
    iamsmart_client_secret: SecretStr | None = Field(
        None, description="clientSecret from the e-service portal."
    )
    iamsmart_kek_key_file: Path | None = Field(None, description="PEM private key of the key-encryption key.")
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
    server_secret: str | None = Field(
        None,
        description="Key for the keyed hashes of signer IDs and webhook signatures; default: generated "
        "once into DATA_DIR/secrets (give the same value to every replica).",
    )
    iamsmart_cert_issuer_files: list[Path] = Field(
        default_factory=list,
        description="PEM certificates of the CAs that issue iAM Smart-Cert (sandbox CA added).",
    )
    trust_root_files: list[Path] = Field(
        default_factory=list, description="PEM roots for B-LT revocation gathering (sandbox root added)."
    )
    tsa_url: str | None = Field(None, description="RFC 3161 TSA; default the sandbox TSA in sandbox mode.")
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

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'iamsign.db').resolve()}"

    @property
    def documents_dir(self) -> Path:
        return self.data_dir / "documents"

    @property
    def sandbox_pki_dir(self) -> Path:
        return self.data_dir / "sandbox" / "pki"

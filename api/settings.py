"""Service settings, from ``IAMSIGN_*`` environment variables (pydantic-settings)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    """Everything configurable, with embedded single-machine defaults."""

    model_config = SettingsConfigDict(env_prefix="IAMSIGN_", env_file=None, extra="ignore")

    data_dir: Path = Field(Path("./data"), description="Folder for the SQLite file, documents and sandbox PKI.")
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = Field(
        None, description="Base URL clients and iAM Smart reach this service at; default http://HOST:PORT."
    )
    sandbox_enabled: bool = Field(True, description="Mount the built-in iAM Smart sandbox at /sandbox.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default SQLite at DATA_DIR/iamsign.db (postgresql+psycopg://... for many)."
    )
    max_upload_bytes: int = Field(100 * 1024 * 1024, description="Largest accepted upload, in bytes.")

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

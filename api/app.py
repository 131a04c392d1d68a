"""The FastAPI application: ``create_app(settings)``."""

from __future__ import annotations

from fastapi import FastAPI

from signing.sandbox.pki import SandboxPki

from .routes.sandbox_pki import pki_router
from .settings import Settings

__all__ = ["create_app"]


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service for ``settings`` (environment defaults when omitted)."""
    settings = settings or Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = FastAPI(title="iamsign", version="0.1.0", description="PAdES signing with iAM Smart+")
    app.state.settings = settings

    @app.get("/healthz", tags=["service"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    if settings.sandbox_enabled:
        pki = SandboxPki.open_or_create(settings.sandbox_pki_dir, f"{settings.base_url}/sandbox/pki")
        app.state.sandbox_pki = pki
        app.include_router(pki_router(lambda: pki), prefix="/sandbox/pki")
    return app

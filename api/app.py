"""The FastAPI application: ``create_app(settings)``."""

from __future__ import annotations

from fastapi import FastAPI

from signing.sandbox.pki import SandboxPki

from .db import make_engine, migrate
from .errors import install_error_handlers
from .routes import documents
from .routes.sandbox_pki import pki_router
from .settings import Settings
from .storage import DocumentStore

__all__ = ["create_app"]


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service for ``settings`` (environment defaults when omitted)."""
    settings = settings or Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = FastAPI(title="iamsign", version="0.1.0", description="PAdES signing with iAM Smart+")
    app.state.settings = settings
    app.state.engine = make_engine(settings.effective_database_url)
    migrate(app.state.engine)
    app.state.store = DocumentStore(settings.documents_dir)
    install_error_handlers(app)

    @app.get("/healthz", tags=["service"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["service"])
    def readyz() -> dict[str, str]:
        from sqlalchemy import text

        with app.state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return {"status": "ready"}

    app.include_router(documents.router)

    if settings.sandbox_enabled:
        pki = SandboxPki.open_or_create(settings.sandbox_pki_dir, f"{settings.base_url}/sandbox/pki")
        app.state.sandbox_pki = pki
        app.include_router(pki_router(lambda: pki), prefix="/sandbox/pki")
    return app

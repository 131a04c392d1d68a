"""The FastAPI application: ``create_app(settings)``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI

from signing.iamsmart.client import IamSmartClient
from signing.sandbox.pki import SandboxPki

from .db import make_engine, migrate
from .errors import install_error_handlers
from .iamsmart_gateway import build_iamsmart_setup
from .routes import auth, documents, iamsmart_callbacks, pages, signing_requests
from .routes.sandbox_pki import pki_router
from .routes.verifications import router as verifications_router
from .sandbox_app import build_sandbox, sandbox_asgi
from .secrets_store import load_or_create_secret
from .settings import Settings
from .signing_flow import SigningFlow
from .storage import DocumentStore
from .webhooks import deliver_due

__all__ = ["create_app"]

log = logging.getLogger("iamsign")


async def _sweeper(app: FastAPI) -> None:
    """Expire overdue requests, resume interrupted work and deliver webhooks, forever."""
    flow: SigningFlow = app.state.flow
    while True:
        try:
            await flow.sweep()
            with flow.session() as session:
                await deliver_due(session, app.state.server_secret, app.state.http)
        except Exception:  # noqa: BLE001 - keep sweeping; the error is logged
            log.exception("sweep failed")
        await asyncio.sleep(app.state.settings.sweep_interval_s)


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.http = httpx.AsyncClient(timeout=15)
    client = IamSmartClient(app.state.iamsmart_setup.client_config)
    app.state.flow = SigningFlow(app.state.settings, app.state.engine, app.state.store, app.state.iamsmart_setup,
                                 client, app.state.server_secret)
    sandbox = getattr(app.state, "sandbox", None)
    if sandbox is not None:
        sandbox.ensure_ticker()
    sweeper = asyncio.create_task(_sweeper(app))
    try:
        yield
    finally:
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper
        await app.state.flow.drain()
        if sandbox is not None:
            await sandbox.aclose()
        await client.aclose()
        await app.state.http.aclose()


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service for ``settings`` (environment defaults when omitted)."""
    settings = settings or Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = FastAPI(title="iamsign", version="0.1.0", description="PAdES signing with iAM Smart+", lifespan=_lifespan)
    app.state.settings = settings
    app.state.engine = make_engine(settings.effective_database_url)
    migrate(app.state.engine)
    app.state.store = DocumentStore(settings.documents_dir)
    app.state.server_secret = load_or_create_secret(settings.data_dir, "server", settings.server_secret)
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
    app.include_router(signing_requests.router)
    app.include_router(signing_requests.webhook_router)
    app.include_router(iamsmart_callbacks.router)
    app.include_router(auth.router)
    app.include_router(pages.router)
    app.include_router(verifications_router)

    pki = None
    if settings.sandbox_enabled:
        pki = SandboxPki.open_or_create(settings.sandbox_pki_dir, f"{settings.base_url}/sandbox/pki")
        app.state.sandbox_pki = pki
        app.include_router(pki_router(lambda: pki), prefix="/sandbox/pki")
        # The simulated iAM Smart (API at /sandbox/api/v1, pages and test hooks at /sandbox/v1).
        app.state.sandbox = build_sandbox(settings, pki)
        app.mount("/sandbox", sandbox_asgi(app.state.sandbox))
    app.state.iamsmart_setup = build_iamsmart_setup(settings, sandbox_pki=pki)
    return app

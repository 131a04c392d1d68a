"""The FastAPI application: ``create_app(settings)``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from api.context import ServiceContext
from api.edge import install_edge
from api.errors import install_error_handlers
from api.flows.enrolment import EnrolmentFlow
from api.openapi import TAGS, install_openapi
from api.routes import (
    auth,
    batches,
    documents,
    envelopes,
    iamsmart_callbacks,
    pages,
    signers,
    signing_requests,
    webhooks,
)
from api.routes.api_docs import STATIC_URL
from api.routes.api_docs import router as api_docs_router
from api.routes.verifications import router as verifications_router
from api.routes.verify_page import router as verify_page_router
from api.sandbox.app import build_sandbox, sandbox_asgi
from api.sandbox.pki import pki_router
from api.settings import Settings
from api.telemetry import install_telemetry
from api.telemetry.metrics import StateCollector

__all__ = ["create_app"]

log = logging.getLogger("iamsign")


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    ctx: ServiceContext = app.state.context
    app.state.flow = ctx.new_flow()
    app.state.batch_flow = ctx.new_batch_flow(app.state.flow.client)
    app.state.enrolment = EnrolmentFlow(app.state.flow, ctx.iamsmart, ctx.store, ctx.secret, ctx.settings)
    app.state.envelopes = ctx.new_envelope_flow(app.state.flow)
    sandbox = getattr(app.state, "sandbox", None)
    if sandbox is not None:
        sandbox.ensure_ticker()
    if ctx.settings.embedded_worker:
        await asyncio.to_thread(ctx.queue.start_consumer, ctx.settings.workers)
    warm = asyncio.create_task(
        ctx.cpu.warm()
    )  # start the signing processes before the first batch needs them
    try:
        yield
    finally:
        ctx.status_changes.close()
        with contextlib.suppress(Exception):
            await warm
        if ctx.settings.embedded_worker:
            await asyncio.to_thread(ctx.queue.stop_consumer)
        await app.state.flow.drain()
        if sandbox is not None:
            await sandbox.aclose()
        await app.state.flow.client.aclose()
        if "cpu" in vars(ctx):
            await asyncio.to_thread(ctx.cpu.shutdown)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service for ``settings`` (environment defaults when omitted)."""
    ctx = ServiceContext(settings or Settings())
    settings = ctx.settings
    # Swagger UI at /docs and ReDoc at /redoc from fastapi-offline's bundled files: no CDN, works offline.
    app = FastAPIOffline(
        title="iamsign",
        version="0.1.0",
        description="PAdES signing with iAM Smart+",
        lifespan=_lifespan,
        static_url=STATIC_URL,
        docs_url=None,  # served by api.routes.api_docs, with the CSP nonce on their inline script
        redoc_url=None,
        openapi_tags=TAGS,
    )
    app.state.context = ctx
    app.state.settings = settings
    app.state.engine = ctx.engine
    app.state.store = ctx.store
    app.state.server_secret = ctx.secret
    install_error_handlers(app)
    install_openapi(app)
    install_edge(app, settings)
    install_telemetry(
        app,
        StateCollector(ctx.engine, lambda: ctx.queue.huey.pending_count()),
        metrics=settings.metrics_enabled,
    )

    @app.get("/healthz", tags=["service"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["service"])
    def readyz() -> dict[str, str]:
        from sqlalchemy import text

        with ctx.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return {"status": "ready"}

    app.include_router(documents.router)
    app.include_router(signing_requests.router)
    app.include_router(webhooks.router)
    app.include_router(batches.router)
    app.include_router(envelopes.router)
    app.include_router(signers.router)
    app.include_router(iamsmart_callbacks.router)
    app.include_router(auth.router)
    app.include_router(pages.router)
    app.include_router(verifications_router)
    app.include_router(verify_page_router)
    app.include_router(api_docs_router)

    if ctx.sandbox_pki is not None:
        pki = ctx.sandbox_pki
        app.state.sandbox_pki = pki
        app.include_router(pki_router(lambda: pki), prefix="/sandbox/pki")
        # The simulated iAM Smart (API at /sandbox/api/v1, pages and test hooks at /sandbox/v1).
        app.state.sandbox = build_sandbox(settings, pki)
        app.mount("/sandbox", sandbox_asgi(app.state.sandbox))
    app.state.iamsmart_setup = ctx.iamsmart
    return app

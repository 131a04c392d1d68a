"""Assemble the iAM Smart sandbox from settings: mounted by ``create_app`` or served alone (``iamsign sandbox``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from pydantic import TypeAdapter

from api.flows.iamsmart_setup import local_credentials
from api.sandbox.pki import pki_router
from api.sandbox.routes import install_sandbox_errors, sandbox_subapp
from api.settings import Settings
from signing.iamsmart.protocol import SCOPES
from signing.sandbox.clock import MovableClock
from signing.sandbox.core import SandboxCore
from signing.sandbox.engine import SandboxEngine
from signing.sandbox.options import SandboxOptions
from signing.sandbox.pki import SandboxPki
from signing.sandbox.registry import ServiceRegistry
from signing.sandbox.users import UserDirectory

__all__ = ["build_sandbox", "create_sandbox_server", "sandbox_asgi", "service_registry"]


def service_registry(data_dir: Path) -> ServiceRegistry:
    """The sandbox's store of registered online services in ``data_dir``."""
    return ServiceRegistry(Path(data_dir) / "sandbox" / "services.json")


def _register_self(settings: Settings, registry: ServiceRegistry) -> None:
    """Register the service's own client (secret and KEK generated at first start) with the sandbox."""
    creds = local_credentials(settings)
    pem = creds.kek_public_pem().decode()
    wanted = f"{settings.base_url}/*"
    current = registry.get(creds.client_id)
    if (
        current
        and current.client_secret == creds.client_secret
        and current.kek_public_pem == pem
        and wanted in current.redirect_uris
    ):
        return
    uris = tuple(dict.fromkeys([*(current.redirect_uris if current else ()), wanted]))
    registry.register(
        creds.client_id,
        kek_public_pem=pem,
        redirect_uris=uris,
        scopes=sorted(SCOPES),
        client_secret=creds.client_secret,
    )


def build_sandbox(
    settings: Settings,
    pki: SandboxPki,
    clock: MovableClock | None = None,
    options: SandboxOptions | None = None,
) -> SandboxEngine:
    """The sandbox engine for ``settings``, its state in ``DATA/sandbox``."""
    clock = clock or MovableClock()
    options = options or TypeAdapter(SandboxOptions).validate_python(settings.sandbox_options)
    registry = service_registry(settings.data_dir)
    _register_self(settings, registry)
    users = UserDirectory(settings.data_dir / "sandbox" / "users", pki, clock.now_ms())
    return SandboxEngine(SandboxCore.create(options, registry, users, pki, clock))


def sandbox_asgi(engine: SandboxEngine) -> FastAPI:
    """The ASGI app to mount at ``/sandbox``."""
    return sandbox_subapp(engine)


def create_sandbox_server(
    settings: Settings, clock: MovableClock | None = None, options: SandboxOptions | None = None
) -> FastAPI:
    """The sandbox alone, on the same paths as when mounted (``/sandbox/api/v1/...``, ``/sandbox/pki/...``)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    pki = SandboxPki.open_or_create(settings.sandbox_pki_dir, f"{settings.base_url}/sandbox/pki")
    engine = build_sandbox(settings, pki, clock, options)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine.ensure_ticker()
        yield
        await engine.aclose()

    app = FastAPI(title="iAM Smart sandbox", lifespan=lifespan)
    install_sandbox_errors(app)
    app.state.sandbox = engine
    app.state.sandbox_pki = pki

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(pki_router(lambda: pki), prefix="/sandbox/pki")
    app.mount("/sandbox", sandbox_asgi(engine))
    return app

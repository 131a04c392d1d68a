"""Fixtures for the iAM Smart client/sandbox tests: the sandbox served by uvicorn on a loopback port,
a test online service registered with it, and a small receiving app on another loopback server that
records callbacks (POST) and browser redirects (GET)."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from api.sandbox.app import create_sandbox_server, service_registry
from api.settings import Settings
from signing.iamsmart.bulk import split_multipart
from signing.iamsmart.client import IamSmartClient, Token
from signing.iamsmart.config import ClientConfig
from signing.sandbox.clock import MovableClock
from signing.sandbox.engine import SandboxEngine
from signing.sandbox.options import SandboxOptions

from .support import LoopbackServer

HKID_SIGNER = "A123456(3)"  # CHAN Tai Man 陳大文, iAM Smart+, active
HKID_PLAIN = "B234567(1)"  # LEE Siu Ming, plain iAM Smart
HKID_SUSPENDED = "C345678(A)"
HKID_DEREGISTERED = "D456789(8)"
HKID_OTHER = "E567890(4)"  # HO Wing Sze, iAM Smart+, active

TEST_OPTIONS = SandboxOptions(callback_retry_delay_s=0.05, callback_timeout_s=3.0)


@dataclass
class Receiver:
    """The online service's side: records POSTed callbacks and GET redirects, keyed by path name."""

    server: LoopbackServer
    posts: dict[str, list[bytes]] = field(default_factory=dict)
    post_types: dict[str, list[str]] = field(default_factory=dict)
    """The Content-Type of each POST (bulk result callbacks are multipart)."""
    gets: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    fail_next: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return self.server.url

    def callback_uri(self, name: str) -> str:
        return f"{self.url}/cb/{name}"

    def return_uri(self, name: str) -> str:
        return f"{self.url}/ret/{name}"

    async def wait_post(self, name: str, count: int = 1, timeout: float = 10.0) -> bytes:
        for _ in range(int(timeout / 0.02)):
            with self.lock:
                got = list(self.posts.get(name, ()))
            if len(got) >= count:
                return got[count - 1]
            await asyncio.sleep(0.02)
        raise AssertionError(f"no callback #{count} at /cb/{name} within {timeout}s")

    async def wait_multipart(self, name: str, count: int = 1, timeout: float = 10.0) -> dict[str, bytes]:
        """The parts of the ``count``-th POST at /cb/{name} (a bulk result callback)."""
        body = await self.wait_post(name, count, timeout)
        with self.lock:
            content_type = self.post_types[name][count - 1]
        return split_multipart(body, content_type)

    def count_posts(self, name: str) -> int:
        with self.lock:
            return len(self.posts.get(name, ()))

    async def wait_get(self, name: str, timeout: float = 10.0) -> dict[str, str]:
        for _ in range(int(timeout / 0.02)):
            with self.lock:
                got = list(self.gets.get(name, ()))
            if got:
                return got[0]
            await asyncio.sleep(0.02)
        raise AssertionError(f"no redirect at /ret/{name} within {timeout}s")


def _receiver_app(rec: Receiver) -> FastAPI:
    app = FastAPI()

    @app.post("/cb/{name}")
    async def callback(name: str, request: Request):
        body = await request.body()
        with rec.lock:
            rec.posts.setdefault(name, []).append(body)
            rec.post_types.setdefault(name, []).append(request.headers.get("content-type", ""))
            failing = rec.fail_next.get(name, 0)
            if failing:
                rec.fail_next[name] = failing - 1
        if failing:
            return JSONResponse({"error": "try again"}, status_code=500)
        return JSONResponse({"received": True})

    @app.get("/ret/{name}")
    def ret(name: str, request: Request):
        with rec.lock:
            rec.gets.setdefault(name, []).append(dict(request.query_params))
        return PlainTextResponse("thanks")

    return app


@dataclass
class Sandbox:
    """A running sandbox plus what the tests need to drive it."""

    url: str
    engine: SandboxEngine
    receiver: Receiver
    config: ClientConfig
    kek: rsa.RSAPrivateKey
    data_dir: Path

    @property
    def api(self) -> str:
        return f"{self.url}/sandbox/api/v1"

    @property
    def hooks(self) -> str:
        return f"{self.url}/sandbox/v1"

    def client(self, **kw) -> IamSmartClient:
        return IamSmartClient(self.config, **kw)

    async def hook(self, method: str, path: str, **kw) -> httpx.Response:
        async with httpx.AsyncClient(timeout=10) as http:
            return await http.request(method, f"{self.hooks}{path}", **kw)

    async def login(
        self,
        client: IamSmartClient,
        hkid: str = HKID_SIGNER,
        scopes: tuple[str, ...] = ("eidapi_auth", "eidapi_sign"),
        source: str = "PC_Browser",
    ) -> Token:
        """Log in through the getQR page as a tester would, then getToken."""
        url = client.qr_url(self.receiver.return_uri("login"), scopes, state="login-1", source=source)
        async with httpx.AsyncClient(timeout=10) as http:
            page = await http.get(url)
            assert page.status_code == 200, page.text
            sid = page.headers["x-sandbox-qr-session"]
            r = await http.post(f"{self.hooks}/qr/{sid}/approve", json={"hkid": hkid})
            assert r.status_code == 200, r.text
        query = parse_qs(urlsplit(r.json()["redirect_url"]).query)
        assert query["state"] == ["login-1"]
        return await client.get_token(query["code"][0])

    async def status(self, business_id: str) -> dict:
        r = await self.hook("GET", f"/requests/{business_id}")
        assert r.status_code == 200, r.text
        return r.json()

    async def wait_status(self, business_id: str, wanted: set[str], timeout: float = 10.0) -> dict:
        for _ in range(int(timeout / 0.02)):
            st = await self.status(business_id)
            if st["status"] in wanted:
                return st
            await asyncio.sleep(0.02)
        raise AssertionError(f"{business_id} never reached {wanted}: {st}")


def new_kek() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def start_sandbox(data_dir: Path, options: SandboxOptions = TEST_OPTIONS) -> Iterator[Sandbox]:
    """Start a receiver and a sandbox (the PKI's base URL is the bound socket's URL + /sandbox/pki)."""
    receiver = Receiver(LoopbackServer())
    receiver.server.start(_receiver_app(receiver))
    server = LoopbackServer()
    settings = Settings(data_dir=data_dir, host="127.0.0.1", port=server.port)
    kek = new_kek()
    registered = service_registry(data_dir).register(
        "test-service",
        kek_public_pem=kek.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode(),
        redirect_uris=[f"{receiver.url}/*"],
    )
    app = create_sandbox_server(settings, MovableClock(), options)
    server.start(app)
    config = ClientConfig(f"{server.url}/sandbox/api/v1", "test-service", registered.client_secret, (kek,))
    try:
        yield Sandbox(server.url, app.state.sandbox, receiver, config, kek, data_dir)
    finally:
        server.stop()
        receiver.server.stop()


@pytest.fixture(scope="module", name="sandbox")
def sandbox_fixture(tmp_path_factory) -> Iterator[Sandbox]:
    """One sandbox (and receiver) per test module."""
    yield from start_sandbox(tmp_path_factory.mktemp("sandbox-data"))


def bid(prefix: str = "b") -> str:
    """A fresh businessID (<= 36 characters)."""
    return f"{prefix}-{uuid.uuid4().hex[:24]}"

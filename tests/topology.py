"""A production-like topology on loopback: the sandbox as its own process (iAM Smart), service replicas as
separate ``iamsign serve`` processes over one database, one storage folder and one queue, and a small
front proxy standing in for the load balancer (it can send iAM Smart's callbacks to any replica, or to all)."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from fastapi import FastAPI, Request, Response

from .processes import ServiceProcess, cli, free_port
from .support import LoopbackServer

CALLBACK_PATH = "/v1/iamsmart/callback"


def front_proxy(state: dict) -> FastAPI:
    """Forward everything to ``state["default"]``; callbacks to every URL in ``state["callback_targets"]``."""
    app = FastAPI()
    client = httpx.AsyncClient(timeout=60)

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE"])
    async def forward(path: str, request: Request) -> Response:
        body = await request.body()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        targets = [state["default"]]
        if "/" + path == CALLBACK_PATH:
            state.setdefault("callbacks", []).append(body)
            targets = state.get("callback_targets") or targets
        responses = await asyncio.gather(
            *(
                client.request(
                    request.method, f"{t}/{path}", params=request.query_params, content=body, headers=headers
                )
                for t in targets
            )
        )
        first = responses[0]
        state.setdefault("callback_outcomes", []).extend(
            r.json().get("outcome") for r in responses if "/" + path == CALLBACK_PATH and r.status_code == 200
        )
        return Response(
            first.content,
            status_code=first.status_code,
            headers={k: v for k, v in first.headers.items() if k.lower() in ("content-type", "location")},
        )

    return app


@dataclass
class Topology:
    data: Path
    env: dict[str, str]
    sandbox: ServiceProcess
    replicas: list[ServiceProcess]
    proxy: LoopbackServer
    proxy_state: dict
    key: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.proxy.url

    def client(self, base: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=base or self.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=60
        )

    def stop(self) -> None:
        for p in self.replicas:
            p.stop()
        self.sandbox.stop()
        self.proxy.stop()


def start_topology(
    tmp: Path,
    database_url: str,
    replicas: int = 2,
    queue_url: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> Topology:
    data = tmp / "data"
    data.mkdir(parents=True, exist_ok=True)
    sandbox_port = free_port()
    sandbox = ServiceProcess(
        "sandbox",
        ["sandbox", "--port", str(sandbox_port), "--data-dir", str(data)],
        {"IAMSIGN_SANDBOX_OPTIONS": json.dumps({"callback_retry_delay_s": 0.5})},
        tmp,
        port=sandbox_port,
    ).start()
    proxy = LoopbackServer()
    pki = data / "sandbox" / "pki"
    env = {
        "IAMSIGN_DATABASE_URL": database_url,
        "IAMSIGN_PUBLIC_URL": proxy.url,
        "IAMSIGN_WEBHOOK_ALLOWED_NETWORKS": '["127.0.0.0/8"]',  # the test receivers listen on loopback
        "IAMSIGN_IAMSMART_BASE_URL": f"http://127.0.0.1:{sandbox_port}/sandbox/api/v1",
        "IAMSIGN_IAMSMART_CERT_ISSUER_FILES": json.dumps([str(pki / "ca.cert.pem")]),
        "IAMSIGN_TRUST_ROOT_FILES": json.dumps([str(pki / "root.cert.pem")]),
        "IAMSIGN_TSA_URL": f"http://127.0.0.1:{sandbox_port}/sandbox/pki/tsa",
        "IAMSIGN_SWEEP_INTERVAL_S": "0.3",
        "IAMSIGN_STALE_AFTER_S": "2",
        "IAMSIGN_QUEUE_NAME": uuid.uuid4().hex[:12],
        **({"IAMSIGN_QUEUE_URL": queue_url} if queue_url else {}),
        **(extra_env or {}),
    }
    procs = []
    for i in range(replicas):
        port = free_port()
        procs.append(
            ServiceProcess(
                f"replica-{chr(97 + i)}",
                ["serve", "--port", str(port), "--data-dir", str(data)],
                env,
                tmp,
                port=port,
            )
        )
    for p in procs:
        p.start(wait=False)
    for p in procs:
        p.wait_healthy()
    _register_with_sandbox(data, proxy.url)
    state = {"default": procs[0].url}
    proxy.start(front_proxy(state))
    top = Topology(data, env, sandbox, procs, proxy, state)
    top.key = cli(["keys", "create", "Replica School", "--data-dir", str(data)], env).strip()
    return top


def _register_with_sandbox(data: Path, public_url: str) -> None:
    """Tell the sandbox (a separate process) where this service receives callbacks: the front proxy."""
    from signing.iamsmart.config import load_or_create_local_credentials
    from signing.iamsmart.protocol import SCOPES
    from signing.sandbox.registry import ServiceRegistry

    creds = load_or_create_local_credentials(data / "iamsmart")
    ServiceRegistry(data / "sandbox" / "services.json").register(
        creds.client_id,
        kek_public_pem=creds.kek_public_pem().decode(),
        redirect_uris=[f"{public_url}/*"],
        scopes=sorted(SCOPES),
        client_secret=creds.client_secret,
    )

"""What the soak runs on: private PostgreSQL and Redis it may restart, a faulty road to the sandbox, a balancer.

Everything listens on 127.0.0.1 at a free port and dies with the soak: children get ``PR_SET_PDEATHSIG``, and
PostgreSQL is run as its own ``postgres`` process (not through ``pg_ctl``, which would detach it). The
machine's own PostgreSQL and Redis are never touched.
"""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import json
import os
import pwd
import random
import shutil
import signal
import subprocess
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from fastapi import FastAPI, Request, Response

PG_BIN = Path(os.environ.get("IAMSIGN_SOAK_PG_BIN", "/usr/lib/postgresql/15/bin"))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port}")


class PrivatePostgres:
    """A throw-away PostgreSQL cluster on a loopback port, restartable mid-run."""

    def __init__(self, folder: Path) -> None:
        self._as_root = os.geteuid() == 0
        if self._as_root:
            # PostgreSQL refuses to run as root, so the cluster belongs to ``postgres``, in a folder of its
            # own under the system temp dir (``folder`` may sit below a root-only path such as pytest's)
            folder = Path(tempfile.mkdtemp(prefix="iamsign-soak-pg-"))
        self.folder = folder
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.folder.mkdir(parents=True, exist_ok=True)
        if self._as_root:
            user = pwd.getpwnam("postgres")
            os.chmod(self.folder, 0o755)
            os.chown(self.folder, user.pw_uid, user.pw_gid)
        self._run([str(PG_BIN / "initdb"), "-D", str(self.folder / "db"), "-A", "trust", "-U", "postgres"])

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, args: list[str]) -> None:
        subprocess.run(
            [*args, "--no-sync", "-E", "UTF8"],
            check=True,
            capture_output=True,
            user="postgres" if self._as_root else None,
        )

    def start(self) -> None:
        log = open(self.folder / "postgres.log", "ab")  # noqa: SIM115 - the child's for its lifetime
        self.proc = subprocess.Popen(
            [
                str(PG_BIN / "postgres"),
                "-D",
                str(self.folder / "db"),
                "-p",
                str(self.port),
                "-k",
                str(self.folder),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=300",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            user="postgres" if self._as_root else None,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - one prctl call, no locks taken
        )
        log.close()
        _wait_port(self.port, self.proc, "postgres")
        time.sleep(0.3)  # accepting TCP slightly before it accepts logins

    def stop(self, fast: bool = True) -> None:
        """Fast shutdown (SIGINT: connections cut, as in a restart) or immediate (SIGQUIT: a crash)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT if fast else signal.SIGQUIT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def close(self) -> None:
        """Stop the server and, where this object made the folder, remove the cluster."""
        self.stop()
        if self._as_root:
            shutil.rmtree(self.folder, ignore_errors=True)

    def restart(self, down_s: float = 1.0) -> None:
        self.stop(fast=random.random() < 0.5)
        time.sleep(down_s)
        self.start()


class PrivateRedis:
    """A throw-away Redis on a loopback port that keeps nothing on disk (a restart forgets the queue)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        folder.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        server = shutil.which("redis-server") or "redis-server"
        log = open(self.folder / "redis.log", "ab")  # noqa: SIM115 - the child's for its lifetime
        self.proc = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=self.folder,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - one prctl call, no locks taken
        )
        log.close()
        _wait_port(self.port, self.proc, "redis-server")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self, down_s: float = 1.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()


@dataclass
class RoadFaults:
    """What the road to the sandbox does now, per kind of call (changed by the fault schedule)."""

    delay_s: dict[str, float] = field(default_factory=dict)
    """Extra latency per kind ("tsa", "ocsp", "crl", "iamsmart")."""
    down: set[str] = field(default_factory=set)
    """Kinds answered 503 at once."""
    dcode: str | None = None
    """iAM Smart API calls answered with this D-code (HTTP 200, as iAM Smart does)."""
    hang_iamsmart_s: float = 0.0
    """iAM Smart API calls held this long and then dropped (a timeout)."""
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def call_kind(path: str) -> str:
    if "/pki/tsa" in path:
        return "tsa"
    if "/pki/ocsp" in path:
        return "ocsp"
    if path.endswith(".crl"):
        return "crl"
    if "/api/v1/" in path:
        return "iamsmart"
    return "other"


def faulty_road(upstream: str, faults: RoadFaults) -> FastAPI:
    """An HTTP proxy to the sandbox that injects the faults in ``faults`` (TSA, OCSP, CRL, iAM Smart API)."""
    app = FastAPI()
    client = httpx.AsyncClient(base_url=upstream, timeout=120)

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE"])
    async def forward(path: str, request: Request) -> Response:
        kind = call_kind("/" + path)
        faults.counts[kind] += 1
        if kind in faults.down:
            return Response(b"unavailable (soak fault)", status_code=503)
        if faults.delay_s.get(kind):
            await asyncio.sleep(faults.delay_s[kind])
        if kind == "iamsmart" and faults.hang_iamsmart_s:
            await asyncio.sleep(faults.hang_iamsmart_s)
            return Response(b"timed out (soak fault)", status_code=504)
        if kind == "iamsmart" and faults.dcode:
            body = {"txID": os.urandom(8).hex(), "code": faults.dcode, "message": "soak fault"}
            return Response(json.dumps(body), media_type="application/json")
        body = await request.body()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        r = await client.request(
            request.method, "/" + path, params=request.query_params, content=body, headers=headers
        )
        keep = ("content-type", "location")
        return Response(
            r.content, status_code=r.status_code, headers={k: v for k, v in r.headers.items() if k in keep}
        )

    return app


def balancer(targets: list[str]) -> FastAPI:
    """The load balancer: round robin over the replicas, the next one when a replica is down."""
    app = FastAPI()
    client = httpx.AsyncClient(timeout=120)
    turn = {"n": 0}

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE"])
    async def forward(path: str, request: Request) -> Response:
        body = await request.body()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        turn["n"] += 1
        last: Exception | None = None
        for i in range(len(targets) * 3):
            target = targets[(turn["n"] + i) % len(targets)]
            try:
                r = await client.request(
                    request.method,
                    f"{target}/{path}",
                    params=request.query_params,
                    content=body,
                    headers=headers,
                )
            except httpx.TransportError as exc:  # that replica is down: try the next one
                last = exc
                await asyncio.sleep(0.2)
                continue
            keep = ("content-type", "location", "retry-after")
            return Response(
                r.content,
                status_code=r.status_code,
                headers={k: v for k, v in r.headers.items() if k in keep},
            )
        return Response(f"no replica answered: {last}".encode(), status_code=502)

    return app


class WebhookLedger:
    """Receives the service's webhooks and remembers every delivery's body per signing request."""

    def __init__(self) -> None:
        self.deliveries: dict[str, list[str]] = defaultdict(list)
        self.app = FastAPI()

        @self.app.post("/hook")
        async def hook(request: Request) -> dict:
            body = await request.body()
            payload = json.loads(body)
            key = payload.get("signing_request_id") or payload.get("batch_id") or "?"
            self.deliveries[key].append(hashlib.sha256(_stable(payload)).hexdigest())
            return {"ok": True}


def _stable(payload: dict) -> bytes:
    """The content of a delivery without what legitimately differs between attempts."""
    return json.dumps(
        {k: v for k, v in payload.items() if k not in ("delivered_at", "attempt")}, sort_keys=True
    ).encode()


def scratch_folder(prefix: str = "iamsign-soak-") -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))

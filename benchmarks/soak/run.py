"""Soak: many signing flows in flight while processes die, the database and the queue restart, the TSA,
OCSP and iAM Smart misbehave and the disk fills; then every request is checked.

Topology: the sandbox (iAM Smart, its PKI, OCSP, CRL, TSA) as its own process behind a *faulty road* (an
HTTP proxy that can delay, refuse or answer D-codes), two ``iamsign serve`` replicas with no in-process
workers behind a balancer, one ``iamsign worker``, a private PostgreSQL and a private Redis (started here with
``postgres`` and ``redis-server`` on loopback ports), the storage folder on a small tmpfs where the machine
allows mounting one.

Faults on a schedule: SIGKILL of a replica or the worker at random moments (each restarted), a restart of
PostgreSQL and of Redis, the TSA/OCSP/CRL slow and then down, iAM Smart answering D20000 and then timing out,
the storage folder full and then freed. Flows: single requests and batches at every level, approved,
rejected or left to expire.

At the end: every request and batch in a terminal state consistent with its files, audit trail and
webhooks; no uploaded document lost; nothing signed twice; no half-written file served; every webhook
delivered at least once and never twice with different content.

    python -m benchmarks.soak.run --minutes 30 --concurrency 8        # the long run (>= 100 kills)
    python -m benchmarks.soak.run --short                             # about a minute (the CI test's mode)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import io
import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks.soak.infra import (
    PrivatePostgres,
    PrivateRedis,
    RoadFaults,
    WebhookLedger,
    balancer,
    faulty_road,
    free_port,
    scratch_folder,
)
from fixtures.generate import simple_pdf
from tests.processes import ServiceProcess, cli
from tests.support import LoopbackServer
from tests.topology import _register_with_sandbox

SIGNER = "A123456(3)"
TERMINAL = {"completed", "rejected", "cancelled", "expired", "failed"}
BATCH_TERMINAL = TERMINAL | {"partially_completed"}
LEVELS = ("B-B", "B-T", "B-LT", "B-LTA")


@dataclass
class SoakConfig:
    duration_s: float = 30 * 60
    concurrency: int = 8
    kill_interval_s: tuple[float, float] = (5.0, 12.0)
    request_ttl_s: int = 40
    batch_share: float = 0.2
    batch_size: int = 3
    settle_s: float = 240.0
    seed: int | None = None

    @classmethod
    def short(cls) -> SoakConfig:
        return cls(duration_s=50, concurrency=4, kill_interval_s=(4.0, 8.0), request_ttl_s=25, settle_s=150)


@dataclass
class Flow:
    kind: str  # "single" | "batch"
    action: str  # "approve" | "reject" | "expire"
    level: str
    documents: dict[str, str]  # document id -> sha256 of what was uploaded
    id: str | None = None
    final: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


@dataclass
class SoakResult:
    flows: list[Flow]
    kills: int
    faults: Counter
    refused_uploads: int
    lost: int
    double: int
    inconsistent: int
    slowest_recovery_s: float
    problems: list[str]

    @property
    def by_status(self) -> Counter:
        return Counter(f.final.get("status", "never created") for f in self.flows)

    @property
    def failure_codes(self) -> Counter:
        """Why the failed ones failed (each must be a clear code, never an internal error)."""
        return Counter(
            (f.final.get("error") or {}).get("code", "?")
            for f in self.flows
            if f.final.get("status") == "failed"
        )

    def table(self) -> str:
        rows = [
            ("flows", len(self.flows)),
            (
                "  single / batch",
                f"{sum(f.kind == 'single' for f in self.flows)} / {sum(f.kind == 'batch' for f in self.flows)}",
            ),
            ("kills (SIGKILL, restarted)", self.kills),
            *((f"fault: {k}", v) for k, v in sorted(self.faults.items())),
            ("uploads refused (507/503, retried or given up)", self.refused_uploads),
            *((f"final status: {k}", v) for k, v in sorted(self.by_status.items())),
            *((f"  failed: {k}", v) for k, v in sorted(self.failure_codes.items())),
            ("lost", self.lost),
            ("double", self.double),
            ("inconsistent", self.inconsistent),
            ("slowest recovery", f"{self.slowest_recovery_s:.1f} s"),
        ]
        width = max(len(str(k)) for k, _ in rows)
        return "\n".join(f"| {k!s:<{width}} | {v!s:>10} |" for k, v in rows)


class _DatabaseProbe:
    """Looks like a restarted process to the recovery watch: "healthy" once a query through the balancer
    that needs the database answers below 500."""

    port = 0
    proc = None

    def __init__(self, soak: Soak) -> None:
        self.url = f"{soak.front.url}/v1/signing-requests?limit=1&_probe="
        self._auth = soak._auth()

    def healthy(self) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(self.url, headers=self._auth, timeout=0.5).status_code < 500
        return False


class Soak:
    """The running topology plus the bookkeeping of one soak run."""

    def __init__(self, config: SoakConfig, folder: Path) -> None:
        self.config = config
        self.folder = folder
        self.rng = random.Random(config.seed)
        self.faults = RoadFaults()
        self.fault_counts: Counter = Counter()
        self.kills = 0
        self.refused_uploads = 0
        self.recoveries: list[float] = []
        self.flows: list[Flow] = []
        self.ledger = WebhookLedger()
        self.stop = threading.Event()
        self._exit = contextlib.ExitStack()
        self.documents_tmpfs = False
        self.t0 = time.monotonic()
        self._recovering: dict[str, tuple] = {}
        self.drive_deadline = float("inf")

    def say(self, message: str) -> None:
        """One line of progress, with the seconds since the start."""
        print(f"[{time.monotonic() - self.t0:7.1f} s] {message}", flush=True)

    # ---------------------------------------------------------------- topology

    def start(self) -> None:
        ex = self._exit
        data = self.folder / "data"
        data.mkdir(parents=True)
        self.data = data
        self.pg = PrivatePostgres(self.folder / "pg")
        self.pg.start()
        ex.callback(self.pg.close)
        self.redis = PrivateRedis(self.folder / "redis")
        self.redis.start()
        ex.callback(self.redis.stop)
        self._mount_documents(data / "documents")

        self.hooks = LoopbackServer().start(self.ledger.app)
        ex.callback(self.hooks.stop)
        sandbox_port = free_port()
        self.road = LoopbackServer()
        self.sandbox = ServiceProcess(
            "sandbox",
            ["sandbox", "--port", str(sandbox_port), "--data-dir", str(data)],
            {
                "IAMSIGN_PUBLIC_URL": self.road.url,  # the PKI's OCSP/CRL/TSA addresses go over the road
                "IAMSIGN_SANDBOX_OPTIONS": json.dumps({"callback_retry_delay_s": 0.5}),
            },
            self.folder,
            port=sandbox_port,
        ).start()
        ex.callback(self.sandbox.stop)
        self.road.start(faulty_road(self.sandbox.url, self.faults))
        ex.callback(self.road.stop)

        self.front = LoopbackServer()
        pki = data / "sandbox" / "pki"
        self.env = {
            "IAMSIGN_DATABASE_URL": self.pg.url,
            "IAMSIGN_QUEUE_URL": self.redis.url,
            "IAMSIGN_QUEUE_NAME": uuid.uuid4().hex[:12],
            "IAMSIGN_PUBLIC_URL": self.front.url,
            "IAMSIGN_EMBEDDED_WORKER": "false",
            "IAMSIGN_IAMSMART_BASE_URL": f"{self.road.url}/sandbox/api/v1",
            "IAMSIGN_IAMSMART_CERT_ISSUER_FILES": json.dumps([str(pki / "ca.cert.pem")]),
            "IAMSIGN_TRUST_ROOT_FILES": json.dumps([str(pki / "root.cert.pem")]),
            "IAMSIGN_TSA_URL": f"{self.road.url}/sandbox/pki/tsa",
            "IAMSIGN_SWEEP_INTERVAL_S": "0.5",
            "IAMSIGN_STALE_AFTER_S": "3",
            "IAMSIGN_REQUEST_TTL_S": str(self.config.request_ttl_s),
            "IAMSIGN_WEBHOOK_ALLOWED_NETWORKS": json.dumps(["127.0.0.0/8"]),
        }
        self.replicas = [
            ServiceProcess(
                f"replica-{n}",
                ["serve", "--port", str(free_port()), "--data-dir", str(data)],
                self.env,
                self.folder,
            )
            for n in ("a", "b")
        ]
        for r in self.replicas:
            r.port = int(r.args[2])
            r.start(wait=False)
            ex.callback(r.stop)
        for r in self.replicas:
            r.wait_healthy()
        self.worker = ServiceProcess(
            "worker", ["worker", "--data-dir", str(data), "--workers", "4"], self.env, self.folder
        ).start(wait=False)
        ex.callback(self.worker.stop)
        _register_with_sandbox(data, self.front.url)
        self.front.start(balancer([r.url for r in self.replicas]))
        ex.callback(self.front.stop)
        self.key = cli(["keys", "create", "Soak School", "--data-dir", str(data)], self.env).strip()
        self.root_pem = (pki / "root.cert.pem").read_bytes()

    def _mount_documents(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(path)], capture_output=True, check=False
        )
        self.documents_tmpfs = done.returncode == 0
        if self.documents_tmpfs:
            self._exit.callback(lambda: subprocess.run(["umount", "-l", str(path)], check=False))
        self.documents = path

    def close(self) -> None:
        self._exit.close()

    # ---------------------------------------------------------------- faults

    def _kill_one(self) -> None:
        victim = self.rng.choice([*self.replicas, self.worker])
        victim.kill()
        self.kills += 1
        self.say(f"SIGKILL {victim.name} (kill {self.kills})")
        time.sleep(self.rng.uniform(0.2, 1.0))
        victim.start(wait=False)
        self._recovering[victim.name] = (victim, time.monotonic())

    def _watch_recoveries(self) -> None:
        """Note when each restarted process answers again (non-blocking: the schedule goes on meanwhile)."""
        for name, (proc, since) in list(self._recovering.items()):
            healthy = proc.port is None and proc.proc is not None and proc.proc.poll() is None
            if isinstance(proc, _DatabaseProbe):
                healthy = proc.healthy()
            elif proc.port is not None:
                with contextlib.suppress(httpx.HTTPError):
                    healthy = httpx.get(f"{proc.url}/healthz", timeout=0.5).status_code == 200
            if healthy:
                self.recoveries.append(time.monotonic() - since)
                self.say(f"{name} back after {self.recoveries[-1]:.1f} s")
                del self._recovering[name]

    def _fill_disk(self) -> None:
        ballast = self.documents / "soak-ballast"
        # unbuffered, and the suppression outermost: ENOSPC may come from a write or from closing the file
        with contextlib.suppress(OSError), open(ballast, "wb", buffering=0) as f:
            while True:
                f.write(b"\0" * (1 << 20))

    def _timeline(self) -> list[tuple[float, str, str]]:
        """(seconds from the start, "begin"/"end", fault): one of each fault, spread over the run."""
        d = self.config.duration_s
        hold = max(3.0, 0.07 * d)
        faults = [
            (0.15, "postgres restart"),
            (0.28, "tsa/ocsp slow"),
            (0.40, "tsa/ocsp/crl down"),
            (0.50, "redis restart"),
            (0.58, "iam smart D20000"),
            (0.68, "iam smart timeouts"),
            (0.78, "storage full"),
        ]
        events = []
        for at, what in faults:
            if what == "storage full" and not self.documents_tmpfs:
                self.say("storage-full fault skipped: no tmpfs could be mounted here")
                continue
            events.append((at * d, "begin", what))
            if what not in ("postgres restart", "redis restart"):
                events.append((at * d + hold, "end", what))
        return sorted(events)

    def fault_schedule(self) -> None:
        """Runs on the main thread for the soak's duration: random kills plus one of each other fault."""
        d = self.config.duration_s
        t0 = time.monotonic()
        events = self._timeline()
        next_kill = t0 + self.rng.uniform(*self.config.kill_interval_s)
        while not self.stop.is_set() and time.monotonic() - t0 < d:
            self._watch_recoveries()
            now = time.monotonic()
            if events and now - t0 >= events[0][0]:
                _, phase, what = events.pop(0)
                self._fault(phase, what)
            elif now >= next_kill:
                self._kill_one()
                next_kill = time.monotonic() + self.rng.uniform(*self.config.kill_interval_s)
            else:
                self.stop.wait(0.2)
        for _, phase, what in events:  # the run ended inside a fault: end it
            if phase == "end":
                self._fault(phase, what)
        deadline = time.monotonic() + 180
        while self._recovering and time.monotonic() < deadline:
            self._watch_recoveries()
            time.sleep(0.2)

    def _fault(self, phase: str, what: str) -> None:
        self.say(f"fault {phase}: {what}")
        if phase == "begin":
            self.fault_counts[what] += 1
        if what == "postgres restart":
            t0 = time.monotonic()
            self.pg.restart(down_s=2)
            self._recovering["the service after the postgres restart"] = (_DatabaseProbe(self), t0)
        elif what == "redis restart":
            self.redis.restart(down_s=2)
        elif what == "tsa/ocsp slow":
            if phase == "begin":
                self.faults.delay_s.update(tsa=3.0, ocsp=3.0)
            else:
                self.faults.delay_s.clear()
        elif what == "tsa/ocsp/crl down":
            if phase == "begin":
                self.faults.down.update({"tsa", "ocsp", "crl"})
            else:
                self.faults.down.clear()
        elif what == "iam smart D20000":
            self.faults.dcode = "D20000" if phase == "begin" else None
        elif what == "iam smart timeouts":
            self.faults.hang_iamsmart_s = 12.0 if phase == "begin" else 0.0
        elif what == "storage full":
            if phase == "begin":
                self._fill_disk()
            else:
                (self.documents / "soak-ballast").unlink(missing_ok=True)

    # ---------------------------------------------------------------- flows

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    async def _send(
        self, c: httpx.AsyncClient, method: str, url: str, tries: int = 8, **kw
    ) -> httpx.Response:
        """One call, retried on 502/503/507 and lost connections (what a careful integrator does)."""
        last: httpx.Response | Exception | None = None
        for attempt in range(tries):
            if time.monotonic() > self.drive_deadline:
                break  # the run is over: give up rather than keep the soak waiting
            try:
                r = await c.request(method, url, **kw)
            except httpx.TransportError as exc:
                last = exc
            else:
                if r.status_code not in (502, 503, 504, 507):
                    return r
                if r.status_code == 507:
                    self.refused_uploads += 1
                last = r
            await asyncio.sleep(min(8.0, 0.5 * 2**attempt) * self.rng.uniform(0.5, 1.0))
        if isinstance(last, httpx.Response):
            return last
        raise RuntimeError(f"{method} {url}: {last}")

    async def _upload(self, c: httpx.AsyncClient, pdf: bytes) -> str | None:
        r = await self._send(
            c, "POST", "/v1/documents", files={"file": ("letter.pdf", pdf, "application/pdf")}
        )
        if r.status_code != 201:
            return None
        return r.json()["id"]

    async def one_flow(self, c: httpx.AsyncClient, phone: httpx.AsyncClient, pdfs: list[bytes]) -> None:
        kind = "batch" if self.rng.random() < self.config.batch_share else "single"
        action = self.rng.choices(["approve", "reject", "expire"], weights=[70, 15, 15])[0]
        flow = Flow(kind, action, self.rng.choice(LEVELS), {})
        count = self.config.batch_size if kind == "batch" else 1
        for pdf in self.rng.sample(pdfs, count):
            doc = await self._upload(c, pdf)
            if doc is None:
                return  # refused (disk full, database away): nothing was accepted, nothing to check
            flow.documents[doc] = hashlib.sha256(pdf).hexdigest()
        self.flows.append(flow)
        ids = list(flow.documents)
        body: dict = {
            "signer": {"hkid": SIGNER},
            "level": flow.level,
            "webhook_url": f"{self.hooks.url}/hook",
        }
        path = "/v1/batches" if kind == "batch" else "/v1/signing-requests"
        body.update({"document_ids": ids} if kind == "batch" else {"document_id": ids[0]})
        r = await self._send(c, "POST", path, json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
        if r.status_code != 201:
            flow.final = {"status": f"not created ({r.status_code})"}
            return
        created = r.json()
        flow.id = created["id"]
        if action == "expire":
            return
        code = created.get("sign_code")
        verb = "approve" if action == "approve" else "reject"
        await asyncio.sleep(self.rng.uniform(0.1, 2.0))  # the signer reads their phone
        for _ in range(10):
            with contextlib.suppress(httpx.HTTPError):
                p = await phone.post(f"/sandbox/v1/phone/{verb}", json={"hkid": SIGNER, "sign_code": code})
                # 409: another waiting request of this signer shows the same code; wait for it to go
                if p.status_code < 500 and p.status_code != 409:
                    break
            await asyncio.sleep(1)

    async def drive(self) -> None:
        folder = self.folder / "letters"
        folder.mkdir()
        pdfs = [simple_pdf(folder / f"l{i}.pdf", pages=1 + i % 3).read_bytes() for i in range(8)]
        pdfs = [p.replace(b"%%EOF", b"%%EOF\n%" + str(i).encode()) for i, p in enumerate(pdfs)]
        end = time.monotonic() + self.config.duration_s
        self.drive_deadline = end + 30
        limits = httpx.Limits(max_connections=self.config.concurrency * 2 + 4)
        async with (
            httpx.AsyncClient(base_url=self.front.url, headers=self._auth(), timeout=20, limits=limits) as c,
            httpx.AsyncClient(base_url=self.sandbox.url, timeout=30) as phone,
        ):

            async def lane() -> None:
                while time.monotonic() < end:
                    try:
                        await self.one_flow(c, phone, pdfs)
                    except Exception as exc:  # noqa: BLE001 - recorded; the soak goes on
                        self.fault_counts[f"driver error: {type(exc).__name__}"] += 1

            await asyncio.gather(*(lane() for _ in range(self.config.concurrency)))

    # ---------------------------------------------------------------- checks

    def settle(self) -> None:
        """Faults over: wait until every flow is terminal (expiries included) and webhooks have gone out."""
        for p in [*self.replicas, self.worker]:
            if p.proc is None or p.proc.poll() is not None:
                p.start(wait=bool(p.port))
        deadline = time.monotonic() + self.config.settle_s
        with httpx.Client(base_url=self.front.url, headers=self._auth(), timeout=30) as c:
            while time.monotonic() < deadline:
                open_ = [f for f in self.flows if f.id and not self._read(c, f)]
                if not open_:
                    break
                time.sleep(1)
        # A delivery claimed by a process that was then killed is retried once its lease runs out (the
        # delivery timeout plus a minute), and a failed one after its backoff: late, not lost. Wait for
        # those within the same deadline; the check then says which flow never got one.
        while time.monotonic() < deadline and any(
            f.id and not self.ledger.deliveries.get(f.id) for f in self.flows
        ):
            time.sleep(1)
        time.sleep(3)  # the last webhooks' delivery (and any second copy, which the check compares)

    def _read(self, c: httpx.Client, flow: Flow) -> bool:
        path = f"/v1/{'batches' if flow.kind == 'batch' else 'signing-requests'}/{flow.id}"
        try:
            r = c.get(path)
        except httpx.HTTPError:
            return False
        if r.status_code != 200:
            return False
        flow.final = r.json()
        return flow.final["status"] in (BATCH_TERMINAL if flow.kind == "batch" else TERMINAL)

    def check(self) -> SoakResult:
        lost = double = inconsistent = 0
        problems: list[str] = []
        with httpx.Client(base_url=self.front.url, headers=self._auth(), timeout=60) as c:
            for flow in self.flows:
                for doc, sha in flow.documents.items():
                    r = c.get(f"/v1/documents/{doc}/content")
                    if r.status_code != 200 or hashlib.sha256(r.content).hexdigest() != sha:
                        lost += 1
                        problems.append(f"document {doc} lost or changed ({r.status_code})")
                if not flow.id:
                    continue
                flow.problems = self._check_flow(c, flow)
                double += sum("signed twice" in p for p in flow.problems)
                inconsistent += bool([p for p in flow.problems if "signed twice" not in p])
                problems += [f"{flow.kind} {flow.id}: {p}" for p in flow.problems]
        return SoakResult(
            self.flows,
            self.kills,
            self.fault_counts,
            self.refused_uploads,
            lost,
            double,
            inconsistent,
            max(self.recoveries, default=0.0),
            problems,
        )

    def _check_flow(self, c: httpx.Client, flow: Flow) -> list[str]:
        out: list[str] = []
        status = flow.final.get("status")
        if status not in (BATCH_TERMINAL if flow.kind == "batch" else TERMINAL):
            return [f"not terminal: {status}"]
        if flow.action == "reject" and status == "completed":
            out.append("completed although the signer rejected")
        if flow.action == "expire" and status == "completed":
            out.append("completed although nobody approved")
        hooks = self.ledger.deliveries.get(flow.id, [])
        if not hooks:
            out.append("no webhook delivered")
        elif len(set(hooks)) > 1:
            out.append(f"webhooks with different content ({len(set(hooks))} versions)")
        if flow.kind == "single":
            out += self._check_single(c, flow, status)
        else:
            out += self._check_batch(c, flow, status)
        return out

    def _check_single(self, c: httpx.Client, flow: Flow, status: str) -> list[str]:
        out: list[str] = []
        signed_id = flow.final.get("signed_document_id")
        if (status == "completed") != bool(signed_id):
            out.append(f"status {status} with signed_document_id {signed_id}")
        audit = c.get(f"/v1/signing-requests/{flow.id}/audit").json()
        if not audit.get("chain_intact"):
            out.append("audit chain broken")
        events = Counter(e["event"] for e in audit.get("entries", []))
        if events.get("completed", 0) != (1 if status == "completed" else 0):
            out.append(f"audit has {events.get('completed', 0)} 'completed' entries for status {status}")
        if status == "completed":
            r = c.get(f"/v1/signing-requests/{flow.id}/signed-document")
            out += self._check_signed(r, flow.level)
        return out

    def _check_batch(self, c: httpx.Client, flow: Flow, status: str) -> list[str]:
        out: list[str] = []
        docs = flow.final.get("documents", [])
        if flow.action != "approve" and any(d["status"] == "completed" for d in docs):
            out.append("a document completed although the batch was not approved")
        for d in docs:
            if d["status"] not in TERMINAL:
                out.append(f"document {d['document_id']} left {d['status']}")
            if d["status"] == "completed":
                r = c.get(f"/v1/batches/{flow.id}/documents/{d['document_id']}/signed-document")
                out += self._check_signed(r, flow.level)
        return out

    def _check_signed(self, r: httpx.Response, level: str) -> list[str]:
        if r.status_code != 200:
            return [f"signed document not served ({r.status_code})"]
        from pyhanko.pdf_utils.reader import PdfFileReader
        from pyhanko.sign.validation import validate_pdf_signature

        try:
            sigs = PdfFileReader(io.BytesIO(r.content)).embedded_regular_signatures
        except Exception as exc:  # noqa: BLE001 - a half-written file is exactly what this looks for
            return [f"signed document does not parse: {exc}"]
        if len(sigs) != 1:
            return [f"signed twice: {len(sigs)} signatures"]
        try:
            status = validate_pdf_signature(sigs[0], self._validation_context())
        except Exception as exc:  # noqa: BLE001
            return [f"signature unreadable: {exc}"]
        if not (status.intact and status.valid):
            return ["signature does not cover the file served"]
        return []

    def _validation_context(self):
        from asn1crypto import pem, x509
        from pyhanko_certvalidator import ValidationContext

        _, _, der = pem.unarmor(self.root_pem)
        return ValidationContext(trust_roots=[x509.Certificate.load(der)], allow_fetching=False)


def run_soak(config: SoakConfig, folder: Path | None = None) -> SoakResult:
    """Start everything, drive flows under the fault schedule, settle, check; stop everything.

    The fault schedule runs on the calling thread and the flows on another: processes are (re)started by
    the thread that lives longest, because a child's ``PR_SET_PDEATHSIG`` fires when the *thread* that
    started it ends.
    """
    soak = Soak(config, folder or scratch_folder())
    try:
        soak.start()
        driver = threading.Thread(target=lambda: asyncio.run(soak.drive()), daemon=True)
        driver.start()
        soak.fault_schedule()
        driver.join(timeout=120)  # bounded: a lane stuck on a dead connection does not hold the soak
        soak.faults.delay_s.clear()
        soak.faults.down.clear()
        soak.faults.dcode, soak.faults.hang_iamsmart_s = None, 0.0
        soak.settle()
        return soak.check()
    finally:
        soak.stop.set()
        soak.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="how long flows are driven")
    parser.add_argument("--concurrency", type=int, default=8, help="flows in flight at once")
    parser.add_argument("--short", action="store_true", help="about a minute, a handful of kills (CI)")
    parser.add_argument("--seed", type=int, default=None, help="replay a schedule")
    parser.add_argument("--keep", type=Path, default=None, help="keep logs and data in this folder")
    parser.add_argument(
        "--fuzz-cases",
        type=int,
        default=0,
        help="after the flows, this many fuzz cases over upload, verification and every JSON body "
        "(tests/test_fuzz.py and tests/test_schemathesis.py with IAMSIGN_FUZZ_EXAMPLES; e.g. 100000)",
    )
    args = parser.parse_args(argv)
    config = (
        SoakConfig.short()
        if args.short
        else SoakConfig(duration_s=args.minutes * 60, concurrency=args.concurrency)
    )
    config.seed = args.seed if args.seed is not None else random.randrange(2**32)
    print(f"soak: seed {config.seed}, {config.duration_s:.0f} s, {config.concurrency} lanes", flush=True)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    result = run_soak(config, args.keep)
    print(result.table())
    for p in result.problems[:50]:
        print("problem:", p)
    fuzz_ok = run_fuzz(args.fuzz_cases, config.seed) if args.fuzz_cases else True
    return 0 if fuzz_ok and not (result.lost or result.double or result.inconsistent) else 1


FUZZ_TARGETS = 4 + 27  # the four generators of tests/test_fuzz.py + the 27 operations schemathesis found


def run_fuzz(cases: int, seed: int) -> bool:
    """``cases`` fuzz cases in all, spread over the fuzz tests; new ones for each seed. Failing inputs are
    kept under tests/fuzz_regressions/ (tests/fuzzing.py)."""
    per_target = max(1, -(-cases // FUZZ_TARGETS))  # rounded up; the run prints the count that really ran
    print(
        f"fuzz: about {per_target * FUZZ_TARGETS} cases ({per_target} per generator or operation), seed {seed}"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--hypothesis-seed={seed}",
            "--timeout=0",  # the suite's per-test limit would cut a long run short (it did, at 93,014 cases)
            "tests/test_fuzz.py",
            "tests/test_schemathesis.py",
        ],
        cwd=REPO,
        env={**os.environ, "IAMSIGN_FUZZ_EXAMPLES": str(per_target)},
        check=False,
    )
    return done.returncode == 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Load: concurrent end-to-end signing flows against a running service on loopback, and the service's
memory and sweep time while 100,000 requests wait for approval.

Topology (as in production): the sandbox (iAM Smart) as its own process, one ``iamsign serve`` replica with
its embedded workers, on SQLite or on PostgreSQL (127.0.0.1:5432, trust auth, database ``test``); backend
``postgresql+redis``: two replicas without workers and a separate ``iamsign worker`` over PostgreSQL and
the Redis queue (flows alternate between the replicas).

Each flow: upload -> signing request (HKID, PDF mode, at each --level) -> approve on the sandbox phone ->
completed -> download. Reported per concurrency (1, 8, 32 clients): flows per second and p50 / p99 latency
per step, the CPU each flow cost each process (service, sandbox, client, PostgreSQL server) and how many
cores were busy meanwhile, then the ratios issue 14 sets targets for (B-LTA / B-B, PostgreSQL / SQLite). ``--rounds N``
measures everything N times, interleaved, and reports medians (on a shared machine the comparison is then
between neighbours in time). Then ``--pending`` requests (100,000) are left waiting: the first
``--pending-api`` (10,000) created through the API, the rest copies of one of them written into the
database (the API makes about 40 a second here: 100,000 would take 40 minutes per backend); at 0, 10,000
and 100,000 the service's RSS is read and its next sweep passes are timed (the service's own
``iamsign_sweep_duration_seconds`` histogram). ``--rounds 0`` runs only that part.

    python -m benchmarks.load.run [--backends sqlite,postgresql,postgresql+redis] [--level B-B,B-LTA]
        [--clients 1,8,32] [--flows 160] [--rounds 1] [--pending 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from fixtures.generate import simple_pdf
from tests.databases import database_url
from tests.topology import start_topology

SIGNER = "A123456(3)"
STEPS = ("upload", "request", "approve", "completed", "download")


def _report_errors(tmp: Path) -> None:
    """Print what the service and the sandbox logged as errors (the logs vanish with the folder)."""
    for name in ("replica-a.log", "replica-b.log", "worker-a.log", "sandbox.log"):
        path = tmp / name
        if path.exists():
            text = path.read_text(errors="replace")
            print(f"--- {name}, last lines ---\n" + "\n".join(text.splitlines()[-5:]))
            start = text.find("Traceback")
            if start >= 0:
                print(f"--- {name} ---\n{text[start : start + 6000]}")
            for line in text.splitlines():
                if "sandbox /" in line and "->" in line:
                    print(line)


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
CPU_GROUPS = ("service", "sandbox", "client", "database")


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of ``pid``, of its live descendants and of the children it reaped."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        own = sum(int(v) for v in fields[11:15]) / CLOCK_TICKS  # utime, stime, cutime, cstime
        children = [
            int(c)
            for task in Path(f"/proc/{pid}/task").iterdir()
            for c in (task / "children").read_text().split()
        ]
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return own + sum(_cpu_s(c) for c in children)


def _postmaster_pid(database_url: str) -> int:
    """The PostgreSQL server's main process (the parent of our backend): its tree is the server's CPU."""
    import psycopg

    with psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://", 1)) as conn:
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        return int(Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()[1])  # while it lives


def cpu_now(top) -> dict[str, float]:
    """CPU seconds used so far by each part of a topology (``CPU_GROUPS``); the database server only
    for PostgreSQL (SQLite works inside the service). The PostgreSQL server is the machine's: what
    other clients make it do while a round runs counts too, so measure on a quiet machine."""
    service = [r.proc.pid for r in top.replicas] + [w.proc.pid for w in top.extra.get("workers", ())]
    times = os.times()
    return {
        "service": sum(_cpu_s(pid) for pid in service),
        "sandbox": _cpu_s(top.sandbox.proc.pid),
        "client": times.user + times.system,
        "database": _cpu_s(top.extra["postmaster"]) if "postmaster" in top.extra else 0.0,
    }


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def approve_on_phone(phone: httpx.AsyncClient, sign_code: str | None, req: dict) -> None:
    """The signer approves the request showing ``sign_code``. Codes are 4 digits, so another client's
    waiting request can show the same one (the sandbox answers 409 rather than guess); every request
    here is meant to be approved, so then each one showing that code is approved by its businessID
    (409 ``not_pending`` there: the other client approved it first)."""
    r = await phone.post("/sandbox/v1/phone/approve", json={"hkid": SIGNER, "sign_code": sign_code})
    if r.status_code == 409:
        waiting = (await phone.post("/sandbox/v1/phone/pending", json={"hkid": SIGNER})).json()
        for other in (w for w in waiting if w["sign_code"] == sign_code):
            r = await phone.post(f"/sandbox/v1/requests/{other['business_id']}/approve")
            if r.status_code not in (200, 409):
                break
        else:
            return
    if r.status_code != 200:
        raise RuntimeError(f"approve failed: {r.status_code} {r.text[:300]} for {req}")


async def one_flow(
    c: httpx.AsyncClient, phone: httpx.AsyncClient, pdf: bytes, times: dict[str, list[float]], level: str
):
    t = time.perf_counter()
    doc = (await c.post("/v1/documents", files={"file": ("letter.pdf", pdf, "application/pdf")})).json()
    t, times["upload"] = time.perf_counter(), times["upload"] + [time.perf_counter() - t]
    req = (
        await c.post(
            "/v1/signing-requests",
            json={"document_id": doc["id"], "signer": {"hkid": SIGNER}, "level": level},
        )
    ).json()
    t, times["request"] = time.perf_counter(), times["request"] + [time.perf_counter() - t]
    await approve_on_phone(phone, req.get("sign_code"), req)
    t, times["approve"] = time.perf_counter(), times["approve"] + [time.perf_counter() - t]
    deadline = time.monotonic() + 120
    while True:  # as the project's client waits: each read held by the server until the request ends
        body = (await c.get(f"/v1/signing-requests/{req['id']}", params={"wait": 20})).json()
        if body["status"] != "pending" or time.monotonic() > deadline:
            break
    if body["status"] != "completed":
        raise RuntimeError(f"flow ended {body['status']}: {body.get('error')}")
    t, times["completed"] = time.perf_counter(), times["completed"] + [time.perf_counter() - t]
    signed = await c.get(f"/v1/signing-requests/{req['id']}/signed-document")
    signed.raise_for_status()
    times["download"].append(time.perf_counter() - t)


async def flows(
    top, pdf: bytes, clients: int, total: int, level: str
) -> tuple[float, dict[str, list[float]]]:
    """``total`` flows, ``clients`` at a time, spread over the replicas in turn."""
    times: dict[str, list[float]] = {s: [] for s in STEPS}
    sem = asyncio.Semaphore(clients)
    # idle connections are dropped before the servers' own 5 s keep-alive ends: else a request can go out on a
    # connection the server is closing at that moment (httpx.ReadError, seen at 32 clients)
    limits = httpx.Limits(max_connections=clients + 4, keepalive_expiry=2.0)
    async with httpx.AsyncClient(base_url=top.sandbox.url, timeout=120, limits=limits) as phone:
        services = [
            httpx.AsyncClient(
                base_url=r.url, headers={"Authorization": f"Bearer {top.key}"}, timeout=120, limits=limits
            )
            for r in top.replicas
        ]

        async def run(i: int):
            async with sem:
                await one_flow(services[i % len(services)], phone, pdf, times, level)

        try:
            t0 = time.perf_counter()
            await asyncio.gather(*(run(i) for i in range(total)))
            return time.perf_counter() - t0, times
        finally:
            for c in services:
                await c.aclose()


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))] * 1000


SWEEP_PARTS = ("signing_requests", "batches", "envelopes", "retention")


def _sweep_totals(metrics: str) -> dict[str, tuple[float, float]]:
    """(sum of seconds, number of passes) of each sweep part, from a /metrics page."""
    totals: dict[str, list[float]] = {part: [0.0, 0.0] for part in SWEEP_PARTS}
    for line in metrics.splitlines():
        for part in SWEEP_PARTS:
            for suffix, i in (("_sum", 0), ("_count", 1)):
                if line.startswith(f'iamsign_sweep_duration_seconds{suffix}{{part="{part}"}} '):
                    totals[part][i] = float(line.rsplit(" ", 1)[1])
    return {part: (t[0], t[1]) for part, t in totals.items()}


async def sweep_pass_ms(c: httpx.AsyncClient, passes: int = 3, limit_s: float = 60) -> dict[str, float]:
    """Mean time of the next ``passes`` sweep passes, per part, from the service's own histogram. The page is
    read rarely: each read counts every request by status, which would weigh on the passes it times."""
    before = _sweep_totals((await c.get("/metrics")).text)
    deadline = time.monotonic() + limit_s
    await asyncio.sleep(passes + 1)  # the load topology sweeps every second
    while True:
        after = _sweep_totals((await c.get("/metrics")).text)
        done = after["signing_requests"][1] - before["signing_requests"][1]
        if done >= passes or time.monotonic() > deadline:
            break
        await asyncio.sleep(2)
    return {
        part: (after[part][0] - before[part][0]) / max(1.0, after[part][1] - before[part][1]) * 1000
        for part in SWEEP_PARTS
    }


def _copy_pending(database_url: str, count: int) -> None:
    """Write ``count`` copies of one pending request straight into the database (new ids, same content):
    what the sweep scans and what the service would hold, without the hours the API needs to create them."""
    import uuid

    from sqlalchemy import create_engine, insert, select, text

    from api.store.models import SigningRequest

    engine = create_engine(database_url)
    table = SigningRequest.__table__
    with engine.begin() as conn:
        row = dict(conn.execute(select(table).where(table.c.status == "pending").limit(1)).mappings().one())
        for start in range(0, count, 5000):
            rows = []
            for _ in range(min(5000, count - start)):
                key = uuid.uuid4()
                rows.append(
                    {**row, "id": f"sr_{key.hex}", "business_id": str(key), "state": str(uuid.uuid4())}
                )
            conn.execute(insert(table), rows)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            # what autovacuum does within a minute of a bulk change: without fresh statistics the planner
            # takes the table for empty and may walk the wrong sweep index
            conn.execute(text("ANALYZE signing_requests"))
    engine.dispose()


async def pending_hold(
    top, pdf: bytes, total: int, through_api: int, clients: int = 16
) -> list[tuple[int, float, dict]]:
    """Leave ``total`` requests waiting for approval, the first ``through_api`` created through the API and
    the rest copied in the database; at 0, 10,000 and ``total`` read the service's RSS and time its next
    sweep passes (creation pauses while they are timed)."""
    pid = top.replicas[0].proc.pid
    marks = sorted({n for n in (10_000, total) if n <= total})
    sem = asyncio.Semaphore(clients)
    async with httpx.AsyncClient(
        base_url=top.replicas[0].url, headers={"Authorization": f"Bearer {top.key}"}, timeout=120
    ) as c:
        samples = [(0, rss_mb(pid), await sweep_pass_ms(c))]
        doc = (await c.post("/v1/documents", files={"file": ("letter.pdf", pdf, "application/pdf")})).json()

        async def one():
            async with sem:
                r = await c.post(
                    "/v1/signing-requests",
                    json={"document_id": doc["id"], "signer": {"hkid": SIGNER}, "level": "B-B"},
                )
                r.raise_for_status()

        created, started = 0, time.monotonic()
        for mark in marks:
            by_api = max(0, min(mark, through_api) - created)
            await asyncio.gather(*(one() for _ in range(by_api)))
            rate = (created + by_api) / (time.monotonic() - started)
            if mark > created + by_api:
                await asyncio.to_thread(
                    _copy_pending, top.env["IAMSIGN_DATABASE_URL"], mark - created - by_api
                )
            created = mark
            print(
                f"  {created:,} pending ({rate:.0f} created/s through the API)", file=sys.stderr, flush=True
            )
            samples.append((created, rss_mb(pid), await sweep_pass_ms(c)))
    return samples


def _topology(stack: ExitStack, backend: str, tmp: Path, synchronous_commit: str = "on"):
    """``sqlite`` and ``postgresql``: one replica with its embedded workers. ``postgresql+redis``: two
    replicas without workers and one separate ``iamsign worker`` process, on PostgreSQL and the Redis queue
    (127.0.0.1:6379, a queue name of its own)."""
    from tests.processes import ServiceProcess

    env = {
        "IAMSIGN_SWEEP_INTERVAL_S": "1",
        "IAMSIGN_STALE_AFTER_S": "120",
        "IAMSIGN_WORKERS": "4",
        # the pending part takes longer than iAM Smart's 18 minutes to build up: none may expire meanwhile
        "IAMSIGN_REQUEST_TTL_S": "14400",
        "IAMSIGN_DB_SYNCHRONOUS_COMMIT": synchronous_commit,  # PostgreSQL only
    }
    if backend == "sqlite":
        top = start_topology(tmp, f"sqlite:///{tmp / 'iamsign.db'}", replicas=1, extra_env=env)
        stack.callback(top.stop)
        return top
    url = stack.enter_context(database_url("postgresql", tmp))
    if backend == "postgresql":
        top = start_topology(tmp, url, replicas=1, extra_env=env)
        stack.callback(top.stop)
        top.extra["postmaster"] = _postmaster_pid(url)
        return top
    if backend != "postgresql+redis":
        raise SystemExit(f"unknown backend {backend!r}: sqlite, postgresql or postgresql+redis")
    top = start_topology(
        tmp,
        url,
        replicas=2,
        queue_url="redis://127.0.0.1:6379/0",
        extra_env={**env, "IAMSIGN_EMBEDDED_WORKER": "false"},
    )
    stack.callback(top.stop)
    worker = ServiceProcess(
        "worker-a", ["worker", "--data-dir", str(top.data), "--workers", "4"], top.env, tmp
    ).start(wait=False)
    stack.callback(worker.stop)
    top.extra["workers"] = [worker]
    top.extra["postmaster"] = _postmaster_pid(url)
    return top


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--level", default="B-B,B-LTA", help="levels, comma-separated (default B-B,B-LTA)")
    parser.add_argument("--clients", default="1,8,32", help="concurrency levels, comma-separated")
    parser.add_argument(
        "--flows", type=int, default=160, help="flows per concurrency level (at least 4x clients)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure every (backend, level, clients) this many times, interleaved, and report the median "
        "flows/s: on a shared machine the ratios then compare like with like",
    )
    parser.add_argument(
        "--pending-api",
        type=int,
        default=10_000,
        help="how many of them to create through the API (about 40/s here); the rest are copied in the database",
    )
    parser.add_argument(
        "--pg-synchronous-commit",
        choices=("on", "off"),
        default="on",
        help="the service's IAMSIGN_DB_SYNCHRONOUS_COMMIT on PostgreSQL: on (the default, every commit waits "
        "for the disk) or off (the durability of SQLite's WAL + synchronous=NORMAL, which the SQLite runs use)",
    )
    parser.add_argument(
        "--pending", type=int, default=100_000, help="requests left waiting at the end (0 skips that part)"
    )
    args = parser.parse_args()
    backends = [v.strip() for v in args.backends.split(",") if v.strip()]
    levels = [v.strip() for v in args.level.split(",") if v.strip()]
    concurrency = [int(v) for v in args.clients.split(",") if v.strip()]
    rates: dict[tuple[str, str, int], list[float]] = {}
    samples: dict[tuple[str, str, int], dict[str, list[float]]] = {}
    cpu: dict[tuple[str, str, int], dict[str, float]] = {}  # CPU seconds per group, summed over rounds
    busy: dict[tuple[str, str, int], list[float]] = {}  # wall seconds and flows, summed over rounds

    with ExitStack() as stack:
        tops, pdf = {}, b""
        for backend in backends:  # every backend up at once, so that the rounds can interleave
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"iamsign-load-{backend}-")))
            top = _topology(stack, backend, tmp, args.pg_synchronous_commit)
            stack.callback(_report_errors, tmp)
            top.proxy_state["default"] = top.replicas[0].url
            pdf = simple_pdf(tmp / "letter.pdf").read_bytes()
            tops[backend] = top
        for _ in range(args.rounds):
            for clients in concurrency:
                total = max(args.flows if clients > 1 else args.flows // 8, clients * 4)
                for level in levels:
                    for backend in backends:
                        before = cpu_now(tops[backend])
                        wall, times = asyncio.run(flows(tops[backend], pdf, clients, total, level))
                        after = cpu_now(tops[backend])
                        key = (backend, level, clients)
                        rates.setdefault(key, []).append(total / wall)
                        used = cpu.setdefault(key, dict.fromkeys(CPU_GROUPS, 0.0))
                        for group in CPU_GROUPS:
                            used[group] += after[group] - before[group]
                        spent = busy.setdefault(key, [0.0, 0.0])
                        spent[0], spent[1] = spent[0] + wall, spent[1] + total
                        pooled = samples.setdefault((backend, level, clients), {s: [] for s in STEPS})
                        for step in STEPS:
                            pooled[step] += times[step]
        for backend in backends if rates else ():
            for level in levels:
                print(f"\n### {backend}: end-to-end flows ({level}, PDF mode, HKID signer)\n")
                print(
                    "| clients | flows | flows/s (median of rounds) | "
                    + " | ".join(f"{s} p50 / p99 (ms)" for s in STEPS)
                    + " |"
                )
                print("|---|---|---|" + "---|" * len(STEPS))
                for clients in concurrency:
                    times = samples[backend, level, clients]
                    cells = " | ".join(f"{pct(times[s], 50):.0f} / {pct(times[s], 99):.0f}" for s in STEPS)
                    runs = ", ".join(f"{r:.1f}" for r in rates[backend, level, clients])
                    print(
                        f"| {clients} | {len(times['upload'])} | "
                        f"{statistics.median(rates[backend, level, clients]):.1f} ({runs}) | {cells} |"
                    )
        if cpu:
            print_cpu(cpu, busy)
        if args.pending:
            for backend in backends:
                held = asyncio.run(pending_hold(tops[backend], pdf, args.pending, args.pending_api))
                print(f"\n### {backend}: the service while requests wait for approval\n")
                print(
                    "| pending requests | RSS of the service (MB) | sweep pass: signing requests (ms) "
                    "| sweep pass: all parts (ms) |"
                )
                print("|---|---|---|---|")
                for n, mb, sweep in held:
                    print(
                        f"| {n:,} | {mb:.0f} | {sweep['signing_requests']:.1f} | {sum(sweep.values()):.1f} |"
                    )
    print_ratios({k: statistics.median(v) for k, v in rates.items()})


def print_cpu(
    cpu: dict[tuple[str, str, int], dict[str, float]], busy: dict[tuple[str, str, int], list[float]]
):
    """Where each flow's CPU went, per process, and how busy the machine's cores were meanwhile: on a
    machine whose cores are all busy, flows/s follow the total CPU per flow."""
    cores = os.cpu_count() or 1
    print("\n### CPU per flow (ms, all rounds)\n")
    print(
        "| database | level | clients | " + " | ".join(CPU_GROUPS) + f" | total | cores busy (of {cores}) |"
    )
    print("|---|---|---|" + "---|" * (len(CPU_GROUPS) + 2))
    for (backend, level, clients), used in cpu.items():
        wall, total = busy[backend, level, clients]
        cells = " | ".join(f"{used[g] / total * 1000:.0f}" for g in CPU_GROUPS)
        everything = sum(used.values())
        print(
            f"| {backend} | {level} | {clients} | {cells} | {everything / total * 1000:.0f} | "
            f"{everything / wall:.2f} |"
        )


def print_ratios(rates: dict[tuple[str, str, int], float]) -> None:
    """The ratios issue 14 sets targets for, from the flows/s measured above (same run)."""
    print("\n### ratios (same run)\n")
    print("| ratio | clients | value | target |")
    print("|---|---|---|---|")
    for (backend, level, clients), rate in sorted(rates.items()):
        if level == "B-LTA" and (backend, "B-B", clients) in rates:
            value = rate / rates[backend, "B-B", clients]
            print(f"| {backend} B-LTA / B-B flows/s | {clients} | {value:.2f} | >= 0.6 at 8 clients |")
        if backend == "postgresql" and ("sqlite", level, clients) in rates:
            value = rate / rates["sqlite", level, clients]
            print(f"| PostgreSQL / SQLite flows/s at {level} | {clients} | {value:.2f} | >= 1.0 |")


if __name__ == "__main__":
    main()

"""Batch signing through the service against the core library's own time, in one run.

Starts ``iamsign serve`` (embedded defaults: SQLite, local files, the sandbox) on a loopback port, uploads N
one-page PDFs, signs them as ONE batch with the sandbox user on auto-approve, and compares the batch's wall
time (POST /v1/batches until every document is signed) with the sum of the core's prepare+finish times for
the same files measured in this process (the simulated phone's signing excluded from that sum).

    python benchmarks/batch_1000.py [--documents 1000] [--level B-B]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SIGNER = "A123456(3)"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def core_time(files: list[Path], work: Path, level: str) -> float:
    """Sum of prepare + finish over ``files`` (sequential, one process), the phone's time left out."""
    from signing import pades
    from signing.model import PadesLevel, RemoteMode, SignOptions
    from signing.sandbox.pki import SandboxPki

    pki = SandboxPki.open_or_create(work / "core-pki", "http://127.0.0.1:9/pki")
    issued = pki.issue_signer("CHAN Tai Man 陳大文")
    from signing.sandbox.remote_signer import SimulatedSigner

    phone = SimulatedSigner(issued.certificate, issued.private_key, [pki.issuing_ca])
    total = 0.0

    async def run() -> float:
        spent = 0.0
        opts = SignOptions(mode=RemoteMode.PDF, level=PadesLevel(level))
        for i, f in enumerate(files):
            prepared, out = work / f"core-{i}.prepared.pdf", work / f"core-{i}.pdf"
            t0 = time.perf_counter()
            record = await pades.prepare_for_signing(f, prepared, opts)
            spent += time.perf_counter() - t0
            cms_der = await phone.sign_pdf_digest(record.document_digest, dt.datetime.now(dt.UTC))
            t0 = time.perf_counter()
            await pades.finish_with_cms(record, prepared, out, cms_der)
            spent += time.perf_counter() - t0
            out.unlink()
        return spent

    if level != "B-B":
        raise SystemExit(
            "the core baseline runs offline: use --level B-B (the service's TSA/OCSP would be unfair)"
        )
    total = asyncio.run(run())
    return total


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--level", default="B-B")
    args = parser.parse_args()

    from fixtures.generate import simple_pdf

    with tempfile.TemporaryDirectory(prefix="iamsign-batch-bench-") as tmp:
        tmp = Path(tmp)
        files = [simple_pdf(tmp / f"letter-{i:04d}.pdf", text=f"letter {i}") for i in range(args.documents)]
        port, data = _free_port(), tmp / "data"
        env = {**os.environ, "IAMSIGN_SWEEP_INTERVAL_S": "1"}
        server = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--port", str(port), "--data-dir", str(data)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            key = subprocess.run(
                [sys.executable, "-m", "api.cli", "keys", "create", "Bench", "--data-dir", str(data)],
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            headers = {"Authorization": f"Bearer {key}"}
            with httpx.Client(base_url=base, headers=headers, timeout=600) as c:
                c.post(
                    "/sandbox/v1/users/update",
                    json={"hkid": SIGNER, "auto_action": "approve", "auto_delay_ms": 0},
                ).raise_for_status()
                t0 = time.perf_counter()

                def upload(f: Path) -> str:
                    r = c.post("/v1/documents", files={"file": (f.name, f.read_bytes(), "application/pdf")})
                    r.raise_for_status()
                    return r.json()["id"]

                with ThreadPoolExecutor(8) as pool:
                    ids = list(pool.map(upload, files))
                upload_s = time.perf_counter() - t0

                t0 = time.perf_counter()
                r = c.post(
                    "/v1/batches", json={"document_ids": ids, "signer": {"hkid": SIGNER}, "level": args.level}
                )
                r.raise_for_status()
                batch = r.json()
                created_s = time.perf_counter() - t0
                while batch["status"] in ("pending", "signing"):
                    time.sleep(0.05)
                    batch = c.get(f"/v1/batches/{batch['id']}").json()
                batch_s = time.perf_counter() - t0
                assert batch["status"] == "completed", batch["status"]
                t1 = time.perf_counter()
                z = c.get(f"/v1/batches/{batch['id']}/signed.zip")
                zip_s = time.perf_counter() - t1
        finally:
            server.terminate()
            server.wait(timeout=30)
        core_s = core_time(files, tmp, args.level)

    print(f"{args.documents} one-page PDFs, one batch, level {args.level}, {os.cpu_count()} cores")
    print("| step | time |")
    print("|---|---|")
    print(f"| upload (8 parallel clients, not part of the batch) | {upload_s:.2f} s |")
    print(f"| POST /v1/batches (prepare all, send the bulk request) | {created_s:.2f} s |")
    print(f"| batch wall time: POST until every document signed | {batch_s:.2f} s |")
    print(f"| core library prepare+finish, summed, same files | {core_s:.2f} s |")
    print(f"| **ratio batch / core** (target <= 1.5x) | **{batch_s / core_s:.2f}x** |")
    print(f"| download all as one zip ({len(z.content) / 1e6:.1f} MB) | {zip_s:.2f} s |")


if __name__ == "__main__":
    main()

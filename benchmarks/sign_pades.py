"""Signing speed and memory: the project's prepare+finish against pyHanko's one-shot sign_pdf and SHA-256.

One run, same generated inputs (1 MB and 250 MB), same RSA-2048 key. The project's two phases run with a
local key standing in for the phone (hash mode, known certificate, PAdES B-B, so no network is timed).
Each measurement runs in a fresh child process so that its peak RSS is its own; inputs over 10 MB are
measured in rounds (every kind once per round, after a warm-up run), so that load from elsewhere on the
machine weighs on all kinds alike. Targets (issue 14):
signing 250 MB at most 1.8x one SHA-256 pass over the input, peak RSS under 100 MB.

The prepared copy is read, hashed and written in one pass (signing/onepass.py: hashing in a helper
thread one chunk behind the writes, write-back started as it goes); pyHanko's digest then skips the
already-hashed source and only the appended update is hashed. Before, the kernel copy, pyHanko's
hashing pass over the copy and the fsync of 250 MB of dirty pages ran one after the other. What is
left over one SHA-256 pass is mostly the disk: writing 250 MB and the fsync that publishes them.

    python benchmarks/sign_pades.py [--sizes 1,250] [--repeat-small 15] [--repeat-large 3]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _sha256_pass(path: Path) -> None:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)


async def _pyhanko_one_shot(src: Path, out: Path, ctx: dict) -> None:
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import signers
    from pyhanko.sign.fields import SigSeedSubFilter

    meta = signers.PdfSignatureMetadata(
        field_name="Signature1", md_algorithm="sha256", subfilter=SigSeedSubFilter.PADES
    )
    # file-backed like the project's own path, so the two compare fairly; nothing else runs on this loop
    with open(src, "rb") as inf, open(out, "w+b") as outf:  # noqa: ASYNC230
        await signers.async_sign_pdf(
            IncrementalPdfFileWriter(inf), meta, signer=ctx["simple_signer"], output=outf
        )


async def _project(src: Path, out: Path, ctx: dict) -> None:
    from signing import pades
    from signing.model import PadesLevel, RemoteMode, SignOptions

    prepared = out.with_suffix(".prepared.pdf")
    opts = SignOptions(mode=RemoteMode.HASH, level=PadesLevel.B_B, signer_certificate_der=ctx["cert_der"])
    record = await pades.prepare_for_signing(src, prepared, opts)
    signature = ctx["phone"].sign_hash(record.to_be_signed)
    await pades.finish_with_raw_signature(record, prepared, out, signature, ctx["cert_der"])


def _context(key_dir: Path) -> dict:
    from asn1crypto import algos, keys, x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding
    from pyhanko.sign import signers
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    from signing.sandbox.pki import SandboxPki
    from signing.sandbox.remote_signer import SimulatedSigner

    pki = SandboxPki(key_dir)
    cert = pki.certs["tsa"]  # any RSA-2048 leaf of the PKI will do as the "user" key for timing
    key = pki.keys["tsa"]
    cert_der = cert.public_bytes(serialization.Encoding.DER)
    asn1_cert = x509.Certificate.load(cert_der)
    key_info = keys.PrivateKeyInfo.load(
        key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    del key_info

    class PreloadedKeySigner(signers.Signer):
        """pyHanko's Signer with the key already loaded, as the phone stand-in has it (SimpleSigner
        reloads its key for every signature, about 30 ms that would flatter the comparison)."""

        def __init__(self) -> None:
            super().__init__(
                signing_cert=asn1_cert,
                cert_registry=SimpleCertificateStore.from_certs([asn1_cert]),
                signature_mechanism=algos.SignedDigestAlgorithm({"algorithm": "sha256_rsa"}),
            )

        async def async_sign_raw(self, data: bytes, digest_algorithm: str, dry_run: bool = False) -> bytes:
            if dry_run:
                return bytes(256)
            return key.sign(data, padding.PKCS1v15(), hashes.SHA256())

    return {
        "cert_der": cert_der,
        "phone": SimulatedSigner(cert, key, []),
        "simple_signer": PreloadedKeySigner(),
    }


def child(kind: str, src: Path, work: Path, repeat: int, key_dir: Path) -> None:
    """Run one kind of measurement ``repeat`` times; print timings and peak RSS as JSON."""
    ctx = _context(key_dir) if kind != "sha256" else {}
    times = []
    for i in range(repeat):
        out = work / f"{kind}-{i}.pdf"
        os.sync()  # start every run with no dirty pages of earlier runs waiting to be written back
        t0 = time.perf_counter()
        if kind == "sha256":
            _sha256_pass(src)
        elif kind == "pyhanko":
            asyncio.run(_pyhanko_one_shot(src, out, ctx))
        else:
            asyncio.run(_project(src, out, ctx))
        times.append(time.perf_counter() - t0)
        out.unlink(missing_ok=True)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"times": times, "peak_rss_mb": rss_mb}))


def _measure_rounds(kinds: tuple[str, ...], src: Path, work: Path, rounds: int, key_dir: Path) -> dict:
    """Large inputs: ``rounds`` rounds, each running every kind once (after a warm-up run) in a fresh child,
    so that load from elsewhere on the machine weighs on every kind alike; medians of the rounds."""
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    rss: dict[str, float] = dict.fromkeys(kinds, 0.0)
    for _ in range(rounds):
        for kind in kinds:
            data = _run_child(kind, src, work, 2, key_dir)
            times[kind].append(data["times"][-1])
            rss[kind] = max(rss[kind], data["peak_rss_mb"])
    return {kind: {"median_s": statistics.median(times[kind]), "peak_rss_mb": rss[kind]} for kind in kinds}


def _run_child(kind: str, src: Path, work: Path, repeat: int, key_dir: Path) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(src), str(work), str(repeat), str(key_dir)],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _measure(kind: str, src: Path, work: Path, repeat: int, key_dir: Path) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(src), str(work), str(repeat), str(key_dir)],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    data = json.loads(done.stdout.strip().splitlines()[-1])
    # drop the first run (imports, font caches) when there are several
    runs = data["times"][1:] if len(data["times"]) > 2 else data["times"]
    return {"median_s": statistics.median(runs), "peak_rss_mb": data["peak_rss_mb"]}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1,250", help="input sizes in MB, comma-separated")
    parser.add_argument("--repeat-small", type=int, default=15)
    parser.add_argument("--repeat-large", type=int, default=3, help="rounds for inputs over 10 MB")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, src, work, repeat, key_dir = args.child
        child(kind, Path(src), Path(work), int(repeat), Path(key_dir))
        return

    from fixtures.generate import large_pdf
    from signing.sandbox.pki import SandboxPki

    with tempfile.TemporaryDirectory(prefix="iamsign-bench-") as tmp:
        tmp = Path(tmp)
        key_dir = tmp / "pki"
        SandboxPki.create(key_dir, "http://127.0.0.1:9/pki")
        rows = []
        for size in (int(s) for s in args.sizes.split(",")):
            src = large_pdf(tmp / f"in-{size}mb.pdf", size_mb=size)
            repeat = args.repeat_small if size <= 10 else args.repeat_large
            kinds = ("sha256", "pyhanko", "project")
            if size <= 10:
                r = {kind: _measure(kind, src, tmp, repeat, key_dir) for kind in kinds}
            else:
                r = _measure_rounds(kinds, src, tmp, repeat, key_dir)
            rows.append((size, r))
        print(
            f"{'input':>8} | {'SHA-256 pass':>12} | {'pyHanko one-shot':>16} | {'iamsign prepare+finish':>22} |"
            f" {'vs pyHanko':>10} | {'vs SHA-256':>10} | {'peak RSS iamsign':>16} | {'peak RSS pyHanko':>16}"
        )
        print("-" * 140)
        for size, r in rows:
            p, h, s = r["project"], r["pyhanko"], r["sha256"]
            print(
                f"{size:>5} MB | {s['median_s'] * 1000:>9.1f} ms | {h['median_s'] * 1000:>13.1f} ms |"
                f" {p['median_s'] * 1000:>19.1f} ms | {p['median_s'] / h['median_s']:>9.2f}x |"
                f" {p['median_s'] / s['median_s']:>9.2f}x | {p['peak_rss_mb']:>13.0f} MB | {h['peak_rss_mb']:>13.0f} MB"
            )


if __name__ == "__main__":
    main()

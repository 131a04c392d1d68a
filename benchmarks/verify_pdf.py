"""Verification speed and memory: ``signing.verify`` against pyHanko's ``validate_pdf_signature``.

One run, same inputs (1 MB and 250 MB, signed once at PAdES B-B with an RSA-2048 key of a throw-away
sandbox PKI), same trust root, offline. pyHanko runs its classic API (soft-fail revocation, the
default); iamsign runs the whole report (ETSI process with revocation required, own chain check at T,
difference analysis, ETO mapping). Each measurement runs in a fresh child process so that its peak RSS
is its own. Targets (issue 5): at most 1.3x pyHanko's time at 1 MB; under 150 MB peak RSS at 250 MB;
(issue 14) at most 1.2x at 250 MB.

Many signatures (issue 14, target at most 1.0x): ``--signers`` people (25) sign a 1 MB file one after
another at B-LT through the signing core, each adding its signature and then its DSS update (two
revisions each), against the sandbox TSA, OCSP and CRL served over loopback. pyHanko's own checks for
that file: per signature a validation context fed from the DSS with revocation required (what the
report requires) and ``validate_pdf_signature`` with its difference analysis. iamsign runs the whole
report offline (ETSI with-time process per signature, chain at T, difference analysis, ETO). The two
alternate in one process after a warm-up each, as this case takes seconds per run.

Where the time went before (profiled on the 25-signature file): pyHanko's difference analysis, once
per signature over every later revision, asks which revision introduced an object tens of thousands
of times, each a walk over all 50 xref sections; and every signature re-parsed the DSS and
re-registered its certificates, CRLs and OCSP responses. Now the revision index is memoised per file
and the DSS knowledge and validation data handlers are built once per file (signing/verify/shared.py).
At 250 MB the report's file SHA-256 was a second pass over the file; now every digest comes from one
read (signing/verify/digests.py).

    python benchmarks/verify_pdf.py [--sizes 1,250] [--repeat-small 15] [--repeat-large 3]
        [--signers 25] [--repeat-many 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


async def _pyhanko_ltv(path: Path, root_pem: Path) -> None:
    """pyHanko's own checks on an LTV file: per signature a context fed from the DSS (revocation
    required, as the report does), ``validate_pdf_signature`` with difference analysis."""
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import async_validate_pdf_signature
    from pyhanko.sign.validation.dss import DocumentSecurityStore

    from signing.trust import load_certificates

    with open(path, "rb") as f:  # noqa: ASYNC230 - pyHanko reads synchronously anyway
        reader = PdfFileReader(f)
        for emb in reader.embedded_signatures:
            vc = DocumentSecurityStore.read_dss(reader).as_validation_context(
                {
                    "trust_roots": load_certificates(root_pem),
                    "allow_fetching": False,
                    "revocation_mode": "require",
                }
            )
            await async_validate_pdf_signature(emb, vc)
            await vc.aclose()


async def _pyhanko(path: Path, root_pem: Path) -> None:
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import async_validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    from signing.trust import load_certificates

    with open(path, "rb") as f:  # noqa: ASYNC230 - pyHanko reads synchronously anyway
        for emb in PdfFileReader(f).embedded_signatures:
            vc = ValidationContext(trust_roots=load_certificates(root_pem), allow_fetching=False)
            await async_validate_pdf_signature(emb, vc)
            await vc.aclose()


async def _project(path: Path, root_pem: Path) -> None:
    from signing.trust import TrustList, load_certificates
    from signing.verify import VerifyOptions, verify_pdf

    trust = TrustList.empty().with_roots(load_certificates(root_pem))
    report = await verify_pdf(path, VerifyOptions(trust=trust, offline=True))
    report.to_json()


def child(kind: str, src: Path, repeat: int, root_pem: Path) -> None:
    """Run one kind of measurement ``repeat`` times; print timings and peak RSS as JSON."""
    import logging

    logging.disable(logging.CRITICAL)
    if kind == "ltv-pair":
        _child_pair(src, repeat, root_pem)
        return
    run = {"pyhanko": _pyhanko, "pyhanko-ltv": _pyhanko_ltv}.get(kind, _project)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        asyncio.run(run(src, root_pem))
        times.append(time.perf_counter() - t0)
    print(
        json.dumps({"times": times, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
    )


def _child_pair(src: Path, repeat: int, root_pem: Path) -> None:
    """pyHanko and iamsign on the LTV file, alternating in one process (a warm-up of each first), so
    that load from elsewhere on the machine weighs on both alike; print both medians as JSON."""
    runs: dict[str, list[float]] = {"pyhanko-ltv": [], "project": []}
    for i in range(repeat + 1):
        for kind, run in (("pyhanko-ltv", _pyhanko_ltv), ("project", _project)):
            t0 = time.perf_counter()
            asyncio.run(run(src, root_pem))
            if i:
                runs[kind].append(time.perf_counter() - t0)
    print(json.dumps({kind: {"median_s": statistics.median(t)} for kind, t in runs.items()}))


def _measure(kind: str, src: Path, repeat: int, root_pem: Path) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(src), str(repeat), str(root_pem)],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    data = json.loads(done.stdout.strip().splitlines()[-1])
    runs = data["times"][1:] if len(data["times"]) > 2 else data["times"]  # drop the warm-up run
    return {"median_s": statistics.median(runs), "peak_rss_mb": data["peak_rss_mb"]}


async def _sign(src: Path, out: Path, key_dir: Path) -> None:
    from signing import pades
    from signing.model import PadesLevel, RemoteMode, SignOptions
    from signing.sandbox.pki import SandboxPki
    from signing.sandbox.remote_signer import SimulatedSigner

    pki = SandboxPki(key_dir)
    issued = pki.issue_signer("Benchmark Signer")
    phone = SimulatedSigner(issued.certificate, issued.private_key, [pki.issuing_ca])
    prepared = out.with_suffix(".prepared.pdf")
    opts = SignOptions(mode=RemoteMode.HASH, level=PadesLevel.B_B, signer_certificate_der=issued.cert_der)
    record = await pades.prepare_for_signing(src, prepared, opts)
    await pades.finish_with_raw_signature(
        record, prepared, out, phone.sign_hash(record.to_be_signed), issued.cert_der
    )
    prepared.unlink(missing_ok=True)


async def _sign_many(src: Path, out: Path, key_dir: Path, signers: int) -> None:
    """``signers`` people sign one after another at B-LT: each adds a signature (with its timestamp) and
    then its DSS update, against the sandbox TSA, OCSP and CRL served over loopback."""
    from asn1crypto import x509 as asn1_x509
    from cryptography.hazmat.primitives import serialization
    from fastapi import FastAPI

    from api.sandbox.pki import pki_router
    from signing import pades
    from signing.model import PadesLevel, RemoteMode, SignOptions
    from signing.sandbox.pki import SandboxPki
    from signing.sandbox.remote_signer import SimulatedSigner
    from signing.services import SigningServices
    from tests.support import LoopbackServer

    def asn1(cert) -> asn1_x509.Certificate:
        return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))

    server = LoopbackServer()
    pki = SandboxPki.open_or_create(key_dir, f"{server.url}/pki")
    app = FastAPI()
    app.include_router(pki_router(lambda: pki), prefix="/pki")
    with server.start(app):
        services = SigningServices.with_tsa_url(
            f"{server.url}/pki/tsa", trust_roots=[asn1(pki.root)], other_certs=[asn1(pki.issuing_ca)]
        )
        current = src
        for n in range(1, signers + 1):
            issued = pki.issue_signer(f"Benchmark Signer {n}")
            phone = SimulatedSigner(issued.certificate, issued.private_key, [pki.issuing_ca])
            step = out.with_name(f"{out.stem}-{n}.pdf")
            prepared = step.with_suffix(".prepared.pdf")
            opts = SignOptions(
                mode=RemoteMode.HASH, level=PadesLevel.B_LT, signer_certificate_der=issued.cert_der
            )
            record = await pades.prepare_for_signing(current, prepared, opts)
            await pades.finish_with_raw_signature(
                record, prepared, step, phone.sign_hash(record.to_be_signed), issued.cert_der, services
            )
            if current != src:
                current.unlink()
            current = step
        current.rename(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1,250", help="input sizes in MB, comma-separated")
    parser.add_argument("--repeat-small", type=int, default=15)
    parser.add_argument("--repeat-large", type=int, default=3)
    parser.add_argument("--signers", type=int, default=25, help="signatures in the LTV file (0: skip it)")
    parser.add_argument("--repeat-many", type=int, default=3)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, src, repeat, root_pem = args.child
        child(kind, Path(src), int(repeat), Path(root_pem))
        return

    from fixtures.generate import large_pdf
    from signing.sandbox.pki import SandboxPki

    with tempfile.TemporaryDirectory(prefix="iamsign-verify-bench-") as tmp:
        tmp = Path(tmp)
        key_dir = tmp / "pki"
        SandboxPki.create(key_dir, "http://127.0.0.1:9/pki")
        root_pem = key_dir / "root.cert.pem"
        rows = []
        for size in (int(s) for s in args.sizes.split(",")):
            src = large_pdf(tmp / f"in-{size}mb.pdf", size_mb=size)
            signed = tmp / f"signed-{size}mb.pdf"
            asyncio.run(_sign(src, signed, key_dir))
            src.unlink()
            repeat = args.repeat_small if size <= 10 else args.repeat_large
            rows.append(
                (size, {kind: _measure(kind, signed, repeat, root_pem) for kind in ("pyhanko", "project")})
            )
            signed.unlink()
        many = None
        if args.signers:
            ltv_keys = tmp / "pki-ltv"
            src = large_pdf(tmp / "in-many.pdf", size_mb=1)
            signed = tmp / "signed-many.pdf"
            asyncio.run(_sign_many(src, signed, ltv_keys, args.signers))
            ltv_root = ltv_keys / "root.cert.pem"
            done = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    "ltv-pair",
                    str(signed),
                    str(args.repeat_many),
                    str(ltv_root),
                ],
                check=True,
                capture_output=True,
                text=True,
                cwd=REPO,
            )
            many = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"{'input':>8} | {'pyHanko validate_pdf_signature':>30} | {'iamsign verify':>14} | {'ratio':>6} |"
            f" {'peak RSS iamsign':>16} | {'peak RSS pyHanko':>16}"
        )
        print("-" * 100)
        for size, r in rows:
            p, h = r["project"], r["pyhanko"]
            print(
                f"{size:>5} MB | {h['median_s'] * 1000:>27.1f} ms | {p['median_s'] * 1000:>11.1f} ms |"
                f" {p['median_s'] / h['median_s']:>5.2f}x | {p['peak_rss_mb']:>13.0f} MB | {h['peak_rss_mb']:>13.0f} MB"
            )
        if many is not None:
            p, h = many["project"], many["pyhanko-ltv"]
            print(
                f"\n{args.signers} signatures at B-LT, each with its DSS update ({2 * args.signers} revisions):"
                f" pyHanko (DSS context, validate_pdf_signature per signature) {h['median_s'] * 1000:.0f} ms,"
                f" iamsign verify {p['median_s'] * 1000:.0f} ms, ratio {p['median_s'] / h['median_s']:.2f}x"
                " (target <= 1.0x)"
            )


if __name__ == "__main__":
    main()

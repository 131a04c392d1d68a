"""CPU-heavy signing work in worker processes, so that batches use every core (pyHanko is pure Python).

The functions here take and return plain data (paths, JSON, bytes) so that they cross process borders.
"""

from __future__ import annotations

import asyncio
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

__all__ = [
    "CpuPool",
    "chunks",
    "die_with_parent",
    "finish_pdf",
    "finish_pdfs",
    "prepare_pdfs",
    "verify_hash_signatures",
    "verify_pdf_signatures",
]


def _services(spec: dict):
    from asn1crypto import x509

    from signing.services import SigningServices

    roots = [x509.Certificate.load(d) for d in spec["roots"]]
    others = [x509.Certificate.load(d) for d in spec["others"]]
    if spec.get("tsa_url"):
        return SigningServices.with_tsa_url(spec["tsa_url"], trust_roots=roots, other_certs=others)
    return SigningServices(trust_roots=roots, other_certs=others)


def prepare_pdfs(jobs: list[tuple[str, str]], options: dict[str, Any]) -> list[str]:
    """Phase 1 for ``(source, prepared)`` pairs; each record as JSON, or ``error:code:message``.

    ``options["mode"]`` is ``pdf`` (default) or ``hash``; in hash mode ``signer_certificate_der`` (the
    enrolled certificate) makes every signature PAdES baseline.
    """
    from signing import pades
    from signing.errors import SigningError
    from signing.model import PadesLevel, RemoteMode, SignOptions

    opts = SignOptions(
        mode=RemoteMode(options.get("mode", "pdf")),
        level=PadesLevel(options["level"]),
        reason=options.get("reason"),
        location=options.get("location"),
        signer_certificate_der=options.get("signer_certificate_der"),
    )

    async def run() -> list[str]:
        out = []
        for source, prepared in jobs:
            try:
                out.append((await pades.prepare_for_signing(Path(source), Path(prepared), opts)).dumps())
            except SigningError as exc:
                out.append(f"error:{exc.code}:{exc.message}")
        return out

    return asyncio.run(run())


def verify_pdf_signatures(jobs: list[tuple[str, str, bytes]], issuers_der: list[bytes]) -> list[str]:
    """The ids among ``(id, record_json, cms_der)`` whose CMS fits its record and comes from an issuer."""
    from cryptography import x509

    from api.flows.iamsmart_gateway import issued_by_trusted_issuer
    from signing.cms import check_external_cms
    from signing.errors import SigningError
    from signing.model import PreparedSignature

    issuers = tuple(x509.load_der_x509_certificate(d) for d in issuers_der)
    good = []
    for item_id, record_json, cms_der in jobs:
        record = PreparedSignature.loads(record_json)
        try:
            checked = check_external_cms(cms_der, record.document_digest, record.md_algorithm, record.profile)
        except SigningError:
            continue
        if issued_by_trusted_issuer(checked.signer_cert.dump(), issuers) is not None:
            good.append(item_id)
    return good


def verify_hash_signatures(
    jobs: list[tuple[str, str, bytes]],
    cert_der: bytes,
    issuers_der: list[bytes],
    same_certificate: bool = True,
) -> list[str]:
    """The ids among ``(id, record_json, signature)`` whose raw signature by ``cert_der`` covers the record's
    signed attributes, for the certificate the record was built for (unless ``same_certificate`` is False:
    then only the signature counts), from an iAM Smart-Cert issuer."""
    from cryptography import x509

    from api.flows.iamsmart_gateway import issued_by_trusted_issuer
    from signing import cms as cms_checks
    from signing.errors import SigningError
    from signing.model import PreparedSignature

    issuers = tuple(x509.load_der_x509_certificate(d) for d in issuers_der)
    if issued_by_trusted_issuer(cert_der, issuers) is None:
        return []
    cert = cms_checks.load_certificate(cert_der)
    good = []
    for item_id, record_json, signature in jobs:
        record = PreparedSignature.loads(record_json)
        try:
            if same_certificate:
                cms_checks.check_certificate_matches(record.signer_certificate_der, cert)
            cms_checks.verify_raw_signature(signature, record.signed_attrs_der or b"", cert)
        except SigningError:
            continue
        good.append(item_id)
    return good


# Documents of one chunk finished at the same time: their TSA round trips overlap (pyHanko's own work
# between them is CPU and stays serial); validation data is shared through signing.ltv's cache.
FINISH_CONCURRENCY = 8


def finish_pdfs(jobs: list[tuple[str, str, str, Any]], spec: dict) -> list[dict[str, Any]]:
    """:func:`finish_pdf` for ``(record_json, prepared, output, cms_der)`` jobs, in one event loop, up to
    :data:`FINISH_CONCURRENCY` at a time, with one set of signing services for all."""
    from signing.observe import shared_tsa_session

    services = _services(spec)

    async def run() -> list[dict[str, Any]]:
        gate = asyncio.Semaphore(FINISH_CONCURRENCY)

        async def one(job: tuple[str, str, str, Any]) -> dict[str, Any]:
            record_json, prepared, output, answer = job
            async with gate:
                return await _finish_one(record_json, prepared, output, answer, services)

        async with shared_tsa_session():  # the chunk's TSA round trips reuse their connections
            return list(await asyncio.gather(*(one(job) for job in jobs)))

    return asyncio.run(run())


def chunks(seq: list, parts: int, at_most: int = 50) -> list[list]:
    """``seq`` cut into about ``parts`` pieces of at most ``at_most`` (fewer round trips to the workers)."""
    if not seq:
        return []
    size = max(1, min(at_most, -(-len(seq) // parts)))
    return [seq[i : i + size] for i in range(0, len(seq), size)]


def finish_pdf(
    record_json: str, prepared: str, output: str, answer: bytes | tuple[bytes, bytes], spec: dict
) -> dict[str, Any]:
    """Phase 2 for one document, plus what storage needs of the result (see :func:`_finish_one`)."""
    return asyncio.run(_finish_one(record_json, prepared, output, answer, _services(spec)))


async def _finish_one(
    record_json: str, prepared: str, output: str, answer: bytes | tuple[bytes, bytes], services
) -> dict[str, Any]:
    """Phase 2 for one document, plus what storage needs of the result.

    ``answer`` is iAM Smart's CMS (PDF mode) or ``(signature, certificate DER)`` (hash mode).
    ``{"sha256", "size", "added_signatures", "signature"}`` on success (the signature, plus the document
    timestamp at B-LTA; ``signature`` is the achieved summary read from the file), ``{"error":
    "code:message"}`` otherwise. An output left complete by an earlier attempt is described, not signed again.
    """
    import hashlib

    from signing import pades
    from signing.errors import FinishInProgressError, PreparedStateError, SigningError
    from signing.model import PreparedSignature
    from signing.summary import read_signature_summary

    out = Path(output)
    record = PreparedSignature.loads(record_json)
    try:
        if not out.exists():
            if isinstance(answer, tuple):
                signature, cert_der = answer
                await pades.finish_with_raw_signature(
                    record, Path(prepared), out, signature, cert_der, services
                )
            else:
                await pades.finish_with_cms(record, Path(prepared), out, answer, services)
    except PreparedStateError as exc:
        if not out.exists():  # finished by another worker at the same moment: that one records it
            code = (
                "finish_in_progress"
                if isinstance(exc, FinishInProgressError) or not Path(prepared).exists()
                else exc.code
            )
            return {"error": f"{code}:{exc.message}"}
    except SigningError as exc:
        return {"error": f"{exc.code}:{exc.message}"}
    h = hashlib.sha256()
    try:
        with open(out, "rb") as f:  # noqa: ASYNC230 - a worker process, not the service loop
            while chunk := f.read(1 << 20):
                h.update(chunk)
        achieved = read_signature_summary(out, record.field_name)
    except FileNotFoundError:  # the other worker recorded it and cleaned up meanwhile
        return {"error": "finish_in_progress:finished by another worker"}
    return {
        "sha256": h.hexdigest(),
        "size": out.stat().st_size,
        "added_signatures": 2 if record.level.needs_document_timestamp else 1,
        "signature": achieved.to_json(),
    }


_PR_SET_PDEATHSIG = 1
_PARENT_DEATH_SIGNAL = signal.SIGUSR1
_PARENT_WATCH_S = 1.0


def _exit_if_orphaned(parent_pid: int) -> None:
    if os.getppid() != parent_pid:
        os._exit(70)  # the service is gone: nothing will collect this worker's results


def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(_PARENT_WATCH_S)
        _exit_if_orphaned(parent_pid)


def die_with_parent(parent_pid: int) -> None:
    """Worker initializer: end this process when the service process ``parent_pid`` dies.

    On Linux the kernel signals the worker when its parent goes (``PR_SET_PDEATHSIG``). That signal also
    comes when only the parent *thread* that started the worker ends, so the handler exits only once the
    worker has really been orphaned (its parent pid changed). A thread polling the parent pid covers other
    systems and a signal that could not be set up.
    """
    if sys.platform.startswith("linux"):
        signal.signal(_PARENT_DEATH_SIGNAL, lambda *_: _exit_if_orphaned(parent_pid))
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(_PARENT_DEATH_SIGNAL), 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the watch thread below still notices
    _exit_if_orphaned(parent_pid)  # the parent may have died before the signal was armed
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="parent-watch", daemon=True).start()


def _ready() -> bool:
    import signing.pades  # noqa: F401 - the import is the warm-up

    return True


class CpuPool:
    """A lazily started pool of ``spawn``-ed worker processes (never forked from a threaded server).

    Each worker exits when the process that owns the pool dies, even by SIGKILL (:func:`die_with_parent`).
    """

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=die_with_parent,
                initargs=(os.getpid(),),
            )
        return self._pool

    async def run(self, fn, *args):
        """Run ``fn(*args)`` in a worker process; a pool broken by a dead worker is replaced once."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor(), fn, *args)
        except BrokenProcessPool:
            self._pool = None
            return await loop.run_in_executor(self._executor(), fn, *args)

    async def warm(self) -> None:
        """Start every worker process now (each imports the signing stack once)."""
        await asyncio.gather(*(self.run(_ready) for _ in range(self.workers)))

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

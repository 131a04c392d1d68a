"""CPU-heavy signing work in worker processes, so that batches use every core (pyHanko is pure Python).

The functions here take and return plain data (paths, JSON, bytes) so that they cross process borders.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

__all__ = ["CpuPool", "prepare_pdf", "finish_pdf"]


def _services(spec: dict):
    from asn1crypto import x509

    from signing.services import SigningServices

    roots = [x509.Certificate.load(d) for d in spec["roots"]]
    others = [x509.Certificate.load(d) for d in spec["others"]]
    if spec.get("tsa_url"):
        return SigningServices.with_tsa_url(spec["tsa_url"], trust_roots=roots, other_certs=others)
    return SigningServices(trust_roots=roots, other_certs=others)


def prepare_pdf(source: str, prepared: str, options: dict[str, Any]) -> str:
    """Phase 1 for one document in PDF mode; the record as JSON (errors as ``error:code:message``)."""
    from signing import pades
    from signing.errors import SigningError
    from signing.model import PadesLevel, RemoteMode, SignOptions

    opts = SignOptions(mode=RemoteMode.PDF, level=PadesLevel(options["level"]), reason=options.get("reason"),
                       location=options.get("location"))
    try:
        return asyncio.run(pades.prepare_for_signing(Path(source), Path(prepared), opts)).dumps()
    except SigningError as exc:
        return f"error:{exc.code}:{exc.message}"


def finish_pdf(record_json: str, prepared: str, output: str, cms_der: bytes, spec: dict) -> str | None:
    """Phase 2 for one document in PDF mode; ``None`` on success, else ``code:message``."""
    from signing import pades
    from signing.errors import SigningError
    from signing.model import PreparedSignature

    try:
        record = PreparedSignature.loads(record_json)
        asyncio.run(pades.finish_with_cms(record, Path(prepared), Path(output), cms_der, _services(spec)))
        return None
    except SigningError as exc:
        return f"{exc.code}:{exc.message}"


class CpuPool:
    """A lazily started pool of ``spawn``-ed worker processes (never forked from a threaded server)."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    async def run(self, fn, *args):
        """Run ``fn(*args)`` in a worker process."""
        return await asyncio.get_running_loop().run_in_executor(self._executor(), fn, *args)

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

"""What the simulated iAM Smart sends back for a bulk request: every document signed after one approval,
the signatures paged by ``maxCallbackSigs``, and the multipart parts of each result callback (§8, §12.4).

Signing runs in a worker thread, ``bulk_sign_chunk`` documents at a time, so a 1000-document batch does
not hold the event loop; PDF items use :class:`~signing.sandbox.remote_signer.PdfBatchSigner` (one RSA
operation each), hash items :meth:`~signing.sandbox.remote_signer.SimulatedSigner.sign_hash`.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pyhanko.sign.timestamps import TimeStamper

from signing.iamsmart.bulk import multipart_body
from signing.iamsmart.codes import ReturnCode
from signing.iamsmart.protocol import callback_envelope, new_tx_id

from .gate import Sealer
from .options import SandboxOptions
from .remote_signer import PdfBatchSigner, SimulatedSigner, UnsupportedHashError

__all__ = ["BulkDoc", "SignedBatch", "pages", "result_parts", "sign_documents", "signable"]


@dataclass(frozen=True)
class BulkDoc:
    """One document of a bulk request, decoded."""

    id: str
    name: str
    kind: str
    """``hash`` or ``pdf``."""
    data: bytes = field(repr=False)
    data_b64: str = field(repr=False)
    sig_algo: str = "SHA256withRSA"


@dataclass(frozen=True)
class SignedBatch:
    """The ``sigFile`` items of the signed documents (request order) and the ids that were declined."""

    signatures: list[dict[str, Any]]
    declined: list[str]


def signable(doc: BulkDoc) -> bool:
    """Whether the sandbox can sign this document (RSA keys only; digests must be 32 bytes)."""
    if doc.kind == "pdf":
        return len(doc.data) == 32
    if doc.sig_algo == "NONEwithRSA":
        return len(doc.data) == 32
    return doc.sig_algo == "SHA256withRSA"


def _sign_one(
    doc: BulkDoc, signer: SimulatedSigner, pdf: PdfBatchSigner | None, ts_ms: int, digestinfo: bool
) -> dict[str, Any] | None:
    try:
        if doc.kind == "hash":
            value = signer.sign_hash(doc.data, doc.sig_algo, none_with_rsa_digestinfo=digestinfo)
            return {
                "id": doc.id,
                "hash": doc.data_b64,
                "timestamp": ts_ms,
                "signature": base64.b64encode(value).decode(),
            }
        if pdf is None:
            return None
        return {
            "id": doc.id,
            "docDigest": doc.data_b64,
            "pdfSignature": base64.b64encode(pdf.sign(doc.data)).decode(),
        }
    except UnsupportedHashError:
        return None


def _sign_chunk(
    docs: Sequence[BulkDoc],
    declined: frozenset[str],
    signer: SimulatedSigner,
    pdf: PdfBatchSigner | None,
    ts_ms: int,
    digestinfo: bool,
) -> list[tuple[BulkDoc, dict[str, Any] | None]]:
    return [(d, None if d.id in declined else _sign_one(d, signer, pdf, ts_ms, digestinfo)) for d in docs]


async def sign_documents(
    docs: Sequence[BulkDoc],
    signer: SimulatedSigner,
    *,
    declined: frozenset[str],
    signing_time: dt.datetime,
    options: SandboxOptions,
    timestamper: TimeStamper | None = None,
) -> SignedBatch:
    """Sign every document not in ``declined``; unsignable ones are declined too."""
    ts_ms = int(signing_time.timestamp() * 1000)
    has_pdf = any(d.kind == "pdf" for d in docs)
    pdf = await signer.pdf_batch_signer(signing_time) if has_pdf and timestamper is None else None
    signatures: list[dict[str, Any]] = []
    refused: list[str] = []
    step = max(1, options.bulk_sign_chunk)
    for start in range(0, len(docs), step):
        chunk = docs[start : start + step]
        done = await asyncio.to_thread(
            _sign_chunk, chunk, declined, signer, pdf, ts_ms, options.none_with_rsa_digestinfo
        )
        for doc, item in done:
            if (
                item is None
                and doc.kind == "pdf"
                and timestamper is not None
                and doc.id not in declined
                and len(doc.data) == 32
            ):
                cms = await signer.sign_pdf_digest(doc.data, signing_time, timestamper)  # pdf_tst: one by one
                item = {
                    "id": doc.id,
                    "docDigest": doc.data_b64,
                    "pdfSignature": base64.b64encode(cms).decode(),
                }
            if item is None:
                refused.append(doc.id)
            else:
                signatures.append(item)
    return SignedBatch(signatures, refused)


def pages(signatures: list[dict[str, Any]], max_callback_sigs: int) -> list[list[dict[str, Any]]]:
    """``maxCallbackSigs`` signatures per callback, the remainder in the last: ``(n-1)//m + 1`` pages."""
    return [signatures[i : i + max_callback_sigs] for i in range(0, len(signatures), max_callback_sigs)]


def result_parts(
    code: ReturnCode,
    content: dict[str, Any],
    signatures: list[dict[str, Any]] | None,
    options: SandboxOptions,
    sealer: Sealer,
) -> tuple[bytes, str]:
    """The multipart body of one result callback, encrypted with ``sealer`` (the client's current CEK).
    With ``bulk_plain_parts`` both parts go in clear and ``sigFile`` has no outer braces, as in the
    samples. ``signatures=None``: only ``sigMetada`` (whole-request failure)."""
    meta_content: dict[str, Any] = {"content": content} if options.nest_callback_content else content
    if options.bulk_plain_parts:
        meta = {"txID": new_tx_id(), "code": code.value, "message": code.message, "content": meta_content}
        sig_file = (
            None if signatures is None else '"signatures":' + json.dumps(signatures, separators=(",", ":"))
        )
        return multipart_body(json.dumps(meta, ensure_ascii=False, separators=(",", ":")), sig_file)
    meta = callback_envelope(code, sealer.encrypt(meta_content), sealer.secret_key)
    sig_file = None if signatures is None else sealer.encrypt({"signatures": signatures})
    return multipart_body(json.dumps(meta, separators=(",", ":")), sig_file)

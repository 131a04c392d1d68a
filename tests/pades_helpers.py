"""Helpers for signing tests: sign through the core with the simulated phone, validate with pyHanko."""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass
from pathlib import Path

from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import (
    DocumentSecurityStore,
    async_validate_pdf_signature,
    async_validate_pdf_timestamp,
)
from pyhanko_certvalidator import ValidationContext

from signing import pades
from signing.model import PreparedSignature, RemoteMode, SignedResult, SignOptions
from signing.sandbox.remote_signer import SimulatedSigner

from .conftest import TestPki, asn1


async def sign_with_phone(
    pki: TestPki,
    source: Path,
    output: Path,
    options: SignOptions,
    phone: SimulatedSigner | None = None,
    cert_der: bytes | None = None,
) -> SignedResult:
    """Prepare, let the simulated phone sign what iAM Smart would get, finish."""
    phone = phone or pki.phone
    cert_der = cert_der or phone.certificate.public_bytes(_der())
    prepared = output.with_suffix(".prepared.pdf")
    record = await pades.prepare_for_signing(source, prepared, options)
    record = PreparedSignature.loads(record.dumps())  # the record must survive JSON
    if options.mode is RemoteMode.PDF:
        cms_der = await phone.sign_pdf_digest(record.document_digest, dt.datetime.now(dt.UTC))
        return await pades.finish_with_cms(record, prepared, output, cms_der, pki.services())
    signature = phone.sign_hash(record.to_be_signed, record.sig_algo.value)
    return await pades.finish_with_raw_signature(
        record, prepared, output, signature, cert_der, pki.services()
    )


def _der():
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.DER


@dataclass
class Validation:
    statuses: list  # PdfSignatureStatus per signature field, in file order
    doc_timestamps: list
    has_dss: bool
    subfilters: list[str]


async def validate(pki: TestPki, path: Path, *, offline: bool = False) -> Validation:
    """Validate every signature with pyHanko against the test root.

    ``offline``: no fetching, revocation required, fed from the file's DSS (what an LT/LTA file must carry).
    """
    reader = PdfFileReader(io.BytesIO(path.read_bytes()), strict=True)
    dss = DocumentSecurityStore.read_dss(reader) if "/DSS" in reader.root else None
    statuses, doc_ts, subfilters = [], [], []
    for emb in reader.embedded_signatures:
        if offline:
            assert dss is not None, "offline validation needs a DSS"
            vc = dss.as_validation_context(
                {
                    "trust_roots": [asn1(pki.pki.root)],
                    "allow_fetching": False,
                    "revocation_mode": "require",
                }
            )
        else:
            vc = ValidationContext(
                trust_roots=[asn1(pki.pki.root)], allow_fetching=True, revocation_mode="hard-fail"
            )
        try:
            if emb.sig_object_type == "/DocTimeStamp":
                doc_ts.append(await async_validate_pdf_timestamp(emb, validation_context=vc))
            else:
                statuses.append(await async_validate_pdf_signature(emb, vc))
                subfilters.append(str(emb.sig_object["/SubFilter"]))
        finally:
            await vc.aclose()
    return Validation(statuses, doc_ts, dss is not None, subfilters)


def finish_outcome(record: PreparedSignature, prepared: Path, out: Path, cms_der: bytes, services) -> str:
    """Finish in PDF mode on a loop of its own (a thread or a child process racing others): ``signed``,
    the code of the PreparedStateError that refused it, or any other end as ``Type: message``."""
    import asyncio

    from signing.errors import PreparedStateError

    try:
        asyncio.run(pades.finish_with_cms(record, Path(prepared), Path(out), cms_der, services))
        return "signed"
    except PreparedStateError as exc:
        return exc.code
    except BaseException as exc:  # noqa: BLE001 - any other end is a failure: the caller's assert says which
        return f"{type(exc).__name__}: {exc}"

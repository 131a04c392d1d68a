"""Verify every signature of a PDF file and assemble the report.

The file is read lazily from disk (never loaded whole into memory) with pyHanko's decode limits on.
A file that is not a readable PDF raises :class:`~signing.errors.UnreadablePdfError`; anything wrong
with a signature inside a readable PDF is reported as that signature failing, with the reason.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
from pathlib import Path

from asn1crypto import x509
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.fields import enumerate_sig_fields
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature

from ..errors import UnreadablePdfError
from .digests import one_pass_digests
from .doc_timestamps import is_doc_timestamp, verify_doc_timestamp
from .formats import distinct_signatures, unreadable_signature
from .options import VerifyOptions
from .repair import embedded_signature, open_repaired, repair_notes
from .report import SignatureReport, VerificationReport
from .shared import SharedValidation, index_revisions
from .signature import SignatureContext, broken_signature, unchecked_signature, verify_signature

__all__ = ["verify_pdf", "verify_pdf_sync"]

logger = logging.getLogger(__name__)


@functools.cache
def _verifier() -> str:
    """Who verified: read once a process (the package metadata is parsed from disk, some 3 ms a call,
    and the code that runs is the code loaded at start, whatever is installed later)."""
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for dist in ("iamsign", "pyHanko", "pyhanko-certvalidator"):
        try:
            parts.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            parts.append(f"{dist} (unknown version)")
    return "; ".join(parts)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _check_file(path: Path, options: VerifyOptions) -> int:
    """Header and size of the file (its SHA-256 comes with the signatures' digests, in one pass)."""
    try:
        size = path.stat().st_size
        if size > options.max_file_size:
            raise UnreadablePdfError(
                f"the file is {size} bytes, more than the {options.max_file_size} allowed",
                code="file_too_large",
            )
        with open(path, "rb") as f:
            head = f.read(1024)
    except IsADirectoryError as exc:
        raise UnreadablePdfError(f"{path} is a directory, not a PDF file", code="not_a_pdf") from exc
    except FileNotFoundError as exc:
        raise UnreadablePdfError(f"{path} does not exist", code="not_a_pdf") from exc
    except OSError as exc:
        raise UnreadablePdfError(f"cannot read {path}: {exc.strerror}", code="not_a_pdf") from exc
    if b"%PDF-" not in head:
        raise UnreadablePdfError(
            "the file is not a PDF (no %PDF- header in its first 1024 bytes)", code="not_a_pdf"
        )
    return size


def _open_reader(stream) -> PdfFileReader:
    try:
        reader = PdfFileReader(stream, strict=False)
        reader.root  # noqa: B018 - make sure the catalog resolves
    except Exception as exc:
        text = str(exc) or type(exc).__name__
        if "EOF" in text or "startxref" in text or "xref" in text.lower():
            raise UnreadablePdfError(
                f"the PDF is truncated or its cross-reference data is damaged: {text}"
            ) from exc
        raise UnreadablePdfError(f"the PDF is damaged and cannot be read: {text}") from exc
    if reader.encrypted:
        raise UnreadablePdfError(
            "the PDF is encrypted; its signatures cannot be verified without decrypting it",
            code="encrypted_pdf",
        )
    return reader


def _open_tolerantly(stream, path: Path) -> tuple[PdfFileReader, list[str]]:
    """The reader, else one over a repaired cross-reference table (with a note), else the error."""
    try:
        return _open_reader(stream), []
    except UnreadablePdfError as exc:
        if exc.code != "damaged_pdf":
            raise
        reader = open_repaired(path)
        if reader is None or reader.encrypted:
            raise
        return reader, repair_notes(reader, exc.message)


def _embedded(reader: PdfFileReader) -> tuple[list[EmbeddedPdfSignature], list[SignatureReport], list[str]]:
    """The readable signatures (in revision order), reports for the unreadable ones, and notes."""
    good: list[EmbeddedPdfSignature] = []
    broken: list[SignatureReport] = []
    notes: list[str] = []
    try:
        fields = list(enumerate_sig_fields(reader, filled_status=True))
    except Exception as exc:  # noqa: BLE001
        notes.append(f"the signature fields cannot be enumerated: {exc}")
        return good, broken, notes
    fields, repeats = distinct_signatures(fields)
    notes.extend(repeats)
    for name, _sig_obj, sig_field in fields:
        try:
            emb = embedded_signature(reader, sig_field, name)
            emb.signer_info["signature"].native  # noqa: B018 - garbage CMS fails here, or later (caught)
            emb.sig_object_type  # noqa: B018
            good.append(emb)
        except Exception as exc:  # noqa: BLE001 - hostile signature dictionaries and CMS
            report = broken_signature(str(name), f"the signature cannot be read: {type(exc).__name__}: {exc}")
            broken.append(unreadable_signature(sig_field, report))
    good.sort(key=lambda e: e.signed_revision)
    return good, broken, notes


def _dss(
    reader: PdfFileReader,
) -> tuple[list[x509.Certificate], dict[str, int], DocumentSecurityStore | None]:
    try:
        dss = DocumentSecurityStore.read_dss(reader)
    except Exception:  # noqa: BLE001 - NoDSSFoundError, or a damaged DSS: treat as absent
        return [], {}, None
    try:
        certs = list(dss.load_certs())
    except Exception:  # noqa: BLE001
        certs = []
    counts = {"dss_certificates": len(certs), "dss_ocsps": len(dss.ocsps), "dss_crls": len(dss.crls)}
    return certs, counts, dss


async def verify_pdf(path: Path | str, options: VerifyOptions | None = None) -> VerificationReport:
    """Verify every signature in the PDF at ``path``.

    Raises :class:`~signing.errors.UnreadablePdfError` only when the file is not a readable PDF.
    """
    options = options or VerifyOptions()
    path = Path(path)
    started = _utcnow()
    size = _check_file(path, options)
    with open(path, "rb") as f:  # noqa: ASYNC230 - pyHanko reads synchronously anyway
        reader, repaired = _open_tolerantly(f, path)
        index_revisions(reader)
        shared = SharedValidation(reader)
        embedded, broken, notes = _embedded(reader)
        notes[:0] = repaired
        try:
            with open(path, "rb") as g:  # noqa: ASYNC230
                digests = one_pass_digests(g, size, embedded)
        except OSError as exc:
            raise UnreadablePdfError(f"cannot read {path}: {exc}", code="not_a_pdf") from exc
        sha256 = digests.file_sha256
        try:
            revisions = reader.xrefs.total_revisions
        except Exception:  # noqa: BLE001
            revisions = 0
        dss_certs, dss_counts, dss = _dss(reader)
        doc_ts_embs = [e for e in embedded if is_doc_timestamp(e)]
        sig_embs = [e for e in embedded if not is_doc_timestamp(e)]
        doc_timestamps = [await verify_doc_timestamp(e, dss, options) for e in doc_ts_embs]
        ctx = SignatureContext(
            options=options,
            validation_time=options.validation_time(started),
            dss_certs=dss_certs,
            dss_has_revinfo=bool(dss_counts.get("dss_ocsps") or dss_counts.get("dss_crls")),
            dss_counts=dss_counts,
            valid_doc_timestamp_revisions=[
                t.revision for t in doc_timestamps if t.counts and t.revision is not None
            ],
            # Only these start pyHanko's LTA process: it sees no other kind of document timestamp.
            doc_timestamp_revisions=[
                e.signed_revision for e in doc_ts_embs if str(e.sig_object.get("/Type")) == "/DocTimeStamp"
            ],
            dss=dss,
            file_sha256=sha256,
            file_size=size,
            revision_sha256=digests.revision_sha256,
            shared=shared,
        )
        reports: list[SignatureReport] = []
        deadline = asyncio.get_running_loop().time() + options.document_timeout
        for index, emb in enumerate(sig_embs):
            if index >= options.max_signatures or asyncio.get_running_loop().time() > deadline:
                reports.append(
                    unchecked_signature(
                        str(emb.field_name),
                        "not verified: the file exceeds this verifier's limits "
                        f"({options.max_signatures} signatures, {options.document_timeout:g} s)",
                    )
                )
                continue
            try:
                reports.append(await verify_signature(emb, ctx))
            except Exception as exc:
                logger.exception("signature %s could not be verified", emb.field_name)
                reports.append(
                    broken_signature(
                        str(emb.field_name),
                        f"the signature could not be verified: {type(exc).__name__}: {exc}",
                    )
                )
        await shared.aclose()
    if not reports and not broken:
        notes.append("the document has no signature")
    return VerificationReport(
        signatures=tuple(reports + broken),
        document_timestamps=tuple(doc_timestamps),
        file_sha256=sha256,
        file_size=size,
        revisions=revisions,
        verified_at=started,
        validation_time=options.validation_time(started),
        offline=options.offline,
        trust_list_version=options.trust.version,
        trust_profiles=tuple(p.describe() for p in options.trust.profiles),
        trust_list_skipped=options.trust.skipped,
        notes=tuple(notes),
        verifier=_verifier(),
    )


def verify_pdf_sync(path: Path | str, options: VerifyOptions | None = None) -> VerificationReport:
    """:func:`verify_pdf` for code without an event loop (the command line)."""
    return asyncio.run(verify_pdf(path, options))

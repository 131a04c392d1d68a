"""Deferred PAdES signing for a remote signer that only ever sees a hash.

Phase 1, :func:`prepare_for_signing`, writes a prepared copy of the PDF (signature field, reserved
/Contents) and returns a JSON-safe :class:`~signing.model.PreparedSignature`: the /ByteRange digest
and, in hash mode, the DER signed attributes the remote signature must cover.

Phase 2, in any process and up to 18 minutes later, embeds what iAM Smart returned:
:func:`finish_with_cms` for a complete CMS (``pdfSignature``), :func:`finish_with_raw_signature` for a
raw signature value plus certificate (``signature`` + ``cert``). Both check everything before embedding,
then add what the level needs (signature timestamp, DSS, document timestamp) and publish the signed
file atomically by renaming the prepared file: nothing is copied twice. A finish that fails leaves the
prepared file usable for another attempt; a finish that succeeds consumes it.

Memory stays bounded: every pyHanko write goes to a read-write file (``in_place``), never to a
write-only stream or BytesIO.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path

from asn1crypto import cms, x509
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError, PdfReadError
from pyhanko.sign import fields
from pyhanko.sign.fields import SigSeedSubFilter
from pyhanko.sign.signers import PdfSignatureMetadata, PdfSigner
from pyhanko.sign.signers.pdf_byterange import PreparedByteRangeDigest
from pyhanko.sign.signers.pdf_cms import ExternalSigner
from pyhanko_certvalidator.registry import SimpleCertificateStore

from . import cms as cms_checks
from .appearance import default_stamp_style, stamp_style
from .errors import (
    DamagedPdfError,
    EncryptedPdfError,
    FieldError,
    FinishInProgressError,
    MalformedCmsError,
    PreparedStateError,
    SignatureTooLargeError,
    SigningError,
    TimestampError,
)
from .inspect import check_pdf_envelope
from .ltv import add_ltv, check_existing_dss
from .model import (
    PadesLevel,
    PreparedSignature,
    RemoteMode,
    SignatureProfile,
    SignedResult,
    SignOptions,
)
from .onepass import HashedPrefixFile, copy_hashing
from .services import SigningServices

__all__ = ["finish_with_cms", "finish_with_raw_signature", "open_pdf_writer", "prepare_for_signing"]

_MD = "sha256"
_SUBFILTER = {
    SignatureProfile.PADES_BASELINE: SigSeedSubFilter.PADES,
    SignatureProfile.PKCS7_DETACHED: SigSeedSubFilter.ADOBE_PKCS7_DETACHED,
}


# ---------------------------------------------------------------------------------------------- files


def _temp_beside(path: Path) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")


def _publish(tmp: Path, final: Path) -> None:
    """fsync ``tmp`` and rename it over ``final``, so that ``final`` is complete or absent."""
    with open(tmp, "rb+") as f:
        _publish_open(f, tmp, final)


def _publish_open(f, tmp: Path, final: Path) -> None:
    """:func:`_publish` for a file the caller holds open (and locked): fsync it, rename, fsync the folder."""
    f.flush()
    os.fsync(f.fileno())
    os.replace(tmp, final)
    dir_fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def open_pdf_writer(stream) -> IncrementalPdfFileWriter:
    """Open a PDF for an incremental update, turning pyHanko's read errors into typed ones."""
    try:
        writer = IncrementalPdfFileWriter(stream, strict=True)
        writer.root  # noqa: B018 - make sure the catalog resolves
    except (PdfReadError, PdfError) as exc:
        text = str(exc)
        if "EOF" in text or "startxref" in text:
            raise DamagedPdfError(f"the PDF is truncated or its end is damaged: {text}") from exc
        raise DamagedPdfError(f"the PDF is damaged and cannot be read: {text}") from exc
    except Exception as exc:  # malformed files raise all sorts
        raise DamagedPdfError(f"the PDF is damaged and cannot be read: {exc}") from exc
    if writer.prev.encrypted:
        raise EncryptedPdfError("the PDF is encrypted; signing encrypted PDFs is not supported")
    return writer


# ---------------------------------------------------------------------------------------------- phase 1


def _choose_field(writer: IncrementalPdfFileWriter, options: SignOptions) -> tuple[str, bool]:
    """The field to sign and whether it exists already."""
    existing = {
        name: value for name, value, _ in fields.enumerate_sig_fields(writer.prev, filled_status=None)
    }
    if options.field_name:
        if options.field_name in existing:
            if existing[options.field_name] is not None:
                raise FieldError(f"the signature field {options.field_name!r} is already signed")
            return options.field_name, True
        return options.field_name, False
    n = 1
    while f"Signature{n}" in existing:
        n += 1
    return f"Signature{n}", False


def _page_index(writer: IncrementalPdfFileWriter, page: int) -> int:
    count = int(writer.root["/Pages"]["/Count"])
    index = count - 1 if page == -1 else page - 1
    if not 0 <= index < count:
        raise FieldError(f"page {page} does not exist: the document has {count} page(s)")
    return index


def _phase1_signer(options: SignOptions) -> tuple[SignatureProfile, ExternalSigner]:
    if options.mode is RemoteMode.PDF:
        profile = options.pdf_mode_profile
        cert = None
    elif options.signer_certificate_der is not None:
        profile = SignatureProfile.PADES_BASELINE
        cert = cms_checks.load_certificate(options.signer_certificate_der)
    else:
        profile = SignatureProfile.PKCS7_DETACHED
        cert = None
    signer = ExternalSigner(
        signing_cert=cert,
        cert_registry=SimpleCertificateStore.from_certs([cert]) if cert else None,
        signature_value=256,
        signature_mechanism=cms_checks.RSA_SHA256,
    )
    return profile, signer


async def prepare_for_signing(source: Path, prepared_path: Path, options: SignOptions) -> PreparedSignature:
    """Phase 1: write the prepared PDF to ``prepared_path`` and return the state for phase 2.

    The source is not modified; ``prepared_path`` appears only when complete.
    """
    source, prepared_path = Path(source), Path(prepared_path)
    check_pdf_envelope(source)
    if options.reserved_bytes < 4096:
        raise SigningError("reserved_bytes must be at least 4096")
    tmp = _temp_beside(prepared_path)
    try:
        # one pass reads, hashes and copies the source; pyHanko then hashes only what it appends
        prefix_hash, prefix_size = copy_hashing(source, tmp)
        # pyHanko writes in place through a seekable sync file; callers run this coroutine on a loop of
        # its own (asyncio.to_thread / a worker process), never on the service's event loop
        with open(tmp, "r+b") as raw:  # noqa: ASYNC230
            f = HashedPrefixFile(raw, prefix_hash, prefix_size)
            writer = open_pdf_writer(f)
            if options.level.needs_dss:
                check_existing_dss(writer.prev)
            field_name, exists = _choose_field(writer, options)
            profile, ext_signer = _phase1_signer(options)
            new_field_spec = None
            if options.appearance is not None and not exists:
                x1, y1, x2, y2 = (round(v) for v in options.appearance.box)
                new_field_spec = fields.SigFieldSpec(
                    field_name, on_page=_page_index(writer, options.appearance.page), box=(x1, y1, x2, y2)
                )
            meta = PdfSignatureMetadata(
                field_name=field_name,
                md_algorithm=_MD,
                subfilter=_SUBFILTER[profile],
                reason=options.reason,
                location=options.location,
                contact_info=options.contact_info,
            )
            pdf_signer = PdfSigner(
                meta,
                signer=ext_signer,
                stamp_style=stamp_style(options.appearance) if options.appearance else default_stamp_style(),
                new_field_spec=new_field_spec,
            )
            try:
                with f.skip_prefix_digest(writer):
                    prep, _tbs, _ = await pdf_signer.async_digest_doc_for_signing(
                        writer, bytes_reserved=options.reserved_bytes * 2, in_place=True
                    )
            except SigningError:
                raise
            except (PdfError, ValueError, KeyError, TypeError) as exc:
                raise FieldError(f"the signature field could not be set up: {exc}") from exc
            document_digest = f.byte_range_digest(prep.reserved_region_start, prep.reserved_region_end)
            signed_attrs_der = to_be_signed = None
            if options.mode is RemoteMode.HASH:
                attrs = await ext_signer.signed_attrs(
                    document_digest, _MD, use_pades=profile is SignatureProfile.PADES_BASELINE
                )
                signed_attrs_der = attrs.dump()
                to_be_signed = (
                    signed_attrs_der
                    if options.sig_algo.value == "SHA256withRSA"
                    else hashlib.sha256(signed_attrs_der).digest()
                )
            f.flush()
        size = tmp.stat().st_size
        _publish(tmp, prepared_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return PreparedSignature(
        mode=options.mode,
        level=options.level,
        profile=profile,
        field_name=field_name,
        md_algorithm=_MD,
        document_digest=document_digest,
        reserved_region_start=prep.reserved_region_start,
        reserved_region_end=prep.reserved_region_end,
        prepared_size=size,
        allow_level_fallback=options.allow_level_fallback,
        signed_attrs_der=signed_attrs_der,
        to_be_signed=to_be_signed,
        sig_algo=options.sig_algo if options.mode is RemoteMode.HASH else None,
        signer_certificate_der=options.signer_certificate_der if options.mode is RemoteMode.HASH else None,
    )


# ---------------------------------------------------------------------------------------------- phase 2


def _check_prepared(record: PreparedSignature, prepared_path: Path, mode: RemoteMode) -> None:
    if record.mode is not mode:
        raise PreparedStateError(
            f"this signature was prepared for {record.mode.value} mode, not {mode.value}"
        )
    try:  # another finisher may publish (and remove) it at any moment: gone is "already finished"
        with open(prepared_path, "rb") as f:
            _check_matches_record(f, record)
    except FileNotFoundError as exc:
        raise _already_finished(prepared_path) from exc


def _check_matches_record(f, record: PreparedSignature) -> None:
    """The open prepared file ``f`` is the record's: at least its prepared size (an earlier attempt that
    failed after embedding may have appended to it; never less) and the /Contents placeholder in place."""
    if (
        os.fstat(f.fileno()).st_size < record.prepared_size
        or record.reserved_region_end > record.prepared_size
    ):
        raise PreparedStateError("the prepared file does not match the record (it is shorter than prepared)")
    f.seek(record.reserved_region_start)
    opening = f.read(1)
    f.seek(record.reserved_region_end - 1)
    closing = f.read(1)
    if (opening, closing) != (b"<", b">"):
        raise PreparedStateError(
            "the prepared file does not match the record (no /Contents placeholder there)"
        )


def _publish_held(f, prepared_path: Path, output_path: Path) -> None:
    """Publish the prepared file held open (and locked) as ``f``, only if it is the one at its path.

    A rename goes by path, not by the open file: if the path now names another file (replaced from
    outside) or none (removed by the service ending the request), that is refused, and a file that
    turns out not to be ours after the rename is taken back out of ``output_path``."""
    if not _still_at(f, prepared_path):
        raise _already_finished(prepared_path)
    try:
        _publish_open(f, prepared_path, output_path)
    except FileNotFoundError as exc:  # removed in the moment between the check and the rename
        raise _already_finished(prepared_path) from exc
    if not _still_at(f, output_path):
        output_path.unlink(missing_ok=True)
        raise PreparedStateError(
            f"the prepared file {prepared_path} was replaced while it was being signed; nothing published"
        )


def _still_at(f, path: Path) -> bool:
    """Whether the open file ``f`` is still the file at ``path`` (not renamed away or replaced)."""
    try:
        here = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(f.fileno())
    return (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino)


def _already_finished(prepared_path: Path) -> PreparedStateError:
    return PreparedStateError(
        f"the prepared file {prepared_path} does not exist (already finished, or never prepared)"
    )


def _check_fits(record: PreparedSignature, cms_der: bytes) -> None:
    capacity = (record.reserved_region_end - record.reserved_region_start - 2) // 2
    if len(cms_der) > capacity:
        raise SignatureTooLargeError(
            f"the signature needs {len(cms_der)} bytes but only {capacity} were reserved; "
            "prepare again with a larger reserved_bytes"
        )


async def _timestamp_or_fallback(record: PreparedSignature, make, services: SigningServices):
    """Run ``make(timestamper)``; if the TSA fails and the caller allowed it, fall back to B-B."""
    if not record.level.needs_timestamp:
        return await make(None), record.level, ()
    if services.timestamper is None:
        raise TimestampError(f"{record.level.value} needs a time-stamping authority, and none is configured")
    try:
        return await make(services.timestamper), record.level, ()
    except TimestampError as exc:
        if not record.allow_level_fallback:
            raise
        note = f"the TSA failed ({exc.message}); signed at B-B as the caller allowed"
        return await make(None), PadesLevel.B_B, (note,)


async def finish_with_cms(
    record: PreparedSignature,
    prepared_path: Path,
    output_path: Path,
    cms_der: bytes,
    services: SigningServices | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> SignedResult:
    """Phase 2, PDF mode: check iAM Smart's ``pdfSignature`` and embed it as is (plus what the level adds)."""
    prepared_path, output_path = Path(prepared_path), Path(output_path)
    services = services or SigningServices()
    _check_prepared(record, prepared_path, RemoteMode.PDF)
    checked = cms_checks.check_external_cms(
        cms_der, record.document_digest, record.md_algorithm, record.profile
    )
    _check_fits(record, cms_der)

    async def make(timestamper):
        if timestamper is None or cms_checks.has_signature_timestamp(checked.signer_info):
            return cms_der
        return await cms_checks.add_signature_timestamp(cms_der, timestamper)

    final_der, level, notes = await _timestamp_or_fallback(record, make, services)
    if final_der != cms_der:  # verify what will be published, not only what was received
        rechecked = cms_checks.check_external_cms(
            final_der, record.document_digest, record.md_algorithm, record.profile
        )
        if rechecked.signer_info["signed_attrs"].dump() != checked.signer_info["signed_attrs"].dump():
            raise MalformedCmsError("adding the signature timestamp changed the signed attributes")
    _check_fits(record, final_der)
    return await _embed(
        record, prepared_path, output_path, final_der, checked.signer_cert, services, level, notes, on_stage
    )


async def finish_with_raw_signature(
    record: PreparedSignature,
    prepared_path: Path,
    output_path: Path,
    signature: bytes,
    certificate_der: bytes,
    services: SigningServices | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> SignedResult:
    """Phase 2, hash mode: verify iAM Smart's ``signature`` with its ``cert``, wrap it in CMS, embed.

    Intermediate certificates for the CMS come from ``services.other_certs``.
    """
    prepared_path, output_path = Path(prepared_path), Path(output_path)
    services = services or SigningServices()
    _check_prepared(record, prepared_path, RemoteMode.HASH)
    if record.signed_attrs_der is None:
        raise PreparedStateError("the record has no signed attributes (it was not prepared for hash mode)")
    cert = cms_checks.load_certificate(certificate_der)
    cms_checks.check_certificate_matches(record.signer_certificate_der, cert)
    cms_checks.verify_raw_signature(signature, record.signed_attrs_der, cert)
    attrs = cms.CMSAttributes.load(record.signed_attrs_der)
    chain = [c for c in services.other_certs if c.dump() != cert.dump()]

    async def make(timestamper):
        return await cms_checks.build_signed_data(attrs, signature, cert, chain, timestamper)

    cms_der, level, notes = await _timestamp_or_fallback(record, make, services)
    _check_fits(record, cms_der)
    return await _embed(record, prepared_path, output_path, cms_der, cert, services, level, notes, on_stage)


async def _embed(
    record: PreparedSignature,
    prepared_path: Path,
    output_path: Path,
    cms_der: bytes,
    cert: x509.Certificate,
    services: SigningServices,
    level: PadesLevel,
    notes: tuple[str, ...],
    on_stage: Callable[[str], None] | None = None,
) -> SignedResult:
    """Fill /Contents in the prepared file, add DSS / document timestamp, then rename it to ``output_path``.

    Retrying after a failure is safe: the file is cut back to its prepared size and the placeholder
    zeroed first. ``output_path`` appears only complete (fsync, then rename). ``on_stage`` hears each
    step as it is done: ``embedded``, ``dss``, ``document_timestamp``, ``published``.
    """
    _check_fits(record, cms_der)
    note_list = list(notes)
    has_dss = has_doc_ts = False
    stage = on_stage or (lambda _name: None)
    digest = PreparedByteRangeDigest(
        record.document_digest, record.reserved_region_start, record.reserved_region_end
    )
    # a sync file for pyHanko and flock; run off the service's event loop, as prepare_for_signing is
    try:
        prepared = open(prepared_path, "r+b")  # noqa: ASYNC230, SIM115 - closed by the with below
    except FileNotFoundError as exc:  # published by another finisher since the checks
        raise _already_finished(prepared_path) from exc
    with prepared as f:
        try:  # one finisher at a time per prepared file, even across processes
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise FinishInProgressError("another process is finishing this signature right now") from exc
        if not _still_at(f, prepared_path):  # published (renamed away) since we opened it
            raise _already_finished(prepared_path)
        _check_matches_record(f, record)  # again, on the file we hold: the path may have changed since
        f.truncate(record.prepared_size)
        digest.fill_reserved_region(
            f, bytes((record.reserved_region_end - record.reserved_region_start - 2) // 2)
        )
        digest.fill_with_cms(f, cms_der)
        f.flush()
        stage("embedded")
        if level.needs_dss:  # the DSS and, at B-LTA, the document timestamp: one revision (signing.ltv)
            capacity = (record.reserved_region_end - record.reserved_region_start - 2) // 2
            await add_ltv(f, cms_der, capacity, services, document_timestamp=level.needs_document_timestamp)
            has_dss = True
            stage("dss")
            if level.needs_document_timestamp:
                has_doc_ts = True
                stage("document_timestamp")
        # still under the lock: a finisher that opened the file meanwhile must find it gone, not
        # lock it once we let go and rewrite what we just published (the same inode)
        _publish_held(f, prepared_path, output_path)
    stage("published")
    has_tst = cms_checks.has_signature_timestamp(cms.ContentInfo.load(cms_der)["content"]["signer_infos"][0])
    achieved = level if record.profile is SignatureProfile.PADES_BASELINE else None
    if achieved is None:
        note_list.append(
            "not PAdES baseline: /adbe.pkcs7.detached without signing-certificate-v2 in the signed attributes"
            if record.mode is RemoteMode.HASH
            else "not PAdES baseline: the remote signer built an adbe.pkcs7-style CMS"
        )
    return SignedResult(
        output_path=str(output_path),
        profile=record.profile,
        requested_level=record.level,
        achieved_level=achieved,
        has_signature_timestamp=has_tst,
        has_dss=has_dss,
        has_document_timestamp=has_doc_ts,
        signer_certificate_der=cert.dump(),
        size=output_path.stat().st_size,
        notes=tuple(note_list),
    )

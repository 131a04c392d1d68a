"""Files for the issue-11 verification classes: CMS re-encodings, other formats, document timestamps.

Every helper starts from a file the signing core or pyHanko signed with the test PKI and changes exactly
one thing, re-signing where the change would otherwise just break the signature value.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Callable
from pathlib import Path

from asn1crypto import cms, core
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from pyhanko.pdf_utils.reader import PdfFileReader

__all__ = [
    "der_header",
    "resign_signed_attrs",
    "rewrite_contents",
    "tlv",
]


def der_header(first: int, length: int) -> bytes:
    if length < 0x80:
        return bytes([first, length])
    size = (length.bit_length() + 7) // 8
    return bytes([first, 0x80 | size]) + length.to_bytes(size, "big")


def tlv(first: int, contents: bytes) -> bytes:
    return der_header(first, len(contents)) + contents


def children(value: core.Sequence, replace: dict[str, bytes]) -> bytes:
    out = []
    for name, _spec, _params in value._fields:
        if name in replace:
            out.append(replace[name])
        elif not isinstance(value[name], core.Void):
            out.append(value[name].dump())
    return b"".join(out)


def read_cms(path: Path) -> tuple[bytes, int, int]:
    """The CMS bytes of the first signature and the /Contents hex gap (start, end, brackets excluded)."""
    with open(path, "rb") as f:
        emb = PdfFileReader(f).embedded_signatures[0]
        _, gap_start, gap_end, _ = (int(v) for v in emb.byte_range)
        return bytes(emb.pkcs7_content), gap_start + 1, gap_end - 1


def rewrite_contents(src: Path, out: Path, transform: Callable[[bytes], bytes]) -> Path:
    """Replace the first signature's CMS by ``transform(cms)``, zero-padded into the same gap."""
    content, start, end = read_cms(src)
    new = transform(content).hex().encode()
    assert len(new) <= end - start, "the new CMS does not fit the /Contents gap"
    data = bytearray(src.read_bytes())
    data[start:end] = new + b"0" * (end - start - len(new))
    out.write_bytes(bytes(data))
    return out


def resign_signed_attrs(
    src: Path, out: Path, private_key, encode: Callable[[cms.CMSAttributes], bytes]
) -> Path:
    """Store the signed attributes as ``encode(attrs)`` (the [0] IMPLICIT field, tag byte included) and
    sign those stored bytes (with a SET tag, as a verifier hashing them as stored would) with the key."""

    def transform(content: bytes) -> bytes:
        ci = cms.ContentInfo.load(content)
        sd = ci["content"]
        si = sd["signer_infos"][0]
        stored = encode(si["signed_attrs"])
        signature = private_key.sign(b"\x31" + stored[1:], padding.PKCS1v15(), hashes.SHA256())
        si_der = tlv(
            0x30,
            children(si, {"signed_attrs": stored, "signature": core.OctetString(signature).dump()}),
        )
        sd_der = tlv(0x30, children(sd, {"signer_infos": tlv(0x31, si_der)}))
        return tlv(0x30, ci["content_type"].dump() + tlv(0xA0, sd_der))

    return rewrite_contents(src, out, transform)


def attrs_unsorted(attrs: cms.CMSAttributes) -> bytes:
    """The attributes in reverse DER order (an unsorted SET OF)."""
    parts = sorted((a.dump() for a in attrs), reverse=True)
    return tlv(0xA0, b"".join(parts))


def attrs_indefinite(attrs: cms.CMSAttributes) -> bytes:
    """The attributes with an indefinite length (BER)."""
    parts = sorted(a.dump() for a in attrs)
    return b"\xa0\x80" + b"".join(parts) + b"\x00\x00"


def attrs_long_length(attrs: cms.CMSAttributes) -> bytes:
    """The attributes with a length in more bytes than needed (BER)."""
    body = b"".join(sorted(a.dump() for a in attrs))
    return b"\xa0\x84" + len(body).to_bytes(4, "big") + body


def cms_long_length(content: bytes) -> bytes:
    """The same CMS with the outer ContentInfo length in more bytes than needed (BER)."""
    ci = cms.ContentInfo.load(content)
    body = ci.contents
    return b"\x30\x84" + len(body).to_bytes(4, "big") + body


# ---------------------------------------------------------------------------------------------- doc timestamps

_UNSET = object()


async def add_doc_timestamp(
    src: Path, out: Path, timestamper, sig_type=_UNSET, field_name: str = "DocTS"
) -> Path:
    """Append a document timestamp whose dictionary's /Type is ``sig_type`` ("/Sig", "/DocTimeStamp", None
    for null); leave it out to drop /Type."""
    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign.signers import pdf_byterange, pdf_signer
    from pyhanko.sign.signers.pdf_signer import PdfTimeStamper

    original = pdf_byterange.DocumentTimestamp

    class Typed(original):  # type: ignore[misc, valid-type]
        def __init__(self, bytes_reserved=None):
            super().__init__(bytes_reserved=bytes_reserved)
            if sig_type is _UNSET:
                del self["/Type"]
            elif sig_type is None:
                self[generic.pdf_name("/Type")] = generic.NullObject()
            else:
                self[generic.pdf_name("/Type")] = generic.pdf_name(sig_type)

    pdf_signer.DocumentTimestamp = Typed
    try:
        with open(src, "rb") as inf, open(out, "wb") as outf:  # noqa: ASYNC230 - a test helper
            await PdfTimeStamper(timestamper, field_name=field_name).async_timestamp_pdf(
                IncrementalPdfFileWriter(inf), "sha256", output=outf
            )
    finally:
        pdf_signer.DocumentTimestamp = original
    return out


def break_signature_value(src: Path, out: Path, field_name: str) -> Path:
    """Flip one hex digit of the signature value inside the CMS of the field ``field_name``."""
    with open(src, "rb") as f:
        emb = next(e for e in PdfFileReader(f).embedded_signatures if e.field_name == field_name)
        _, gap_start, gap_end, _ = (int(v) for v in emb.byte_range)
        sig_hex = emb.signer_info["signature"].native.hex()
    data = bytearray(src.read_bytes())
    hex_text = bytes(data[gap_start:gap_end]).decode("ascii").lower()
    pos = gap_start + hex_text.index(sig_hex) + 40
    data[pos] = ord("0") if data[pos] != ord("0") else ord("1")
    out.write_bytes(bytes(data))
    return out


# ---------------------------------------------------------------------------------------------- other formats


def simple_signer(issued, chain=(), prefer_pss: bool = False):
    """A pyHanko signer for a test-PKI certificate (RSA or EC key)."""
    from asn1crypto import keys as asn1_keys
    from cryptography.hazmat.primitives import serialization
    from pyhanko.sign import signers
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    from .conftest import asn1

    key = asn1_keys.PrivateKeyInfo.load(
        issued.private_key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return signers.SimpleSigner(
        signing_cert=asn1(issued.certificate),
        signing_key=key,
        cert_registry=SimpleCertificateStore.from_certs([asn1(c) for c in chain]),
        prefer_pss=prefer_pss,
    )


async def pyhanko_sign(
    src: Path, out: Path, signer, field_name: str = "Signature1", timestamper=None
) -> Path:
    """A PAdES signature made by pyHanko itself (not the signing core)."""
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import signers
    from pyhanko.sign.fields import SigSeedSubFilter

    meta = signers.PdfSignatureMetadata(
        field_name=field_name, md_algorithm="sha256", subfilter=SigSeedSubFilter.PADES
    )
    with open(src, "rb") as inf, open(out, "wb") as outf:  # noqa: ASYNC230 - a test helper
        await signers.async_sign_pdf(
            IncrementalPdfFileWriter(inf), meta, signer=signer, output=outf, timestamper=timestamper
        )
    return out


_RANGE_PLACEHOLDER = b"[0 0000000000 0000000000 0000000000]"


def handmade_signed_pdf(
    out: Path,
    make_cms: Callable[[bytes], bytes],
    *,
    subfilter: str = "/ETSI.CAdES.detached",
    fields: tuple[str, ...] = ("Sig1",),
    reserve: int = 12000,
    xref_damage: str | None = None,
    duplicate_page_content: bytes | None = None,
    claimed_time: dt.datetime | None = None,
) -> Path:
    """A one-revision PDF written byte by byte whose signature dictionary (object 5) is the /V of every
    field in ``fields``; ``make_cms(signed_bytes)`` returns the CMS for /Contents. ``xref_damage``
    "startxref" (past the end) or "offsets" (every entry wrong) damages the table before signing."""
    claimed = (claimed_time or dt.datetime.now(dt.UTC)).strftime("D:%Y%m%d%H%M%SZ")
    field_ids = list(range(6, 6 + len(fields)))
    refs = " ".join(f"{i} 0 R" for i in field_ids)
    content = b"BT /F1 18 Tf 72 720 Td (handmade signed letter) Tj ET"
    objs: dict[int, bytes] = {
        1: f"<< /Type /Catalog /Pages 2 0 R /AcroForm << /Fields [{refs}] /SigFlags 3 >> >>".encode(),
        2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        3: (
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
            f"/Resources << /Font << /F1 << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> >> >> /Annots [{refs}] >>"
        ).encode(),
        4: b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        5: (
            f"<< /Type /Sig /Filter /Adobe.PPKLite /SubFilter {subfilter} /M ({claimed}) /ByteRange ".encode()
            + _RANGE_PLACEHOLDER
            + b" /Contents <"
            + b"0" * reserve
            + b"> >>"
        ),
    }
    for fid, name in zip(field_ids, fields, strict=True):
        objs[fid] = (
            f"<< /Type /Annot /Subtype /Widget /FT /Sig /T ({name}) /V 5 0 R /F 132 /Rect [0 0 0 0] /P 3 0 R >>"
        ).encode()
    data = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = {}
    for num in sorted(objs):
        offsets[num] = len(data)
        data += b"%d 0 obj\n" % num + objs[num] + b"\nendobj\n"
    if duplicate_page_content is not None:  # a second "4 0 obj" that the table does not point to
        data += b"4 0 obj\n<< /Length %d >>\nstream\n" % len(duplicate_page_content)
        data += duplicate_page_content + b"\nendstream\nendobj\n"
    xref_at = len(data)
    size = max(objs) + 1
    data += b"xref\n0 %d\n0000000000 65535 f \n" % size
    for num in range(1, size):
        data += b"%010d 00000 n \n" % offsets[num]
    if xref_damage == "offsets":  # every entry points 7 bytes past its object
        table = data[xref_at:]
        data[xref_at:] = re.sub(
            rb"(\d{10})( 00000 n )", lambda m: b"%010d" % (int(m.group(1)) + 7) + m.group(2), table
        )
    startxref = len(data) + 1000 if xref_damage == "startxref" else xref_at
    data += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (size, startxref)
    gap_start = data.index(b"/Contents <") + len(b"/Contents ")
    gap_end = gap_start + reserve + 2
    ranges = b"[0 %010d %010d %010d]" % (gap_start, gap_end, len(data) - gap_end)
    at = data.index(_RANGE_PLACEHOLDER)
    data[at : at + len(ranges)] = ranges
    signed = bytes(data[:gap_start]) + bytes(data[gap_end:])
    cms_hex = make_cms(signed).hex().encode()
    assert len(cms_hex) <= reserve
    data[gap_start + 1 : gap_start + 1 + len(cms_hex)] = cms_hex
    out.write_bytes(bytes(data))
    return out


def detached_cms(signer, use_pades: bool = True) -> Callable[[bytes], bytes]:
    """``make_cms`` for a detached CMS over the signed bytes (SHA-256)."""
    import asyncio

    def make(signed: bytes) -> bytes:
        digest = hashlib.sha256(signed).digest()
        return asyncio.run(signer.async_sign(digest, "sha256", use_pades=use_pades)).dump()

    return make


def enveloping_sha1_cms(signer) -> Callable[[bytes], bytes]:
    """``make_cms`` for /adbe.pkcs7.sha1: the CMS encapsulates the SHA-1 digest of the signed bytes."""
    import asyncio

    def make(signed: bytes) -> bytes:
        inner = hashlib.sha1(signed).digest()
        return asyncio.run(signer.async_sign_general_data(inner, "sha256", detached=False)).dump()

    return make


def enveloping_cms(signer) -> Callable[[bytes], bytes]:
    """``make_cms`` for a CMS that encapsulates the signed bytes themselves (enveloping)."""
    import asyncio

    def make(signed: bytes) -> bytes:
        return asyncio.run(signer.async_sign_general_data(signed, "sha256", detached=False)).dump()

    return make


def two_signer_infos(make: Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
    """``make_cms`` whose SignedData carries the same SignerInfo twice."""

    def wrapped(signed: bytes) -> bytes:
        ci = cms.ContentInfo.load(make(signed))
        sd = ci["content"]
        si = sd["signer_infos"][0].dump()
        sd_der = tlv(0x30, children(sd, {"signer_infos": tlv(0x31, si + si)}))
        return tlv(0x30, ci["content_type"].dump() + tlv(0xA0, sd_der))

    return wrapped


def self_signed(name: str = "Self Signed Signer"):
    """An IssuedCertificate that is its own issuer, with signing key usage (no CA anywhere)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    from signing.sandbox.pki import IssuedCertificate

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.KeyUsage(True, True, False, False, False, False, False, False, False), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    return IssuedCertificate(cert, key)


def timestamped_cms(signer, timestamper) -> Callable[[bytes], bytes]:
    """``make_cms`` for a PAdES CMS with a signature timestamp."""
    import asyncio

    def make(signed: bytes) -> bytes:
        digest = hashlib.sha256(signed).digest()
        return asyncio.run(
            signer.async_sign(digest, "sha256", use_pades=True, timestamper=timestamper)
        ).dump()

    return make


def add_dss_crls(src: Path, out: Path, crls_der: list[bytes]) -> Path:
    """Copy ``src`` with an incremental update adding a DSS that holds exactly ``crls_der``."""
    import shutil

    from asn1crypto import crl as asn1_crl
    from pyhanko.sign.validation.dss import DocumentSecurityStore

    shutil.copyfile(src, out)
    with open(out, "rb") as f:
        sig_contents = PdfFileReader(f).embedded_signatures[0].pkcs7_content
    with open(out, "r+b") as f:
        DocumentSecurityStore.add_dss(
            f, sig_contents, crls=[asn1_crl.CertificateList.load(c) for c in crls_der], force_write=True
        )
    return out

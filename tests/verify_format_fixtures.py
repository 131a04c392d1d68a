"""Files for the issue-11 verification classes: CMS re-encodings, other formats, document timestamps.

Every helper starts from a file the signing core or pyHanko signed with the test PKI and changes exactly
one thing, re-signing where the change would otherwise just break the signature value.
"""

from __future__ import annotations

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

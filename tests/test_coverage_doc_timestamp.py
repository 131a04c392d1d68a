"""A document timestamp that covers none of a signature must not count for it, however it claims to
cover the whole file (found by an outside review).

pyHanko's ENTIRE_FILE test compares lengths only: len1 + len2 + 2*len(/Contents bytes) + 2 == file size.
It does not check that the /ByteRange is contiguous or ends at the end of the file. A /Contents written
as a *literal* string padded with NUL bytes costs one file byte per padding byte but counts two, so the
padding can make the sum equal the file size whatever the /ByteRange covers. The dictionary sits in the
last revision, so the timestamp is dated after every signature. ``signing.verify.coverage`` grants
ENTIRE_FILE only to ranges that meet at a hex /Contents and end at the file's end.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.generic import pdf_name
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

from fixtures.generate import simple_pdf
from signing.model import PadesLevel
from signing.verify import VerifyOptions, verify_pdf_sync

from .verify_fixtures import recognized_trust, sign


class _Literal(generic.ByteStringObject):
    """A byte string written as a PDF literal string ``( ... )`` instead of pyHanko's hex."""

    def write_to_stream(self, stream, handler=None, container_ref=None):
        out = bytearray(b"(")
        for b in bytes(self):
            if b in b"()\\":
                out += b"\\" + bytes([b])
            elif b in (10, 13):
                out += b"\\%03o" % b
            else:
                out.append(b)
        stream.write(bytes(out + b")"))


def _add_doc_ts_field(src: Path, out: Path, byte_range: list[int], token: bytes, padding: int) -> int:
    """One incremental update adding a field whose /V is a /DocTimeStamp dictionary (``byte_range``,
    ``token`` + ``padding`` NUL bytes as a literal /Contents); returns file size minus pyHanko's
    'signed zone' length."""
    with open(src, "rb") as f:
        w = IncrementalPdfFileWriter(f)
        contents = token + b"\x00" * padding
        sig = generic.DictionaryObject(
            {
                pdf_name("/Type"): pdf_name("/DocTimeStamp"),
                pdf_name("/Filter"): pdf_name("/Adobe.PPKLite"),
                pdf_name("/SubFilter"): pdf_name("/ETSI.RFC3161"),
                pdf_name("/ByteRange"): generic.ArrayObject([generic.NumberObject(x) for x in byte_range]),
                pdf_name("/Contents"): _Literal(contents),
            }
        )
        field = generic.DictionaryObject(
            {
                pdf_name("/FT"): pdf_name("/Sig"),
                pdf_name("/T"): generic.TextStringObject("LateTS"),
                pdf_name("/V"): w.add_object(sig),
            }
        )
        acro = w.root["/AcroForm"]
        acro["/Fields"].append(w.add_object(field))
        w.update_container(acro)
        with open(out, "wb") as g:
            w.write(g)
    return out.stat().st_size - (byte_range[1] + byte_range[3] + 2 * len(contents) + 2)


def test_a_token_over_the_unsigned_letter_makes_a_later_b_b_signature_b_t(tmp_path, test_pki):
    services = test_pki.services()
    letter = simple_pdf(tmp_path / "letter.pdf", pages=1)
    prefix = letter.read_bytes()
    # 1. a genuine TSA token over the bare letter, before anyone signs it
    token = asyncio.run(
        services.timestamper.async_timestamp(hashlib.sha256(prefix).digest(), "sha256")
    ).dump()
    time.sleep(1.1)
    # 2. later, a B-B signature (no signature timestamp)
    signed = asyncio.run(
        sign(letter, tmp_path / "bb.pdf", test_pki.pki, test_pki.signer, PadesLevel.B_B, services)
    )
    assert signed.read_bytes().startswith(prefix)  # the letter is the signed file's first revision
    # 3. a field holding the old token over the letter's bytes only, padded to "cover the entire file"
    out, byte_range, padding = tmp_path / "late-ts.pdf", [0, len(prefix) - 1, len(prefix) - 1, 1], 0
    while (gap := _add_doc_ts_field(signed, out, byte_range, token, padding)) != 0:
        padding += gap

    report = verify_pdf_sync(out, VerifyOptions(trust=recognized_trust(test_pki.pki)))
    sig = next(s for s in report.signatures if s.field == "Signature1")
    (stamp,) = report.document_timestamps
    # what must hold: the token covers the letter only, never the signature
    assert not stamp.counts, f"counts: {stamp.to_json()['checks']}"
    assert sig.pades_level == "B-B"

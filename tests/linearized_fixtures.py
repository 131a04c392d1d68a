"""A signed file whose first revision is linearized, written byte by byte (no PDF library writes those).

Layout (PDF 32000-1 Annex F): header, linearization dictionary, first-page cross-reference section whose
trailer's /Prev points to the main section at the end, the objects, the main section, and a final
``startxref`` pointing back at the first-page section. The signature dictionary sits in the main
section, so pyHanko's revision numbering puts it in "revision 0" while the signed bytes end after
"revision 1": the /ByteRange ends at the linearized length /L.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from pathlib import Path

from pyhanko.sign import signers

_CONTENTS_HEX = 16384


def _objects(box: tuple[int, int, int, int]) -> dict[int, bytes]:
    page_text = b"BT /F1 24 Tf 72 702 Td (Linearized and signed) Tj ET"
    sig = (
        b"<< /Type /Sig /Filter /Adobe.PPKLite /SubFilter /ETSI.CAdES.detached "
        b"/ByteRange [0 0000000000 0000000000 0000000000] /M (D:"
        + dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S").encode()
        + b"Z) /Contents <"
        + b"0" * _CONTENTS_HEX
        + b"> >>"
    )
    return {
        1: b"<< /Linearized 1 /L 0000000000 /H [0 0] /O 4 /E 0000000000 /N 1 /T 0000000000 >>",
        2: b"<< /Type /Catalog /Pages 3 0 R /AcroForm 9 0 R >>",
        3: b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
        4: b"<< /Type /Page /Parent 3 0 R /MediaBox [0 0 595 842] /Contents 5 0 R "
        b"/Resources << /Font << /F1 6 0 R >> >> /Annots [7 0 R] >>",
        5: b"<< /Length %d >>\nstream\n" % len(page_text) + page_text + b"\nendstream",
        6: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        7: b"<< /Type /Annot /Subtype /Widget /FT /Sig /T (Signature1) /V 8 0 R /P 4 0 R /F 132 "
        b"/Rect [%d %d %d %d] >>" % box,
        8: sig,
        9: b"<< /Fields [7 0 R] /SigFlags 3 >>",
    }


def _xref(entries: list[tuple[int, int]], first: int) -> bytes:
    out = b"xref\n%d %d\n" % (first, len(entries))
    for offset, gen in entries:
        out += b"%010d %05d %s \n" % (offset, gen, b"n" if offset else b"f")
    return out


def _layout() -> tuple[bytearray, dict[str, int]]:
    objs = _objects((0, 0, 0, 0))
    data = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets: dict[int, int] = {}

    def put(num: int) -> None:
        offsets[num] = len(data)
        data.extend(b"%d 0 obj\n" % num + objs[num] + b"\nendobj\n")

    put(1)
    first_xref = len(data)
    first_len = len(_xref([(0, 0)] * 6, 1))
    trailer1 = b"trailer\n<< /Size 10 /Root 2 0 R /Prev 0000000000 >>\nstartxref\n0\n%%EOF\n"
    data.extend(b"\0" * (first_len + len(trailer1)))  # placeholder, written once the offsets are known
    for num in range(2, 10):
        put(num)
    main_xref = len(data)
    data.extend(_xref([(0, 65535)], 0))
    data.extend(_xref([(offsets[n], 0) for n in range(7, 10)], 7)[5:])  # "7 3" subsection
    data.extend(b"trailer\n<< /Size 10 /Root 2 0 R >>\nstartxref\n%d\n%%%%EOF\n" % first_xref)
    first = _xref([(offsets[n], 0) for n in range(1, 7)], 1) + trailer1.replace(
        b"/Prev 0000000000", b"/Prev %010d" % main_xref
    )
    data[first_xref : first_xref + len(first)] = first
    length = len(data)
    lin = (
        objs[1]
        .replace(b"/L 0000000000", b"/L %010d" % length)
        .replace(b"/T 0000000000", b"/T %010d" % main_xref)
    )
    lin = lin.replace(b"/E 0000000000", b"/E %010d" % offsets[7])
    data[offsets[1] : offsets[1] + len(lin) + 8] = b"1 0 obj\n" + lin
    return data, {"length": length}


async def linearized_signed_pdf(path: Path, signer: signers.Signer) -> Path:
    """The file above, signed (B-B) over everything: the /ByteRange ends at /L."""
    data, info = _layout()
    start = data.index(b"/Contents <") + len(b"/Contents ")
    end = start + _CONTENTS_HEX + 2
    byte_range = b"[0 %010d %010d %010d]" % (start, end, info["length"] - end)
    at = data.index(b"[0 0000000000 0000000000 0000000000]")
    data[at : at + len(byte_range)] = byte_range
    digest = hashlib.sha256(bytes(data[:start]) + bytes(data[end:])).digest()
    cms = await signer.async_sign(digest, "sha256", use_pades=True)
    hexed = cms.dump().hex().encode()
    assert len(hexed) <= _CONTENTS_HEX
    data[start + 1 : start + 1 + len(hexed)] = hexed
    assert re.search(rb"startxref\s+\d+\s+%%EOF\s*$", bytes(data))
    path.write_bytes(bytes(data))
    return path

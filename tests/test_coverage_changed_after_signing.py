"""A signed file changed afterwards (the same primitive as test_coverage_doc_timestamp),
its signature dictionary written again with a NUL-padded literal /Contents so that pyHanko's length
test reads ENTIRE_FILE: the verifier must still see the change (it said TOTAL-PASSED, unmodified)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.generic import pdf_name
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

from fixtures.generate import simple_pdf
from signing.model import PadesLevel
from signing.verify import VerifyOptions, verify_pdf_sync

from .test_coverage_doc_timestamp import _Literal
from .verify_fixtures import recognized_trust, sign


def _tamper(src: Path, out: Path, padding: int) -> int:
    with open(src, "rb") as f:
        w = IncrementalPdfFileWriter(f)
        page = w.root["/Pages"]["/Kids"][0].get_object()
        new = w.add_object(
            generic.StreamObject(stream_data=b"BT /F1 14 Tf 72 700 Td (PAY 1,000,000 TO MALLORY) Tj ET")
        )
        page[pdf_name("/Contents")] = new
        w.update_container(page)
        for fref in w.root["/AcroForm"]["/Fields"]:
            v = fref.get_object().raw_get("/V")
            d = v.get_object()
            token = d.raw_get("/Contents").original_bytes.rstrip(b"\x00")
            d[pdf_name("/Contents")] = _Literal(token + b"\x00" * padding)
            br = [int(x) for x in d["/ByteRange"]]
            w.mark_update(v)
        with open(out, "wb") as g:
            w.write(g)
    return out.stat().st_size - (br[1] + br[3] + 2 * (len(token) + padding) + 2)


def test_changed_after_signing_with_padded_literal_contents(tmp_path, test_pki):
    letter = simple_pdf(tmp_path / "letter.pdf", pages=1)
    signed = asyncio.run(
        sign(letter, tmp_path / "bb.pdf", test_pki.pki, test_pki.signer, PadesLevel.B_B, test_pki.services())
    )
    out, padding = tmp_path / "tampered.pdf", 0
    while (gap := _tamper(signed, out, padding)) != 0:
        padding += gap
    report = verify_pdf_sync(out, VerifyOptions(trust=recognized_trust(test_pki.pki)))
    (sig,) = report.signatures
    assert sig.indication.value != "TOTAL-PASSED"
    assert not sig.checks.unmodified

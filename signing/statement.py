"""A one-page PDF holding a short statement, for a signer to sign (the enrolment statement)."""

from __future__ import annotations

import io

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.generic import pdf_name
from pyhanko.pdf_utils.writer import PdfFileWriter

__all__ = ["statement_pdf"]

_A4 = (0, 0, 595, 842)


def _escape(line: str) -> bytes:
    safe = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return safe.encode("latin-1", "replace")


def statement_pdf(lines: list[str]) -> bytes:
    """An A4 page with ``lines`` of text (Latin-1; others show as ``?``), top to bottom."""
    writer = PdfFileWriter()
    font = writer.add_object(
        generic.DictionaryObject(
            {
                pdf_name("/Type"): pdf_name("/Font"),
                pdf_name("/Subtype"): pdf_name("/Type1"),
                pdf_name("/BaseFont"): pdf_name("/Helvetica"),
            }
        )
    )
    body = b"BT /F1 12 Tf 16 TL 72 760 Td " + b" ".join(b"(" + _escape(x) + b") '" for x in lines) + b" ET"
    page = generic.DictionaryObject(
        {
            pdf_name("/Type"): pdf_name("/Page"),
            pdf_name("/MediaBox"): generic.ArrayObject(map(generic.NumberObject, _A4)),
            pdf_name("/Contents"): writer.add_object(generic.StreamObject(stream_data=body)),
            pdf_name("/Resources"): generic.DictionaryObject(
                {pdf_name("/Font"): generic.DictionaryObject({pdf_name("/F1"): font})}
            ),
        }
    )
    writer.insert_page(page)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()

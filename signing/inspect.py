"""Look at an input PDF before anything is done with it: readable, unencrypted, how many pages and signatures."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pyhanko.pdf_utils.misc import PdfError, PdfReadError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields

from .errors import DamagedPdfError, EncryptedPdfError, NotAPdfError

__all__ = ["PdfInfo", "check_pdf_envelope", "inspect_pdf"]


@dataclass(frozen=True)
class PdfInfo:
    pages: int
    signature_count: int
    """Filled signature fields (document timestamps included)."""


def check_pdf_envelope(path: Path) -> None:
    """Cheap checks before parsing: a %PDF- header near the start and %%EOF near the end."""
    try:
        with open(path, "rb") as f:
            head = f.read(1024)
            f.seek(max(0, os.fstat(f.fileno()).st_size - 1024))
            tail = f.read(1024)
    except OSError as exc:
        raise NotAPdfError(f"cannot read the document: {exc.strerror}") from exc
    if b"%PDF-" not in head:
        raise NotAPdfError("the file is not a PDF (no %PDF- header in its first 1024 bytes)")
    if b"%%EOF" not in tail:
        raise DamagedPdfError("the PDF is truncated: there is no %%EOF marker at its end")


def inspect_pdf(path: Path) -> PdfInfo:
    """Parse ``path`` once; raise a typed error saying what is wrong if it cannot be signed."""
    check_pdf_envelope(path)
    try:
        with open(path, "rb") as f:
            reader = PdfFileReader(f, strict=True)
            if reader.encrypted:
                raise EncryptedPdfError("the PDF is encrypted; signing encrypted PDFs is not supported")
            pages = int(reader.root["/Pages"]["/Count"])
            signed = sum(
                1 for _, value, _ in fields.enumerate_sig_fields(reader, filled_status=True) if value
            )
    except (EncryptedPdfError, NotAPdfError):
        raise
    except (PdfReadError, PdfError) as exc:
        raise DamagedPdfError(f"the PDF is damaged and cannot be read: {exc}") from exc
    except Exception as exc:  # hostile files raise all sorts
        raise DamagedPdfError(f"the PDF is damaged and cannot be read: {exc}") from exc
    return PdfInfo(pages=pages, signature_count=signed)

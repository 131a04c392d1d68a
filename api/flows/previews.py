"""Page images of stored documents, rendered on the server with PDFium (pypdfium2) and cached per document.

The signer page shows what the signer is about to sign without PDF.js or anything from a CDN: each page is
a PNG rendered once, kept beside the PDF (``<sha>.previews/p<N>-w<width>.png``, written whole then renamed)
and removed with the document's content (:func:`remove_previews`).
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import threading
from pathlib import Path

from api.store.files import DocumentStore

__all__ = ["PREVIEW_WIDTH", "PreviewError", "page_image", "remove_previews"]

PREVIEW_WIDTH = 820
"""Pixels across a rendered page: readable on a laptop, light enough for a phone."""
_MAX_PIXELS = 820 * 4000  # a very tall page is scaled down to this many pixels
_PDFIUM = threading.Lock()  # PDFium is not thread-safe: one render at a time in this process


class PreviewError(Exception):
    """The page cannot be rendered (no such page, or a PDF that PDFium cannot read)."""


def _previews_dir(store: DocumentStore, sha256: str) -> Path:
    return store.path_for(sha256).with_suffix(".previews")


def _render(pdf_path: Path, page_number: int, width: int) -> bytes:
    import pypdfium2 as pdfium

    with _PDFIUM:
        try:
            pdf = pdfium.PdfDocument(str(pdf_path))
        except pdfium.PdfiumError as exc:
            raise PreviewError(f"the PDF cannot be rendered: {exc}") from exc
        try:
            if not 1 <= page_number <= len(pdf):
                raise PreviewError(f"page {page_number} does not exist: the document has {len(pdf)} page(s)")
            page = pdf[page_number - 1]
            try:
                w, h = page.get_size()
                scale = width / w if w > 0 else 1.0
                if w * h * scale * scale > _MAX_PIXELS:
                    scale = (_MAX_PIXELS / (w * h)) ** 0.5
                bitmap = page.render(scale=scale, may_draw_forms=True)
                image = bitmap.to_pil()
            finally:
                page.close()
        finally:
            pdf.close()
    out = io.BytesIO()
    image.convert("RGB").save(out, "PNG", optimize=True)
    return out.getvalue()


def _cached(store: DocumentStore, sha256: str, page_number: int, width: int) -> bytes:
    folder = _previews_dir(store, sha256)
    path = folder / f"p{page_number}-w{width}.png"
    if path.exists():
        return path.read_bytes()
    png = _render(store.path_for(sha256), page_number, width)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    tmp.write_bytes(png)
    os.replace(tmp, path)  # complete or absent, whoever renders it first
    return png


async def page_image(
    store: DocumentStore, sha256: str, page_number: int, width: int = PREVIEW_WIDTH
) -> bytes:
    """The PNG of one page (1-based) of a stored document, rendered once and then read from the cache."""
    return await asyncio.to_thread(_cached, store, sha256, page_number, width)


def remove_previews(store: DocumentStore, sha256: str) -> None:
    """Forget the page images of a document whose content is removed."""
    shutil.rmtree(_previews_dir(store, sha256), ignore_errors=True)

"""What a signature's /ByteRange covers, judged more strictly than pyHanko does.

pyHanko's ``EmbeddedPdfSignature.evaluate_signature_coverage`` answers ENTIRE_FILE when the two ranges and
twice the /Contents length (plus the brackets) add up to the file's size, without checking that the ranges
meet at the /Contents value or that the second one ends where the file does. A /Contents written as a
literal string and padded makes that sum come out for a range that covers part of the file, so a signed
file changed afterwards, or a timestamp over other bytes, would read as covering everything. Here
ENTIRE_FILE also needs the ranges to be contiguous around the /Contents value, the second to end at the
file's end, and the gap to hold exactly that value as a hexadecimal string.
"""

from __future__ import annotations

import binascii
import os
import re

from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature
from pyhanko.sign.validation.status import SignatureCoverageLevel

__all__ = ["StrictSignature", "byte_range", "gap_holds_contents"]

_HEX_TOKEN = re.compile(rb"<([0-9A-Fa-f]*)>\Z")  # the gap is exactly two hex digits a byte, so no spaces


def byte_range(emb: EmbeddedPdfSignature) -> tuple[int, int, int, int] | None:
    """The four /ByteRange numbers, or ``None`` when they are not four integers."""
    try:
        values = tuple(int(v) for v in emb.byte_range)
    except (TypeError, ValueError):
        return None
    if len(values) != 4:
        return None
    start1, len1, start2, len2 = values
    return start1, len1, start2, len2


def gap_holds_contents(emb: EmbeddedPdfSignature, stream, start: int, end: int) -> bool:
    """Whether the bytes between the two ranges are the /Contents value, written as ``<hex>``."""
    if end - start != len(emb.pkcs7_content) * 2 + 2:
        return False
    stream.seek(start)
    token = _HEX_TOKEN.match(stream.read(end - start))
    if token is None:
        return False
    return binascii.unhexlify(token.group(1)) == bytes(emb.pkcs7_content)  # even length: checked above


class StrictSignature(EmbeddedPdfSignature):
    """pyHanko's embedded signature with ENTIRE_FILE only for a range that really spans the file."""

    def evaluate_signature_coverage(self) -> SignatureCoverageLevel:
        level = super().evaluate_signature_coverage()
        if level is not SignatureCoverageLevel.ENTIRE_FILE:
            return level
        return level if self._spans_file(self._covered_size()) else SignatureCoverageLevel.UNCLEAR

    def _covered_size(self) -> int:
        """The size the second range must end at: the file's."""
        stream = self.reader.stream
        stream.seek(0, os.SEEK_END)
        return stream.tell()

    def _spans_file(self, size: int | None) -> bool:
        found = byte_range(self)
        if found is None or size is None:
            return False
        start1, len1, start2, len2 = found
        return (
            start1 == 0
            and start2 + len2 == size
            and gap_holds_contents(self, self.reader.stream, len1, start2)
        )

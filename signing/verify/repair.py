"""Read a PDF whose cross-reference data is damaged, without changing a byte that any signature covers.

When the normal reader fails on a file that starts like a PDF and still ends with ``%%EOF`` (a truncated
file is not repaired), the objects are found by scanning for
``N G obj`` and a fresh cross-reference table and trailer are appended *after* the original bytes (in
memory). Every object keeps its offset, so every /ByteRange still reads exactly the bytes that were
signed. A signature whose /ByteRange covers the whole original file is covering all of it (the appended
table is the verifier's, not the file's); the revision history of the original is lost, so a signature
over an earlier revision cannot have its later changes analysed and is not passed.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature
from pyhanko.sign.validation.status import SignatureCoverageLevel

from .coverage import StrictSignature

__all__ = [
    "MAX_REPAIR_SIZE",
    "REPAIR_NOTE",
    "REPEATED_NOTE",
    "RepairedSignature",
    "embedded_signature",
    "open_repaired",
    "repair_notes",
]

#: Larger files are not repaired (the repair holds the file in memory).
MAX_REPAIR_SIZE = 64 * 1024 * 1024

REPAIR_NOTE = (
    "the file's cross-reference data is damaged ({error}); it was read by scanning its objects, without "
    "changing any signed byte. Its revision history could not be recovered"
)
REPEATED_NOTE = (
    "objects {numbers} are defined more than once in the damaged file: which definition a viewer shows is "
    "not determined, so no signature is taken to cover the file as shown"
)

_OBJ = re.compile(rb"(?<![0-9])(\d{1,10})\s+(\d{1,5})\s+obj\b")
_ROOT = re.compile(rb"/Root\s+(\d{1,10})\s+(\d{1,5})\s+R")
_INFO = re.compile(rb"/Info\s+(\d{1,10})\s+(\d{1,5})\s+R")
_CATALOG = re.compile(rb"/Type\s*/Catalog\b")


class _RepairedBytes(io.BytesIO):
    """The original bytes plus an appended table; ``original_size`` is where the file really ends."""

    original_size: int = 0
    repeated_objects: frozenset[int] = frozenset()
    """Objects defined more than once: which definition a viewer shows is then not determined."""


def _scan(data: bytes) -> tuple[dict[int, tuple[int, int]], set[int]]:
    """Object number -> (offset, generation), a later definition (incremental update) winning; and the
    numbers defined more than once."""
    found: dict[int, tuple[int, int]] = {}
    repeated: set[int] = set()
    for m in _OBJ.finditer(data):
        num = int(m.group(1))
        if num in found:
            repeated.add(num)
        found[num] = (m.start(), int(m.group(2)))
    return found, repeated


def _root(data: bytes, objects: dict[int, tuple[int, int]]) -> tuple[int, int] | None:
    roots = list(_ROOT.finditer(data))
    if roots:
        return int(roots[-1].group(1)), int(roots[-1].group(2))
    for m in _CATALOG.finditer(data):  # no trailer left: the last object that says it is the catalog
        before = [(off, num) for num, (off, _g) in objects.items() if off < m.start()]
        if before:
            num = max(before)[1]
            return num, objects[num][1]
    return None


def _table(data: bytes) -> tuple[bytes, set[int]] | None:
    objects, repeated = _scan(data)
    root = _root(data, objects)
    if not objects or root is None or root[0] not in objects:
        return None
    size = max(objects) + 1
    # One subsection per run of consecutive object numbers found, so the table costs what the file holds:
    # a damaged "7220262 0 obj" must not make millions of free entries (it made verification take 30 s).
    lines = [b"xref\n0 1\n0000000000 65535 f \n"]
    numbers = sorted(n for n in objects if n > 0)
    run_start = 0
    for i, num in enumerate(numbers):
        if i + 1 == len(numbers) or numbers[i + 1] != num + 1:
            run = numbers[run_start : i + 1]
            lines.append(b"%d %d\n" % (run[0], len(run)))
            lines.extend(b"%010d %05d n \n" % objects[n] for n in run)
            run_start = i + 1
    trailer = b"/Size %d /Root %d %d R" % (size, *root)
    infos = list(_INFO.finditer(data))
    if infos and int(infos[-1].group(1)) in objects:
        trailer += b" /Info %d %d R" % (int(infos[-1].group(1)), int(infos[-1].group(2)))
    start = len(data) + 1
    table = b"\n" + b"".join(lines) + b"trailer\n<< " + trailer + b" >>\nstartxref\n%d\n%%%%EOF\n" % start
    return table, repeated


def open_repaired(path: Path) -> PdfFileReader | None:
    """A reader over the repaired bytes of ``path``, or None when the file cannot be repaired."""
    try:
        if path.stat().st_size > MAX_REPAIR_SIZE:
            return None
        data = path.read_bytes()
    except OSError:
        return None
    if not data.startswith(b"%PDF-") or b"%%EOF" not in data[-1024:]:
        return None  # not a PDF, or cut short: a truncated file stays an error, not a repair
    made = _table(data)
    if made is None:
        return None
    tail, repeated = made
    stream = _RepairedBytes(data + tail)
    stream.original_size = len(data)
    stream.repeated_objects = frozenset(repeated)
    try:
        reader = PdfFileReader(stream, strict=False)
        reader.root  # noqa: B018 - the catalog must resolve
    except Exception:  # noqa: BLE001 - beyond repair
        return None
    return reader


class RepairedSignature(StrictSignature):
    """An embedded signature of a repaired file: coverage is judged against the original bytes."""

    def evaluate_signature_coverage(self) -> SignatureCoverageLevel:
        original = getattr(self.reader.stream, "original_size", None)
        if getattr(self.reader.stream, "repeated_objects", None):
            original = None  # ambiguous content: never "the whole file, as signed"
        if self._spans_file(original):
            return SignatureCoverageLevel.ENTIRE_FILE
        # An earlier revision: its boundaries are gone with the damaged table, so never "entire revision".
        level = EmbeddedPdfSignature.evaluate_signature_coverage(self)
        if level in (SignatureCoverageLevel.ENTIRE_FILE, SignatureCoverageLevel.ENTIRE_REVISION):
            return SignatureCoverageLevel.CONTIGUOUS_BLOCK_FROM_START
        return level


def embedded_signature(reader: PdfFileReader, sig_field, name: str) -> EmbeddedPdfSignature:
    """The right kind of embedded signature for ``reader`` (repaired or not), with strict coverage."""
    cls = RepairedSignature if isinstance(reader.stream, _RepairedBytes) else StrictSignature
    return cls(reader, sig_field, name)


def repair_notes(reader: PdfFileReader, error: str) -> list[str]:
    """The notes a report on a repaired file carries."""
    notes = [REPAIR_NOTE.format(error=error)]
    repeated: frozenset[int] = getattr(reader.stream, "repeated_objects", frozenset())
    if repeated:
        notes.append(REPEATED_NOTE.format(numbers=", ".join(str(n) for n in sorted(repeated)[:10])))
    return notes

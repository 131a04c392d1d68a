"""Generated files for the modification tests: a form with one text field over or beside page text, and
the later revisions of the shadow attacks (hide, replace, overlay) and of legitimate form filling."""

from __future__ import annotations

import datetime
import shutil
from pathlib import Path

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.generic import pdf_name
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.writer import PdfFileWriter

#: Where the field sits: over the page text ("over") or in blank space below it ("blank").
FIELD_RECTS = {"over": (60, 690, 400, 730), "blank": (60, 400, 400, 440)}
PAGE_TEXT_AT = (72, 702)


def _names(*pairs) -> generic.DictionaryObject:
    return generic.DictionaryObject({pdf_name(k): v for k, v in pairs})


def _numbers(*values) -> generic.ArrayObject:
    return generic.ArrayObject(generic.FloatObject(v) for v in values)


def _font(writer) -> generic.IndirectObject:
    return writer.add_object(
        _names(
            ("/Type", pdf_name("/Font")),
            ("/Subtype", pdf_name("/Type1")),
            ("/BaseFont", pdf_name("/Helvetica")),
        )
    )


def appearance(writer, font, rect, text: str, *, opaque: bool, shift: float = 0) -> generic.IndirectObject:
    """A widget's normal appearance: optionally an opaque white box, then ``text`` in 24 pt (moved right by
    ``shift`` points)."""
    width, height = rect[2] - rect[0], rect[3] - rect[1]
    ops = b"/Tx BMC q "
    if opaque:
        ops += b"1 g 0 0 %d %d re f " % (width, height)
    if text:
        ops += b"0 g BT /Helv 24 Tf %.2f 12 Td (" % (12 + shift) + text.encode("latin-1") + b") Tj ET "
    ops += b"Q EMC"
    stream = generic.StreamObject(
        _names(
            ("/Type", pdf_name("/XObject")),
            ("/Subtype", pdf_name("/Form")),
            ("/BBox", _numbers(0, 0, width, height)),
            ("/Resources", _names(("/Font", _names(("/Helv", font))))),
        ),
        stream_data=ops,
    )
    return writer.add_object(stream)


def form_pdf(
    path: Path, *, page_text: str, field_at: str, field_text: str, opaque: bool, spare_text: str | None = None
) -> Path:
    """One A4 page showing ``page_text``, with a text field "Amount" at ``FIELD_RECTS[field_at]``.

    ``spare_text``: also an opaque appearance with that text, unused, in the form's default resources
    (/DR /XObject /Spare): what a hide-and-replace attacker prepares before signing."""
    w = PdfFileWriter()
    font = _font(w)
    x, y = PAGE_TEXT_AT
    content = w.add_object(
        generic.StreamObject(
            stream_data=b"BT /F1 24 Tf %d %d Td (" % (x, y) + page_text.encode() + b") Tj ET"
        )
    )
    rect = FIELD_RECTS[field_at]
    field = w.add_object(
        _names(
            ("/Type", pdf_name("/Annot")),
            ("/Subtype", pdf_name("/Widget")),
            ("/FT", pdf_name("/Tx")),
            ("/T", generic.TextStringObject("Amount")),
            ("/V", generic.TextStringObject(field_text)),
            ("/DA", generic.TextStringObject("/Helv 24 Tf 0 g")),
            ("/Rect", _numbers(*rect)),
            ("/F", generic.NumberObject(4)),
            ("/AP", _names(("/N", appearance(w, font, rect, field_text, opaque=opaque)))),
        )
    )
    page = _names(
        ("/Type", pdf_name("/Page")),
        ("/MediaBox", _numbers(0, 0, 595, 842)),
        ("/Contents", content),
        ("/Resources", _names(("/Font", _names(("/F1", font))))),
        ("/Annots", generic.ArrayObject([field])),
    )
    w.insert_page(page)
    field.get_object()[pdf_name("/P")] = w.root["/Pages"]["/Kids"][0]
    resources = _names(("/Font", _names(("/Helv", font))))
    if spare_text is not None:
        spare = appearance(w, font, rect, spare_text, opaque=True)
        resources[pdf_name("/XObject")] = _names(("/Spare", spare))
    w.root[pdf_name("/AcroForm")] = w.add_object(
        _names(
            ("/Fields", generic.ArrayObject([field])),
            ("/DR", resources),
            ("/DA", generic.TextStringObject("/Helv 0 Tf 0 g")),
        )
    )
    with open(path, "wb") as f:
        w.write(f)
    return path


def fill_field(src: Path, out: Path, text: str, *, opaque: bool, shift: float = 0) -> Path:
    """An incremental update that sets the field's value and appearance, as a form filler would."""
    shutil.copyfile(src, out)
    with open(out, "r+b") as f:
        w = IncrementalPdfFileWriter(f)
        field_ref = w.root["/AcroForm"].raw_get("/Fields")[0]
        field = field_ref.get_object()
        font = w.root["/AcroForm"]["/DR"]["/Font"].raw_get("/Helv")
        rect = [int(float(v)) for v in field["/Rect"]]
        field[pdf_name("/V")] = generic.TextStringObject(text)
        field[pdf_name("/AP")] = _names(("/N", appearance(w, font, rect, text, opaque=opaque, shift=shift)))
        w.update_container(field)
        w.write_in_place()
    return out


def point_field_at_spare(src: Path, out: Path, text: str) -> Path:
    """An incremental update that fills the field with ``text`` and makes its appearance the spare one
    prepared before signing: no new appearance stream, only a reference changed."""
    shutil.copyfile(src, out)
    with open(out, "r+b") as f:
        w = IncrementalPdfFileWriter(f)
        form = w.root["/AcroForm"]
        field = form.raw_get("/Fields")[0].get_object()
        field[pdf_name("/V")] = generic.TextStringObject(text)
        field[pdf_name("/AP")] = _names(("/N", form["/DR"]["/XObject"].raw_get("/Spare")))
        w.update_container(field)
        w.write_in_place()
    return out


def free_objects(src: Path, out: Path, refs: list[tuple[int, int]]) -> Path:
    """Append a revision whose classic cross-reference section only frees ``refs`` (idnum, generation)."""
    from pyhanko.pdf_utils.reader import PdfFileReader

    data = src.read_bytes()
    with open(src, "rb") as f:
        reader = PdfFileReader(f)
        prev = reader.xrefs.get_startxref_for_revision(reader.xrefs.total_revisions - 1)
        size = int(reader.trailer["/Size"])
        root = reader.trailer.raw_get("/Root")
    # the free list: 0 -> each freed object -> 0, every freed entry with its generation bumped
    numbers = sorted(n for n, _ in refs)
    lines = [b"xref", b"0 1", b"%010d 65535 f " % numbers[0]]
    for i, (num, gen) in enumerate(sorted(refs)):
        nxt = numbers[i + 1] if i + 1 < len(numbers) else 0
        lines += [b"%d 1" % num, b"%010d %05d f " % (nxt, gen + 1)]
    body = b"\n" + b"\n".join(lines) + b"\n"
    start = len(data) + 1
    trailer = b"trailer\n<< /Size %d /Root %d %d R /Prev %d >>\nstartxref\n%d\n%%%%EOF\n" % (
        size,
        root.idnum,
        root.generation,
        prev,
        start,
    )
    out.write_bytes(data + body + trailer)
    return out


def add_structure_tree(src: Path, out: Path) -> Path:
    """An incremental update that tags the document: a new structure tree (as Acrobat's "Autotag" adds)."""
    shutil.copyfile(src, out)
    with open(out, "r+b") as f:
        w = IncrementalPdfFileWriter(f)
        page_ref = w.root["/Pages"].raw_get("/Kids")[0]
        tree = w.add_object(_names(("/Type", pdf_name("/StructTreeRoot"))))
        doc = w.add_object(
            _names(
                ("/Type", pdf_name("/StructElem")),
                ("/S", pdf_name("/Document")),
                ("/P", tree),
                ("/Pg", page_ref),
                ("/K", generic.ArrayObject()),
            )
        )
        tree.get_object()[pdf_name("/K")] = doc
        w.root[pdf_name("/StructTreeRoot")] = tree
        w.root[pdf_name("/MarkInfo")] = _names(("/Marked", generic.BooleanObject(True)))
        w.update_root()
        w.write_in_place()
    return out


def add_comment(src: Path, out: Path, rect: tuple[int, int, int, int], text: str, *, cover: bool) -> Path:
    """An incremental update adding a comment to the first page, keeping its other annotations: a sticky
    note (/Text, no appearance of its own), or with ``cover`` a /Square whose appearance is an opaque box
    with ``text``."""
    shutil.copyfile(src, out)
    with open(out, "r+b") as f:
        w = IncrementalPdfFileWriter(f)
        page_ref = w.root["/Pages"].raw_get("/Kids")[0]
        page = page_ref.get_object()
        annot = _names(
            ("/Type", pdf_name("/Annot")),
            ("/Subtype", pdf_name("/Square" if cover else "/Text")),
            ("/Rect", _numbers(*rect)),
            ("/F", generic.NumberObject(4)),
            ("/P", page_ref),
            ("/Contents", generic.TextStringObject(text)),
        )
        if cover:
            annot[pdf_name("/AP")] = _names(("/N", appearance(w, _font(w), rect, text, opaque=True)))
        annot = w.add_object(annot)
        annots = page.get("/Annots")
        existing = [annots.raw_get(i) for i in range(len(annots))] if annots else []
        page[pdf_name("/Annots")] = generic.ArrayObject([*existing, annot])
        w.update_container(page)
        w.write_in_place()
    return out


def prune_vri(src: Path, out: Path) -> Path:
    """An incremental update maintaining the DSS: the first VRI entry pruned (when there are several), the
    last one updated (/TU)."""
    shutil.copyfile(src, out)
    with open(out, "r+b") as f:
        w = IncrementalPdfFileWriter(f)
        dss = w.root["/DSS"]
        vri_raw = dss.raw_get("/VRI")
        vri = vri_raw.get_object()
        keys = list(vri)
        if len(keys) > 1:  # a B-LTA signed in one DSS-and-timestamp update has one VRI entry
            del vri[keys[0]]
        entry_raw = vri.raw_get(keys[-1])
        entry = entry_raw.get_object()
        entry[pdf_name("/TU")] = generic.pdf_date(datetime.datetime.now(datetime.UTC))
        if isinstance(entry_raw, generic.IndirectObject):
            w.update_container(entry)
        w.update_container(vri if isinstance(vri_raw, generic.IndirectObject) else dss)
        w.write_in_place()
    return out

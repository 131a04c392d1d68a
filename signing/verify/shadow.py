"""Shadow attacks: does the final revision show what the signed revision showed?

A later revision can swap an object a signed page shows (its content stream, a font, an XObject) or put
an annotation over it, sometimes in ways a structural diff calls form filling (Mainka et al., "Shadow
Attacks", NDSS 2021: hide, replace, hide-and-replace). Each page of the signed revision is compared with
the same page of the final revision, first structurally (everything reachable from the page that
rendering uses, resolved recursively: content streams, resources with fonts and XObjects, annotation
appearances, optional-content configuration), then, for the pages that differ, by rendering both
revisions with PDFium in a limited child process (:mod:`signing.verify.pixels`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.reader import PdfFileReader

__all__ = ["Finding", "ShadowResult", "compare_revisions", "structural_differences"]

#: Keys that point back up or across the document: never part of what one page shows.
_SKIP_KEYS = frozenset({"/Parent", "/P", "/StructParent", "/StructParents", "/Annots", "/B", "/Thumb", "/Pg"})
_PAGE_KEYS = ("/Contents", "/Resources", "/MediaBox", "/CropBox", "/Rotate", "/UserUnit", "/Group")
_INHERITED = ("/Resources", "/MediaBox", "/CropBox", "/Rotate")
_ANNOT_KEYS = ("/Subtype", "/Rect", "/F", "/AS", "/AP", "/OC", "/Matrix", "/BS", "/Border")
_MAX_PAGES = 2000
Rect = tuple[float, float, float, float]
_MAX_OBJECTS = 50_000


@dataclass(frozen=True)
class Finding:
    """One change to what a page shows."""

    page: int
    """1-based page number."""
    kind: str
    """``hide``, ``replace``, ``overlay`` or ``pages`` (pages added)."""
    detail: str
    structural: bool = False
    """Found by comparing objects only; rendering settles it when it can (same pixels: no change)."""

    def describe(self) -> str:
        return f"page {self.page}: {self.kind}: {self.detail}"


@dataclass
class ShadowResult:
    findings: list[Finding] = field(default_factory=list)
    incomplete: str | None = None
    """Why the comparison could not be finished (the change is then neither accepted nor rejected)."""
    rendered_pages: tuple[int, ...] = ()


class _TooComplex(Exception):
    pass


class _Hasher:
    """Digests of PDF objects with references resolved (each object once, cycles cut)."""

    def __init__(self) -> None:
        self._memo: dict[tuple[int, int], bytes] = {}
        self.visited = 0

    def digest(self, obj: Any) -> bytes:
        h = hashlib.sha256()
        self._feed(h, obj, 0)
        return h.digest()

    def _ref_digest(self, ref: generic.IndirectObject) -> bytes:
        key = (ref.idnum, ref.generation)
        if key in self._memo:
            return self._memo[key]
        self._memo[key] = b"cycle:" + str(key).encode()
        self.visited += 1
        if self.visited > _MAX_OBJECTS:
            raise _TooComplex
        h = hashlib.sha256()
        self._feed(h, ref.get_object(), 0)
        self._memo[key] = h.digest()
        return self._memo[key]

    def _feed(self, h: Any, obj: Any, depth: int) -> None:
        if depth > 64:
            raise _TooComplex
        if isinstance(obj, generic.IndirectObject):
            h.update(b"R" + self._ref_digest(obj))
        elif isinstance(obj, generic.StreamObject):
            h.update(b"S" + hashlib.sha256(obj.encoded_data).digest())
            self._feed_dict(h, obj, depth)
        elif isinstance(obj, generic.DictionaryObject):
            self._feed_dict(h, obj, depth)
        elif isinstance(obj, generic.ArrayObject):
            h.update(b"[")
            for item in obj:
                self._feed(h, item, depth + 1)
            h.update(b"]")
        elif isinstance(obj, generic.TextStringObject | generic.ByteStringObject):
            h.update(b"s" + bytes(obj.original_bytes) + b"\0")
        else:
            h.update(b"p" + repr(obj).encode() + b"\0")

    def _feed_dict(self, h: Any, obj: generic.DictionaryObject, depth: int) -> None:
        h.update(b"<")
        for key in sorted(obj.keys()):
            if key in _SKIP_KEYS:
                continue
            h.update(key.encode() + b"=")
            self._feed(h, obj.raw_get(key), depth + 1)
        h.update(b">")


def _pages(root: Any) -> Iterator[tuple[generic.DictionaryObject, dict[str, Any]]]:
    """Leaf pages in order, with the attributes they inherit (cycle-safe, capped)."""
    seen: set[tuple[int, int]] = set()
    stack: list[tuple[Any, dict[str, Any]]] = [(root.raw_get("/Pages"), {})]
    count = 0
    while stack:
        node_ref, inherited = stack.pop()
        if isinstance(node_ref, generic.IndirectObject):
            key = (node_ref.idnum, node_ref.generation)
            if key in seen:
                continue
            seen.add(key)
        node = node_ref.get_object() if isinstance(node_ref, generic.IndirectObject) else node_ref
        if not isinstance(node, generic.DictionaryObject):
            continue
        attrs = dict(inherited)
        for k in _INHERITED:
            if k in node:
                attrs[k] = node.raw_get(k)
        if node.get("/Type") == "/Pages" or "/Kids" in node:
            kids = node.get("/Kids")
            if isinstance(kids, generic.ArrayObject):
                stack.extend((kid, attrs) for kid in reversed(kids))
            continue
        count += 1
        if count > _MAX_PAGES:
            raise _TooComplex
        yield node, attrs


@dataclass(frozen=True)
class _PageView:
    content: bytes
    annotations: bytes
    annotation_count: int
    draws: bool
    """The page has content streams with something in them."""
    empty_fields: tuple[tuple[float, float, float, float], ...] = ()
    """Rectangles of form-field widgets without a value: what they show is a placeholder, not content."""
    valued_fields: tuple[tuple[float, float, float, float], ...] = ()
    """Rectangles of form-field widgets with a value: what they show was signed."""


_NOT_SHOWN_FLAGS = 2 | 32  # Hidden, NoView


def _shown(annot: generic.DictionaryObject) -> bool:
    """False for annotations no viewer draws: hidden, no-view, or with an empty rectangle (invisible
    signatures). Their visibility is compared, not ignored: one that becomes visible changes the page."""
    try:
        flags = int(annot.get("/F", 0))
        x0, y0, x1, y1 = (float(v) for v in annot["/Rect"])
    except (KeyError, TypeError, ValueError):
        return True
    return not (flags & _NOT_SHOWN_FLAGS) and x0 != x1 and y0 != y1


def _inherited(annot: generic.DictionaryObject, key: str) -> Any:
    node: Any = annot
    for _ in range(32):
        if not isinstance(node, generic.DictionaryObject):
            return None
        if key in node:
            return node.get(key)
        node = node.get("/Parent")
    return None


def _field_rect(annot: generic.DictionaryObject) -> tuple[tuple[float, float, float, float], bool] | None:
    """For a form-field widget: its rectangle, and whether its field has a value (the signer saw one)."""
    if annot.get("/Subtype") != "/Widget" or _inherited(annot, "/FT") is None:
        return None
    value = _inherited(annot, "/V")
    empty = value is None or (
        isinstance(value, generic.TextStringObject | generic.ByteStringObject) and not str(value)
    )
    try:
        x0, y0, x1, y1 = (float(v) for v in annot["/Rect"])
    except (KeyError, TypeError, ValueError):
        return None
    return (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)), not empty


def _draws(contents: Any) -> bool:
    items = contents.get_object() if isinstance(contents, generic.IndirectObject) else contents
    if not isinstance(items, generic.ArrayObject):
        items = [items]
    for item in items:
        stream = item.get_object() if isinstance(item, generic.IndirectObject) else item
        if isinstance(stream, generic.StreamObject) and stream.encoded_data.strip():
            return True
    return False


def _view(reader: Any) -> tuple[list[_PageView], bytes]:
    hasher = _Hasher()
    root = reader.root
    doc_level = hasher.digest(root.raw_get("/OCProperties")) if "/OCProperties" in root else b""
    views = []
    for page, attrs in _pages(root):
        parts = generic.DictionaryObject()
        for k in _PAGE_KEYS:
            value = page.raw_get(k) if k in page else attrs.get(k)
            if value is not None:
                parts[generic.pdf_name(k)] = value
        annots = page.get("/Annots")
        annot_digests = []
        empty_fields: list[Rect] = []
        valued_fields: list[Rect] = []
        if isinstance(annots, generic.ArrayObject):
            for a in annots:
                a_obj = a.get_object() if isinstance(a, generic.IndirectObject) else a
                if not isinstance(a_obj, generic.DictionaryObject) or not _shown(a_obj):
                    continue
                sub = generic.DictionaryObject(
                    {generic.pdf_name(k): a_obj.raw_get(k) for k in _ANNOT_KEYS if k in a_obj}
                )
                annot_digests.append(hasher.digest(sub))
                found = _field_rect(a_obj)
                if found is not None:
                    (valued_fields if found[1] else empty_fields).append(found[0])
        views.append(
            _PageView(
                hasher.digest(parts),
                hashlib.sha256(b"".join(annot_digests)).digest(),
                len(annot_digests),
                _draws(page.raw_get("/Contents")) if "/Contents" in page else False,
                tuple(empty_fields),
                tuple(valued_fields),
            )
        )
    return views, doc_level


def structural_differences(
    reader: PdfFileReader, signed_revision: int
) -> tuple[list[Finding], dict[int, dict[str, list[Rect]]]]:
    """Structural findings (settled by rendering when that is possible) and the 0-based pages whose look
    may have changed.

    Raises :class:`ValueError` when the document is too large or too odd to compare.
    """
    try:
        old_views, old_doc = _view(reader.get_historical_resolver(signed_revision))
        new_views, new_doc = _view(reader)
    except _TooComplex as exc:
        raise ValueError("the page tree is too large or too deep to compare") from exc
    findings: list[Finding] = []
    if len(new_views) < len(old_views):
        findings.append(
            Finding(len(new_views) + 1, "hide", f"{len(old_views) - len(new_views)} signed page(s) removed")
        )
    elif len(new_views) > len(old_views):
        findings.append(
            Finding(
                len(old_views) + 1, "pages", f"{len(new_views) - len(old_views)} page(s) added after signing"
            )
        )
    changed: dict[int, dict[str, list[Rect]]] = {}
    for index, (old, new) in enumerate(zip(old_views, new_views, strict=False)):
        if old.content != new.content and old.draws and not new.draws:
            findings.append(Finding(index + 1, "hide", "the content the page drew at signing is gone", True))
        elif old.content != new.content:
            findings.append(
                Finding(
                    index + 1,
                    "replace",
                    "the content streams, fonts or XObjects the page draws were swapped",
                    True,
                )
            )
        if old_doc != new_doc or old.content != new.content or old.annotations != new.annotations:
            changed[index] = {"empty": list(old.empty_fields), "valued": list(old.valued_fields)}
    return findings, changed


def _request(path: str, signed_end: int, pages: dict[int, dict[str, list[Rect]]]) -> dict[str, Any]:
    return {
        "path": path,
        "signed_end": signed_end,
        "pages": list(pages),
        "fields": {str(k): v for k, v in pages.items()},
        "max_pixels": 3_000_000,
        "memory_bytes": 1 << 30,
        "cpu_seconds": 20,
    }


async def _run_renderer(request: dict[str, Any], timeout: float) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).with_name("pixels.py")),  # a script: found wherever the package is
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(json.dumps(request).encode()), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return {"error": f"rendering took longer than {timeout:g} s"}
    if proc.returncode != 0:
        return {
            "error": f"the renderer stopped (exit status {proc.returncode}), probably at its memory or time limit"
        }
    try:
        answer: dict[str, Any] = json.loads(out)
    except ValueError:
        return {"error": "the renderer gave no usable answer"}
    return answer


#: A category counts when at least this many pixels fall in it (a few glyph strokes at ~100 dpi).
MIN_PIXELS = 24
MAX_RENDERED_PAGES = 10


def _classify(page: dict[str, Any]) -> list[Finding]:
    number = int(page["page"]) + 1
    box = page.get("box")
    where = f", in x {box[0]:g}-{box[2]:g}, y {box[1]:g}-{box[3]:g} pt from the top left" if box else ""
    if page.get("size_changed"):
        return [Finding(number, "replace", "the page size changed")]
    if page.get("error"):
        return [Finding(number, "hide", str(page["error"]))]
    found = []
    if page["content"] >= MIN_PIXELS:
        kind = "hide" if page["hide"] >= page["overlay"] and page["hide"] >= MIN_PIXELS else "replace"
        found.append(Finding(number, kind, f"what the page draws changed ({page['content']} pixels{where})"))
        return found
    # the gravest first: content revealed, then content covered, then a shown value changed
    if page["hide"] >= MIN_PIXELS:
        found.append(
            Finding(
                number, "hide", f"page content hidden at signing is now shown ({page['hide']} pixels{where})"
            )
        )
    if page["overlay"] >= MIN_PIXELS:
        found.append(
            Finding(
                number,
                "overlay",
                f"an annotation now covers signed page content ({page['overlay']} pixels{where})",
            )
        )
    if page["replace"] >= MIN_PIXELS:
        found.append(
            Finding(
                number,
                "replace",
                f"what an annotation or field showed at signing changed ({page['replace']} pixels{where})",
            )
        )
    return found


async def compare_revisions(
    reader: PdfFileReader,
    path: str | None,
    signed_revision: int,
    signed_end: int,
    *,
    render: bool,
    timeout: float,
) -> ShadowResult:
    """Compare what the signed revision and the final revision show.

    ``render``: settle structural differences by rendering (needs ``path``, the file on disk); without it
    only the structural findings are reported.
    """
    result = ShadowResult()
    try:
        findings, changed = structural_differences(reader, signed_revision)
    except Exception as exc:  # noqa: BLE001 - hostile page trees
        result.incomplete = f"the pages of the two revisions cannot be compared: {exc}"
        return result
    if not changed or not render:
        result.findings.extend(findings)
        return result
    # Rendering decides: a swapped object that draws the same (say, recompressed) is no change.
    result.findings.extend(f for f in findings if not f.structural)
    if path is None:
        result.incomplete = "the pages that changed cannot be rendered (no file on disk)"
        return result
    pages = dict(list(changed.items())[:MAX_RENDERED_PAGES])
    answer = await _run_renderer(_request(path, signed_end, pages), timeout)
    if "error" in answer:
        result.incomplete = f"the pages that changed cannot be rendered: {answer['error']}"
        return result
    result.rendered_pages = tuple(p + 1 for p in pages)
    for page in answer.get("pages", []):
        result.findings.extend(_classify(page))
    if len(changed) > len(pages) and not result.findings:
        result.incomplete = f"{len(changed)} pages changed structurally; only the first {len(pages)} were rendered and compared"
    return result

"""Render pages of the signed and the final revision with PDFium and classify the pixels that differ.

Run as a script (``python .../pixels.py``) in a child process (see :func:`signing.verify.shadow.render_compare`):
the request comes as JSON on stdin, the answer goes as JSON to stdout. The child limits its own address
space and CPU time, so a hostile file cannot exhaust the verifier's memory or time.

Four renders per page, in grayscale: the signed revision with and without annotations (``S``, ``Sc``), the
final revision with and without annotations (``F``, ``Fc``). A pixel *differs* when ``S`` and ``F`` differ
by more than ``diff``; it is *ink* when darker than ``ink``. Among the differing pixels:

* ``content``: what the page itself draws changed (``Sc`` vs ``Fc``);
* ``overlay``: page content the signer saw (``S`` = ``Sc``, ink) is now covered or changed;
* ``replace``: anything changed inside a field that had a value at signing, or ink another annotation
  showed at signing (``S`` != ``Sc``) changed (fields empty at signing excepted: filling them in is allowed);
* ``hide``: page ink that was covered at signing (not ink in ``S``) is now shown (``F`` = ``Fc``, ink).

New ink on what was blank at signing (filling an empty field) is in none of these.
"""

from __future__ import annotations

import io
import json
import math
import resource
import sys
from typing import Any

__all__ = ["compare_pages", "main"]


class _Prefix(io.RawIOBase):
    """The first ``end`` bytes of a file: what the file was when the signature was made."""

    def __init__(self, f: io.BufferedReader, end: int) -> None:
        self._f, self._end, self._pos = f, end, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._end}[whence]
        self._pos = max(0, min(self._end, base + offset))
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buffer: Any) -> int:
        n = max(0, min(len(buffer), self._end - self._pos))
        self._f.seek(self._pos)
        data = self._f.read(n)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)


def _render(page: Any, scale: float, annots: bool) -> Any:
    bitmap = page.render(scale=scale, grayscale=True, draw_annots=annots, may_draw_forms=annots)
    return bitmap.to_pil().convert("L")


def _rect_mask(page: Any, size: tuple[int, int], rects: list[list[float]]) -> Any:
    """255 inside the given page-space rectangles, in the bitmap's device space."""
    import ctypes

    from PIL import Image, ImageDraw
    from pypdfium2 import raw

    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    for x0, y0, x1, y1 in rects[:500]:
        corners = []
        for x, y in ((x0, y0), (x1, y1)):
            dx, dy = ctypes.c_int(), ctypes.c_int()
            raw.FPDF_PageToDevice(
                page.raw, 0, 0, size[0], size[1], 0, x, y, ctypes.byref(dx), ctypes.byref(dy)
            )
            corners.append((dx.value, dy.value))
        (ax, ay), (bx, by) = corners
        draw.rectangle((min(ax, bx) - 1, min(ay, by) - 1, max(ax, bx) + 1, max(ay, by) + 1), fill=255)
    return mask


def _differs(a: Any, b: Any, diff: int) -> Any:
    """255 where ``a`` and ``b`` differ by more than ``diff``, tolerating a one-pixel shift: a pixel of
    either image that lies within the range of the other's 3x3 neighbourhood is not a difference (so an
    appearance regenerated with other anti-aliasing is no change, while changed text is)."""
    from PIL import ImageChops, ImageFilter

    def outside(x: Any, y: Any) -> Any:
        lo, hi = y.filter(ImageFilter.MinFilter(3)), y.filter(ImageFilter.MaxFilter(3))
        brighter, darker = ImageChops.subtract(x, hi), ImageChops.subtract(lo, x)
        return ImageChops.lighter(brighter, darker).point(lambda v: 255 if v > diff else 0)

    return ImageChops.lighter(outside(a, b), outside(b, a))


def _count(mask: Any) -> int:
    return int(mask.histogram()[255])


def compare_pages(request: dict[str, Any]) -> dict[str, Any]:
    """Render and classify the requested pages (indexes into both revisions)."""
    import pypdfium2 as pdfium
    from PIL import ImageChops

    diff, ink = int(request.get("diff", 64)), int(request.get("ink", 192))
    max_pixels = int(request.get("max_pixels", 4_000_000))

    def thresh(img: Any, test: Any) -> Any:
        return img.point(lambda v: 255 if test(v) else 0)

    results = []
    with open(request["path"], "rb") as f:
        signed = pdfium.PdfDocument(_Prefix(f, int(request["signed_end"])))
        signed.init_forms()  # PDFium draws form fields (widgets) only through its form environment
        with open(request["path"], "rb") as g:
            final = pdfium.PdfDocument(g)
            final.init_forms()
            for index in request["pages"]:
                if index >= len(signed) or index >= len(final):
                    results.append({"page": index, "error": "page missing"})
                    continue
                sp, fp = signed[index], final[index]
                w, h = sp.get_size()
                if (w, h) != fp.get_size():
                    results.append({"page": index, "size_changed": True})
                    continue
                scale = min(2.0, math.sqrt(max_pixels / max(1.0, w * h)))
                s, sc = _render(sp, scale, True), _render(sp, scale, False)
                fi, fc = _render(fp, scale, True), _render(fp, scale, False)
                differs = _differs(s, fi, diff)
                content = _differs(sc, fc, diff)
                s_ink, f_ink = thresh(s, lambda v: v < ink), thresh(fi, lambda v: v < ink)
                fc_ink, sc_ink = thresh(fc, lambda v: v < ink), thresh(sc, lambda v: v < ink)
                s_is_sc = thresh(ImageChops.difference(s, sc), lambda v: v <= diff)
                f_is_fc = thresh(ImageChops.difference(fi, fc), lambda v: v <= diff)
                overlay = ImageChops.multiply(ImageChops.multiply(differs, sc_ink), s_is_sc)
                fields = request.get("fields", {}).get(str(index), {})
                # a field empty at signing showed a placeholder: changing it is filling it in; a field with
                # a value showed what was signed: any change in it is a replacement
                empty_fields = _rect_mask(sp, s.size, fields.get("empty", []))
                valued_fields = _rect_mask(sp, s.size, fields.get("valued", []))
                replaced = ImageChops.lighter(
                    ImageChops.multiply(
                        ImageChops.multiply(differs, s_ink),
                        ImageChops.multiply(ImageChops.invert(s_is_sc), ImageChops.invert(empty_fields)),
                    ),
                    ImageChops.multiply(differs, valued_fields),
                )
                hidden = ImageChops.multiply(
                    ImageChops.multiply(differs, ImageChops.invert(s_ink)),
                    ImageChops.multiply(ImageChops.multiply(f_ink, fc_ink), f_is_fc),
                )
                box = differs.getbbox()
                results.append(
                    {
                        "page": index,
                        "scale": scale,
                        "pixels": s.width * s.height,
                        "differs": _count(differs),
                        "content": _count(content),
                        "overlay": _count(overlay),
                        "replace": _count(replaced),
                        "hide": _count(hidden),
                        "box": [round(v / scale, 1) for v in box] if box else None,
                    }
                )
                for page in (sp, fp):
                    page.close()
            final.close()
        signed.close()
    return {"pages": results}


def _limit(memory_bytes: int, cpu_seconds: int) -> None:
    for what, value in ((resource.RLIMIT_AS, memory_bytes), (resource.RLIMIT_CPU, cpu_seconds)):
        try:
            _soft, hard = resource.getrlimit(what)
            cap = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(what, (cap, hard))
        except (ValueError, OSError):  # pragma: no cover - platforms without the limit
            pass


def main() -> int:
    request = json.loads(sys.stdin.read())
    _limit(int(request.get("memory_bytes", 1 << 30)), int(request.get("cpu_seconds", 20)))
    try:
        answer = compare_pages(request)
    except Exception as exc:  # noqa: BLE001 - any failure is reported to the parent, which fails closed
        answer = {"error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write(json.dumps(answer))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

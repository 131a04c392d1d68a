"""Every digest the report needs, from one read of the file and about one SHA-256 pass over it.

The report states the SHA-256 of the whole file and of each signed revision, and each signature needs
its /ByteRange digest. All of them start with the same bytes: a signature's /ByteRange digest is the
file's SHA-256 state at the start of its /Contents, continued over the rest of its revision; a signed
revision's SHA-256 is the file's state at that revision's end. :func:`one_pass_digests` streams the
file once through one SHA-256, copies the state where a /Contents begins, and feeds each copy only the
bytes after its /Contents. The /ByteRange digests are handed to pyHanko through its digest cache, so it
does not read the file again. Only well-formed SHA-256 byte ranges ``[0 a b c]`` inside the file are
done here; anything else is left for pyHanko to compute (and judge) as before.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature

__all__ = ["FileDigests", "one_pass_digests"]

_CHUNK = 1 << 20


@dataclass(frozen=True)
class FileDigests:
    """What one pass over the file found."""

    file_sha256: str
    revision_sha256: dict[int, str] = field(default_factory=dict)
    """SHA-256 (hex) of the bytes from the start of the file to each signed revision's end."""


def _standard_range(emb: EmbeddedPdfSignature, size: int) -> tuple[int, int, int] | None:
    """``(contents_start, contents_end, revision_end)`` of a plain SHA-256 /ByteRange, else None."""
    try:
        if emb.external_md_algorithm != "sha256":
            return None
        br = [int(x) for x in emb.byte_range]
    except Exception:  # noqa: BLE001 - hostile signature dictionaries: leave them to pyHanko
        return None
    if len(br) != 4 or br[0] != 0:
        return None
    _, a, b, c = br
    if not (0 < a <= b and c >= 0 and b + c <= size):
        return None
    return a, b, b + c


@dataclass
class _Fork:
    emb: EmbeddedPdfSignature
    h: Any
    start: int
    end: int


def one_pass_digests(stream: IO[bytes], size: int, signatures: Sequence[EmbeddedPdfSignature]) -> FileDigests:
    """Hash ``stream`` (``size`` bytes) once; fill each signature's /ByteRange digest into pyHanko's cache."""
    ranges = [(emb, r) for emb in signatures if (r := _standard_range(emb, size)) is not None]
    forks_at: dict[int, list[EmbeddedPdfSignature]] = {}
    ends: dict[int, list[_Fork]] = {}
    revision_ends = set()
    for emb, (a, _, end) in ranges:
        forks_at.setdefault(a, []).append(emb)
        revision_ends.add(end)
    stops = sorted({*forks_at, *revision_ends, size})
    spans = {id(emb): r for emb, r in ranges}

    main = hashlib.sha256()
    active: list[_Fork] = []
    revision_sha256: dict[int, str] = {}
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    stream.seek(0)
    pos = 0
    for stop in stops:
        if pos in forks_at:  # a /Contents begins here: the signature's digest continues from this state
            for emb in forks_at.pop(pos):
                _, b, end = spans[id(emb)]
                fork = _Fork(emb, main.copy(), b, end)
                active.append(fork)
                ends.setdefault(end, []).append(fork)
        while pos < stop:
            n = stream.readinto(view[: min(_CHUNK, stop - pos)])  # type: ignore[attr-defined]
            if not n:
                raise OSError("the file ended before its size")
            chunk = view[:n]
            main.update(chunk)
            for fork in active:
                lo, hi = max(fork.start, pos), min(fork.end, pos + n)
                if lo < hi:
                    fork.h.update(chunk[lo - pos : hi - pos])
            pos += n
        if pos in revision_ends:
            revision_sha256[pos] = main.hexdigest()
        for fork in ends.pop(pos, ()):
            fork.emb.external_digests["sha256"] = fork.h.digest()
            active.remove(fork)
    return FileDigests(main.hexdigest(), revision_sha256)

"""A faster reader for PDF hex strings, installed into pyHanko's parser.

pyHanko reads a hex string one character at a time (``read_non_whitespace`` per digit), and a signature's
``/Contents`` is one of 16-64 KB: parsing a signature dictionary cost tens of milliseconds, more than
signing a one-page letter, wherever a signed file is read (the achieved-signature summary after every
finish, verification of each signature). :func:`read_hex_string` reads the string in blocks instead and
gives pyHanko's own function anything it does not handle identically (a comment, an unexpected
character, the end of the stream), so what is accepted, refused and returned stays pyHanko's.
"""

from __future__ import annotations

import binascii
import os
import re
from typing import Any

from pyhanko.pdf_utils import generic

__all__ = ["install", "read_hex_string"]

_PYHANKO_READ_HEX = generic.read_hex_string_from_stream
_BLOCK = 64 * 1024
_FIRST_BLOCK = (
    256  # then doubled up to _BLOCK: a tiny string (``<>``, an /ID) does not copy 64 KB past its end
)
_HEX_AND_SPACE = re.compile(rb"[0-9A-Fa-f \n\r\t\f\x00]*")
_SPACE = b" \n\r\t\f\x00"


def read_hex_string(stream: Any) -> Any:
    """What ``pyhanko.pdf_utils.generic.read_hex_string_from_stream`` returns for ``stream`` (at ``<``)."""
    start = stream.tell()
    stream.read(1)
    parts: list[bytes] = []
    size = min(_FIRST_BLOCK, _BLOCK)
    while True:
        block = stream.read(size)
        size = min(2 * size, _BLOCK)
        end = block.find(b">")
        body = block if end < 0 else block[:end]
        if _HEX_AND_SPACE.fullmatch(body) is None or not block:  # a comment, a stray byte, the end
            stream.seek(start, os.SEEK_SET)
            return _PYHANKO_READ_HEX(stream)
        parts.append(body)
        if end >= 0:
            stream.seek(end + 1 - len(block), os.SEEK_CUR)
            break
    digits = b"".join(parts).translate(None, _SPACE)
    if len(digits) % 2:
        digits += b"0"
    return generic.pdf_string(binascii.unhexlify(digits))


def install() -> None:
    """Make pyHanko's object parser read hex strings with :func:`read_hex_string` (idempotent)."""
    generic.read_hex_string_from_stream = read_hex_string

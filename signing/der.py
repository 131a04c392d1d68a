"""DER (X.690 §10-11) conformance of an encoded ASN.1 value, checked on the bytes as they are.

Definite, minimal lengths; primitive strings; sorted SET OF; canonical BOOLEAN and minimal INTEGER.
"""

from __future__ import annotations

__all__ = ["DerProblem", "der_problem"]

_CONSTRUCTED = 0x20
#: Universal types that DER encodes only in primitive form (strings, BIT STRING, OCTET STRING, times).
_PRIMITIVE_ONLY = frozenset({1, 2, 3, 4, 5, 6, 10, 12, 13, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 30})
_SET = 17


class DerProblem(ValueError):
    """Where and how a value departs from DER."""


def _header(data: bytes, pos: int, end: int) -> tuple[int, int, int, int | None]:
    """(first tag byte, tag number, position of the contents, content length or None if indefinite)."""
    if pos >= end:
        raise DerProblem(f"truncated at byte {pos}")
    first = data[pos]
    number = first & 0x1F
    pos += 1
    if number == 0x1F:
        number = 0
        if pos < end and data[pos] == 0x80:
            raise DerProblem(f"tag number with a leading zero byte at {pos}")
        while True:
            if pos >= end:
                raise DerProblem("truncated tag")
            b = data[pos]
            pos += 1
            number = (number << 7) | (b & 0x7F)
            if not b & 0x80:
                break
        if number < 0x1F:
            raise DerProblem("tag number in long form that fits the short form")
    if pos >= end:
        raise DerProblem("truncated length")
    lb = data[pos]
    pos += 1
    if lb == 0x80:
        return first, number, pos, None
    if lb < 0x80:
        return first, number, pos, lb
    count = lb & 0x7F
    if count == 0x7F or pos + count > end:
        raise DerProblem(f"bad length at byte {pos - 1}")
    raw = data[pos : pos + count]
    pos += count
    if raw[0] == 0:
        raise DerProblem(f"length with a leading zero byte at {pos - count}")
    length = int.from_bytes(raw, "big")
    if length < 0x80:
        raise DerProblem(f"length {length} in long form at {pos - count - 1} (DER uses the short form)")
    return first, number, pos, length


def _check(data: bytes, pos: int, end: int, skip: frozenset[tuple[int, ...]], path: tuple[int, ...]) -> int:
    """Check one TLV at ``pos``; return the position after it."""
    first, number, start, length = _header(data, pos, end)
    if length is None:
        raise DerProblem(f"indefinite length at byte {pos} (BER, not DER)")
    stop = start + length
    if stop > end:
        raise DerProblem(f"value at byte {pos} runs past its container")
    universal = first & 0xC0 == 0
    if first & _CONSTRUCTED:
        if universal and number in _PRIMITIVE_ONLY:
            raise DerProblem(f"constructed encoding of universal type {number} at byte {pos} (BER, not DER)")
        if path in skip:
            return stop
        children: list[bytes] = []
        at, index = start, 0
        while at < stop:
            nxt = _check(data, at, stop, skip, (*path, index))
            children.append(data[at:nxt])
            at, index = nxt, index + 1
        if universal and number == _SET and children != sorted(children):
            raise DerProblem(f"SET OF at byte {pos} not sorted (DER sorts its elements)")
        return stop
    body = data[start:stop]
    if universal and number == 1 and (length != 1 or body[0] not in (0x00, 0xFF)):
        raise DerProblem(f"BOOLEAN at byte {pos} not encoded as 00 or FF")
    padded = length > 1 and ((body[0] == 0 and not body[1] & 0x80) or (body[0] == 0xFF and body[1] & 0x80))
    if universal and number in (2, 10) and padded:
        raise DerProblem(f"INTEGER at byte {pos} not minimally encoded")
    return stop


def der_problem(
    data: bytes, skip: frozenset[tuple[int, ...]] = frozenset(), allow_trailing: bool = False
) -> str | None:
    """Why ``data`` (one value) is not DER, or None. ``skip``: child paths not descended into."""
    try:
        end = _check(data, 0, len(data), skip, ())
    except DerProblem as exc:
        return str(exc)
    if end != len(data) and not (allow_trailing and not data[end:].strip(b"\x00")):
        return f"{len(data) - end} bytes follow the value"
    return None

"""The block reader of PDF hex strings answers exactly what pyHanko's own byte-by-byte reader answers."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyhanko.pdf_utils import generic

from signing import hexstrings

from .fuzzing import fuzz_settings

PYHANKO = hexstrings._PYHANKO_READ_HEX


def _outcome(read, data: bytes) -> tuple:
    """What ``read`` returns (value, its type, where the stream was left) or which error it raises."""
    stream = io.BytesIO(data)
    try:
        value = read(stream)
    except Exception as exc:  # noqa: BLE001 - the error class is what is compared
        return ("error", type(exc).__name__)
    return ("value", repr(value), type(value).__name__, stream.tell())


# hex digits and PDF whitespace mostly, with the bytes that change the answer: a comment, the end, strays
_PIECES = st.lists(
    st.sampled_from(
        [b"0", b"7", b"a", b"F", b" ", b"\n", b"\r\n", b"\x00", b"%", b">", b"g", b"<", b"ab" * 40]
    ),
    max_size=60,
)


@fuzz_settings(300)
@given(pieces=_PIECES, closed=st.booleans(), block=st.sampled_from([1, 2, 7, 64 * 1024]))
def test_the_block_reader_answers_what_pyhanko_answers(pieces, closed, block, monkeypatch_block):
    data = b"<" + b"".join(pieces) + (b">" if closed else b"") + b" endobj"
    monkeypatch_block(block)
    assert _outcome(hexstrings.read_hex_string, data) == _outcome(PYHANKO, data)


@pytest.fixture
def monkeypatch_block():
    """Set the reader's block size (small blocks put the closing ``>`` and strays across block borders)."""
    saved = hexstrings._BLOCK

    def set_block(size: int) -> None:
        hexstrings._BLOCK = size

    yield set_block
    hexstrings._BLOCK = saved


def test_a_signature_sized_string_reads_the_same_and_is_installed():
    data = b"<" + b"3082" * 8000 + b"0" * 30000 + b">\n/Type /Sig"
    assert _outcome(hexstrings.read_hex_string, data) == _outcome(PYHANKO, data)
    assert generic.read_hex_string_from_stream is hexstrings.read_hex_string  # importing signing installs it


class _CountingBytes(io.BytesIO):
    """Counts the bytes ``read`` hands out."""

    handed_out = 0

    def read(self, n=-1):
        data = super().read(n)
        self.handed_out += len(data)
        return data


@pytest.mark.parametrize("digits", [0, 2, 64, 3000, 40000])
def test_a_string_is_not_read_far_beyond_its_end(digits):
    """Reading ahead costs what the string is worth: a file of many tiny strings (``[<> <> ...]``) must not
    copy a whole block per string (64 KB each made such a file 2.4x slower to verify than pyHanko)."""
    string = b"<" + b"a" * digits + b">"
    stream = _CountingBytes(string + b" " + b"0" * (256 * 1024))
    hexstrings.read_hex_string(stream)
    assert stream.tell() == len(string)
    assert stream.handed_out - len(string) <= max(len(string), 1024)

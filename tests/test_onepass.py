"""Preparing reads and hashes the source once: the copy's hash is resumed, never recomputed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from signing import onepass, pades
from signing.model import PadesLevel, RemoteMode, SignOptions


def _byte_range_digest(path: Path, start: int, end: int) -> bytes:
    data = path.read_bytes()
    return hashlib.sha256(data[:start] + data[end:]).digest()


@pytest.mark.parametrize("pipelined", [False, True])
def test_copy_hashing_copies_and_hashes(tmp_path, monkeypatch, pipelined):
    if pipelined:
        monkeypatch.setattr(onepass, "_PIPELINE_FROM", 0)
    src, dst = tmp_path / "a.bin", tmp_path / "b.bin"
    src.write_bytes(bytes(range(256)) * 20000)  # several chunks and a partial one
    h, size = onepass.copy_hashing(src, dst)
    assert dst.read_bytes() == src.read_bytes()
    assert size == src.stat().st_size
    assert h.digest() == hashlib.sha256(src.read_bytes()).digest()


def test_a_write_inside_the_hashed_prefix_means_hashing_from_scratch(tmp_path):
    src, dst = tmp_path / "a.bin", tmp_path / "b.bin"
    src.write_bytes(b"x" * 5000)
    h, size = onepass.copy_hashing(src, dst)
    with open(dst, "r+b") as raw:
        f = onepass.HashedPrefixFile(raw, h, size)
        f.seek(0, 2)
        f.write(b"<0000>tail")
        f.seek(10)
        f.write(b"changed")
        digest = f.byte_range_digest(5000, 5006)
    assert digest == _byte_range_digest(dst, 5000, 5006)


async def test_prepare_hashes_the_source_once_and_the_digest_is_right(
    test_pki, letter, tmp_path, monkeypatch
):
    seen: list[tuple[int, int]] = []  # (position, bytes) of every chunked read inside the source
    original = onepass.HashedPrefixFile.readinto

    def counting(self, buffer):
        pos = self.tell()
        n = original(self, buffer)
        if pos < self._prefix_size:
            seen.append((pos, n))
        return n

    monkeypatch.setattr(onepass.HashedPrefixFile, "readinto", counting)
    prepared = tmp_path / "prepared.pdf"
    opts = SignOptions(
        mode=RemoteMode.HASH, level=PadesLevel.B_B, signer_certificate_der=test_pki.signer.cert_der
    )
    record = await pades.prepare_for_signing(letter, prepared, opts)

    assert seen and all(n == 0 for _, n in seen), "pyHanko hashed the source a second time"
    assert record.document_digest == _byte_range_digest(
        prepared, record.reserved_region_start, record.reserved_region_end
    )
    assert prepared.read_bytes().startswith(letter.read_bytes())

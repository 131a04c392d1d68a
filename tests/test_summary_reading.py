"""The achieved-signature summary reads only what it needs of a file, and says what pyHanko's full
reading (``embedded_signatures`` and ``DocumentSecurityStore.read_dss``, in ``summary_reference``) says
of the same file."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pyhanko.pdf_utils.reader import PdfFileReader

from signing.model import PadesLevel, RemoteMode, SignOptions
from signing.summary import AUGMENTATIONS, read_signature_summary

from .conftest import SHARED
from .pades_helpers import sign_with_phone
from .summary_reference import NO_SIGNATURE, full_reading, implied_summary

CORPUS = SHARED / "corpus" / "pyhanko"


def _lean_reading(path: Path, field_name: str | None = None) -> tuple:
    try:
        summary = read_signature_summary(path, field_name)
    except ValueError:
        return NO_SIGNATURE
    return summary


@pytest.mark.parametrize("mode", [RemoteMode.PDF, RemoteMode.HASH])
@pytest.mark.parametrize("level", list(PadesLevel))
async def test_summary_matches_the_full_reading_of_our_files(test_pki, letter, tmp_path, mode, level):
    out = tmp_path / "signed.pdf"
    options = SignOptions(mode=mode, level=level, signer_certificate_der=None)
    await sign_with_phone(test_pki, letter, out, options)
    assert _lean_reading(out) == implied_summary(full_reading(out))


async def test_summary_of_each_signer_in_a_file_signed_twice(test_pki, letter, tmp_path):
    """Two signers one after another, the first at B-LTA: the first's document timestamp came before
    the second signature, so the second has none after it; each field is described on its own."""
    first, second = tmp_path / "first.pdf", tmp_path / "second.pdf"
    await sign_with_phone(test_pki, letter, first, SignOptions(mode=RemoteMode.PDF, level=PadesLevel.B_LTA))
    await sign_with_phone(test_pki, first, second, SignOptions(mode=RemoteMode.PDF, level=PadesLevel.B_LT))
    reader = PdfFileReader(io.BytesIO(second.read_bytes()), strict=False)
    names = [s.field_name for s in reader.embedded_regular_signatures]
    assert len(names) == 2
    for name in [None, *names]:
        assert _lean_reading(second, name) == implied_summary(full_reading(second, name)), name
    assert read_signature_summary(second, names[0]).augmentations == AUGMENTATIONS
    assert "document-timestamp" not in read_signature_summary(second).augmentations


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"shared corpus not present at {CORPUS}")
def test_summary_matches_the_full_reading_on_the_shared_corpus():
    files = sorted(CORPUS.rglob("*.pdf"))
    assert files
    compared = 0
    for path in files:
        try:
            full = full_reading(path)
        except Exception:  # noqa: BLE001, S112 - files pyHanko itself cannot enumerate: nothing to compare
            continue
        try:
            lean = _lean_reading(path)
        except Exception as exc:  # noqa: BLE001 - report which file
            pytest.fail(f"{path.name}: the summary failed where pyHanko read the file: {exc!r}")
        assert lean == implied_summary(full), path.name
        compared += 1
    assert compared >= 10, compared

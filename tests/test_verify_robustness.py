"""Hostile and broken files: always a report or a typed error, quickly, never a crash."""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from pathlib import Path

import pytest

from fixtures.generate import simple_pdf
from signing.errors import UnreadablePdfError
from signing.model import PadesLevel
from signing.verify import Indication, VerifyOptions, verify_pdf_sync

from .verify_fixtures import recognized_trust, sign


@pytest.fixture(scope="module")
def signed(test_pki, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("verify-robust")
    letter = simple_pdf(d / "letter.pdf")
    return asyncio.run(
        sign(letter, d / "lta.pdf", test_pki.pki, test_pki.signer, PadesLevel.B_LTA, test_pki.services())
    )


@pytest.fixture(scope="module")
def options(test_pki) -> VerifyOptions:
    return VerifyOptions(trust=recognized_trust(test_pki.pki), offline=True)


def _outcome(path: Path, options: VerifyOptions) -> str:
    started = time.monotonic()
    try:
        report = verify_pdf_sync(path, options)
        json.dumps(report.to_json())
        outcome = "report"
    except UnreadablePdfError as exc:
        assert exc.code in {"not_a_pdf", "damaged_pdf", "encrypted_pdf"} and exc.message
        outcome = "error"
    assert time.monotonic() - started < 5
    return outcome


def _mutate(data: bytes, rnd: random.Random) -> bytes:
    out = bytearray(data)
    kind = rnd.choice(["flip", "chunk", "truncate", "duplicate"])
    if kind == "flip":
        for _ in range(rnd.randint(1, 20)):
            out[rnd.randrange(len(out))] = rnd.randrange(256)
    elif kind == "chunk":
        at = rnd.randrange(len(out))
        out[at : at + rnd.randint(1, 500)] = rnd.randbytes(rnd.randint(1, 500))
    elif kind == "truncate":
        del out[rnd.randrange(len(out)) :]
    else:
        at, src = rnd.randrange(len(out)), rnd.randrange(len(out))
        out[at:at] = out[src : src + rnd.randint(1, 2000)]
    return bytes(out)


def test_random_damage_never_crashes(signed, options, tmp_path):
    rnd = random.Random(5)
    data = signed.read_bytes()
    seen = set()
    for i in range(60):
        path = tmp_path / f"m{i}.pdf"
        path.write_bytes(_mutate(data, rnd))
        seen.add(_outcome(path, options))
    # Damaged cross-reference data is repaired (issue 11): most damaged files are reported on.
    assert "report" in seen and seen <= {"report", "error"}


def _rewrite_byte_range(data: bytes, values: str) -> bytes:
    match = re.search(rb"/ByteRange \[[^\]]*\]\s*", data)
    assert match
    replacement = f"/ByteRange [{values}]".encode()
    assert len(replacement) <= len(match.group(0))
    return data[: match.start()] + replacement.ljust(len(match.group(0))) + data[match.end() :]


@pytest.mark.parametrize(
    "values",
    [
        "0 10 20 99999999",
        "0 -5 20 30",
        "5 10 20 30",
        "0 1",
        "",
        "0 0 0 0",
        "0 1390 34160 99999999999999999999",
    ],
)
def test_hostile_byte_range(signed, options, tmp_path, values):
    path = tmp_path / "br.pdf"
    path.write_bytes(_rewrite_byte_range(signed.read_bytes(), values))
    if _outcome(path, options) == "report":
        report = verify_pdf_sync(path, options)
        first = report.signatures[0]
        assert first.indication is not Indication.TOTAL_PASSED
        assert first.reasons


def test_contents_replaced_by_garbage(signed, options, tmp_path):
    data = bytearray(signed.read_bytes())
    start = data.index(b"/Contents <") + len(b"/Contents <")
    data[start : start + 200] = b"ab" * 100
    path = tmp_path / "garbage-cms.pdf"
    path.write_bytes(bytes(data))
    report = verify_pdf_sync(path, options)
    first = report.signatures[0]
    assert first.indication is Indication.TOTAL_FAILED
    assert first.sub_indication == "FORMAT_FAILURE" and first.reasons


def test_empty_file_and_directory(tmp_path, options):
    empty = tmp_path / "empty.pdf"
    empty.write_bytes(b"")
    with pytest.raises(UnreadablePdfError) as err:
        verify_pdf_sync(empty, options)
    assert err.value.code == "not_a_pdf"
    with pytest.raises(UnreadablePdfError) as err:
        verify_pdf_sync(tmp_path, options)
    assert err.value.code == "not_a_pdf"


def test_size_limit(signed, test_pki):
    options = VerifyOptions(trust=recognized_trust(test_pki.pki), max_file_size=1000)
    with pytest.raises(UnreadablePdfError) as err:
        verify_pdf_sync(signed, options)
    assert err.value.code == "file_too_large"


def test_limits_are_reported_not_passed(signed, test_pki):
    trust = recognized_trust(test_pki.pki)
    report = verify_pdf_sync(signed, VerifyOptions(trust=trust, offline=True, max_signatures=0))
    assert report.signatures[0].indication is Indication.INDETERMINATE
    assert "not verified" in report.signatures[0].reasons[0] and not report.valid
    report = verify_pdf_sync(
        signed, VerifyOptions(trust=trust, offline=True, max_revisions_after_signature=0)
    )
    first = report.signatures[0]
    assert first.checks.unmodified is False and first.indication is Indication.TOTAL_FAILED
    assert any("revisions follow the signature" in r for r in first.reasons)

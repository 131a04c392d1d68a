"""A file is read once for all its digests, and its signatures share the validation data (issue 14)."""

from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path

import pytest
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.general import byte_range_digest

from fixtures.generate import simple_pdf
from signing.model import PadesLevel
from signing.trust import TrustList
from signing.verify import Indication, VerifyOptions, verify_pdf
from signing.verify import shared as shared_mod
from signing.verify.digests import one_pass_digests

from .conftest import asn1
from .verify_fixtures import sign


@pytest.fixture(scope="module")
def three_ltv_signers(test_pki, tmp_path_factory) -> Path:
    """Three people sign one after another at B-LT, each adding a DSS update (6 revisions)."""
    d = tmp_path_factory.mktemp("sharing")
    current = simple_pdf(d / "letter.pdf", pages=1)
    services = test_pki.services()

    async def build() -> Path:
        nonlocal current
        for n in range(3):
            issued = test_pki.pki.issue_signer(f"Signer {n}")
            current = await sign(
                current, d / f"signed-{n}.pdf", test_pki.pki, issued, PadesLevel.B_LT, services
            )
        return current

    return asyncio.run(build())


@pytest.fixture
def trust(test_pki) -> TrustList:
    return TrustList.empty().with_roots([asn1(test_pki.pki.root)])


def test_one_pass_gives_pyhankos_digests_and_the_revision_hashes(three_ltv_signers):
    data = three_ltv_signers.read_bytes()
    with open(three_ltv_signers, "rb") as f:
        sigs = PdfFileReader(f).embedded_signatures
        assert len(sigs) == 3
        found = one_pass_digests(f, len(data), sigs)
        for emb in sigs:
            _, expected = byte_range_digest(f, byte_range=emb.byte_range, md_algorithm="sha256")
            assert emb.external_digests["sha256"] == expected
            end = emb.byte_range[2] + emb.byte_range[3]
            assert found.revision_sha256[end] == hashlib.sha256(data[:end]).hexdigest()
    assert found.file_sha256 == hashlib.sha256(data).hexdigest()


async def test_signatures_share_validation_data_and_the_file_is_hashed_once(
    three_ltv_signers, trust, monkeypatch
):
    bootstraps = []
    original = shared_mod.bootstrap_validation_data_handlers

    def counting(*args, **kwargs):
        bootstraps.append(1)
        return original(*args, **kwargs)

    def no_second_pass(*args, **kwargs):
        raise AssertionError("pyHanko hashed a /ByteRange the one pass had done")

    monkeypatch.setattr(shared_mod, "bootstrap_validation_data_handlers", counting)
    monkeypatch.setattr("pyhanko.sign.validation.pdf_embedded.byte_range_digest", no_second_pass)
    report = await verify_pdf(three_ltv_signers, VerifyOptions(trust=trust, offline=True))

    assert [s.indication for s in report.signatures] == [Indication.TOTAL_PASSED] * 3
    assert [s.pades_level for s in report.signatures] == ["B-LT"] * 3
    assert len(bootstraps) == 1, "each signature loaded the file's validation data again"
    data = three_ltv_signers.read_bytes()
    assert report.file_sha256 == hashlib.sha256(data).hexdigest()
    revision_ends = [m.end() for m in re.finditer(rb"%%EOF\r?\n?", data)]
    revision_hashes = {hashlib.sha256(data[:end]).hexdigest() for end in revision_ends}
    assert all(s.signed_revision_sha256 in revision_hashes for s in report.signatures)

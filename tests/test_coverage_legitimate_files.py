"""Legitimate files keep their levels under the stricter coverage rules: a B-LTA file signed again,
a document timestamp over a document timestamp."""

from __future__ import annotations

import asyncio

from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign.signers.pdf_signer import PdfTimeStamper

from signing.model import PadesLevel
from signing.verify import VerifyOptions, verify_pdf_sync

from .test_summary_hostile import base  # noqa: F401 - the fixture
from .verify_fixtures import recognized_trust, sign


def _levels(path, test_pki):
    report = verify_pdf_sync(path, VerifyOptions(trust=recognized_trust(test_pki.pki)))
    return (
        {s.field: (s.indication.value, s.pades_level) for s in report.signatures},
        [(t.revision, t.covers_revision, t.counts) for t in report.document_timestamps],
    )


def test_b_lta_then_a_second_signer_at_b_b_and_at_b_lta(base, tmp_path, test_pki):  # noqa: F811
    issued, _ = test_pki.new_signer("SECOND Signer")
    for lvl in (PadesLevel.B_B, PadesLevel.B_LTA):
        out = asyncio.run(
            sign(
                base["B-LTA"],
                tmp_path / f"two-{lvl.value}.pdf",
                test_pki.pki,
                issued,
                lvl,
                test_pki.services(),
                "Second",
            )
        )
        sigs, stamps = _levels(out, test_pki)
        assert sigs["Signature1"][1] == "B-LTA"
        assert sigs["Second"][1] == lvl.value
        assert all(covers and counts for _, covers, counts in stamps)


def test_a_document_timestamp_over_a_document_timestamp(base, tmp_path, test_pki):  # noqa: F811
    out = tmp_path / "re-stamped.pdf"
    with open(base["B-LTA"], "rb") as f:
        w = IncrementalPdfFileWriter(f)
        with open(out, "wb") as g:
            asyncio.run(
                PdfTimeStamper(test_pki.services().timestamper, field_name="Renewal").async_timestamp_pdf(
                    w, "sha256", output=g
                )
            )
    sigs, stamps = _levels(out, test_pki)
    assert sigs["Signature1"][1] == "B-LTA"
    assert len(stamps) == 2 and all(covers and counts for _, covers, counts in stamps)

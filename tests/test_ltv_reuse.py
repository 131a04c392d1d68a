"""B-LTA augmentation without waste (issue 14): one chain's validation data gathered once and reused for the
next documents of that signer, and the DSS and the document timestamp in one incremental update, every
file still valid at B-LTA, offline from its own DSS."""

from __future__ import annotations

import io

from pyhanko.pdf_utils.reader import PdfFileReader

from fixtures.generate import simple_pdf
from signing import ltv
from signing.model import PadesLevel, RemoteMode, SignOptions
from signing.summary import read_signature_summary

from .pades_helpers import sign_with_phone, validate


def _revisions(path) -> int:
    return PdfFileReader(io.BytesIO(path.read_bytes()), strict=True).xrefs.total_revisions


async def test_validation_data_is_fetched_once_for_documents_of_one_signer(test_pki, tmp_path, monkeypatch):
    cache = ltv.ValidationDataCache()
    monkeypatch.setattr(ltv, "DEFAULT_CACHE", cache)
    opts = SignOptions(  # PAdES baseline: hash mode with the enrolled certificate
        mode=RemoteMode.HASH, level=PadesLevel.B_LTA, signer_certificate_der=test_pki.signer.cert_der
    )
    outs = []
    for i in range(3):
        source = simple_pdf(tmp_path / f"letter-{i}.pdf", text=f"letter {i}")
        out = tmp_path / f"signed-{i}.pdf"
        result = await sign_with_phone(test_pki, source, out, opts)
        assert result.has_dss and result.has_document_timestamp
        outs.append(out)
    assert cache.fetches == 1  # the chain's OCSP, CRLs and certificates: once, not per document

    for out in outs:  # each file carries what it needs, checked offline from its own DSS
        offline = await validate(test_pki, out, offline=True)
        (status,) = offline.statuses
        assert status.bottom_line, status.summary()
        (ts,) = offline.doc_timestamps
        assert ts.intact and ts.valid and ts.trusted
        summary = read_signature_summary(out)
        assert summary.level is PadesLevel.B_LTA, summary


async def test_dss_and_document_timestamp_share_one_revision(test_pki, tmp_path):
    source = simple_pdf(tmp_path / "letter.pdf")
    lt, lta = tmp_path / "lt.pdf", tmp_path / "lta.pdf"
    await sign_with_phone(test_pki, source, lt, SignOptions(mode=RemoteMode.PDF, level=PadesLevel.B_LT))
    await sign_with_phone(test_pki, source, lta, SignOptions(mode=RemoteMode.PDF, level=PadesLevel.B_LTA))
    base = _revisions(source)
    assert _revisions(lt) == base + 2  # the signature, then the DSS
    assert _revisions(lta) == base + 2  # the signature, then the DSS with the document timestamp
    reader = PdfFileReader(io.BytesIO(lta.read_bytes()), strict=True)
    doc_ts = [s for s in reader.embedded_signatures if s.sig_object_type == "/DocTimeStamp"]
    assert len(doc_ts) == 1 and doc_ts[0].signed_revision == base + 1
    assert "/DSS" in reader.get_historical_root(base + 1)  # the DSS is in the revision it covers

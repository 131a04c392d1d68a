"""Every file of ../shared/corpus/pyhanko against its expected.json: no crash, integrity and
modification verdicts as expected (skipped when the shared folder is absent)."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pytest

from signing.errors import UnreadablePdfError
from signing.trust import TrustList, load_certificates
from signing.verify import Indication, VerifyOptions, verify_pdf_sync

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "pyhanko"
EXPECTED = CORPUS / "expected.json"

pytestmark = pytest.mark.skipif(not EXPECTED.is_file(), reason=f"shared corpus not present at {CORPUS}")


def _expected() -> dict:
    return json.loads(EXPECTED.read_text()) if EXPECTED.is_file() else {}


@pytest.fixture(scope="module")
def options() -> VerifyOptions:
    # MANIFEST: trust the roots in certs/ (matched by key), validate around 2020-11-01, offline.
    roots = [c for pem in sorted((CORPUS / "certs").glob("*.pem")) for c in load_certificates(pem)]
    return VerifyOptions(
        trust=TrustList.empty().with_roots(roots), offline=True, at=dt.datetime(2020, 11, 1, tzinfo=dt.UTC)
    )


@pytest.mark.parametrize("name", sorted(_expected()))
def test_shared_corpus_file(name, options):
    expected = _expected()[name]
    started = time.monotonic()
    if expected.get("requires_decryption"):
        with pytest.raises(UnreadablePdfError) as err:
            verify_pdf_sync(CORPUS / name, options)
        assert err.value.code == "encrypted_pdf"
        return
    report = verify_pdf_sync(CORPUS / name, options)
    assert time.monotonic() - started < 10
    json.dumps(report.to_json())
    by_field = {s.field: s for s in report.signatures}
    timestamps = {t.field: t for t in report.document_timestamps}
    assert len(by_field) + len(timestamps) == expected["signatures"]
    for i, field in enumerate(expected["fields"]):
        intact, modified = expected["intact"][i], expected["modified_after_signing"][i]
        if expected["kinds"][i] == "doc_ts":
            ts = timestamps[field]
            if intact is not None:
                assert (ts.intact and ts.valid) is intact
            continue
        sig = by_field[field]
        if intact is not None:
            assert (bool(sig.checks.digest_matches) and sig.checks.signature_value) is intact, sig.to_json()
        if modified is not None:
            assert (not sig.checks.unmodified) is modified, sig.to_json()
        if intact is False or modified is True:
            assert sig.indication is not Indication.TOTAL_PASSED
            assert not sig.eto.supported_by_recognized_certificate
        bottom = expected.get("expected_bottom_line")
        if bottom is not None and bottom[i] is False:
            assert sig.indication is not Indication.TOTAL_PASSED
        cov = expected.get("expected_coverage")
        if cov is not None and cov[i] is not None:
            assert sig.coverage == cov[i]
        if sig.indication is not Indication.TOTAL_PASSED:
            assert sig.reasons or sig.sub_indication, sig.to_json()
    if "expected_indication" in expected:
        main, sub = expected["expected_indication"].replace("TOTAL_FAILED", "TOTAL-FAILED").split("/")
        sig = by_field[expected["fields"][0]]
        assert (sig.indication.value, sig.sub_indication) == (main, sub)

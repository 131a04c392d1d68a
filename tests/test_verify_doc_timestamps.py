"""Issue 11 item 2: /SubFilter /ETSI.RFC3161 is a document timestamp whatever its /Type, with its own
checks, and counts toward the level of the signatures it covers only when it is valid."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fixtures.generate import simple_pdf
from signing.model import PadesLevel
from signing.verify import Indication, VerifyOptions, verify_pdf_sync

from .verify_fixtures import recognized_trust, sign
from .verify_format_fixtures import _UNSET, add_doc_timestamp, add_dss_crls, break_signature_value

TYPES = {"DocTimeStamp": "/DocTimeStamp", "Sig": "/Sig", "missing": _UNSET, "null": None}


@pytest.fixture(scope="module")
def files(test_pki, tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("docts")
    letter = simple_pdf(d / "letter.pdf", pages=1)
    services = test_pki.services()
    out: dict[str, Path] = {}

    async def build() -> None:
        out["B-B"] = await sign(letter, d / "bb.pdf", test_pki.pki, test_pki.signer, PadesLevel.B_B, services)
        for name, value in TYPES.items():
            out[name] = await add_doc_timestamp(out["B-B"], d / f"ts-{name}.pdf", services.timestamper, value)
        out["ts-only"] = await add_doc_timestamp(letter, d / "ts-only.pdf", services.timestamper, "/Sig")

    asyncio.run(build())
    out["broken"] = break_signature_value(out["Sig"], d / "ts-broken.pdf", "DocTS")
    return out


def _verify(path: Path, test_pki):
    return verify_pdf_sync(path, VerifyOptions(trust=recognized_trust(test_pki.pki)))


@pytest.mark.parametrize("kind", list(TYPES))
def test_document_timestamp_whatever_its_type(files, test_pki, kind):
    report = _verify(files[kind], test_pki)
    assert [s.field for s in report.signatures] == ["Signature1"], report.to_json()
    (ts,) = report.document_timestamps
    assert ts.field == "DocTS" and ts.intact and ts.valid and ts.trusted, ts
    assert ts.to_json()["checks"] == {
        "imprint": True,
        "signature_value": True,
        "tsa_chain": True,
        "time": True,
        "covers_its_revision": True,
    }
    assert ts.to_json()["counts_toward_level"] is True
    assert ts.time is not None and ts.unmodified
    s = report.signatures[0]
    assert s.indication is Indication.TOTAL_PASSED, s.to_json()
    assert s.sub_indication is None
    # The valid document timestamp over a B-B signature gives it B-T (EN 319 142-1).
    assert s.pades_level == "B-T"
    if kind != "DocTimeStamp":
        assert any("read as a document timestamp" in r for r in ts.reasons)


def test_document_timestamp_alone_is_not_a_failed_signature(files, test_pki):
    report = _verify(files["ts-only"], test_pki)
    assert report.signatures == ()
    (ts,) = report.document_timestamps
    assert ts.intact and ts.valid and ts.trusted


def test_invalid_document_timestamp_never_counts(files, test_pki):
    report = _verify(files["broken"], test_pki)
    (ts,) = report.document_timestamps
    assert ts.intact and not ts.valid  # the deciding check: the token's signature
    assert ts.to_json()["counts_toward_level"] is False
    s = report.signatures[0]
    assert s.indication is Indication.TOTAL_PASSED, s.to_json()
    assert s.pades_level == "B-B"


# ---------------------------------------------------------------------------------------------- B-LT / B-LTA


@pytest.fixture(scope="module")
def lt_files(test_pki, tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("docts-lt")
    letter = simple_pdf(d / "letter.pdf", pages=1)
    pki, services = test_pki.pki, test_pki.services()
    out: dict[str, Path] = {}
    bt = asyncio.run(sign(letter, d / "bt.pdf", pki, test_pki.signer, PadesLevel.B_T, services))
    out["whole-chain"] = add_dss_crls(bt, d / "whole.pdf", [pki.crl("ca"), pki.crl("root")])
    out["part-chain"] = add_dss_crls(bt, d / "part.pdf", [pki.crl("root")])  # nothing for the signer's cert

    async def build() -> None:
        for name in ("part-chain",):
            out[f"{name}+ts"] = await add_doc_timestamp(
                out[name], d / f"{name}-ts.pdf", services.timestamper, "/DocTimeStamp"
            )

        out["whole-chain+sig-ts"] = await add_doc_timestamp(
            out["whole-chain"], d / "whole-sig-ts.pdf", services.timestamper, "/Sig"
        )

    asyncio.run(build())
    return out


def _offline(path: Path, test_pki):
    return verify_pdf_sync(path, VerifyOptions(trust=recognized_trust(test_pki.pki), offline=True))


def test_dss_for_the_whole_chain_gives_b_lt(lt_files, test_pki):
    (s,) = _offline(lt_files["whole-chain"], test_pki).signatures
    assert s.indication is Indication.TOTAL_PASSED, s.to_json()
    assert s.pades_level == "B-LT"


def test_dss_for_part_of_the_chain_is_not_b_lt(lt_files, test_pki):
    (s,) = verify_pdf_sync(
        lt_files["part-chain"], VerifyOptions(trust=recognized_trust(test_pki.pki))
    ).signatures
    assert s.pades_level == "B-T", (
        s.to_json()
    )  # the deciding fact: no revocation data for the signer in the DSS


def test_document_timestamp_over_a_partial_dss_is_not_b_lta(lt_files, test_pki):
    """Before issue 11 any revocation data in the DSS plus a later document timestamp made B-LTA."""
    report = verify_pdf_sync(lt_files["part-chain+ts"], VerifyOptions(trust=recognized_trust(test_pki.pki)))
    (ts,) = report.document_timestamps
    assert ts.intact and ts.valid and ts.trusted
    (s,) = report.signatures
    assert s.pades_level == "B-T", s.to_json()
    assert s.indication is not Indication.TOTAL_FAILED
    # (The full B-LTA case is the sandbox B-LTA file of test_verify_cases.test_valid_at_each_level.)


def test_document_timestamp_typed_sig_over_a_whole_chain_dss_gives_b_lta(lt_files, test_pki):
    report = _offline(lt_files["whole-chain+sig-ts"], test_pki)
    (ts,) = report.document_timestamps
    assert ts.intact and ts.valid and ts.trusted
    (s,) = report.signatures
    assert (s.indication, s.sub_indication) == (Indication.TOTAL_PASSED, None), s.to_json()
    assert s.pades_level == "B-LTA"

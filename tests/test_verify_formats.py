"""Issue 11 items 4 and 5: formats the reference reads, and certificates and time.

Handmade files are one revision written byte by byte (tests/verify_format_fixtures.py), so that the only
thing unusual about each is the thing under test.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from fixtures.generate import simple_pdf
from signing.verify import Indication, TimeSource, VerifyOptions, verify_pdf_sync

from .verify_fixtures import recognized_trust
from .verify_format_fixtures import (
    detached_cms,
    enveloping_cms,
    enveloping_sha1_cms,
    handmade_signed_pdf,
    pyhanko_sign,
    self_signed,
    simple_signer,
    timestamped_cms,
    two_signer_infos,
)


@pytest.fixture(scope="module")
def files(test_pki, tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("formats")
    pki = test_pki.pki
    letter = simple_pdf(d / "letter.pdf", pages=1)
    rsa = simple_signer(test_pki.signer, [pki.issuing_ca])
    ecdsa = simple_signer(
        pki.issue_signer("EC Signer", key=ec.generate_private_key(ec.SECP256R1())), [pki.issuing_ca]
    )
    pss = simple_signer(test_pki.signer, [pki.issuing_ca], prefer_pss=True)
    out: dict[str, Path] = {}

    async def build() -> None:
        out["ecdsa"] = await pyhanko_sign(letter, d / "ecdsa.pdf", ecdsa)
        out["pss"] = await pyhanko_sign(letter, d / "pss.pdf", pss)

    asyncio.run(build())
    out["handmade"] = handmade_signed_pdf(d / "handmade.pdf", detached_cms(rsa))
    out["sha1"] = handmade_signed_pdf(d / "sha1.pdf", enveloping_sha1_cms(rsa), subfilter="/adbe.pkcs7.sha1")
    out["enveloping"] = handmade_signed_pdf(
        d / "enveloping.pdf", enveloping_cms(rsa), subfilter="/adbe.pkcs7.detached", reserve=16000
    )
    out["two-signers-pades"] = handmade_signed_pdf(d / "two-pades.pdf", two_signer_infos(detached_cms(rsa)))
    out["two-signers-pkcs7"] = handmade_signed_pdf(
        d / "two-pkcs7.pdf",
        two_signer_infos(detached_cms(rsa, use_pades=False)),
        subfilter="/adbe.pkcs7.detached",
    )
    ts = test_pki.services().timestamper
    out["timestamped"] = handmade_signed_pdf(d / "ts.pdf", timestamped_cms(rsa, ts), reserve=24000)
    out["claim-later"] = handmade_signed_pdf(
        d / "claim-later.pdf",
        timestamped_cms(rsa, ts),
        reserve=24000,
        claimed_time=dt.datetime.now(dt.UTC) + dt.timedelta(hours=2),
    )
    out["self-signed"] = handmade_signed_pdf(d / "self.pdf", detached_cms(simple_signer(self_signed())))
    for damage in ("startxref", "offsets"):
        out[f"xref-{damage}"] = handmade_signed_pdf(
            d / f"xref-{damage}.pdf", detached_cms(rsa), xref_damage=damage
        )
    out["xref-ambiguous"] = handmade_signed_pdf(
        d / "xref-ambiguous.pdf",
        detached_cms(rsa),
        xref_damage="offsets",
        duplicate_page_content=b"BT /F1 18 Tf 72 720 Td (PAY 1,000,000 HKD) Tj ET",
    )
    out["shared"] = handmade_signed_pdf(d / "shared.pdf", detached_cms(rsa), fields=("Sig1", "Sig1Copy"))
    return out


def _verify(path: Path, test_pki):
    return verify_pdf_sync(path, VerifyOptions(trust=recognized_trust(test_pki.pki)))


def _only(report):
    assert len(report.signatures) == 1, report.to_json()
    return report.signatures[0]


def test_handmade_control_passes(files, test_pki):
    s = _only(_verify(files["handmade"], test_pki))
    assert s.indication is Indication.TOTAL_PASSED, s.to_json()


@pytest.mark.parametrize("name", ["ecdsa", "pss"])
def test_ecdsa_and_pss_signatures_pass(files, test_pki, name):
    s = _only(_verify(files[name], test_pki))
    assert s.indication is Indication.TOTAL_PASSED and s.sub_indication is None, s.to_json()
    assert s.checks.signature_value is True and s.pades_level == "B-B"


def test_adbe_pkcs7_sha1_is_read(files, test_pki):
    s = _only(_verify(files["sha1"], test_pki))
    assert s.subfilter == "/adbe.pkcs7.sha1"
    # Read and checked: the encapsulated SHA-1 matches the /ByteRange and the value verifies ...
    assert s.checks.digest_matches is True and s.checks.signature_value is True, s.to_json()
    assert s.checks.recognized_ca is True
    # ... but SHA-1 is what binds the document: never passed.
    assert s.indication is Indication.INDETERMINATE
    assert s.sub_indication == "CRYPTO_CONSTRAINTS_FAILURE"
    assert s.checks.crypto_strength is False and s.pades_level is None


def test_adbe_pkcs7_sha1_with_another_document_fails(files, test_pki, tmp_path):
    data = bytearray(files["sha1"].read_bytes())
    at = data.index(b"handmade signed letter")
    data[at] = ord("H")
    changed = tmp_path / "sha1-changed.pdf"
    changed.write_bytes(bytes(data))
    s = _only(_verify(changed, test_pki))
    assert s.indication is Indication.TOTAL_FAILED and s.sub_indication == "HASH_FAILURE", s.to_json()
    assert s.checks.digest_matches is False


def test_enveloping_cms_under_a_detached_subfilter_fails(files, test_pki):
    s = _only(_verify(files["enveloping"], test_pki))
    assert s.indication is Indication.TOTAL_FAILED and s.sub_indication == "FORMAT_FAILURE", s.to_json()
    assert any("encapsulated" in r for r in s.reasons), s.reasons


def test_several_signer_infos_under_pades_fail(files, test_pki):
    s = _only(_verify(files["two-signers-pades"], test_pki))
    assert s.indication is Indication.TOTAL_FAILED and s.sub_indication == "FORMAT_FAILURE", s.to_json()
    assert "2 SignerInfos" in s.reasons[0]


def test_several_signer_infos_under_pkcs7_are_indeterminate(files, test_pki):
    s = _only(_verify(files["two-signers-pkcs7"], test_pki))
    assert s.indication is Indication.INDETERMINATE and s.sub_indication == "SIG_CONSTRAINTS_FAILURE"
    assert "2 SignerInfos" in s.reasons[0] and s.checks.signature_value is False


def test_signature_shared_by_two_fields_is_reported_once(files, test_pki):
    report = _verify(files["shared"], test_pki)
    s = _only(report)
    assert s.field == "Sig1" and s.indication is Indication.TOTAL_PASSED, s.to_json()
    assert any("Sig1, Sig1Copy" in n for n in report.notes), report.notes


# ---------------------------------------------------------------------------------------------- time and certificates


def test_untrusted_self_signed_signer_has_no_chain(files, test_pki):
    s = _only(_verify(files["self-signed"], test_pki))
    assert s.indication is Indication.INDETERMINATE, s.to_json()
    assert s.sub_indication == "NO_CERTIFICATE_CHAIN_FOUND"
    assert s.checks.chain_found is False and s.checks.signature_value is True


def test_time_used_is_said(files, test_pki):
    s = _only(_verify(files["timestamped"], test_pki))
    assert s.indication is Indication.TOTAL_PASSED, s.to_json()
    assert s.time_source is TimeSource.SIGNATURE_TIMESTAMP and s.checks.claimed_time_consistent is True
    assert "trusted signature timestamp" in s.time_basis
    s = _only(_verify(files["handmade"], test_pki))
    assert s.time_source is TimeSource.CLAIMED
    assert "no signature timestamp" in s.time_basis and s.to_json()["time_basis"] == s.time_basis


def test_claimed_time_after_the_timestamp_fails_the_time_limb(files, test_pki):
    s = _only(_verify(files["claim-later"], test_pki))
    assert s.time_source is TimeSource.SIGNATURE_TIMESTAMP
    assert s.checks.claimed_time_consistent is False  # the deciding check
    assert any("later than the signature timestamp" in r for r in s.reasons)
    assert s.eto.generated_within_validity is False
    assert any("later than the signature timestamp" in r for r in s.eto.reasons["generated_within_validity"])
    assert s.eto.verdict != "ETO_S6_1A_TECHNICAL_CONDITIONS_MET"
    assert (s.indication, s.sub_indication) == (Indication.TOTAL_PASSED, None)  # the cryptography holds


# ---------------------------------------------------------------------------------------------- damaged xref


@pytest.mark.parametrize("damage", ["startxref", "offsets"])
def test_damaged_xref_is_read_and_reported(files, test_pki, damage):
    report = _verify(files[f"xref-{damage}"], test_pki)
    assert any("cross-reference data is damaged" in n for n in report.notes), report.notes
    s = _only(report)
    # The signer signed every byte of the file as it is: the deciding checks hold.
    assert s.coverage == "ENTIRE_FILE" and s.checks.digest_matches and s.checks.signature_value
    assert (s.indication, s.sub_indication) == (Indication.TOTAL_PASSED, None), s.to_json()


def test_damaged_xref_with_ambiguous_objects_is_not_passed(files, test_pki):
    report = _verify(files["xref-ambiguous"], test_pki)
    assert any("defined more than once" in n for n in report.notes), report.notes
    s = _only(report)
    assert s.checks.digest_matches and s.checks.signature_value
    assert s.checks.byte_range is False  # the deciding check: coverage of the file as shown is unknown
    assert (s.indication, s.sub_indication) == (Indication.TOTAL_FAILED, "FORMAT_FAILURE"), s.to_json()


def test_a_huge_object_number_costs_no_more_than_the_objects_found(tmp_path):
    """A damaged "7220262 0 obj" once made the repaired table 7 million entries long (30 s per verification,
    kept in tests/fuzz_regressions/verification/): the table lists only the objects the file holds."""
    from signing.verify.repair import open_repaired

    pdf = simple_pdf(tmp_path / "a.pdf").read_bytes()
    damaged = pdf.replace(b"startxref", b"7220262 0 obj\n<< >>\nendobj\nstartxref_gone", 1)
    path = tmp_path / "damaged.pdf"
    path.write_bytes(damaged)
    reader = open_repaired(path)
    assert reader is not None
    tail = reader.stream.getvalue()[len(damaged) :]
    assert tail.count(b" n \n") + tail.count(b" f \n") < 50, len(tail)
    assert b"7220262 1\n" in tail  # the far object is still listed, in a subsection of its own


def test_cli_reads_a_damaged_xref_instead_of_exit_2(files, test_pki):
    import subprocess
    import sys

    root = test_pki.pki.directory / "root.cert.pem"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "api.cli",
            "verify",
            "--json",
            "--trust",
            str(root),
            str(files["xref-startxref"]),
        ],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr
    assert (
        '"cross-reference data is damaged' in done.stdout or "cross-reference data is damaged" in done.stdout
    )

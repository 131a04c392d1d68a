"""Verification of a corpus built here with the test PKI: each case of issue 5's "Done when" list."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from fixtures.generate import simple_pdf
from signing.errors import UnreadablePdfError
from signing.model import PadesLevel
from signing.sandbox.pki import SandboxPki
from signing.services import SigningServices
from signing.trust import ProfileKind
from signing.verify import (
    Indication,
    TimeSource,
    VerificationReport,
    VerifyOptions,
    render_text,
    verify_pdf_sync,
)

from .conftest import asn1
from .verify_fixtures import (
    add_annotation,
    add_empty_signature_field,
    alter_signature_value,
    certify,
    change_page_content,
    flip_signed_byte,
    issue_without_signing_usage,
    recognized_trust,
    shipped_trust,
    sign,
    truncate,
)

CONTRACT_CHECKS = {
    "integrity",
    "signature_value",
    "recognized_ca",
    "valid_at_signing_time",
    "not_revoked",
    "key_usage",
    "unmodified",
}


@pytest.fixture(scope="module")
def corpus(test_pki, tmp_path_factory) -> dict[str, Path]:
    """Every file of the case list, signed through the signing core."""
    d = tmp_path_factory.mktemp("verify-corpus")
    pki: SandboxPki = test_pki.pki
    services = test_pki.services()
    letter = simple_pdf(d / "letter.pdf", pages=2)
    files: dict[str, Path] = {"unsigned": letter}

    other = SandboxPki.open_or_create(d / "other-pki", test_pki.url)
    stranger = other.issue_signer("Stranger")
    revoked_before = pki.issue_signer("Revoked Before")
    pki.revoke(revoked_before.certificate.serial_number, at=pki.clock() - dt.timedelta(minutes=1))
    revoked_after = pki.issue_signer("Revoked After")
    expired = pki.issue_signer(
        "Expired Cert", not_before=pki.clock() - dt.timedelta(days=400), lifetime=dt.timedelta(days=1)
    )
    no_usage = issue_without_signing_usage(pki, "No Signing Usage")
    second = pki.issue_signer("LEE Siu Ming")
    weak = pki.issue_signer("Weak Key", key=rsa.generate_private_key(public_exponent=65537, key_size=1024))

    async def build() -> None:
        for level in PadesLevel:
            files[level.value] = await sign(
                letter, d / f"{level.value}.pdf", pki, test_pki.signer, level, services
            )
        files["untrusted"] = await sign(
            letter,
            d / "untrusted.pdf",
            other,
            stranger,
            PadesLevel.B_B,
            SigningServices(other_certs=[asn1(other.issuing_ca)]),
        )
        files["two-signers"] = await sign(files["B-T"], d / "two.pdf", pki, second, PadesLevel.B_T, services)
        files["revoked-before"] = await sign(
            letter, d / "rb.pdf", pki, revoked_before, PadesLevel.B_T, services
        )
        files["revoked-after"] = await sign(
            letter, d / "ra.pdf", pki, revoked_after, PadesLevel.B_T, services
        )
        files["expired"] = await sign(letter, d / "expired.pdf", pki, expired, PadesLevel.B_T, services)
        files["no-usage"] = await sign(letter, d / "nousage.pdf", pki, no_usage, PadesLevel.B_T, services)
        files["certified"] = await certify(letter, d / "certified.pdf", pki, test_pki.signer)
        files["weak-key"] = await sign(letter, d / "weak.pdf", pki, weak, PadesLevel.B_T, services)

    asyncio.run(build())
    time.sleep(1.1)  # OCSP times have one-second precision: revoke strictly after the timestamp
    pki.revoke(revoked_after.certificate.serial_number)
    files["byte-flipped"] = flip_signed_byte(files["B-B"], d / "flipped.pdf")
    files["sig-altered"] = alter_signature_value(files["B-B"], d / "altered.pdf")
    files["content-changed"] = change_page_content(files["B-T"], d / "content.pdf")
    files["annotated"] = add_annotation(files["B-T"], d / "annot.pdf")
    files["certified-changed"] = add_empty_signature_field(files["certified"], d / "certified-changed.pdf")
    files["truncated"] = truncate(files["B-B"], d / "truncated.pdf")
    (d / "not-a-pdf.pdf").write_text("hello, this is not a PDF\n")
    files["not-a-pdf"] = d / "not-a-pdf.pdf"
    return files


@pytest.fixture(scope="module")
def trust(test_pki):
    return recognized_trust(test_pki.pki)


def verify(path: Path, trust, offline: bool = False) -> VerificationReport:
    report = verify_pdf_sync(path, VerifyOptions(trust=trust, offline=offline))
    json.dumps(report.to_json())  # always serialisable
    for lang in ("en", "zh-Hant"):
        assert render_text(report, lang)
    return report


def only(report: VerificationReport):
    assert len(report.signatures) == 1, report.to_json()
    return report.signatures[0]


def assert_contract(report: VerificationReport) -> None:
    data = report.to_json()
    assert set(data) >= {"valid", "signatures"}
    for s in data["signatures"]:
        assert set(s) >= {
            "field",
            "signer",
            "indication",
            "sub_indication",
            "checks",
            "pades_level",
            "signing_time",
            "timestamp_time",
            "eto",
        }
        assert set(s["checks"]) >= CONTRACT_CHECKS
        assert set(s["signer"]) >= {"name", "certificate_sha256", "issuer", "serial"}
        assert set(s["eto"]) >= {
            "supported_by_recognized_certificate",
            "generated_within_validity",
            "used_in_accordance_with_terms",
        }


# ---------------------------------------------------------------------------------------------- valid


@pytest.mark.parametrize("level,offline", [("B-B", False), ("B-T", False), ("B-LT", True), ("B-LTA", True)])
def test_valid_at_each_level(corpus, trust, level, offline):
    report = verify(corpus[level], trust, offline=offline)
    assert_contract(report)
    s = only(report)
    assert report.valid, s.to_json()
    assert s.indication is Indication.TOTAL_PASSED and s.sub_indication is None
    assert s.pades_level == level
    assert all(getattr(s.checks, k) is True for k in CONTRACT_CHECKS), s.checks
    assert s.signer.name.startswith("CHAN Tai Man")
    if level == "B-B":
        assert s.time_source is TimeSource.CLAIMED and s.timestamp_time is None
        assert s.validation_process == "basic"
        # A claimed time is no proof of s.6(2) "at the time of signing".
        assert s.eto.generated_within_validity is False
        assert s.eto.supported_by_recognized_certificate and s.eto.used_in_accordance_with_terms
    else:
        assert s.time_source is TimeSource.SIGNATURE_TIMESTAMP and s.timestamp_time is not None
        assert s.eto.supported_by_recognized_certificate
        assert s.eto.generated_within_validity
        assert s.eto.used_in_accordance_with_terms
        assert s.eto.verdict == "ETO_S6_1A_TECHNICAL_CONDITIONS_MET"
    if level == "B-LTA":
        assert s.validation_process == "lta"
        assert len(report.document_timestamps) == 1 and report.document_timestamps[0].trusted


@pytest.mark.parametrize("level", ["B-B", "B-T"])
def test_offline_without_revocation_data_is_indeterminate(corpus, trust, level):
    s = only(verify(corpus[level], trust, offline=True))
    assert s.indication is Indication.INDETERMINATE
    assert s.checks.not_revoked is None
    assert s.checks.integrity and s.checks.signature_value and s.checks.recognized_ca


def test_shipped_trust_list_sandbox_entry(corpus, test_pki, tmp_path):
    report = verify(corpus["B-LTA"], shipped_trust(test_pki.pki, tmp_path), offline=True)
    s = only(report)
    assert s.indication is Indication.TOTAL_PASSED
    assert s.profile_id == "iamsign-sandbox-iamsmart-cert"
    # The sandbox is not a recognized certificate in law: never claimed as one.
    assert s.eto.profile_kind == ProfileKind.SANDBOX.value
    assert not s.eto.supported_by_recognized_certificate
    assert s.eto.verdict == "CRYPTO_VALID_NOT_RECOGNIZED"


def test_policy_outside_profile_is_not_recognized(corpus, test_pki):
    s = only(verify(corpus["B-T"], recognized_trust(test_pki.pki, policy_prefix="1.3.6.1.4.1.16030.1")))
    assert s.indication is Indication.INDETERMINATE and s.sub_indication == "CHAIN_CONSTRAINTS_FAILURE"
    assert s.checks.recognized_ca is False and s.checks.certificate_policy is False
    assert not s.eto.supported_by_recognized_certificate


# ---------------------------------------------------------------------------------------------- failures


def test_untrusted_root(corpus, trust):
    s = only(verify(corpus["untrusted"], trust))
    assert s.indication is Indication.INDETERMINATE and s.sub_indication == "NO_CERTIFICATE_CHAIN_FOUND"
    assert s.checks.recognized_ca is False and s.checks.chain_found is False
    assert s.checks.integrity and s.checks.signature_value
    assert s.eto.verdict == "CRYPTO_VALID_NOT_RECOGNIZED"
    assert not s.eto.supported_by_recognized_certificate


def test_byte_changed_inside_signed_range(corpus, trust):
    s = only(verify(corpus["byte-flipped"], trust))
    assert s.indication is Indication.TOTAL_FAILED and s.sub_indication == "HASH_FAILURE"
    assert s.checks.integrity is False and s.checks.digest_matches is False
    assert s.eto.verdict == "INVALID"


def test_signature_value_altered(corpus, trust):
    s = only(verify(corpus["sig-altered"], trust))
    assert s.indication is Indication.TOTAL_FAILED and s.sub_indication == "SIG_CRYPTO_FAILURE"
    assert s.checks.signature_value is False and s.checks.digest_matches is True


@pytest.mark.parametrize("case", ["content-changed", "annotated"])
def test_change_after_signing(corpus, trust, case):
    s = only(verify(corpus[case], trust))
    assert s.indication is Indication.TOTAL_FAILED and s.sub_indication == "FORMAT_FAILURE"
    assert s.checks.unmodified is False and s.checks.integrity is True
    assert s.modification_level == "OTHER"
    assert not s.eto.supported_by_recognized_certificate


def test_two_signers(corpus, trust):
    report = verify(corpus["two-signers"], trust)
    assert report.valid
    first, second = report.signatures
    assert first.signer.name.startswith("CHAN Tai Man") and second.signer.name == "LEE Siu Ming"
    assert first.modification_level == "FORM_FILLING" and first.checks.unmodified
    assert second.modification_level == "NONE"
    assert all(s.indication is Indication.TOTAL_PASSED for s in report.signatures)


def test_certification_then_disallowed_change(corpus, trust):
    assert only(verify(corpus["certified"], trust)).indication is Indication.TOTAL_PASSED
    s = only(verify(corpus["certified-changed"], trust))
    assert s.docmdp == "NO_CHANGES"
    assert s.indication is Indication.TOTAL_FAILED and s.sub_indication == "FORMAT_FAILURE"
    assert s.checks.unmodified is False


def test_signer_revoked_before_signing(corpus, trust):
    s = only(verify(corpus["revoked-before"], trust))
    assert s.indication is Indication.TOTAL_FAILED and s.sub_indication == "REVOKED"
    assert s.checks.not_revoked is False
    assert s.eto.verdict == "INVALID" and not s.eto.generated_within_validity


def test_revoked_after_timestamped_signing_still_passes(corpus, trust):
    s = only(verify(corpus["revoked-after"], trust))
    assert s.indication is Indication.TOTAL_PASSED, s.to_json()
    assert s.checks.not_revoked is True
    assert s.revocation.get("revoked_after_signing") is True and s.revocation["revoked_at"]
    assert s.time_source is TimeSource.SIGNATURE_TIMESTAMP


def test_certificate_expired_at_signing_time(corpus, trust):
    s = only(verify(corpus["expired"], trust))
    assert s.indication is Indication.INDETERMINATE and s.sub_indication == "OUT_OF_BOUNDS_NO_POE"
    assert s.checks.valid_at_signing_time is False
    assert not s.eto.generated_within_validity


def test_certificate_without_signing_key_usage(corpus, trust):
    s = only(verify(corpus["no-usage"], trust))
    assert s.indication is Indication.INDETERMINATE and s.sub_indication == "CHAIN_CONSTRAINTS_FAILURE"
    assert s.checks.key_usage is False
    assert not s.eto.used_in_accordance_with_terms


def test_truncated_file(corpus, trust):
    with pytest.raises(UnreadablePdfError) as err:
        verify(corpus["truncated"], trust)
    assert err.value.code == "damaged_pdf"


def test_not_a_pdf(corpus, trust):
    with pytest.raises(UnreadablePdfError) as err:
        verify(corpus["not-a-pdf"], trust)
    assert err.value.code == "not_a_pdf"
    assert "not a PDF" in err.value.message


def test_no_signature(corpus, trust):
    report = verify(corpus["unsigned"], trust)
    assert report.signatures == () and report.valid is False
    assert report.to_json()["valid"] is False
    assert "no signature" in " ".join(report.notes)


def test_empty_trust_list_never_recognizes(corpus):
    from signing.trust import TrustList

    s = only(verify(corpus["B-LTA"], TrustList.empty(), offline=True))
    assert s.indication is not Indication.TOTAL_PASSED
    assert s.checks.recognized_ca is False


def test_weak_key_is_not_passed(corpus, trust):
    s = only(verify(corpus["weak-key"], trust))
    assert s.indication is Indication.INDETERMINATE and s.sub_indication == "CRYPTO_CONSTRAINTS_FAILURE"
    assert s.eto.verdict != "ETO_S6_1A_TECHNICAL_CONDITIONS_MET"

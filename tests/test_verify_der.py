"""Issue 11 item 1: the signature value is over DER signed attributes, and the CMS must be DER.

Each non-DER file is re-signed over its stored bytes, so a verifier that hashes what is stored (as
pyHanko does) finds the value correct: only the DER rule fails it.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest
from asn1crypto import cms

from fixtures.generate import simple_pdf
from signing.cms import add_signature_timestamp, check_external_cms
from signing.errors import MalformedCmsError
from signing.model import PadesLevel, SignatureProfile
from signing.verify import Indication, VerifyOptions, verify_pdf_sync

from .verify_fixtures import recognized_trust, sign
from .verify_format_fixtures import (
    attrs_indefinite,
    attrs_long_length,
    attrs_unsorted,
    cms_long_length,
    read_cms,
    resign_signed_attrs,
    rewrite_contents,
    tlv,
)


@pytest.fixture(scope="module")
def files(test_pki, tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("der")
    letter = simple_pdf(d / "letter.pdf", pages=1)
    key = test_pki.signer.private_key
    out: dict[str, Path] = {}
    out["der"] = asyncio.run(
        sign(letter, d / "der.pdf", test_pki.pki, test_pki.signer, PadesLevel.B_B, test_pki.services())
    )
    out["resigned-der"] = resign_signed_attrs(
        out["der"], d / "resigned.pdf", key, lambda a: tlv(0xA0, b"".join(sorted(x.dump() for x in a)))
    )
    out["unsorted"] = resign_signed_attrs(out["der"], d / "unsorted.pdf", key, attrs_unsorted)
    out["indefinite"] = resign_signed_attrs(out["der"], d / "indefinite.pdf", key, attrs_indefinite)
    out["long-length"] = resign_signed_attrs(out["der"], d / "long.pdf", key, attrs_long_length)
    out["cms-ber"] = rewrite_contents(out["der"], d / "cms-ber.pdf", cms_long_length)
    return out


def _verify(path: Path, test_pki):
    report = verify_pdf_sync(path, VerifyOptions(trust=recognized_trust(test_pki.pki)))
    assert len(report.signatures) == 1, report.to_json()
    return report.signatures[0]


@pytest.mark.parametrize("name", ["der", "resigned-der"])
def test_der_signed_attributes_pass(files, test_pki, name):
    s = _verify(files[name], test_pki)
    assert s.indication is Indication.TOTAL_PASSED, s.to_json()
    assert s.checks.signature_value is True


@pytest.mark.parametrize("name", ["unsorted", "indefinite", "long-length"])
def test_non_der_signed_attributes_fail(files, test_pki, name):
    s = _verify(files[name], test_pki)
    assert s.indication is Indication.TOTAL_FAILED, s.to_json()
    assert s.sub_indication == "SIG_CRYPTO_FAILURE"
    assert s.checks.signature_value is False  # the deciding check
    assert s.checks.digest_matches is True  # the document bytes themselves are untouched
    assert "not DER-encoded" in s.reasons[0]


def test_cms_not_der_fails(files, test_pki):
    s = _verify(files["cms-ber"], test_pki)
    assert s.indication is Indication.TOTAL_FAILED, s.to_json()
    assert s.sub_indication == "SIG_CRYPTO_FAILURE"
    assert s.checks.signature_value is False
    assert any("the CMS is not DER-encoded" in r for r in s.reasons)


def _document_digest(path: Path) -> bytes:
    from pyhanko.pdf_utils.reader import PdfFileReader

    with open(path, "rb") as f:
        return PdfFileReader(f).embedded_signatures[0].compute_digest()


def test_signing_side_refuses_non_der_pdf_signature(files):
    """A pdfSignature whose signed attributes are not DER is refused before anything is published."""
    content, _, _ = read_cms(files["unsorted"])
    with pytest.raises(MalformedCmsError, match="not DER"):
        check_external_cms(
            content.rstrip(b"\x00") or content,
            _document_digest(files["unsorted"]),
            "sha256",
            SignatureProfile.PADES_BASELINE,
        )


def test_adding_the_signature_timestamp_keeps_signed_attribute_bytes(files, test_pki):
    """The unsigned timestamp attribute is spliced in; the signed attributes are never re-encoded."""
    content, _, _ = read_cms(files["unsorted"])
    ci = cms.ContentInfo.load(content)
    before = ci["content"]["signer_infos"][0]["signed_attrs"].dump()
    stamped = asyncio.run(add_signature_timestamp(ci.dump(), test_pki.services().timestamper))
    si = cms.ContentInfo.load(stamped)["content"]["signer_infos"][0]
    assert si["signed_attrs"].dump() == before  # asn1crypto would have sorted them
    assert [a["type"].native for a in si["unsigned_attrs"]] == ["signature_time_stamp_token"]
    assert hashlib.sha256(si["signature"].native).digest()  # the value is carried over too
    assert si["signature"].native == ci["content"]["signer_infos"][0]["signature"].native


def test_the_cms_to_publish_is_verified_again(test_pki, tmp_path, monkeypatch):
    """If adding the timestamp ever changed the signed attributes, nothing would be published."""
    from signing import cms as cms_module
    from signing.model import RemoteMode, SignOptions

    from .pades_helpers import sign_with_phone
    from .verify_format_fixtures import attrs_unsorted, children

    real = cms_module.add_signature_timestamp

    async def reencoding(cms_der: bytes, timestamper) -> bytes:
        stamped = cms.ContentInfo.load(await real(cms_der, timestamper))
        sd = stamped["content"]
        si = sd["signer_infos"][0]
        si_der = tlv(0x30, children(si, {"signed_attrs": attrs_unsorted(si["signed_attrs"])}))
        sd_der = tlv(0x30, children(sd, {"signer_infos": tlv(0x31, si_der)}))
        return tlv(0x30, stamped["content_type"].dump() + tlv(0xA0, sd_der))

    monkeypatch.setattr(cms_module, "add_signature_timestamp", reencoding)
    letter = simple_pdf(tmp_path / "letter.pdf", pages=1)
    out = tmp_path / "signed.pdf"
    with pytest.raises(MalformedCmsError):
        asyncio.run(
            sign_with_phone(test_pki, letter, out, SignOptions(mode=RemoteMode.PDF, level=PadesLevel.B_T))
        )
    assert not out.exists()

"""End to end: a PDF prepared by the PAdES core, signed by the sandbox through the real client, embedded
with ``finish_with_cms`` / ``finish_with_raw_signature`` and verified with pyHanko against the sandbox root."""

from __future__ import annotations

from pathlib import Path

import pytest
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import serialization
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from signing.iamsmart.client import SigningResult
from signing.iamsmart.protocol import hkic_hash
from signing.model import PadesLevel, RemoteMode, SigAlgo, SignOptions
from signing.pades import finish_with_cms, finish_with_raw_signature, prepare_for_signing
from signing.services import SigningServices

from .sandbox_fixtures import HKID_SIGNER, Sandbox, bid, sandbox_fixture  # noqa: F401 - fixture

pytestmark = pytest.mark.timeout(120)


def _asn1(cert) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def _services(sb: Sandbox, tsa: bool = False) -> SigningServices:
    pki = sb.engine.pki
    kw = {"trust_roots": [_asn1(pki.root)], "other_certs": [_asn1(pki.issuing_ca)]}
    if tsa:
        return SigningServices.with_tsa_url(f"{sb.url}/sandbox/pki/tsa", **kw)
    return SigningServices(**kw)


async def _verify(sb: Sandbox, path: Path, expect_timestamp: bool = False) -> None:
    pki = sb.engine.pki
    with open(path, "rb") as f:  # noqa: ASYNC230 - a small test file
        reader = PdfFileReader(f)
        assert len(reader.embedded_signatures) == 1
        sig = reader.embedded_signatures[0]
        vc = ValidationContext(trust_roots=[_asn1(pki.root)], other_certs=[_asn1(pki.issuing_ca)])
        status = await async_validate_pdf_signature(sig, vc)
        assert status.intact and status.valid and status.trusted, status.pretty_print_details()
        assert status.signing_cert.subject.native["common_name"].startswith("CHAN Tai Man")
        assert (status.timestamp_validity is not None) is expect_timestamp


async def test_account_pdf_signing_embeds_as_pades(sandbox: Sandbox, letter: Path, tmp_path: Path) -> None:
    prepared, out = tmp_path / "prepared.pdf", tmp_path / "signed.pdf"
    record = await prepare_for_signing(
        letter, prepared, SignOptions(mode=RemoteMode.PDF, level=PadesLevel.B_B)
    )
    async with sandbox.client() as c:
        tok = await sandbox.login(c)
        b = bid("e2e-pdf")
        init = await c.account_sign_pdf(
            business_id=b,
            token=tok,
            doc_digest=record.document_digest,
            redirect_uri=sandbox.receiver.callback_uri(b),
            service_name="e2e",
            document_name="letter.pdf",
        )
        r = await sandbox.hook(
            "POST", "/phone/approve", json={"hkid": HKID_SIGNER, "sign_code": init.sign_code}
        )
        assert r.status_code == 200
        cb = c.decrypt_callback(await sandbox.receiver.wait_post(b))
        result = await finish_with_cms(record, prepared, out, cb.pdf_signature().cms_der, _services(sandbox))
        await c.ack_result(b, SigningResult.ACCEPTED)
    assert result.requested_level is PadesLevel.B_B
    await _verify(sandbox, out)


async def test_anonymous_pdf_signing_with_timestamp(sandbox: Sandbox, letter: Path, tmp_path: Path) -> None:
    prepared, out = tmp_path / "prepared.pdf", tmp_path / "signed.pdf"
    record = await prepare_for_signing(
        letter, prepared, SignOptions(mode=RemoteMode.PDF, level=PadesLevel.B_T)
    )
    async with sandbox.client() as c:
        b = bid("e2e-anon")
        init = await c.anonymous_sign_pdf(
            business_id=b,
            doc_digest=record.document_digest,
            hkic_hash=hkic_hash(HKID_SIGNER),
            redirect_uri=sandbox.receiver.return_uri(b),
            service_name="e2e",
            document_name="letter.pdf",
        )
        await sandbox.hook("POST", "/phone/approve", json={"hkid": HKID_SIGNER, "sign_code": init.sign_code})
        tok = await c.get_token((await sandbox.receiver.wait_get(b))["code"])
        pdf = await c.anonymous_pdf_result(tok)
        result = await finish_with_cms(record, prepared, out, pdf.cms_der, _services(sandbox, tsa=True))
    assert result.has_signature_timestamp
    await _verify(sandbox, out, expect_timestamp=True)


@pytest.mark.parametrize("sig_algo", [SigAlgo.SHA256_WITH_RSA, SigAlgo.NONE_WITH_RSA])
async def test_hash_signing_embeds_with_raw_signature(
    sandbox: Sandbox, letter: Path, tmp_path: Path, sig_algo: SigAlgo
) -> None:
    prepared, out = tmp_path / "prepared.pdf", tmp_path / "signed.pdf"
    record = await prepare_for_signing(
        letter, prepared, SignOptions(mode=RemoteMode.HASH, level=PadesLevel.B_B, sig_algo=sig_algo)
    )
    async with sandbox.client() as c:
        tok = await sandbox.login(c)
        b = bid("e2e-hash")
        init = await c.account_sign_hash(
            business_id=b,
            token=tok,
            hash_code=record.to_be_signed,
            sig_algo=sig_algo.value,
            redirect_uri=sandbox.receiver.callback_uri(b),
            service_name="e2e",
            document_name="letter.pdf",
        )
        await sandbox.hook("POST", "/phone/approve", json={"hkid": HKID_SIGNER, "sign_code": init.sign_code})
        hs = c.decrypt_callback(await sandbox.receiver.wait_post(b)).hash_signature()
        await finish_with_raw_signature(record, prepared, out, hs.signature, hs.cert_der, _services(sandbox))
        await c.ack_result(b, SigningResult.ACCEPTED)
    await _verify(sandbox, out)

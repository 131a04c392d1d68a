"""``POST /v1/verifications`` over real HTTP: the same JSON as the library, errors, size and rate limits."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from fixtures.generate import simple_pdf
from signing.model import PadesLevel
from signing.sandbox.pki import SandboxPki
from signing.trust import TrustList
from signing.verify import VerifyOptions, verify_pdf_sync

from .conftest import asn1
from .service_fixtures import Service
from .support import LoopbackServer
from .verify_fixtures import sign


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> Service:
    """The service on its embedded defaults (SQLite): verification does not touch the database."""
    from sqlmodel import Session

    from api.app import create_app
    from api.settings import Settings
    from api.store.keys import create_api_key

    data = tmp_path_factory.mktemp("verify-service")
    server = LoopbackServer()
    settings = Settings(
        data_dir=data,
        host="127.0.0.1",
        port=server.port,
        max_upload_bytes=2 * 1024 * 1024,
        sweep_interval_s=0.3,
    )
    app = create_app(settings)
    with Session(app.state.engine) as s:
        key, _ = create_api_key(s, "Verifier tests")
    server.start(app)
    yield Service(server.url, app, settings, key, key)
    server.stop()
    app.state.engine.dispose()


@pytest.fixture(scope="module")
def signed(service, tmp_path_factory) -> dict[str, Path]:
    """A B-LTA file signed with the service's own sandbox PKI, and a few others."""
    d = tmp_path_factory.mktemp("verify-api")
    pki = SandboxPki(service.settings.sandbox_pki_dir)
    issued = pki.issue_signer("WONG Ka Yan")
    from signing.services import SigningServices

    services = SigningServices.with_tsa_url(
        f"{pki.base_url}/tsa", trust_roots=[asn1(pki.root)], other_certs=[asn1(pki.issuing_ca)]
    )
    letter = simple_pdf(d / "letter.pdf")
    lta = asyncio.run(sign(letter, d / "lta.pdf", pki, issued, PadesLevel.B_LTA, services))
    garbage = d / "garbage.pdf"
    garbage.write_bytes(b"GIF89a not a pdf at all")
    big = d / "big.pdf"
    big.write_bytes(b"%PDF-1.7\n" + b"0" * (service.settings.max_upload_bytes + 10))
    return {"lta": lta, "letter": letter, "garbage": garbage, "big": big}


def post(service, path: Path, **params) -> httpx.Response:
    with httpx.Client(base_url=service.url, timeout=60) as client, open(path, "rb") as f:  # no API key
        return client.post(
            "/v1/verifications", params=params, files={"file": (path.name, f, "application/pdf")}
        )


def test_sandbox_signed_file_verifies_offline(service, signed):
    r = post(service, signed["lta"], offline="true")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["valid"] is True
    s = body["signatures"][0]
    assert s["indication"] == "TOTAL-PASSED" and s["pades_level"] == "B-LTA"
    assert s["trust_profile"] == "iamsign-sandbox-iamsmart-cert"
    assert s["signer"]["name"] == "WONG Ka Yan"
    # Same report as the library gives for the same file and settings (up to the times of the run).
    lib = verify_pdf_sync(
        signed["lta"], VerifyOptions(trust=TrustList.load(data_dir=service.settings.data_dir), offline=True)
    ).to_json()
    for key in ("indication", "sub_indication", "checks", "pades_level", "signer", "eto", "signing_time"):
        assert s[key] == lib["signatures"][0][key]


def test_text_rendering_on_request(service, signed):
    r = post(service, signed["lta"], offline="true", text="true", lang="zh-Hant")
    assert r.status_code == 200 and "簽署核實報告" in r.json()["text"]


def test_unsigned_pdf_is_a_report_not_an_error(service, signed):
    r = post(service, signed["letter"])
    assert r.status_code == 200
    assert r.json()["valid"] is False and r.json()["signatures"] == []


def test_not_a_pdf(service, signed):
    r = post(service, signed["garbage"])
    assert r.status_code == 415
    assert r.json()["error"]["code"] == "not_a_pdf"


def test_too_large(service, signed):
    r = post(service, signed["big"])
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "too_large"


def test_missing_file_field(service):
    with httpx.Client(base_url=service.url, timeout=30) as client:
        r = client.post("/v1/verifications", files={"other": ("x.pdf", b"%PDF-1.7", "application/pdf")})
    assert r.status_code == 422 and r.json()["error"]["code"] == "missing_file"


def test_rate_limit(service, signed):
    from api.edge.limits import MemoryLimiter, Rule

    limits = service.app.state.limits
    saved = limits.limiter, limits.verification
    limits.limiter, limits.verification = MemoryLimiter(), Rule("verification", 2)
    try:
        codes = [post(service, signed["letter"]).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
    finally:
        limits.limiter, limits.verification = saved


@pytest.mark.parametrize("mode", ["pdf", "hash"])
def test_document_signed_by_the_service_verifies_offline(service, tmp_path, mode):
    """Upload, sign through the service and the sandbox phone at B-LTA, then verify the result offline."""
    import time

    signer_hkid = "A123456(3)"  # the sandbox's iAM Smart+ user
    with service.client() as c:
        pdf = simple_pdf(tmp_path / "letter.pdf", pages=2)
        doc = c.post(
            "/v1/documents", files={"file": ("letter.pdf", pdf.read_bytes(), "application/pdf")}
        ).json()
        req = c.post(
            "/v1/signing-requests",
            json={"document_id": doc["id"], "signer": {"hkid": signer_hkid}, "mode": mode, "level": "B-LTA"},
        ).json()
        assert (
            c.post(
                "/sandbox/v1/phone/approve", json={"hkid": signer_hkid, "sign_code": req["sign_code"]}
            ).status_code
            == 200
        )
        deadline = time.monotonic() + 60
        while (body := c.get(f"/v1/signing-requests/{req['id']}").json())["status"] == "pending":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert body["status"] == "completed", body
        signed = c.get(f"/v1/signing-requests/{req['id']}/signed-document").content
    path = tmp_path / "signed.pdf"
    path.write_bytes(signed)
    r = post(service, path, offline="true")
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["valid"] is True, report
    (s,) = report["signatures"]
    assert s["indication"] == "TOTAL-PASSED" and s["checks"]["unmodified"]
    assert s["time_source"] == "signature_timestamp" and s["validation_process"] == "lta"
    assert len(report["document_timestamps"]) == 1 and report["document_timestamps"][0]["trusted"]
    # The service's remote signer makes an adbe.pkcs7-style CMS here: a valid signature, never called PAdES.
    assert s["pades_level"] in (None, "B-LTA")
    if s["subfilter"] == "/ETSI.CAdES.detached":
        assert s["pades_level"] == "B-LTA"

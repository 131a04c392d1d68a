"""The achieved signature, said the same everywhere, and signer enrolment (issue 13).

Each flow signs through the service and the sandbox; the API's ``signature``, the webhook payload, the
audit entry and ``iamsign verify`` on the downloaded file must name the same profile and level.
"""

from __future__ import annotations

import json
import time

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from sqlmodel import Session, select
from typer.testing import CliRunner

from api.cli.main import app as cli_app
from api.store.models import WebhookDelivery
from fixtures.generate import simple_pdf

from .service_fixtures import running_service

SIGNER = "A123456(3)"  # the sandbox's iAM Smart+ user CHAN Tai Man
LEVELS = ["B-B", "B-T", "B-LT", "B-LTA"]
AUGMENTATIONS = {
    "B-B": [],
    "B-T": ["signature-timestamp"],
    "B-LT": ["signature-timestamp", "dss"],
    "B-LTA": ["signature-timestamp", "dss", "document-timestamp"],
}


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    with running_service(tmp_path_factory.mktemp("profiles"), "sqlite") as s:
        yield s


def upload(c, tmp_path, name="letter.pdf") -> str:
    pdf = simple_pdf(tmp_path / name)
    r = c.post("/v1/documents", files={"file": (name, pdf.read_bytes(), "application/pdf")})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def approve(c, sign_code: str) -> None:
    r = c.post("/sandbox/v1/phone/approve", json={"hkid": SIGNER, "sign_code": sign_code})
    assert r.status_code == 200, r.text


def wait(c, path: str, timeout: float = 90, until=lambda b: b["status"] != "pending") -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = c.get(path).json()
        if until(body):
            return body
        time.sleep(0.1)
    raise AssertionError(f"{path} still {body}")


def enrol(c) -> dict:
    r = c.post("/v1/signers", json={"signer": {"hkid": SIGNER}})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "pending" and body["sign_code"], body
    assert "enrol my iAM Smart-Cert" in body["statement"]
    approve(c, body["sign_code"])
    done = wait(c, f"/v1/signers/{body['id']}")
    assert done["status"] == "enrolled", done
    return done


def forget_all(c, svc) -> None:
    from api.store.models import SignerEnrolment

    with Session(svc.app.state.engine) as s:
        for row in s.exec(select(SignerEnrolment)).all():
            assert c.delete(f"/v1/signers/{row.id}").status_code == 204


def verify_cli(svc, path) -> dict:
    """The report's first signature (``iamsign verify --json``)."""
    report = verify_cli_report(svc, path)
    return next(s for s in report["signatures"] if s["field"] == report["signatures"][0]["field"])


def verify_cli_report(svc, path) -> dict:
    root = svc.app.state.sandbox_pki.root.public_bytes(Encoding.PEM)
    root_file = path.with_suffix(".root.pem")
    root_file.write_bytes(root)
    result = CliRunner().invoke(
        cli_app,
        ["verify", str(path), "--json", "--trust", str(root_file), "--data-dir", str(svc.settings.data_dir)],
    )
    return json.loads(result.stdout)


def augmentations_in(report: dict, path) -> list[str]:
    """What the verifier and the file itself show was added to the signature, in the API's words."""
    from pypdf import PdfReader

    sig = report["signatures"][0]
    found = ["signature-timestamp"] if sig["timestamp_time"] else []
    if "/DSS" in PdfReader(path).trailer["/Root"]:
        found.append("dss")
    if any(t["valid"] for t in report["document_timestamps"]):
        found.append("document-timestamp")
    return found


def from_report(sig: dict) -> tuple[str, str | None]:
    profile = "pades-baseline" if sig["pades_level"] else "pkcs7-detached"
    return profile, sig["pades_level"]


def webhook_body(svc, request_id: str) -> dict:
    with Session(svc.app.state.engine) as s:
        row = s.exec(select(WebhookDelivery).where(WebhookDelivery.request_id == request_id)).one()
        return json.loads(row.body)


def sign_once(c, svc, tmp_path, **body) -> tuple[dict, bytes]:
    doc = upload(c, tmp_path)
    r = c.post(
        "/v1/signing-requests",
        json={
            "document_id": doc,
            "signer": {"hkid": SIGNER},
            "webhook_url": "http://127.0.0.1:9/hook",
            **body,
        },
    )
    assert r.status_code == 201, r.text
    created = r.json()
    approve(c, created["sign_code"])
    done = wait(c, f"/v1/signing-requests/{created['id']}")
    assert done["status"] == "completed", done
    pdf = c.get(f"/v1/signing-requests/{created['id']}/signed-document").content
    return done | {"created": created}, pdf


def assert_agree(c, svc, tmp_path, done: dict, pdf: bytes) -> dict:
    """API, webhook, audit and ``iamsign verify`` say the same profile and level; returns the signature."""
    sig = done["signature"]
    assert sig is not None
    hook = webhook_body(svc, done["id"])
    assert hook["signature"] == sig and hook["requested_level"] == done["requested_level"]
    audit = c.get(f"/v1/signing-requests/{done['id']}/audit").json()["entries"]
    completed = next(e for e in audit if e["event"] == "completed")
    assert json.dumps(sig) in completed["detail"]
    label = f"PAdES {sig['level']}" if sig["level"] else "PKCS#7 detached"
    assert label in completed["detail"]
    path = tmp_path / f"{done['id']}.pdf"
    path.write_bytes(pdf)
    whole = verify_cli_report(svc, path)
    report = whole["signatures"][0]
    assert from_report(report) == (sig["profile"], sig["level"]), report
    assert report["indication"] == "TOTAL-PASSED", report
    subfilter = {"pades-baseline": "/ETSI.CAdES.detached", "pkcs7-detached": "/adbe.pkcs7.detached"}
    assert report["subfilter"] == subfilter[sig["profile"]], report
    assert augmentations_in(whole, path) == sig["augmentations"], whole
    return sig


@pytest.mark.parametrize("level", LEVELS)
def test_not_enrolled_default_is_pdf_mode_and_labelled_pkcs7(svc, tmp_path, level):
    with svc.client() as c:
        forget_all(c, svc)
        done, pdf = sign_once(c, svc, tmp_path, level=level)
        assert done["mode"] == "pdf" and done["requested_level"] == level == done["level"]
        expected = {"profile": "pkcs7-detached", "level": None, "augmentations": AUGMENTATIONS[level]}
        assert done["created"]["expected_signature"] == expected
        assert assert_agree(c, svc, tmp_path, done, pdf) == expected


@pytest.mark.parametrize("level", LEVELS)
def test_enrolled_signer_default_is_hash_mode_pades_at_each_level(svc, tmp_path, level):
    with svc.client() as c:
        forget_all(c, svc)
        enrolled = enrol(c)
        assert enrolled["certificate"]["fingerprint_sha256"] and "CHAN" in enrolled["certificate"]["subject"]
        done, pdf = sign_once(c, svc, tmp_path, level=level)
        expected = {"profile": "pades-baseline", "level": level, "augmentations": AUGMENTATIONS[level]}
        assert done["mode"] == "hash"
        assert done["created"]["expected_signature"] == expected
        assert assert_agree(c, svc, tmp_path, done, pdf) == expected


@pytest.mark.parametrize("level", LEVELS)
def test_enrolled_signer_in_pdf_mode_is_still_pkcs7(svc, tmp_path, level):
    with svc.client() as c:
        forget_all(c, svc)
        enrol(c)
        done, pdf = sign_once(c, svc, tmp_path, level=level, mode="pdf")
        expected = {"profile": "pkcs7-detached", "level": None, "augmentations": AUGMENTATIONS[level]}
        assert assert_agree(c, svc, tmp_path, done, pdf) == expected


@pytest.mark.parametrize("level", LEVELS)
def test_hash_mode_without_enrolment_says_what_it_made(svc, tmp_path, level):
    with svc.client() as c:
        forget_all(c, svc)
        done, pdf = sign_once(c, svc, tmp_path, level=level, mode="hash")
        sig = assert_agree(c, svc, tmp_path, done, pdf)
        assert sig == done["created"]["expected_signature"]  # what was promised is what was made


def test_require_pades_refused_at_creation_with_the_reason(svc, tmp_path):
    with svc.client() as c:
        forget_all(c, svc)
        doc = upload(c, tmp_path)
        for extra in ({}, {"mode": "pdf"}, {"mode": "hash"}):
            r = c.post(
                "/v1/signing-requests",
                json={
                    "document_id": doc,
                    "signer": {"hkid": SIGNER},
                    "require_profile": "pades-baseline",
                    **extra,
                },
            )
            assert r.status_code == 422, r.text
            err = r.json()["error"]
            assert err["code"] == "profile_unavailable"
            assert ("signingTime" in err["message"]) or ("POST /v1/signers" in err["message"])
        enrol(c)
        r = c.post(
            "/v1/signing-requests",
            json={"document_id": doc, "signer": {"hkid": SIGNER}, "require_profile": "pades-baseline"},
        )
        assert r.status_code == 201, r.text
        assert r.json()["expected_signature"]["profile"] == "pades-baseline"
        c.post(f"/v1/signing-requests/{r.json()['id']}/cancel")


@pytest.fixture(scope="module")
def renew_svc(tmp_path_factory):
    """A service of its own: renewing changes the sandbox user's certificate for good."""
    with running_service(tmp_path_factory.mktemp("renewal"), "sqlite") as s:
        yield s


def test_renewed_certificate_fails_the_next_request_at_once_and_reenrolment_restores(renew_svc, tmp_path):
    svc = renew_svc
    with svc.client() as c:
        first = enrol(c)
        done, _ = sign_once(c, svc, tmp_path, level="B-B")
        assert done["signature"]["profile"] == "pades-baseline"
        r = c.post("/sandbox/v1/users/renew-certificate", json={"hkid": SIGNER})
        assert r.status_code == 200, r.text
        doc = upload(c, tmp_path)
        started = time.monotonic()
        r = c.post("/v1/signing-requests", json={"document_id": doc, "signer": {"hkid": SIGNER}})
        assert r.status_code == 409, r.text
        assert r.json()["error"]["code"] == "signer_reenrolment_required"
        assert time.monotonic() - started < 10  # answered at once, nothing sent to the signer
        assert c.get("/v1/signing-requests", params={"status": "pending"}).json()["items"] == []
        stale = c.get(f"/v1/signers/{first['id']}").json()
        assert stale["status"] == "reenrolment_required"
        assert stale["error"]["code"] == "signer_reenrolment_required"
        again = enrol(c)
        assert again["certificate"]["fingerprint_sha256"] != first["certificate"]["fingerprint_sha256"]
        done, pdf = sign_once(c, svc, tmp_path, level="B-LT")
        expected = {"profile": "pades-baseline", "level": "B-LT", "augmentations": AUGMENTATIONS["B-LT"]}
        assert assert_agree(c, svc, tmp_path, done, pdf) == expected


def test_renewal_seen_only_in_the_answer_fails_that_request_at_once(renew_svc, tmp_path):
    """The old certificate left valid: the signer's answer, made with the new one, fails the request there
    and then (no wait until expiry), and the enrolment asks for re-enrolment."""
    svc = renew_svc
    with svc.client() as c:
        enrolled = enrol(c)
        r = c.post("/sandbox/v1/users/renew-certificate", json={"hkid": SIGNER, "revoke_old": False})
        assert r.status_code == 200, r.text
        doc = upload(c, tmp_path)
        r = c.post("/v1/signing-requests", json={"document_id": doc, "signer": {"hkid": SIGNER}})
        assert r.status_code == 201, r.text
        assert r.json()["mode"] == "hash"
        approve(c, r.json()["sign_code"])
        done = wait(c, f"/v1/signing-requests/{r.json()['id']}", timeout=20)
        assert done["status"] == "failed", done
        assert done["error"]["code"] == "signer_reenrolment_required"
        assert c.get(f"/v1/signers/{enrolled['id']}").json()["status"] == "reenrolment_required"
        r = c.post("/v1/signing-requests", json={"document_id": doc, "signer": {"hkid": SIGNER}})
        assert r.status_code == 409 and r.json()["error"]["code"] == "signer_reenrolment_required"
        enrol(c)
        done, _ = sign_once(c, svc, tmp_path, level="B-T")
        assert done["signature"] == {
            "profile": "pades-baseline",
            "level": "B-T",
            "augmentations": ["signature-timestamp"],
        }


def test_a_revoked_certificate_is_not_enrolled(renew_svc, tmp_path):
    """Enrolment keeps a certificate only after checking it: once the signer's certificate is revoked, a
    new enrolment ends failed with the reason and shows no certificate, and the signer is not enrolled."""
    svc = renew_svc
    with svc.client() as c:
        forget_all(c, svc)
        first = enrol(c)  # the sandbox issues the certificate for this service at the first signature
        r = c.post("/sandbox/v1/users/revoke-certificate", json={"hkid": SIGNER})
        assert r.status_code == 200, r.text
        assert int(first["certificate"]["serial"], 16) in {int(n) for n in r.json()["serials"]}
        try:
            r = c.post("/v1/signers", json={"signer": {"hkid": SIGNER}})
            assert r.status_code == 201, r.text
            approve(c, r.json()["sign_code"])
            done = wait(c, f"/v1/signers/{r.json()['id']}")
            assert done["status"] == "failed", done
            assert done["error"]["code"] == "certificate_revoked", done
            assert done.get("certificate") is None, done
            doc = upload(c, tmp_path)
            r = c.post("/v1/signing-requests", json={"document_id": doc, "signer": {"hkid": SIGNER}})
            assert r.status_code == 201, r.text
            assert r.json()["mode"] == "pdf"  # not enrolled now: never hash mode on the revoked certificate
            assert c.post(f"/v1/signing-requests/{r.json()['id']}/cancel").status_code == 200
        finally:
            r = c.post("/sandbox/v1/users/renew-certificate", json={"hkid": SIGNER})
            assert r.status_code == 200, r.text


def test_enrolled_signer_hash_mode_batch_of_20_is_pades_b_lta(svc, tmp_path):
    with svc.client() as c:
        forget_all(c, svc)
        doc_ids = [upload(c, tmp_path, f"letter-{i}.pdf") for i in range(20)]
        r = c.post(
            "/v1/batches",
            json={"document_ids": doc_ids, "signer": {"hkid": SIGNER}, "require_profile": "pades-baseline"},
        )
        assert r.status_code == 422 and r.json()["error"]["code"] == "profile_unavailable", r.text
        enrol(c)
        r = c.post(
            "/v1/batches",
            json={
                "document_ids": doc_ids,
                "signer": {"hkid": SIGNER},
                "level": "B-LTA",
                "require_profile": "pades-baseline",
                "webhook_url": "http://127.0.0.1:9/hook",
            },
        )
        assert r.status_code == 201, r.text
        batch = r.json()
        expected = {"profile": "pades-baseline", "level": "B-LTA", "augmentations": AUGMENTATIONS["B-LTA"]}
        assert batch["mode"] == "hash" and batch["requested_level"] == "B-LTA"
        assert batch["expected_signature"] == expected
        approve(c, batch["sign_code"])
        done = wait(
            c,
            f"/v1/batches/{batch['id']}",
            timeout=180,
            until=lambda b: b["status"] not in ("pending", "signing"),
        )
        assert done["status"] == "completed", done
        hook = webhook_body(svc, batch["id"])
        assert hook["requested_level"] == "B-LTA" and hook["mode"] == "hash"
        by_doc = {d["document_id"]: d["signature"] for d in hook["documents"]}
        for item in done["documents"]:
            assert item["signature"] == expected == by_doc[item["document_id"]]
            pdf = c.get(f"/v1/batches/{batch['id']}/documents/{item['document_id']}/signed-document")
            path = tmp_path / f"{item['document_id']}.signed.pdf"
            path.write_bytes(pdf.content)
            report = verify_cli(svc, path)
            assert report["indication"] == "TOTAL-PASSED", report
            assert report["pades_level"] == "B-LTA", report
            assert report["subfilter"] == "/ETSI.CAdES.detached"


def test_batch_cli_require_pades_and_the_manifest_says_what_was_signed(svc, tmp_path):
    from api.cli.batch import SignConfig, run_sign

    folder = tmp_path / "letters"
    folder.mkdir()
    for i in range(3):
        simple_pdf(folder / f"l{i}.pdf", text=f"letter {i}")
    with svc.client() as c:
        forget_all(c, svc)

        def run(out: str) -> tuple[int, dict]:
            code = run_sign(
                SignConfig(
                    source=folder,
                    out=tmp_path / out,
                    server=svc.url,
                    api_key=svc.key,
                    hkid=SIGNER,
                    level="B-LT",
                    require_pades=True,
                    poll_interval=0.1,
                    timeout=120,
                )
            )
            return code, json.loads((tmp_path / out / "manifest.json").read_text())

        code, manifest = run("refused")  # not enrolled: the server refuses the batch, nothing is signed
        assert code == 1
        assert all("profile_unavailable" in f["error"] for f in manifest["files"]), manifest
        enrol(c)
        r = c.post(
            "/sandbox/v1/users/update", json={"hkid": SIGNER, "auto_action": "approve", "auto_delay_ms": 0}
        )
        assert r.status_code == 200, r.text
        try:
            code, manifest = run("signed")
        finally:
            c.post("/sandbox/v1/users/update", json={"hkid": SIGNER, "auto_action": "none"})
        assert code == 0, manifest
        for f in manifest["files"]:
            assert f["status"] == "signed"
            assert (f["requested_level"], f["signature_profile"], f["signature_level"]) == (
                "B-LT",
                "pades-baseline",
                "B-LT",
            )
            assert f["signature_augmentations"] == "signature-timestamp dss"
        header = (tmp_path / "signed" / "manifest.csv").read_text().splitlines()[0]
        assert "signature_profile" in header and "signature_level" in header


def test_renewal_seen_in_a_hash_mode_batch_ends_it_at_once(renew_svc, tmp_path):
    svc = renew_svc
    with svc.client() as c:
        enrolled = enrol(c)
        r = c.post("/sandbox/v1/users/renew-certificate", json={"hkid": SIGNER, "revoke_old": False})
        assert r.status_code == 200, r.text
        doc_ids = [upload(c, tmp_path, f"b{i}.pdf") for i in range(3)]
        r = c.post("/v1/batches", json={"document_ids": doc_ids, "signer": {"hkid": SIGNER}, "level": "B-B"})
        assert r.status_code == 201, r.text
        assert r.json()["mode"] == "hash"
        approve(c, r.json()["sign_code"])
        done = wait(
            c,
            f"/v1/batches/{r.json()['id']}",
            timeout=30,
            until=lambda b: b["status"] not in ("pending", "signing"),
        )
        assert done["status"] == "failed" and done["error"]["code"] == "signer_reenrolment_required", done
        assert all(d["status"] == "failed" for d in done["documents"])
        assert c.get(f"/v1/signers/{enrolled['id']}").json()["status"] == "reenrolment_required"

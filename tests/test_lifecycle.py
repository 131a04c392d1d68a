"""Hole 7: API keys can be listed, revoked and made to expire; documents can be deleted (with their signed
revisions, never while a request is pending) and are removed after the retention period, the audit
keeping a tombstone."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from sqlmodel import Session

from api.store.keys import create_api_key, organisation_for_key
from api.store.models import Document, utcnow
from fixtures.generate import simple_pdf

from .service_fixtures import running_service
from .test_signing_service import SIGNER, _wait_status

ROOT = Path(__file__).resolve().parents[1]


def _cli(args: list[str], data: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IAMSIGN_")}
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args, "--data-dir", str(data)],
        check=False,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _upload_unique(c, tmp_path) -> dict:
    """A PDF no other test uploads (files are shared by identical content)."""
    name = f"{uuid.uuid4().hex}.pdf"
    pdf = simple_pdf(tmp_path / name, text=f"letter {name}")
    r = c.post("/v1/documents", files={"file": (name, pdf.read_bytes(), "application/pdf")})
    assert r.status_code == 201, r.text
    return r.json()


def _signed(c, tmp_path) -> tuple[dict, dict]:
    doc = _upload_unique(c, tmp_path)
    req = c.post(
        "/v1/signing-requests", json={"document_id": doc["id"], "signer": {"hkid": SIGNER}, "level": "B-B"}
    ).json()
    c.post("/sandbox/v1/phone/approve", json={"hkid": SIGNER, "sign_code": req["sign_code"]})
    done = _wait_status(c, req["id"])
    assert done["status"] == "completed", done
    return doc, done


def _file_of(service, doc_id: str) -> Path:
    with Session(service.app.state.engine) as s:
        return service.app.state.store.path_for(s.get(Document, doc_id).sha256)


# ---------------------------------------------------------------------------------------------- API keys


def test_keys_list_revoke_and_expiry_from_the_command_line(tmp_path):
    data = tmp_path / "data"
    made = _cli(["keys", "create", "School A", "--expires-in-days", "30"], data)
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert "expires" in made.stderr
    other = _cli(["keys", "create", "Bank B", "--key-name", "ci"], data).stdout.strip()
    listing = _cli(["keys", "list"], data)
    assert listing.returncode == 0, listing.stderr
    rows = [line.split("\t") for line in listing.stdout.splitlines()[1:]]
    assert {r[1] for r in rows} == {"School A", "Bank B"} and all(r[6] == "active" for r in rows)
    assert secret not in listing.stdout and other not in listing.stdout  # only the prefix is shown
    school = next(r for r in rows if r[1] == "School A")
    assert school[5] != "never" and next(r for r in rows if r[1] == "Bank B")[5] == "never"

    from api.store.db import make_engine

    engine = make_engine(f"sqlite:///{(data / 'iamsign.db').resolve()}")
    with Session(engine) as s:
        assert organisation_for_key(s, secret).name == "School A"
    revoked = _cli(["keys", "revoke", school[0]], data)
    assert revoked.returncode == 0 and school[0] in revoked.stdout
    with Session(engine) as s:
        assert organisation_for_key(s, secret) is None
        assert organisation_for_key(s, other).name == "Bank B"
    after = _cli(["keys", "list", "--organisation", "School A"], data).stdout.splitlines()[1:]
    assert len(after) == 1 and after[0].endswith("\trevoked")
    unknown = _cli(["keys", "revoke", "key_nope"], data)
    assert unknown.returncode == 1 and "no single key" in unknown.stderr
    assert _cli(["keys", "create", "X", "--expires-in-days", "0"], data).returncode == 2
    engine.dispose()


def test_an_expired_key_is_refused(service):
    with Session(service.app.state.engine) as s:
        expired, _ = create_api_key(s, "School A", "old", expires_at=utcnow() - dt.timedelta(seconds=1))
        fresh, _ = create_api_key(s, "School A", "new", expires_at=utcnow() + dt.timedelta(days=1))
    with service.client(expired) as c:
        assert c.get("/v1/signing-requests").status_code == 401
    with service.client(fresh) as c:
        assert c.get("/v1/signing-requests").status_code == 200


# ---------------------------------------------------------------------------------------------- deletion


def test_deleting_a_document_removes_its_signed_revision_and_leaves_a_tombstone(service, tmp_path):
    with service.client() as c:
        doc, req = _signed(c, tmp_path)
        original, signed = _file_of(service, doc["id"]), _file_of(service, req["signed_document_id"])
        assert original.exists() and signed.exists()
        with service.client(service.other_key) as other:
            assert other.delete(f"/v1/documents/{doc['id']}").status_code == 404
        r = c.delete(f"/v1/documents/{doc['id']}")
        assert r.status_code == 200, r.text
        assert r.json() == {"id": doc["id"], "deleted_document_ids": [doc["id"], req["signed_document_id"]]}
        assert not original.exists() and not signed.exists()
        for path in (f"/v1/documents/{doc['id']}", f"/v1/documents/{doc['id']}/content"):
            assert c.get(path).status_code == 404
        assert c.get(f"/v1/documents/{req['signed_document_id']}").status_code == 404
        gone = c.get(f"/v1/signing-requests/{req['id']}/signed-document")
        assert gone.status_code == 410 and gone.json()["error"]["code"] == "document_deleted"
        audit = c.get(f"/v1/signing-requests/{req['id']}/audit").json()
        assert audit["chain_intact"] is True
        tomb = audit["entries"][-1]
        assert tomb["event"] == "document_deleted" and tomb["actor"].startswith("org:")
        assert doc["id"] in tomb["detail"] and req["signed_document_id"] in tomb["detail"]
        assert tomb["document_sha256_before"] == doc["sha256"]
        assert c.get(f"/v1/signing-requests/{req['id']}").json()["status"] == "completed"  # the record stays
        assert c.delete(f"/v1/documents/{doc['id']}").status_code == 404
        again = c.post(
            "/v1/signing-requests",
            json={"document_id": doc["id"], "signer": {"hkid": SIGNER}, "level": "B-B"},
        )
        assert again.status_code == 404


def test_a_document_is_not_deleted_while_a_request_is_pending(service, tmp_path):
    with service.client() as c:
        doc = _upload_unique(c, tmp_path)
        req = c.post(
            "/v1/signing-requests",
            json={"document_id": doc["id"], "signer": {"hkid": SIGNER}, "level": "B-B"},
        ).json()
        busy = c.delete(f"/v1/documents/{doc['id']}")
        assert busy.status_code == 409 and busy.json()["error"]["code"] == "document_in_use"
        assert c.get(f"/v1/documents/{doc['id']}/content").status_code == 200
        assert c.post(f"/v1/signing-requests/{req['id']}/cancel").status_code == 200
        assert c.delete(f"/v1/documents/{doc['id']}").status_code == 200


def test_a_file_shared_by_identical_content_stays_for_the_other_document(service, tmp_path):
    pdf = simple_pdf(tmp_path / "same.pdf", text=f"twice {uuid.uuid4().hex}").read_bytes()
    with service.client() as c:
        first, second = (
            c.post("/v1/documents", files={"file": ("same.pdf", pdf, "application/pdf")}).json()
            for _ in range(2)
        )
        assert c.delete(f"/v1/documents/{first['id']}").status_code == 200
        assert c.get(f"/v1/documents/{second['id']}/content").content == pdf


# ---------------------------------------------------------------------------------------------- retention


@pytest.fixture(scope="module")
def retained(tmp_path_factory):
    with running_service(tmp_path_factory.mktemp("retention"), "sqlite", retention_days=30) as svc:
        yield svc


def test_the_sweep_removes_documents_past_retention(retained, tmp_path):
    ctx = retained.app.state.context
    with retained.client() as c:
        doc, req = _signed(c, tmp_path)
        young = _upload_unique(c, tmp_path)
        time.sleep(1.0)  # sweeps pass: nothing is 30 days old
        assert c.get(f"/v1/documents/{doc['id']}").status_code == 200
        real = ctx.clock
        ctx.clock = lambda: real() + dt.timedelta(days=31)
        try:
            with Session(retained.app.state.engine) as s:  # the young document was made "today + 31 days"
                row = s.get(Document, young["id"])
                row.created_at = utcnow() + dt.timedelta(days=30)
                s.add(row)
                s.commit()
            deadline = time.monotonic() + 20
            # one sweep deletes them one after the other: wait for both before the clock goes back
            while time.monotonic() < deadline and any(
                c.get(f"/v1/documents/{d}").status_code != 404 for d in (doc["id"], req["signed_document_id"])
            ):
                time.sleep(0.2)
        finally:
            ctx.clock = real
        assert c.get(f"/v1/documents/{doc['id']}").status_code == 404
        assert c.get(f"/v1/documents/{req['signed_document_id']}").status_code == 404
        assert c.get(f"/v1/documents/{young['id']}").status_code == 200  # within its retention
        audit = c.get(f"/v1/signing-requests/{req['id']}/audit").json()
        tombs = [e for e in audit["entries"] if e["event"] == "document_deleted"]
        assert audit["chain_intact"] is True and tombs and {e["actor"] for e in tombs} == {"retention"}
        assert "30-day retention" in tombs[0]["detail"]

"""``/v1/documents``: streamed uploads, clear errors for bad files, nothing left behind, per-organisation ids."""

from __future__ import annotations

import hashlib

import pytest

from fixtures.generate import simple_pdf


def _leftovers(service) -> list:
    return [p for p in (service.settings.documents_dir / "tmp").iterdir()]


def test_upload_returns_metadata_and_content(service, tmp_path):
    pdf = simple_pdf(tmp_path / "letter.pdf", pages=3)
    data = pdf.read_bytes()
    with service.client() as c:
        r = c.post("/v1/documents", files={"file": ("letter.pdf", data, "application/pdf")})
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["sha256"] == hashlib.sha256(data).hexdigest()
        assert body == {
            "id": body["id"],
            "sha256": body["sha256"],
            "size": len(data),
            "filename": "letter.pdf",
            "pages": 3,
            "signature_count": 0,
        }
        assert c.get(f"/v1/documents/{body['id']}").json() == body
        content = c.get(f"/v1/documents/{body['id']}/content")
        assert content.headers["content-type"] == "application/pdf" and content.content == data
    assert _leftovers(service) == []


def _bad_files(tmp_path) -> dict:
    good = simple_pdf(tmp_path / "g.pdf").read_bytes()
    xref = good.rindex(b"xref")
    return {
        "zip": (b"PK\x03\x04" + bytes(500), 415, "not_a_pdf"),
        "truncated": (good[: len(good) // 2], 422, "damaged_pdf"),
        "damaged-xref": (
            good[:xref] + b"xref\n0 7\ngarbage garbage\n" + good[xref + 40 :],
            422,
            "damaged_pdf",
        ),
    }


@pytest.mark.parametrize("case", ["zip", "truncated", "damaged-xref", "encrypted"])
def test_bad_files_get_clear_errors_and_leave_nothing(service, tmp_path, case):
    from .test_pades_refusals import _encrypted_pdf

    cases = _bad_files(tmp_path)
    cases["encrypted"] = (_encrypted_pdf(tmp_path / "e.pdf").read_bytes(), 422, "encrypted_pdf")
    content, status, code = cases[case]
    before = sorted(service.settings.documents_dir.rglob("*"))
    with service.client() as c:
        r = c.post("/v1/documents", files={"file": ("x.pdf", content, "application/pdf")})
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["message"]
    assert "Traceback" not in r.text
    assert sorted(service.settings.documents_dir.rglob("*")) == before


def test_too_large_is_413_and_leaves_nothing(service):
    big = b"%PDF-1.7\n" + bytes(3 * 1024 * 1024)
    with service.client() as c:
        r = c.post("/v1/documents", files={"file": ("big.pdf", big, "application/pdf")})
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
    assert _leftovers(service) == []


def test_requests_without_a_file_or_multipart_are_refused(service):
    with service.client() as c:
        assert (
            c.post("/v1/documents", content=b"%PDF-", headers={"content-type": "application/pdf"}).status_code
            == 415
        )
        r = c.post("/v1/documents", files={"other": ("a.txt", b"x", "text/plain")})
        assert r.status_code == 422 and r.json()["error"]["code"] == "missing_file"
        r = c.post(
            "/v1/documents",
            content=b"--xx\r\ngarbage",
            headers={"content-type": "multipart/form-data; boundary=xx"},
        )
        assert r.status_code in (400, 422) and "error" in r.json()


def test_api_key_required_and_other_organisations_ids_are_404(service, tmp_path):
    pdf = simple_pdf(tmp_path / "letter.pdf").read_bytes()
    import httpx

    with httpx.Client(base_url=service.url) as anon:
        r = anon.post("/v1/documents", files={"file": ("a.pdf", pdf, "application/pdf")})
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    with service.client() as c:
        doc_id = c.post("/v1/documents", files={"file": ("a.pdf", pdf, "application/pdf")}).json()["id"]
    with service.client(service.other_key) as other:
        assert other.get(f"/v1/documents/{doc_id}").status_code == 404
        assert other.get(f"/v1/documents/{doc_id}/content").status_code == 404
    with service.client("isk_not-a-real-key") as bad:
        assert bad.get(f"/v1/documents/{doc_id}").status_code == 401

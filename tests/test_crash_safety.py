"""SIGKILL the service at each phase of signing, restart it, and check that every request ends consistent
with what is stored: no half-written PDF is ever served and nothing is signed twice."""

from __future__ import annotations

import asyncio
import io
import time

import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509

from fixtures.generate import simple_pdf

from .test_replicas import _approve, login
from .topology import start_topology

# where the process dies -> what the request must end as
CRASH_POINTS = {
    "prepared": "failed",  # before iAM Smart was asked: nothing to wait for
    "result_received": "completed",  # the answer is stored; the embedding was never queued
    "embedding": "completed",  # claimed, then died before touching the PDF
    "finish:embedded": "completed",  # /Contents filled, not yet augmented
    "finish:dss": "completed",  # augmented (DSS and document timestamp: one revision), not yet published
    "finish:published": "completed",  # signed file complete, not yet stored
    "before_completion_commit": "completed",  # stored, the database not yet told
}


@pytest.fixture(scope="module")
def topology(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("crash")
    top = start_topology(tmp, f"sqlite:///{tmp / 'iamsign.db'}", replicas=1)
    top.token = login(top)
    yield top
    top.stop()


def _validate(top, pdf: bytes):
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import DocumentSecurityStore, async_validate_pdf_signature

    root_pem = (top.data / "sandbox" / "pki" / "root.cert.pem").read_bytes()
    root = asn1_x509.Certificate.load(
        x509.load_pem_x509_certificate(root_pem).public_bytes(
            __import__("cryptography.hazmat.primitives.serialization", fromlist=["Encoding"]).Encoding.DER
        )
    )

    async def run():
        reader = PdfFileReader(io.BytesIO(pdf))
        sigs = [s for s in reader.embedded_signatures if s.sig_object_type == "/Sig"]
        doc_ts = [s for s in reader.embedded_signatures if s.sig_object_type == "/DocTimeStamp"]
        vc = DocumentSecurityStore.read_dss(reader).as_validation_context(
            {"trust_roots": [root], "allow_fetching": False, "revocation_mode": "require"}
        )
        status = await async_validate_pdf_signature(sigs[0], vc)
        await vc.aclose()
        return len(sigs), len(doc_ts), status

    return asyncio.run(run())


@pytest.mark.parametrize("point", list(CRASH_POINTS))
def test_sigkill_at_each_phase_then_restart(topology, tmp_path, point):
    top = topology
    (replica,) = top.replicas
    replica.stop()
    replica.start(extra_env={"IAMSIGN_CRASH_AT": point})
    pdf = simple_pdf(tmp_path / "letter.pdf")
    with top.client(replica.url) as c:
        doc = c.post(
            "/v1/documents", files={"file": ("letter.pdf", pdf.read_bytes(), "application/pdf")}
        ).json()
        body = {
            "document_id": doc["id"],
            "level": "B-LTA",
            "signer": {"session_id": top.token["session_id"]},
        }
        try:
            r = c.post("/v1/signing-requests", json=body)
            req = r.json()
        except Exception:  # noqa: BLE001 - the process died under this very request
            req = None
        if point != "prepared":
            assert req is not None and req["status"] == "pending", req
            _approve(top, req)
    assert replica.wait_exit(timeout=60) == -9, f"the service did not die at {point}:\n{replica.log()}"

    replica.start()  # no crash point this time
    with top.client(replica.url) as c:
        deadline = time.monotonic() + 60
        while True:
            items = c.get("/v1/signing-requests", params={"document_id": doc["id"]}).json()["items"]
            assert len(items) == 1, items  # one request, whatever happened
            final = items[0]
            if final["status"] != "pending" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert final["status"] == CRASH_POINTS[point], (point, final, replica.log())
        audit = c.get(f"/v1/signing-requests/{final['id']}/audit").json()
        events = [e["event"] for e in audit["entries"]]
        assert audit["chain_intact"]
        if final["status"] == "completed":
            assert events.count("completed") == 1 and events.count("result_received") == 1, events
            signed = c.get(f"/v1/signing-requests/{final['id']}/signed-document")
            assert signed.status_code == 200
            n_sigs, n_doc_ts, status = _validate(top, signed.content)
            assert (n_sigs, n_doc_ts) == (1, 1), "signed once, timestamped once"
            assert status.bottom_line, status.summary()
            stored = c.get(f"/v1/documents/{final['signed_document_id']}").json()
            assert stored["size"] == len(signed.content)
        else:
            assert final["error"]["code"] == "interrupted" and final["signed_document_id"] is None
            assert c.get(f"/v1/signing-requests/{final['id']}/signed-document").status_code == 409
    # nothing half-written left behind in storage
    leftovers = [p.name for p in (top.data / "documents" / "tmp").iterdir()]
    assert leftovers == [], leftovers

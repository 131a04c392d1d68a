"""``api.client`` against a running service: typed errors, atomic downloads, retries only where safe,
and a whole signing request through the sync and the async client."""

from __future__ import annotations

import asyncio
import hashlib
import time

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from fastapi.responses import StreamingResponse

from api.client import (
    AsyncIamsignClient,
    IamsignClient,
    IamsignConnectionError,
    IamsignError,
    IamsignTimeout,
)
from fixtures.generate import simple_pdf

from .processes import free_port
from .service_fixtures import running_service
from .support import LoopbackServer

SIGNER = "A123456(3)"


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    with running_service(tmp_path_factory.mktemp("client-service")) as service:
        yield service


@pytest.fixture
def letter(tmp_path):
    return simple_pdf(tmp_path / "letter.pdf", pages=2)


def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


def test_upload_get_and_atomic_download(svc, letter, tmp_path):
    with IamsignClient(svc.url, svc.key) as c:
        doc = c.upload_document(letter)
        assert doc.sha256 == hashlib.sha256(letter.read_bytes()).hexdigest() and doc.pages == 2
        assert c.get_document(doc.id) == doc
        out = tmp_path / "out" / "copy.pdf"
        got = c.download_document(doc.id, out)
    assert got.path == out and got.sha256 == doc.sha256 and got.size == doc.size
    assert out.read_bytes() == letter.read_bytes()
    assert _leftovers(out.parent) == []


def test_api_errors_are_typed(svc, tmp_path):
    junk = tmp_path / "junk.pdf"
    junk.write_bytes(b"GIF89a not a pdf at all")
    damaged = tmp_path / "damaged.pdf"
    damaged.write_bytes(b"%PDF-1.7\n1 0 obj <<\n%%EOF")
    with IamsignClient(svc.url, svc.key) as c:
        with pytest.raises(IamsignError) as e415:
            c.upload_document(junk)
        with pytest.raises(IamsignError) as e422:
            c.upload_document(damaged)
        with pytest.raises(IamsignError) as e404:
            c.get_document("doc_nope")
        with pytest.raises(IamsignError) as bad_signer:
            c.create_signing_request("doc_nope")
    with IamsignClient(svc.url, "wrong-key") as c, pytest.raises(IamsignError) as e401:
        c.get_document("doc_nope")
    assert (e415.value.status, e415.value.code) == (415, "not_a_pdf")
    assert e422.value.status == 422 and e422.value.code
    assert (e404.value.status, e404.value.code) == (404, "not_found") and "doc_nope" in e404.value.message
    assert (e401.value.status, e401.value.code) == (401, "unauthorized")
    assert bad_signer.value.status is None and bad_signer.value.code == "invalid_signer"


def test_failed_download_leaves_the_destination_alone(svc, tmp_path):
    dest = tmp_path / "keep.pdf"
    dest.write_bytes(b"previous content")
    with IamsignClient(svc.url, svc.key) as c, pytest.raises(IamsignError) as err:
        c.download_signed_document("sr_nope", dest)
    assert err.value.status == 404
    assert dest.read_bytes() == b"previous content" and _leftovers(tmp_path) == []


class Flaky:
    """A proxy in front of the service that fails the first ``fail`` requests of each path in some way."""

    def __init__(self, target: str, fail: int, how: str) -> None:
        self.target, self.fail, self.how = target, fail, how
        self.hits: dict[tuple[str, str], int] = {}
        self.server = LoopbackServer()
        app = FastAPI()
        client = httpx.AsyncClient(base_url=target, timeout=30)

        @app.api_route("/{path:path}", methods=["GET", "POST"])
        async def forward(path: str, request: Request) -> Response:
            key = (request.method, "/" + path)
            n = self.hits[key] = self.hits.get(key, 0) + 1
            headers = {
                k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")
            }
            upstream = await client.request(
                request.method,
                f"/{path}",
                content=await request.body(),
                headers=headers,
                params=request.query_params,
            )
            if n <= self.fail and self.how == "503":
                return Response(
                    b'{"error":{"code":"overloaded","message":"try later"}}',
                    status_code=503,
                    media_type="application/json",
                )
            if n <= self.fail and self.how == "truncate":
                body = upstream.content

                async def half():
                    yield body[: len(body) // 2]
                    raise RuntimeError("connection lost")

                return StreamingResponse(
                    half(), media_type="application/pdf", headers={"content-length": str(len(body))}
                )
            return Response(
                upstream.content,
                status_code=upstream.status_code,
                media_type=upstream.headers.get("content-type"),
            )

        self.server.start(app)

    @property
    def url(self) -> str:
        return self.server.url


def test_idempotent_calls_retry_on_503_and_uploads_do_not(svc, letter):
    flaky = Flaky(svc.url, fail=2, how="503")
    try:
        with IamsignClient(svc.url, svc.key) as direct:
            doc = direct.upload_document(letter)
        with IamsignClient(flaky.url, svc.key, retries=3, backoff=0.05) as c:
            assert c.get_document(doc.id).id == doc.id
            assert flaky.hits[("GET", f"/v1/documents/{doc.id}")] == 3
            with pytest.raises(IamsignError) as err:
                c.upload_document(letter)
        assert (err.value.status, err.value.code) == (503, "overloaded")
        assert flaky.hits[("POST", "/v1/documents")] == 1  # never repeated: it may have been stored
    finally:
        flaky.server.stop()


def test_download_cut_midway_is_retried_and_never_half_written(svc, letter, tmp_path):
    with IamsignClient(svc.url, svc.key) as direct:
        doc = direct.upload_document(letter)
    flaky = Flaky(svc.url, fail=1, how="truncate")
    try:
        dest = tmp_path / "dl" / "letter.pdf"
        with IamsignClient(flaky.url, svc.key, retries=2, backoff=0.05) as c:
            got = c.download_document(doc.id, dest)
        assert got.sha256 == doc.sha256 and dest.read_bytes() == letter.read_bytes()
        assert flaky.hits[("GET", f"/v1/documents/{doc.id}/content")] == 2  # cut once, then whole
        assert _leftovers(dest.parent) == []

        flaky.fail, flaky.hits = 10, {}
        dest.write_bytes(b"old")
        with IamsignClient(flaky.url, svc.key, retries=0) as c, pytest.raises(IamsignConnectionError):
            c.download_document(doc.id, dest)
        assert dest.read_bytes() == b"old" and _leftovers(dest.parent) == []
    finally:
        flaky.server.stop()


def test_unreachable_server_is_a_connection_error_after_bounded_retries(tmp_path, letter):
    url = f"http://127.0.0.1:{free_port()}"
    start = time.monotonic()
    with IamsignClient(url, "k", retries=3, backoff=0.05) as c:
        with pytest.raises(IamsignConnectionError) as err:
            c.get_document("doc_x")
        with pytest.raises(IamsignConnectionError):
            c.upload_document(letter)  # nothing was sent: retried too, and fails the same way
    assert err.value.status is None and err.value.code == "unreachable"
    assert time.monotonic() - start < 5


def _auto_approve(svc, on: bool) -> None:
    r = httpx.post(
        f"{svc.url}/sandbox/v1/users/update",
        json={"hkid": SIGNER, "auto_action": "approve" if on else "none", "auto_delay_ms": 0},
        timeout=10,
    )
    assert r.status_code == 200, r.text


def test_signing_request_end_to_end_sync(svc, letter, tmp_path):
    _auto_approve(svc, True)
    try:
        with IamsignClient(svc.url, svc.key, poll_interval=0.1) as c:
            doc = c.upload_document(letter)
            req = c.create_signing_request(doc.id, hkid=SIGNER, level="B-LTA", reason="client test")
            assert req.sign_code and req.status == "pending"
            done = c.wait_signing_request(req.id, timeout=60)
            assert done.status == "completed" and done.signed_document_id
            got = c.download_signed_document(req.id, tmp_path / "signed.pdf")
            assert got.sha256 == c.get_document(done.signed_document_id).sha256
            report = c.verify(got.path, offline=True)
        assert report["signatures"][0]["indication"] == "TOTAL-PASSED", report
    finally:
        _auto_approve(svc, False)


class _CountingTransport(httpx.HTTPTransport):
    """Counts the status reads a client sends (``GET /v1/signing-requests/{id}``)."""

    reads = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if (
            request.method == "GET"
            and request.url.path.count("/") == 3
            and "signing-requests" in request.url.path
        ):
            self.reads += 1
        return super().handle_request(request)


def test_waiting_is_a_long_poll_not_a_poll_every_interval(svc, letter):
    # approval comes 1.5 s later; polling every 0.1 s would read some 15 times, a held read once or twice
    r = httpx.post(
        f"{svc.url}/sandbox/v1/users/update",
        json={"hkid": SIGNER, "auto_action": "approve", "auto_delay_ms": 1500},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    transport = _CountingTransport()
    try:
        with IamsignClient(svc.url, svc.key, poll_interval=0.1, transport=transport) as c:
            req = c.create_signing_request(c.upload_document(letter).id, hkid=SIGNER, level="B-B")
            assert c.wait_signing_request(req.id, timeout=60).status == "completed"
        assert 1 <= transport.reads <= 3, transport.reads
    finally:
        _auto_approve(svc, False)


def test_async_client_same_flow_and_wait_timeout(svc, letter, tmp_path):
    async def run():
        async with AsyncIamsignClient(svc.url, svc.key, poll_interval=0.1) as c:
            doc = await c.upload_document(letter)
            req = await c.create_signing_request(doc.id, hkid=SIGNER, level="B-B")
            with pytest.raises(IamsignTimeout) as slow:
                await c.wait_signing_request(req.id, timeout=0.3)
            assert slow.value.last.status == "pending"
            cancelled = await c.cancel_signing_request(req.id)
            assert cancelled.status == "cancelled"
            with pytest.raises(IamsignError) as again:
                await c.cancel_signing_request(req.id)
            assert again.value.status == 409
            with pytest.raises(IamsignError) as not_signed:
                await c.download_signed_document(req.id, tmp_path / "never.pdf")
            assert not_signed.value.code == "not_completed"
            assert not (tmp_path / "never.pdf").exists() and _leftovers(tmp_path) == []

    asyncio.run(run())


def test_batch_wait_with_progress_document_and_zip_downloads(svc, tmp_path):
    import zipfile

    pdfs = [simple_pdf(tmp_path / f"b{i}.pdf", text=f"batch {i}") for i in range(3)]
    _auto_approve(svc, True)
    try:
        with IamsignClient(svc.url, svc.key, poll_interval=0.1) as c:
            docs = [c.upload_document(p) for p in pdfs]
            batch = c.create_batch([d.id for d in docs], hkid=SIGNER, level="B-T", reason="batch client test")
            assert batch.sign_code and batch.counts.total == 3
            seen = []
            done = c.wait_batch(batch.id, timeout=60, on_progress=seen.append)
            assert done.status == "completed" and seen[-1] == done and len(seen) >= 1
            assert [d.document_id for d in done.documents] == [d.id for d in docs]
            first = done.documents[0]
            got = c.download_batch_document(batch.id, first.document_id, tmp_path / "one" / "b0.pdf")
            assert got.sha256 == c.get_document(first.signed_document_id).sha256
            z = c.download_batch_zip(batch.id, tmp_path / "all.zip")
        with zipfile.ZipFile(z.path) as zf:
            assert len(zf.namelist()) == 3
        assert _leftovers(tmp_path / "one") == [] and _leftovers(tmp_path) == []
    finally:
        _auto_approve(svc, False)


def test_async_batch_pending_download_refused_then_cancelled(svc, tmp_path):
    pdfs = [simple_pdf(tmp_path / f"p{i}.pdf") for i in range(2)]

    async def run():
        async with AsyncIamsignClient(svc.url, svc.key, poll_interval=0.1) as c:
            docs = [await c.upload_document(p) for p in pdfs]
            batch = await c.create_batch([d.id for d in docs], hkid=SIGNER)
            assert batch.status == "pending" and batch.sign_code and batch.level == "B-LTA"
            with pytest.raises(IamsignError) as early:
                await c.download_batch_document(batch.id, docs[0].id, tmp_path / "early.pdf")
            assert (early.value.status, early.value.code) == (409, "not_completed")
            with pytest.raises(IamsignTimeout):
                await c.wait_batch(batch.id, timeout=0.3)
            cancelled = await c.cancel_batch(batch.id)
            assert cancelled.status == "cancelled" and cancelled.done
            assert {d.status for d in cancelled.documents} == {"cancelled"}
            with pytest.raises(IamsignError) as again:
                await c.cancel_batch(batch.id)
            assert again.value.status == 409
            with pytest.raises(IamsignError) as dup:
                await c.create_batch([docs[0].id, docs[0].id], hkid=SIGNER)
            assert dup.value.status == 422
        assert not (tmp_path / "early.pdf").exists() and _leftovers(tmp_path) == []

    asyncio.run(run())


def test_idempotency_key_makes_create_safe_to_repeat(svc, tmp_path):
    from api.client import IamsignClient
    from fixtures.generate import simple_pdf

    pdf = simple_pdf(tmp_path / "idem.pdf")
    with IamsignClient(svc.url, svc.key) as client:
        doc = client.upload_document(pdf)
        a = client.create_signing_request(doc.id, hkid="A123456(3)", level="B-B", idempotency_key="k-1")
        b = client.create_signing_request(doc.id, hkid="A123456(3)", level="B-B", idempotency_key="k-1")
        assert a.id == b.id
        x = client.create_batch([doc.id], hkid="A123456(3)", level="B-B", idempotency_key="k-2")
        y = client.create_batch([doc.id], hkid="A123456(3)", level="B-B", idempotency_key="k-2")
        assert x.id == y.id


def test_a_held_read_outlasts_a_short_read_timeout(svc, letter):
    # the client's read timeout is 1 s; a read held 2 s by the server must not time out and be retried
    with IamsignClient(svc.url, svc.key, timeout=1.0, retries=0) as c:
        req = c.create_signing_request(c.upload_document(letter).id, hkid=SIGNER, level="B-B")
        try:
            assert c.get_signing_request(req.id, wait=2).status == "pending"
        finally:
            c.cancel_signing_request(req.id)

"""Clear answers under faults: the database away -> 503 with Retry-After; a full disk -> 507, nothing partial."""

from __future__ import annotations

import os
import time
from urllib.parse import urlsplit, urlunsplit

import pytest

from .databases import PG_ADMIN_URL

SIGNER = "A123456(3)"
from .faults import CuttableLink, small_filesystem
from .service_fixtures import running_service


def _pdf(size: int) -> bytes:
    head = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"
    return head + os.urandom(size - len(head))


@pytest.fixture
def pg_link():
    target = urlsplit(PG_ADMIN_URL)
    link = CuttableLink((target.hostname or "127.0.0.1", target.port or 5432))
    yield link
    link.close()


def _through(link: CuttableLink):
    def rewrite(url: str) -> str:
        parts = urlsplit(url)
        netloc = f"{parts.username}@127.0.0.1:{link.port}" if parts.username else f"127.0.0.1:{link.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    return rewrite


def test_database_away_answers_503_with_retry_after_and_recovers(tmp_path, pg_link):
    with running_service(tmp_path, "postgresql", route_database=_through(pg_link)) as svc, svc.client() as c:
        assert c.post(
            "/v1/documents", files={"file": ("a.pdf", _pdf(4096), "application/pdf")}
        ).status_code in (
            201,
            422,
        )
        pg_link.cut()
        r = c.post("/v1/documents", files={"file": ("a.pdf", _pdf(4096), "application/pdf")})
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"].isdigit()
        assert r.json()["error"]["code"] == "database_unavailable"
        assert "Traceback" not in r.text
        assert c.get("/v1/signing-requests/does-not-exist").status_code == 503

        pg_link.restore()
        deadline = time.monotonic() + 20
        while True:  # the pool notices the new connections within a few tries
            r = c.get("/v1/signing-requests/does-not-exist")
            if r.status_code == 404 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert r.status_code == 404, r.text


def test_full_disk_answers_507_and_leaves_no_partial_file(tmp_path):
    documents = tmp_path / "documents"
    with (
        small_filesystem(documents, "1m"),
        running_service(tmp_path, max_upload_bytes=8 * 1024 * 1024) as svc,
        svc.client() as c,
    ):
        r = c.post("/v1/documents", files={"file": ("big.pdf", _pdf(3 * 1024 * 1024), "application/pdf")})
        assert r.status_code == 507, r.text
        assert r.json()["error"]["code"] == "insufficient_storage"
        leftovers = [p for p in documents.rglob("*") if p.is_file()]
        assert leftovers == [], leftovers

        # Space is there again for what fits: the service did not wedge itself.
        r = c.post("/v1/documents", files={"file": ("small.pdf", _pdf(64 * 1024), "application/pdf")})
        assert r.status_code != 507, r.text


def test_queue_away_keeps_recorded_work_and_sends_it_when_the_queue_is_back(tmp_path, caplog):
    """A result already stored must not turn into a 500 because Redis is restarting: the enqueue says so
    in one line and returns False, and what the queue refused is sent as soon as it answers again (not
    only when the sweep finds the work stale, minutes later)."""
    import uuid

    from api.settings import Settings
    from api.worker.tasks import TaskQueue

    from .faults import CuttableLink

    link = CuttableLink(("127.0.0.1", 6379))
    link.cut()
    settings = Settings(
        data_dir=tmp_path,
        queue_url=f"redis://127.0.0.1:{link.port}/0",
        queue_name=f"faults-{uuid.uuid4().hex[:8]}",
    )
    queue = TaskQueue(settings, context_factory=lambda: None)
    try:
        assert queue.enqueue_embed("sr_x") is False
        assert queue.enqueue_embed_batch("bt_x") is False
        assert "queue unavailable" in caplog.text
        assert queue.huey.dequeue() is None  # the consumer's read waits and retries instead of raising
        assert queue.send_unsent() == 2  # still away: kept

        link.restore()
        assert queue.send_unsent() == 0
        sent = sorted(task.args[0] for task in (queue.huey.dequeue(), queue.huey.dequeue()) if task)
        assert sent == ["bt_x", "sr_x"]
        assert queue.huey.dequeue() is None  # each sent once
    finally:
        link.restore()
        queue.huey.flush()
        link.close()


def test_the_sweep_ticker_outlives_a_queue_outage(tmp_path):
    """Asking after the last sweep fails while Redis restarts; the ticker goes on sweeping afterwards
    (it used to die there, and the process never expired or resumed anything again)."""
    import threading

    from api.settings import Settings
    from api.worker.tasks import TaskQueue

    outage = threading.Event()
    outage.set()

    class LostInTheRestart:
        def get(self, preserve=False):
            if outage.is_set():
                raise ConnectionError("redis restarting")
            # Redis came back without the result: None, as huey answers

    class Finished:
        def get(self, preserve=False):
            return True

    queue = TaskQueue(Settings(data_dir=tmp_path, sweep_interval_s=0.01), context_factory=lambda: None)
    sweeps: list[int] = []

    def sweep():
        sweeps.append(1)
        return LostInTheRestart() if len(sweeps) == 1 else Finished()

    queue._sweep = sweep
    ticker = threading.Thread(target=queue._tick, daemon=True)
    ticker.start()
    time.sleep(0.2)
    outage.clear()
    deadline = time.monotonic() + 10
    while len(sweeps) < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    queue._stop.set()
    ticker.join(timeout=5)
    assert len(sweeps) >= 6, f"the ticker stopped after {len(sweeps)} sweeps"


def _signing_request(c, level: str = "B-T") -> dict:
    from fixtures.generate import simple_pdf

    doc = c.post("/v1/documents", files={"file": ("a.pdf", _letter(simple_pdf), "application/pdf")}).json()
    r = c.post(
        "/v1/signing-requests", json={"document_id": doc["id"], "signer": {"hkid": SIGNER}, "level": level}
    )
    assert r.status_code == 201, r.text
    return r.json()


def _letter(simple_pdf) -> bytes:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        return simple_pdf(Path(d) / "letter.pdf").read_bytes()


def _final(c, req_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = c.get(f"/v1/signing-requests/{req_id}").json()
        if body["status"] != "pending":
            return body
        time.sleep(0.1)
    raise AssertionError(f"still pending: {body}")


@pytest.fixture
def tsa_link():
    link = CuttableLink(("127.0.0.1", 9))  # pointed at the service once it listens
    yield link
    link.close()


def _through_tsa_link(tmp_path, link: CuttableLink, **kw):
    svc = running_service(
        tmp_path,
        tsa_url=f"http://127.0.0.1:{link.port}/sandbox/pki/tsa",
        augment_retry_delay_s=0.5,
        **kw,
    )
    return svc


def test_a_tsa_away_for_a_moment_is_retried_and_the_signature_completes(tmp_path, tsa_link):
    with _through_tsa_link(tmp_path, tsa_link, augment_attempts=4) as svc, svc.client() as c:
        tsa_link.upstream = ("127.0.0.1", svc.settings.port)
        req = _signing_request(c)
        tsa_link.cut()
        assert (
            c.post(
                "/sandbox/v1/phone/approve", json={"hkid": SIGNER, "sign_code": req["sign_code"]}
            ).status_code
            == 200
        )
        time.sleep(1.0)  # the first tries fail while the TSA is away
        tsa_link.restore()
        done = _final(c, req["id"])
        assert done["status"] == "completed", done


def test_a_tsa_away_for_good_fails_with_a_clear_code_after_the_retries(tmp_path, tsa_link):
    with _through_tsa_link(tmp_path, tsa_link, augment_attempts=3) as svc, svc.client() as c:
        tsa_link.upstream = ("127.0.0.1", svc.settings.port)
        req = _signing_request(c)
        tsa_link.cut()
        t0 = time.monotonic()
        assert (
            c.post(
                "/sandbox/v1/phone/approve", json={"hkid": SIGNER, "sign_code": req["sign_code"]}
            ).status_code
            == 200
        )
        done = _final(c, req["id"])
        assert done["status"] == "failed", done
        assert done["error"]["code"] == "timestamp_unavailable"
        assert time.monotonic() - t0 >= 0.5 + 1.0  # it waited through both retries first

"""``GET /v1/signing-requests/{id}?wait=``: a status read that holds its answer until the request ends."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlmodel import Session

from api.routes import signing_requests as route
from api.store.models import SigningRequest

from .service_fixtures import running_service
from .test_signing_service import SIGNER, _start


def _watched_by(service, count: int, timeout: float = 30) -> None:
    """Until ``count`` reads wait in the service (bounded)."""
    import time

    changes = service.app.state.flow.changes
    deadline = time.monotonic() + timeout
    while changes.watched < count:
        assert time.monotonic() < deadline, f"{changes.watched} reads waiting, expected {count}"
        time.sleep(0.02)


def test_a_waiting_read_answers_once_the_signer_has_signed(service, tmp_path, monkeypatch):
    # the database is not looked at again while waiting: only this process's notice can end the wait early
    monkeypatch.setattr(route, "RECHECK_S", 60.0)
    with service.client() as c, service.client() as waiter, ThreadPoolExecutor(1) as pool:
        req = _start(c, tmp_path)
        waiting = pool.submit(waiter.get, f"/v1/signing-requests/{req['id']}", params={"wait": 40})
        _watched_by(service, 1)
        r = c.post("/sandbox/v1/phone/approve", json={"hkid": SIGNER, "sign_code": req["sign_code"]})
        assert r.status_code == 200, r.text
        answer = waiting.result(60)
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "completed" and answer.json()["signed_document_id"]
    assert service.app.state.flow.changes.watched == 0


def test_an_end_another_process_committed_is_seen_by_looking_again(service, tmp_path):
    with service.client() as c, service.client() as waiter, ThreadPoolExecutor(1) as pool:
        req = _start(c, tmp_path)
        waiting = pool.submit(waiter.get, f"/v1/signing-requests/{req['id']}", params={"wait": 40})
        _watched_by(service, 1)
        with Session(service.app.state.engine) as s:  # as a worker elsewhere would: no notice here
            row = s.get_one(SigningRequest, req["id"])
            row.status, row.phase = "expired", "done"
            s.commit()
        answer = waiting.result(60)
        assert answer.status_code == 200 and answer.json()["status"] == "expired", answer.text


def test_a_wait_that_runs_out_answers_pending(service, tmp_path):
    with service.client() as c:
        req = _start(c, tmp_path)
        r = c.get(f"/v1/signing-requests/{req['id']}", params={"wait": 0.3})
        assert r.status_code == 200 and r.json()["status"] == "pending", r.text
        c.post(f"/v1/signing-requests/{req['id']}/cancel")


def test_a_wait_on_an_ended_request_answers_at_once(service, tmp_path, monkeypatch):
    monkeypatch.setattr(route, "RECHECK_S", 60.0)
    with service.client() as c:
        req = _start(c, tmp_path)
        assert c.post(f"/v1/signing-requests/{req['id']}/cancel").status_code == 200
        r = c.get(f"/v1/signing-requests/{req['id']}", params={"wait": 40})
        assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text


@pytest.mark.parametrize("wait", ["-1", "61", "soon"])
def test_a_wait_out_of_range_is_422(service, tmp_path, wait):
    with service.client() as c:
        req = _start(c, tmp_path)
        r = c.get(f"/v1/signing-requests/{req['id']}", params={"wait": wait})
        assert r.status_code == 422 and "error" in r.json(), r.text
        c.post(f"/v1/signing-requests/{req['id']}/cancel")


def test_another_organisation_waits_for_nothing(service, tmp_path, monkeypatch):
    monkeypatch.setattr(route, "RECHECK_S", 60.0)
    with service.client() as c, service.client(service.other_key) as other:
        req = _start(c, tmp_path)
        r = other.get(f"/v1/signing-requests/{req['id']}", params={"wait": 40})
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        assert service.app.state.flow.changes.watched == 0
        c.post(f"/v1/signing-requests/{req['id']}/cancel")


def test_waiting_reads_hold_no_database_connection(tmp_path):
    # a pool of two connections, five reads waiting: the service still answers, and a cancel wakes them all
    with (
        running_service(tmp_path / "data", db_pool_size=2, db_max_overflow=0) as service,
        service.client() as c,
        ThreadPoolExecutor(5) as pool,
    ):
        req = _start(c, tmp_path)
        waiters = [service.client() for _ in range(5)]
        waiting = [
            pool.submit(w.get, f"/v1/signing-requests/{req['id']}", params={"wait": 40}) for w in waiters
        ]
        _watched_by(service, 5)
        assert c.get(f"/v1/signing-requests/{req['id']}").json()["status"] == "pending"
        assert not any(f.done() for f in waiting)  # answered while all five still wait
        assert c.post(f"/v1/signing-requests/{req['id']}/cancel").status_code == 200
        assert [f.result(60).json()["status"] for f in waiting] == ["cancelled"] * 5
        for w in waiters:
            w.close()

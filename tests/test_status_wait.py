"""``GET /v1/signing-requests/{id}?wait=``: a status read that holds its answer until the request ends."""

from __future__ import annotations

import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import uvicorn
from sqlalchemy import event
from sqlmodel import Session

from api.app import create_app
from api.edge.waking_server import WakingServer
from api.settings import Settings
from api.store.keys import create_api_key, revoke_api_key
from api.store.models import SigningRequest

from .service_fixtures import Service, running_service
from .support import LoopbackServer
from .test_signing_service import SIGNER, _start


def _watched_by(service, count: int, timeout: float = 30) -> None:
    """Until ``count`` reads wait in the service (bounded)."""
    changes = service.app.state.flow.changes
    deadline = time.monotonic() + timeout
    while changes.watched < count:
        assert time.monotonic() < deadline, f"{changes.watched} reads waiting, expected {count}"
        time.sleep(0.02)


def _no_database_rechecks(service, monkeypatch) -> None:
    """Only this process's own notices can end a wait early (the database is not asked meanwhile)."""
    monkeypatch.setattr(service.app.state.flow.changes, "_ended_among", lambda ids: [])


def test_a_waiting_read_answers_once_the_signer_has_signed(service, tmp_path, monkeypatch):
    _no_database_rechecks(service, monkeypatch)
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
    _no_database_rechecks(service, monkeypatch)
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
    _no_database_rechecks(service, monkeypatch)
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


def _watched_reads(service) -> list[str]:
    """Records the SQL statements that read a whole signing request by id (what a waiting read does)."""
    reads: list[str] = []

    def note(_conn, _cursor, statement, *_args) -> None:
        if "FROM signing_requests \nWHERE signing_requests.id = " in statement:
            reads.append(statement)

    event.listen(service.app.state.engine, "before_cursor_execute", note)
    return reads


def test_waiting_reads_cost_one_query_between_them_not_one_each(service, tmp_path):
    with service.client() as c, ThreadPoolExecutor(10) as pool:
        req = _start(c, tmp_path)
        waiters = [service.client() for _ in range(10)]
        reads = _watched_reads(service)
        waiting = [
            pool.submit(w.get, f"/v1/signing-requests/{req['id']}", params={"wait": 40}) for w in waiters
        ]
        _watched_by(service, 10)
        # a read is watched before its first look at the row (so that no end slips between them): on a
        # loaded machine some first looks come after the count reaches ten, so wait for all ten
        deadline = time.monotonic() + 30
        while len(reads) < 10:
            assert time.monotonic() < deadline, f"{len(reads)} first reads of the ten waiting"
            time.sleep(0.02)
        before = len(reads)
        time.sleep(2)  # ten reads waiting two seconds: a look each per 0.25 s would be 80 reads
        quiet = len(reads) - before
        assert c.post(f"/v1/signing-requests/{req['id']}/cancel").status_code == 200
        assert [f.result(60).json()["status"] for f in waiting] == ["cancelled"] * 10
        for w in waiters:
            w.close()
    assert quiet <= 2, f"{quiet} request reads while ten reads waited"


def _send_and_hang_up(service, path: str) -> socket.socket:
    host, port = service.url.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {service.key}\r\n\r\n".encode())
    return s


def test_a_client_that_hangs_up_stops_its_wait(service, tmp_path):
    with service.client() as c:
        req = _start(c, tmp_path)
        gone = [_send_and_hang_up(service, f"/v1/signing-requests/{req['id']}?wait=60") for _ in range(5)]
        _watched_by(service, 5)
        for s in gone:
            s.close()
        changes = service.app.state.flow.changes
        deadline = time.monotonic() + 20
        while changes.watched and time.monotonic() < deadline:
            time.sleep(0.05)
        assert changes.watched == 0, f"{changes.watched} reads still wait for clients that have gone"
        c.post(f"/v1/signing-requests/{req['id']}/cancel")


def test_a_key_revoked_while_its_read_waits_gets_401(tmp_path):
    with running_service(tmp_path / "data") as service, ThreadPoolExecutor(1) as pool:
        with Session(service.app.state.engine) as s:
            key, row = create_api_key(s, "School A", "short-lived")
            key_id = row.id
        with service.client(key) as c, service.client(key) as waiter:
            req = _start(c, tmp_path)
            waiting = pool.submit(waiter.get, f"/v1/signing-requests/{req['id']}", params={"wait": 40})
            _watched_by(service, 1)
            with Session(service.app.state.engine) as s:
                assert revoke_api_key(s, key_id) is not None
                ended = s.get_one(SigningRequest, req["id"])
                ended.status, ended.phase = "expired", "done"
                s.commit()
            answer = waiting.result(60)
        assert answer.status_code == 401 and answer.json()["error"]["code"] == "unauthorized", answer.text
        assert "expired" not in answer.text


def test_shutting_down_answers_the_waiting_reads_first(tmp_path):
    # what `iamsign serve` runs: told to exit, it wakes the held reads instead of waiting out their minute
    server = LoopbackServer()
    settings = Settings(
        data_dir=tmp_path / "data",
        host="127.0.0.1",
        port=server.port,
        database_url=f"sqlite:///{tmp_path}/s.db",
    )
    app = create_app(settings)
    with Session(app.state.engine) as s:
        key, _ = create_api_key(s, "School A")
    waking = WakingServer(
        uvicorn.Config(app, lifespan="on", log_level="warning"),
        on_exit=app.state.context.status_changes.close,
    )
    thread = threading.Thread(target=waking.run, kwargs={"sockets": [server.sock]}, daemon=True)
    thread.start()
    try:
        service = Service(server.url, app, settings, key, key)
        while not waking.started:
            assert thread.is_alive()
            time.sleep(0.02)
        with service.client() as c, service.client() as waiter, ThreadPoolExecutor(1) as pool:
            req = _start(c, tmp_path)
            waiting = pool.submit(waiter.get, f"/v1/signing-requests/{req['id']}", params={"wait": 60})
            _watched_by(service, 1)
            waking.handle_exit(signal.SIGTERM, None)
            answer = waiting.result(30)  # well before its minute
            assert answer.status_code == 200 and answer.json()["status"] == "pending", answer.text
        thread.join(30)
        assert not thread.is_alive(), "the server did not exit"
    finally:
        waking.should_exit = True
        thread.join(10)
        server.sock.close()
        app.state.engine.dispose()

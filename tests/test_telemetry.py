"""What an operator watches: /metrics after a real sandbox signing flow, request ids, JSON log lines."""

from __future__ import annotations

import io
import json
import logging
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.telemetry.logs import ContextFilter, JsonFormatter, request_id_from
from fixtures.generate import simple_pdf

from .service_fixtures import running_service

SIGNER = "A123456(3)"  # the sandbox's iAM Smart+ user CHAN Tai Man


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    with running_service(tmp_path_factory.mktemp("telemetry")) as svc:
        yield svc


@pytest.fixture
def json_log():
    """Every record of the process as the JSON lines `IAMSIGN_LOG_FORMAT=json` writes."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("iamsign")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield lambda: [json.loads(line) for line in out.getvalue().splitlines()]
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for fam in text_string_to_metric_families(text) for s in fam.samples]


def value(all_samples, name: str, **labels) -> float | None:
    found = [v for n, lab, v in all_samples if n == name and all(lab.get(k) == w for k, w in labels.items())]
    return sum(found) if found else None


def signing_flow(c: httpx.Client, tmp_path) -> dict:
    pdf = simple_pdf(tmp_path / "letter.pdf")
    doc = c.post("/v1/documents", files={"file": ("letter.pdf", pdf.read_bytes(), "application/pdf")}).json()
    r = c.post(
        "/v1/signing-requests",
        headers={"X-Request-ID": "flow-create-1"},
        json={
            "document_id": doc["id"],
            "signer": {"hkid": SIGNER},
            "level": "B-LTA",
            "webhook_url": "http://127.0.0.1:9/hook",  # nothing listens: the delivery is retried later
        },
    )
    assert r.status_code == 201, r.text
    req = r.json()
    r = c.post("/sandbox/v1/phone/approve", json={"hkid": SIGNER, "sign_code": req["sign_code"]})
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 60
    while (done := c.get(f"/v1/signing-requests/{req['id']}").json())["status"] == "pending":
        assert time.monotonic() < deadline, done
        time.sleep(0.1)
    assert done["status"] == "completed", done
    return done


def test_metrics_after_one_signing_flow(service, tmp_path, json_log):
    with service.client() as c:
        done = signing_flow(c, tmp_path)
        deadline = time.monotonic() + 20
        while True:  # the sweeper tries the webhook shortly after completion
            r = c.get("/metrics")
            got = samples(r.text)
            swept = value(got, "iamsign_sweep_duration_seconds_count", part="retention")
            retried = value(got, "iamsign_webhook_deliveries_total", outcome="retry")
            if (swept and retried) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")

    # HTTP requests and latency by route template and status, never by raw path
    assert value(got, "iamsign_http_requests_total", method="POST", route="/v1/documents", status="201") >= 1
    assert (
        value(
            got,
            "iamsign_http_requests_total",
            method="GET",
            route="/v1/signing-requests/{request_id}",
            status="200",
        )
        >= 1
    )
    assert (
        value(got, "iamsign_http_request_duration_seconds_count", route="/v1/signing-requests", status="201")
        >= 1
    )
    assert value(got, "iamsign_http_requests_total", route="/sandbox/v1/phone/approve", status="200") >= 1
    assert not [lab for n, lab, _ in got if "sr_" in lab.get("route", "")]
    # state: signing requests and batches by status, queue depth
    assert value(got, "iamsign_signing_requests", status="completed") >= 1
    assert value(got, "iamsign_signing_requests", status="failed") == 0
    assert value(got, "iamsign_batches", status="pending") == 0
    assert value(got, "iamsign_queue_depth") is not None
    # iAM Smart calls by endpoint and D-code
    assert (
        value(
            got,
            "iamsign_iamsmart_calls_total",
            endpoint="/anonymous/pdfsigning/initiateRequest",
            code="D00000",
        )
        >= 1
    )
    assert value(got, "iamsign_iamsmart_call_duration_seconds_count", endpoint="/auth/getToken") is not None
    # the TSA and OCSP calls made while finishing B-LTA
    assert value(got, "iamsign_outbound_call_duration_seconds_count", service="tsa", outcome="ok") >= 2
    assert value(got, "iamsign_outbound_call_duration_seconds_count", service="ocsp", outcome="ok") >= 1
    # the sweep's passes, timed by part
    for part in ("signing_requests", "batches", "envelopes", "retention"):
        assert value(got, "iamsign_sweep_duration_seconds_count", part=part) >= 1, part
    # webhook deliveries by outcome
    assert value(got, "iamsign_webhook_deliveries_total", outcome="retry") >= 1
    assert value(got, "iamsign_webhook_deliveries_total", outcome="delivered") is not None

    lines = json_log()
    create = [line for line in lines if line.get("request_id") == "flow-create-1"]
    assert create, lines[-5:]
    access = create[-1]
    assert access["logger"] == "iamsign.http" and access["route"] == "/v1/signing-requests"
    assert access["status"] == 201 and access["signing_request_id"] == done["id"]
    assert {"time", "level", "message"} <= set(access)


def test_request_id_is_returned_accepted_or_replaced(service, json_log):
    with httpx.Client(base_url=service.url, timeout=30) as c:
        made = c.get("/healthz").headers["x-request-id"]
        assert len(made) == 32 and made.isalnum()
        assert (
            c.get("/healthz", headers={"X-Request-ID": "abc-123.X:9"}).headers["x-request-id"]
            == "abc-123.X:9"
        )
        for bad in ("a b", "x" * 129, "id\u00e9", '"><script>', "-leading"):
            got = c.get("/healthz", headers={"X-Request-ID": bad.encode()}).headers["x-request-id"]
            assert got != bad and len(got) == 32, bad
        r = c.get("/v1/documents/doc_nope", headers={"X-Request-ID": "req-404", "Authorization": "Bearer x"})
        assert r.status_code == 401 and r.headers["x-request-id"] == "req-404"
    lines = [line for line in json_log() if line.get("request_id") == "req-404"]
    assert lines and lines[-1]["status"] == 401 and lines[-1]["route"] == "/v1/documents/{document_id}"


def test_request_id_validation():
    assert request_id_from("7f0c2a9e-1b2c-4d5e-8f90-a1b2c3d4e5f6") == "7f0c2a9e-1b2c-4d5e-8f90-a1b2c3d4e5f6"
    assert request_id_from(None) != request_id_from(None)
    assert request_id_from("line\nbreak") != "line\nbreak"


def test_metrics_can_be_switched_off(tmp_path):
    with running_service(tmp_path, metrics_enabled=False) as svc, httpx.Client(base_url=svc.url) as c:
        assert c.get("/metrics").status_code == 404
        assert c.get("/healthz").headers["x-request-id"]

"""The edge of the service: security headers on every page, 401 challenges, sandbox errors in the envelope,
rate limits (memory or Redis) that believe X-Forwarded-For only from trusted proxies, no HKID in an access
log, and public verification errors logged as one line."""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session

from fixtures.generate import simple_pdf

from .service_fixtures import running_service
from .support import LoopbackServer
from .test_signing_service import SIGNER, _start

HTML_PAGES = ["/verify", "/sandbox/", "/docs", "/redoc"]


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    with running_service(tmp_path_factory.mktemp("edge"), failed_auth_rate_limit=3) as s:
        yield s


def _policy(r: httpx.Response) -> dict[str, list[str]]:
    csp = r.headers.get("content-security-policy", "")
    return {d.split()[0]: d.split()[1:] for d in (p.strip() for p in csp.split(";")) if d}


def _common_headers(r: httpx.Response) -> None:
    assert r.headers.get("x-content-type-options") == "nosniff", r.url
    assert _policy(r).get("frame-ancestors") == ["'none'"], (r.url, r.headers.get("content-security-policy"))


def test_every_page_has_csp_nosniff_and_refuses_framing(svc, tmp_path):
    with svc.client() as c:
        req = _start(c, tmp_path)
        pages = [*HTML_PAGES, f"/sign/{req['id']}"]
        for path in pages:
            r = c.get(path)
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), path
            _common_headers(r)
            policy = _policy(r)
            nonces = [s for s in policy["script-src"] if s.startswith("'nonce-")]
            assert len(nonces) == 1 and "'unsafe-inline'" not in policy["script-src"], (path, policy)
            nonce = nonces[0][len("'nonce-") : -1]
            assert not set(policy["script-src"]) - {"'self'", nonces[0]}, (path, policy)
            # every inline script and style of the page carries this response's nonce; no inline handlers
            for tag in re.findall(r"<(?:script|style)\b[^>]*>", r.text):
                if "src=" not in tag:
                    assert f'nonce="{nonce}"' in tag, (path, tag)
            assert not re.search(r"<[^>]+\s(?:on[a-z]+|style)\s*=", r.text), path
            assert c.get(path).headers["content-security-policy"] != r.headers["content-security-policy"]
        for path in ["/healthz", "/openapi.json", "/v1/documents/nope", "/sandbox/v1/users", "/nope"]:
            _common_headers(c.get(path))


def test_401_carries_a_bearer_challenge(svc):
    for headers in ({}, {"Authorization": "Bearer not-a-key"}, {"Authorization": "Basic x"}):
        r = httpx.get(f"{svc.url}/v1/signing-requests", headers=headers)
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert r.json()["error"]["code"] == "unauthorized"


def test_sandbox_errors_use_the_envelope(svc):
    for method, path in [
        ("GET", "/sandbox/nope"),
        ("GET", "/sandbox/v1/phone/A123456(3)/pending"),  # the HKID-in-path routes are gone
        ("POST", "/sandbox/v1/users/A123456(3)"),
    ]:
        r = httpx.request(method, f"{svc.url}{path}")
        assert r.status_code in (404, 405), (path, r.text)
        assert r.json()["error"]["code"] in ("not_found", "method_not_allowed"), (path, r.text)
    r = httpx.post(f"{svc.url}/sandbox/v1/users/update", json={"hkid": SIGNER, "status": "bogus"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"


def test_failed_api_keys_are_rate_limited_per_client(svc):
    from api.edge.limits import MemoryLimiter

    svc.app.state.limits.limiter = MemoryLimiter()  # nothing counted by the other tests
    addr = {"X-Forwarded-For": "203.0.113.7"}
    with httpx.Client(base_url=svc.url) as c:
        codes = [
            c.get("/v1/signing-requests", headers={"Authorization": f"Bearer guess-{i}", **addr}).status_code
            for i in range(5)
        ]
        assert codes == [401, 401, 401, 429, 429], codes
        r = c.get("/v1/signing-requests", headers={"Authorization": f"Bearer {svc.key}"})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert r.json()["error"]["code"] == "rate_limited"
        # X-Forwarded-For from an untrusted peer changes nothing: still the same client
        spoofed = {"Authorization": f"Bearer {svc.key}", "X-Forwarded-For": "198.51.100.1"}
        assert c.get("/v1/signing-requests", headers=spoofed).status_code == 429
    svc.app.state.limits.limiter = MemoryLimiter()  # forget, for the other tests of the module


def test_forwarded_for_counts_only_from_a_trusted_proxy(tmp_path):
    with (
        running_service(
            tmp_path, failed_auth_rate_limit=2, trusted_proxies=["127.0.0.0/8"], cpu_workers=1
        ) as s,
        httpx.Client(base_url=s.url) as c,
    ):

        def get(client_ip: str, key: str) -> int:
            headers = {"Authorization": f"Bearer {key}", "X-Forwarded-For": f"{client_ip}, 127.0.0.5"}
            return c.get("/v1/signing-requests", headers=headers).status_code

        assert [get("203.0.113.7", "bad") for _ in range(3)] == [401, 401, 429]
        assert get("203.0.113.7", s.key) == 429
        assert get("203.0.113.8", s.key) == 200  # another client behind the same proxy


def test_limits_in_redis_are_shared_by_replicas(tmp_path):
    redis = pytest.importorskip("redis")
    url = "redis://127.0.0.1:6379/0"
    try:
        redis.Redis.from_url(url).ping()
    except redis.RedisError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    prefix = f"iamsign-test-{uuid.uuid4().hex[:10]}"
    kw = {
        "rate_limit_url": url,
        "rate_limit_prefix": prefix,
        "failed_auth_rate_limit": 3,
        "verification_rate_limit": 2,
        "cpu_workers": 1,
    }
    pdf = simple_pdf(tmp_path / "letter.pdf").read_bytes()
    try:
        with running_service(tmp_path / "a", **kw) as a, running_service(tmp_path / "b", **kw) as b:
            bad = {"Authorization": "Bearer nope"}
            assert httpx.get(f"{a.url}/v1/signing-requests", headers=bad).status_code == 401
            assert httpx.get(f"{b.url}/v1/signing-requests", headers=bad).status_code == 401
            assert httpx.get(f"{a.url}/v1/signing-requests", headers=bad).status_code == 401
            assert httpx.get(f"{b.url}/v1/signing-requests", headers=bad).status_code == 429

            def verify(s) -> int:
                files = {"file": ("letter.pdf", pdf, "application/pdf")}
                return httpx.post(
                    f"{s.url}/v1/verifications?offline=true", files=files, timeout=60
                ).status_code

            assert [verify(a), verify(b), verify(a)] == [200, 200, 429]
            assert redis.Redis.from_url(url).keys(f"{prefix}:*")
    finally:
        r = redis.Redis.from_url(url)
        for key in r.scan_iter(f"{prefix}:*"):
            r.delete(key)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_no_hkid_reaches_the_access_log(tmp_path):
    from api.app import create_app
    from api.settings import Settings
    from api.store.keys import create_api_key

    server = LoopbackServer()
    app = create_app(Settings(data_dir=tmp_path, host="127.0.0.1", port=server.port, sweep_interval_s=0.3))
    with Session(app.state.engine) as s:
        key, _ = create_api_key(s, "School")
    server.start(app, access_log=True)
    access, collect = logging.getLogger("uvicorn.access"), _Collect()
    access.addHandler(collect)  # uvicorn's access logger does not propagate to the root
    try:
        base = f"{server.url}/sandbox/v1"
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
            index = c.get("/sandbox/")
            assert SIGNER in index.text  # listed on the page, but never in a link or form target
            assert not [u for u in re.findall(r'(?:href|action)="([^"]*)"', index.text) if "123456" in u]
            req = _start(c, tmp_path)
            assert (
                c.post(f"{base}/users/update", json={"hkid": SIGNER, "auto_delay_ms": 0}).status_code == 200
            )
            assert c.post(f"{base}/users/certificate", json={"hkid": SIGNER}).status_code == 200
            pending = c.post(f"{base}/phone/pending", json={"hkid": SIGNER}).json()
            assert [p for p in pending if p["sign_code"] == req["sign_code"]]
            phone = c.post(f"{base}/phone", data={"hkid": SIGNER})
            assert phone.status_code == 200 and req["sign_code"] in phone.text
            actions = re.findall(r'action="([^"]*approve[^"]*)"', phone.text)
            assert actions and not [a for a in actions if "123456" in a]
            done = c.post(actions[0].replace("&amp;", "&"), data={"hkid": SIGNER})
            assert done.status_code == 200
    finally:
        server.stop()
        app.state.engine.dispose()
        access.removeHandler(collect)
    lines = collect.lines
    assert any("/sandbox/v1/phone" in line for line in lines), lines
    assert not [line for line in lines if "123456" in line], lines


def test_public_verification_errors_are_one_log_line(svc, test_pki, tmp_path, caplog):
    from signing.model import PadesLevel

    from .verify_fixtures import alter_signature_value, sign

    # signed under a PKI the service does not trust, and the same with its signature value altered
    untrusted = asyncio.run(
        sign(
            simple_pdf(tmp_path / "letter.pdf"),
            tmp_path / "untrusted.pdf",
            test_pki.pki,
            test_pki.signer,
            PadesLevel.B_B,
            test_pki.services(),
        )
    )
    altered = alter_signature_value(untrusted, tmp_path / "altered.pdf")
    caplog.set_level(logging.DEBUG)
    for path in (untrusted, altered):
        files = {"file": (Path(path).name, Path(path).read_bytes(), "application/pdf")}
        r = httpx.post(f"{svc.url}/v1/verifications?offline=true", files=files, timeout=60)
        assert r.status_code == 200, r.text
    noisy = [r for r in caplog.records if r.exc_info or "\n" in r.getMessage()]
    assert not noisy, [(r.name, r.getMessage()[:200]) for r in noisy]
    assert [r for r in caplog.records if r.levelno >= logging.WARNING], "nothing was logged at all"


def test_an_unreachable_redis_lets_requests_through_without_waiting_on_it(tmp_path):
    import time

    with running_service(tmp_path, rate_limit_url="redis://127.0.0.1:1/0", cpu_workers=1) as s:
        auth = {"Authorization": f"Bearer {s.key}"}
        assert httpx.get(f"{s.url}/v1/signing-requests", headers=auth).status_code == 200
        t0 = time.monotonic()
        codes = [httpx.get(f"{s.url}/v1/signing-requests", headers=auth).status_code for _ in range(5)]
        assert codes == [200] * 5
        assert time.monotonic() - t0 < 2


def test_the_standalone_sandbox_answers_errors_in_the_envelope(tmp_path):
    from api.sandbox.app import create_sandbox_server
    from api.settings import Settings

    server = LoopbackServer()
    app = create_sandbox_server(Settings(data_dir=tmp_path, host="127.0.0.1", port=server.port))
    server.start(app)
    try:
        for path in ("/nope", "/sandbox/nope", "/sandbox/v1/users/A123456(3)/certificate"):
            r = httpx.get(f"{server.url}{path}")
            assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", (path, r.text)
        r = httpx.post(f"{server.url}/sandbox/v1/phone/pending", json={})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    finally:
        server.stop()

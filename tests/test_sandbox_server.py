"""The sandbox server itself: bad input gets the protocol's code (never a 500), pages, hooks, PKI,
``iamsign sandbox add-service`` and the mount in ``create_app``."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from typer.testing import CliRunner

from api.cli.main import app as cli_app
from signing.iamsmart.client import IamSmartClient
from signing.iamsmart.config import ClientConfig
from signing.iamsmart.protocol import (
    encrypt_content,
    encrypted_body,
    hkid_check_digit,
    normalise_hkid,
    signed_headers,
)

from .sandbox_fixtures import HKID_SIGNER, Sandbox, new_kek, sandbox_fixture  # noqa: F401 - fixture
from .support import LoopbackServer

pytestmark = pytest.mark.timeout(60)


async def _post(sb: Sandbox, path: str, body: bytes, headers: dict | None = None, secret: str | None = None):
    h = (
        headers
        if headers is not None
        else signed_headers("test-service", secret or sb.config.client_secret, body, int(time.time() * 1000))
    )
    async with httpx.AsyncClient() as http:
        return await http.post(f"{sb.api}{path}", content=body, headers=h)


async def _cek(sb: Sandbox) -> bytes:
    async with sb.client() as c:
        return (await c.get_key()).key


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "D20003"),
        (b"[1, 2]", "D20003"),
        (b"{}", "D20001"),
        (b'{"content": ""}', "D20002"),
        (b'{"content": 42}', "D20003"),
        (b'{"content": "%%% not base64 %%%"}', "D30004"),
        (b'{"content": "AAAADAABAgMEBQYHCAkKCzwgtG62jKx+/jLez5PTWg+y9PrSecp6ujPpooOg5xwg4Q0V"}', "D30004"),
        (b"\xff\xfe\x00", "D20003"),
    ],
)
async def test_bad_bodies_get_protocol_codes(sandbox: Sandbox, body: bytes, code: str) -> None:
    await _cek(sandbox)
    r = await _post(sandbox, "/auth/getToken", body)
    assert r.status_code == 200
    env = r.json()
    assert env["code"] == code and env["txID"].startswith("<T=") and "content" not in env


async def test_bad_plaintexts_and_fields(sandbox: Sandbox) -> None:
    cek = await _cek(sandbox)
    for plain, code in [
        (b"[]", "D30004"),
        (b"not json", "D30004"),
        (json.dumps({"grantType": "authorization_code"}).encode(), "D20001"),
        (json.dumps({"code": "", "grantType": "authorization_code"}).encode(), "D20002"),
        (json.dumps({"code": "x" * 500, "grantType": "authorization_code"}).encode(), "D20003"),
        (json.dumps({"code": ["x"], "grantType": "authorization_code"}).encode(), "D20003"),
        (json.dumps({"code": "x", "grantType": "password"}).encode(), "D20003"),
        (json.dumps({"code": "x", "grantType": "authorization_code"}).encode(), "D40004"),
    ]:
        body = json.dumps({"content": encrypt_content(cek, plain)}).encode()
        r = await _post(sandbox, "/auth/getToken", body)
        assert r.status_code == 200 and r.json()["code"] == code, plain
    oversized = {
        "businessID": "b",
        "accessToken": "t" * 600,
        "openID": "o",
        "source": "PC_Browser",
        "hashCode": "AAAA",
        "redirectURI": "http://x",
        "serviceName": "s",
        "documentName": "d",
    }
    r = await _post(sandbox, "/account/signing/initiateRequest", encrypted_body(cek, oversized))
    assert r.json()["code"] == "D20003"
    for name in ("ackResult", "initiateRequest"):
        r = await _post(sandbox, f"/account/signing/{name}", encrypted_body(cek, {"businessID": 7}))
        assert r.json()["code"] == "D20003"


async def test_header_checks(sandbox: Sandbox) -> None:
    body = b"{}"
    good = signed_headers("test-service", sandbox.config.client_secret, body, int(time.time() * 1000))
    for name in ("clientID", "signatureMethod", "timestamp", "nonce", "signature"):
        h = {k: v for k, v in good.items() if k != name}
        assert (await _post(sandbox, "/security/getKey", body, h)).json()["code"] == "D20001", name
    h = {**good, "nonce": ""}
    assert (await _post(sandbox, "/security/getKey", body, h)).json()["code"] == "D20002"
    assert (await _post(sandbox, "/security/getKey", body, {**good, "signatureMethod": "HmacSHA1"})).json()[
        "code"
    ] == "D20005"
    assert (await _post(sandbox, "/security/getKey", body, {**good, "timestamp": "soon"})).json()[
        "code"
    ] == "D20003"
    long_nonce = signed_headers(
        "test-service", sandbox.config.client_secret, body, int(time.time() * 1000), "n" * 37
    )
    assert (await _post(sandbox, "/security/getKey", body, long_nonce)).json()["code"] == "D20003"
    # the body is part of the HMAC: the same headers over other bytes fail
    fresh = signed_headers("test-service", sandbox.config.client_secret, body, int(time.time() * 1000))
    assert (await _post(sandbox, "/security/getKey", b"", fresh)).json()["code"] == "D20006"
    # getKey signed over an empty body works too (both forms exist in the wild)
    empty = signed_headers("test-service", sandbox.config.client_secret, b"", int(time.time() * 1000))
    env = (await _post(sandbox, "/security/getKey", b"", empty)).json()
    assert env["code"] == "D00000" and {"secretKey", "pubKey", "issueAt", "expiresIn"} <= set(env["content"])
    # a timestamp earlier than the previous accepted one
    old = signed_headers("test-service", sandbox.config.client_secret, body, int(time.time() * 1000) - 60_000)
    assert (await _post(sandbox, "/security/getKey", body, old)).json()["code"] == "D20003"


async def test_encrypted_api_without_cek(sandbox: Sandbox) -> None:
    async with sandbox.client() as c:
        cek = (await c.get_key()).key
        await c.revoke_key()
    r = await _post(
        sandbox, "/auth/getToken", encrypted_body(cek, {"code": "x", "grantType": "authorization_code"})
    )
    assert r.json()["code"] == "D30002"


async def test_users_pages_and_hooks(sandbox: Sandbox) -> None:
    async with httpx.AsyncClient(base_url=sandbox.hooks) as http:
        users = (await http.get("/users")).json()
        kinds = {(u["user_type"], u["status"]) for u in users}
        assert {
            ("sign", "active"),
            ("default", "active"),
            ("sign", "suspended"),
            ("sign", "deregistered"),
        } <= kinds
        assert any(u["user_type"] == "sign" and u["status"] == "active" and u["name_zh"] for u in users)
        for u in users:
            body = normalise_hkid(u["hkid"])
            assert u["hkid"] == f"{body}({hkid_check_digit(body)})"
        assert (await http.post("/users/certificate", json={"hkid": "Z999999(9)"})).status_code == 404
        r = await http.post("/phone/approve", json={"hkid": HKID_SIGNER, "sign_code": "0000"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "no_pending_request"
        r = await http.post("/phone/approve", json={"hkid": HKID_SIGNER})
        assert r.status_code == 422
        assert (await http.post("/requests/nope/approve")).status_code == 404
        assert (await http.post("/qr/nope/approve", json={"hkid": HKID_SIGNER})).status_code == 404
        phone = await http.post("/phone", data={"hkid": HKID_SIGNER})
        assert phone.status_code == 200 and "陳大文" in phone.text
        assert "沒有待處理的要求" in phone.text and "沙盒" in phone.text  # the pages speak both languages
        r = await http.get(f"{sandbox.url}/sandbox/")
        assert r.status_code == 200 and "LEE Siu Ming" in r.text and "身份證號碼" in r.text
        assert (await http.get("/codes")).json()["D70003"] == "Signing timeout"
        clock = (await http.get("/clock")).json()
        assert abs(clock["now_ms"] - clock["offset_ms"] - time.time() * 1000) < 5_000
        assert (await http.post("/clock/advance", json={"ms": -1})).status_code == 422


async def test_pki_root_and_revocation(sandbox: Sandbox) -> None:
    pki = sandbox.engine.pki
    async with httpx.AsyncClient() as http:
        root = (await http.get(f"{sandbox.hooks}/pki/root.pem")).content
        assert root == pki.root_pem()
        assert (await http.get(f"{sandbox.url}/sandbox/pki/root.pem")).content == root
        cert = x509.load_pem_x509_certificate(
            (await http.post(f"{sandbox.hooks}/users/certificate", json={"hkid": "E567890(4)"})).content
        )

        async def status() -> ocsp.OCSPCertStatus:
            req = ocsp.OCSPRequestBuilder().add_certificate(cert, pki.issuing_ca, hashes.SHA1()).build()
            r = await http.post(
                f"{sandbox.url}/sandbox/pki/ocsp",
                content=req.public_bytes(serialization.Encoding.DER),
                headers={"content-type": "application/ocsp-request"},
            )
            return ocsp.load_der_ocsp_response(r.content).certificate_status

        assert await status() is ocsp.OCSPCertStatus.GOOD
        r = await http.post(f"{sandbox.hooks}/users/revoke-certificate", json={"hkid": "E567890(4)"})
        assert r.json()["serial"] == str(cert.serial_number)
        assert await status() is ocsp.OCSPCertStatus.REVOKED
        crl = x509.load_der_x509_crl((await http.get(f"{sandbox.url}/sandbox/pki/ca.crl")).content)
        assert crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None


async def test_add_service_command(sandbox: Sandbox, tmp_path) -> None:
    kek = new_kek()
    pem = tmp_path / "kek.pub.pem"
    pem.write_bytes(
        kek.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    result = CliRunner().invoke(
        cli_app,
        [
            "sandbox",
            "add-service",
            "--client-id",
            "cli-service",
            "--kek-public-key",
            str(pem),
            "--redirect-uri",
            f"{sandbox.receiver.url}/cb/cli",
            "--scope",
            "eidapi_auth",
            "--scope",
            "eidapi_sign",
            "--data-dir",
            str(sandbox.data_dir),
        ],
    )
    assert result.exit_code == 0, result.output
    secret = result.stdout.strip().splitlines()[0]
    # the running sandbox picks the registration up from its store
    async with IamSmartClient(ClientConfig(sandbox.config.base_url, "cli-service", secret, (kek,))) as c:
        assert len((await c.get_key()).key) == 32
    bad = CliRunner().invoke(
        cli_app,
        [
            "sandbox",
            "add-service",
            "--client-id",
            "x",
            "--kek-public-key",
            str(pem),
            "--redirect-uri",
            "ftp://nope",
            "--data-dir",
            str(sandbox.data_dir),
        ],
    )
    assert bad.exit_code == 2


async def test_mounted_in_create_app_with_the_services_own_registration(tmp_path) -> None:
    from api.app import create_app
    from api.flows.iamsmart_setup import client_config
    from api.settings import Settings

    server = LoopbackServer()
    settings = Settings(data_dir=tmp_path / "data", port=server.port)
    app = create_app(settings)
    server.start(app)
    try:
        config = client_config(settings)
        assert config.base_url == f"{server.url}/sandbox/api/v1" and config.client_id == "iamsign-local"
        async with IamSmartClient(config) as c:
            async with httpx.AsyncClient() as http:  # the first request to the sandbox is a page
                page = await http.get(c.qr_url(f"{server.url}/iamsmart/return", ("eidapi_auth",)))
                assert page.status_code == 200
            assert len((await c.get_key()).key) == 32
            async with httpx.AsyncClient() as http:
                assert (await http.get(f"{server.url}/sandbox/pki/root.pem")).status_code == 200
                assert (await http.get(f"{server.url}/healthz")).json() == {"status": "ok"}
        # the secret and the KEK were generated in the data folder, private
        assert (tmp_path / "data" / "iamsmart" / "kek.key.pem").stat().st_mode & 0o077 == 0
        assert (tmp_path / "data" / "sandbox" / "services.json").stat().st_mode & 0o077 == 0
    finally:
        server.stop()
    # the same data folder again: the same registration
    assert (
        client_config(Settings(data_dir=tmp_path / "data", port=server.port)).client_secret
        == config.client_secret
    )


def test_environment_selection(tmp_path) -> None:
    from api.flows.iamsmart_setup import ConfigurationError, client_config
    from api.settings import Settings

    key_file = tmp_path / "kek.pem"
    key_file.write_bytes(
        new_kek().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    ite = client_config(
        Settings(
            data_dir=tmp_path,
            environment="ite",
            iamsmart_client_id="cid",
            iamsmart_client_secret="s",
            iamsmart_kek_key_file=key_file,
        )
    )
    assert ite.base_url == "https://apigw-isit.staging-eid.gov.hk/api/v1" and ite.client_id == "cid"
    prod = client_config(
        Settings(
            data_dir=tmp_path,
            environment="production",
            iamsmart_client_id="cid",
            iamsmart_client_secret="s",
            iamsmart_kek_key_file=key_file,
        )
    )
    assert prod.base_url == "https://apigw.iamsmart.gov.hk/api/v1"
    with pytest.raises(ConfigurationError):
        client_config(Settings(data_dir=tmp_path, environment="production"))
    with pytest.raises(ValueError):  # an unknown environment is a validation error of the settings
        Settings(data_dir=tmp_path, environment="moon")


async def test_client_transport_errors(sandbox: Sandbox) -> None:
    from signing.iamsmart.errors import IamSmartTransportError

    wrong_base = ClientConfig(
        f"{sandbox.url}/not-here",
        "test-service",
        sandbox.config.client_secret,
        sandbox.config.kek_private_keys,
    )
    async with IamSmartClient(wrong_base) as c:
        with pytest.raises(IamSmartTransportError) as exc:
            await c.get_key()
        assert exc.value.status_code == 404
    closed = LoopbackServer()
    closed.stop()  # a port nobody listens on
    async with IamSmartClient(ClientConfig(closed.url, "x", "y")) as c:
        with pytest.raises(IamSmartTransportError):
            await c.get_key()


def test_sandbox_state_is_stable_across_restarts(tmp_path) -> None:
    from api.sandbox.app import build_sandbox
    from api.settings import Settings
    from signing.sandbox.pki import SandboxPki

    settings = Settings(data_dir=tmp_path, port=9)

    def start():
        pki = SandboxPki.open_or_create(settings.sandbox_pki_dir, f"{settings.base_url}/sandbox/pki")
        return build_sandbox(settings, pki)

    first, second = start(), start()
    for a, b in zip(first.users.all(), second.users.all(), strict=True):
        assert a.public() == b.public()
        assert (
            first.users.open_id(a, "svc") == second.users.open_id(b, "svc") != first.users.open_id(a, "other")
        )
        if a.user_type.value == "sign":
            assert first.users.certificate(a).serial_number == second.users.certificate(b).serial_number
    assert (
        first.registry.get("iamsign-local").client_secret
        == second.registry.get("iamsign-local").client_secret
    )
    assert first.pki.root.serial_number == second.pki.root.serial_number
    keys = [p for p in (tmp_path / "sandbox" / "users").iterdir() if p.name.endswith(".key.pem")]
    assert keys and all(p.stat().st_mode & 0o077 == 0 for p in keys)
    stored = (tmp_path / "sandbox" / "users" / "users.json").read_text()
    assert "A123456" not in stored  # no HKID in the data folder

"""Hole 4: one IAMSIGN_ENVIRONMENT decides. Outside the sandbox nothing of it is mounted or trusted, and
the service refuses to start (exit 2, one line per missing item) until every credential is given."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient

from api.settings import Settings
from signing.sandbox.pki import SandboxPki
from signing.trust import ProfileKind

ROOT = Path(__file__).resolve().parents[1]
SECRET_B64 = "q83vASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4k="  # 32 bytes, for tests only
HOOKS = ("/sandbox/v1/phone/approve", "/sandbox/v1/clock/advance", "/sandbox/v1/users/update")
MISSING = (
    "IAMSIGN_IAMSMART_CLIENT_ID",
    "IAMSIGN_IAMSMART_CLIENT_SECRET",
    "IAMSIGN_IAMSMART_KEK_KEY_FILE",
    "IAMSIGN_IAMSMART_CERT_ISSUER_FILES",
    "IAMSIGN_TSA_URL",
    "IAMSIGN_PUBLIC_URL",
    "IAMSIGN_SERVER_SECRET",
)


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IAMSIGN_")}
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        check=False,
        env={**clean, "PYTHONPATH": str(ROOT), **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _issuer_pem(path: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test iAM Smart-Cert CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _kek_p12(path: Path, pin: str) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"kek", key, None, None, serialization.BestAvailableEncryption(pin.encode())
        )
    )
    return path


@pytest.fixture
def production_env(tmp_path) -> dict[str, str]:
    """Everything production needs, the KEK as the PKCS#12 file the iAM Smart programme hands out."""
    return {
        "IAMSIGN_ENVIRONMENT": "production",
        "IAMSIGN_IAMSMART_CLIENT_ID": "esp-client",
        "IAMSIGN_IAMSMART_CLIENT_SECRET": "esp-secret",
        "IAMSIGN_IAMSMART_KEK_KEY_FILE": str(_kek_p12(tmp_path / "kek.p12", "1234")),
        "IAMSIGN_IAMSMART_KEK_PIN": "1234",
        "IAMSIGN_IAMSMART_CERT_ISSUER_FILES": f'["{_issuer_pem(tmp_path / "issuer.pem")}"]',
        "IAMSIGN_TSA_URL": "https://tsa.example.org/rfc3161",
        "IAMSIGN_PUBLIC_URL": "https://sign.example.org",
        "IAMSIGN_SERVER_SECRET": SECRET_B64,
    }


def test_production_with_nothing_set_refuses_to_start(tmp_path):
    for command in (["serve", "--port", "9"], ["check-config"]):
        run = _cli(
            [*command, "--data-dir", str(tmp_path / "data")], {"IAMSIGN_ENVIRONMENT": "production"}, tmp_path
        )
        assert run.returncode == 2, run
        lines = [line for line in run.stderr.splitlines() if line.strip()]
        for setting in MISSING:  # one clear line per missing item
            assert sum(setting in line for line in lines) == 1, (setting, run.stderr)
        assert "Traceback" not in run.stderr and "listening" not in run.stdout
    assert not (tmp_path / "data" / "sandbox").exists()  # nothing was started, nothing generated


def test_serve_in_production_with_everything_set_has_no_sandbox(tmp_path, production_env):
    from .processes import ServiceProcess, free_port

    port = free_port()
    args = ["serve", "--port", str(port), "--data-dir", str(tmp_path / "data")]
    proc = ServiceProcess("production", args, {}, tmp_path, port=port)
    proc.env = {k: v for k, v in os.environ.items() if not k.startswith("IAMSIGN_")}
    proc.env.update(production_env, IAMSIGN_CPU_WORKERS="1")
    proc.start()
    try:
        with httpx.Client(base_url=proc.url, timeout=10) as c:
            assert c.get("/healthz").status_code == 200
            assert c.get("/sandbox/").status_code == 404
            assert c.get("/sandbox/pki/root.pem").status_code == 404
            for path in HOOKS:
                assert c.post(path, json={}).status_code == 404, path
    finally:
        proc.stop()
    assert "nothing of the sandbox" in proc.log()
    assert not (tmp_path / "data" / "sandbox").exists() and not (tmp_path / "data" / "secrets").exists()


def test_check_config_passes_with_everything_set(tmp_path, production_env):
    run = _cli(["check-config", "--data-dir", str(tmp_path / "data")], production_env, tmp_path)
    assert run.returncode == 0, run.stderr
    assert "production configuration is complete" in run.stdout and "not mounted" in run.stdout
    sandbox = _cli(["check-config", "--data-dir", str(tmp_path / "sb")], {}, tmp_path)
    assert sandbox.returncode == 0 and "sandbox configuration is complete" in sandbox.stdout


def test_each_wrong_item_is_named(tmp_path, production_env, monkeypatch):
    for k, v in production_env.items():
        monkeypatch.setenv(k, v)
    assert Settings(data_dir=tmp_path).problems() == []
    weak = Settings(data_dir=tmp_path, server_secret="short", public_url="http://sign.example.org")
    problems = weak.problems()
    assert any("IAMSIGN_SERVER_SECRET is 5 bytes" in p for p in problems)
    assert any("IAMSIGN_PUBLIC_URL" in p and "https" in p for p in problems)
    assert len(problems) == 2
    wrong_pin = Settings(data_dir=tmp_path, iamsmart_kek_pin="0000").problems()
    assert len(wrong_pin) == 1 and "KEK" in wrong_pin[0] and "PIN" in wrong_pin[0]
    assert Settings(data_dir=tmp_path, tsa_url=None, default_level="B-B").problems() == []
    monkeypatch.setenv("IAMSIGN_SANDBOX_ENABLED", "false")  # retired: it would silently mean nothing
    assert any(
        "IAMSIGN_SANDBOX_ENABLED is no longer read" in p for p in Settings(data_dir=tmp_path).problems()
    )


def test_secrets_never_show_in_the_settings(tmp_path, production_env, monkeypatch):
    for k, v in production_env.items():
        monkeypatch.setenv(k, v)
    shown = repr(Settings(data_dir=tmp_path)) + str(Settings(data_dir=tmp_path).model_dump())
    assert SECRET_B64 not in shown and "esp-secret" not in shown and "'1234'" not in shown


def test_production_mounts_and_trusts_nothing_of_the_sandbox(tmp_path, production_env, monkeypatch):
    from api.app import create_app
    from api.deps import _trust_list as _trust

    data = tmp_path / "data"
    # a sandbox was run in this data folder before: its root and CA are on disk
    sandbox_pki = SandboxPki.open_or_create(data / "sandbox" / "pki", "http://127.0.0.1:9/sandbox/pki")
    for k, v in production_env.items():
        monkeypatch.setenv(k, v)
    settings = Settings(data_dir=data, embedded_worker=False)
    app = create_app(settings)
    client = TestClient(app)  # no lifespan: nothing here talks to iAM Smart
    for path in ("/sandbox/", "/sandbox/pki/root.pem", "/sandbox/api/v1/auth/getKey"):
        assert client.get(path).status_code == 404, path
    for path in HOOKS:
        assert client.post(path, json={}).status_code == 404, path
    setup = app.state.iamsmart_setup
    assert sandbox_pki.issuing_ca not in setup.cert_issuers and len(setup.cert_issuers) == 1
    assert setup.tsa_url == "https://tsa.example.org/rfc3161"
    assert setup.client_config.base_url == "https://apigw.iamsmart.gov.hk/api/v1"
    assert len(setup.client_config.kek_private_keys) == 1  # the PKCS#12 KEK opened with its PIN
    sandbox_root_der = sandbox_pki.root.public_bytes(serialization.Encoding.DER)
    assert all(c.dump() != sandbox_root_der for c in setup.signing_services.trust_roots)
    trust = _trust(SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace())), settings)
    assert all(p.kind is not ProfileKind.SANDBOX for p in trust.profiles)
    assert all(a.dump() != sandbox_root_der for a in trust.anchors)
    app.state.engine.dispose()


def test_the_sandbox_profile_mounts_and_trusts_the_sandbox(tmp_path):
    from api.app import create_app
    from api.deps import _trust_list as _trust

    settings = Settings(data_dir=tmp_path / "data", embedded_worker=False)
    assert settings.environment == "sandbox" and settings.problems() == []
    app = create_app(settings)
    client = TestClient(app)
    assert client.get("/sandbox/pki/root.pem").status_code == 200
    for path in HOOKS:  # the unauthenticated hooks are there (and answer something else than 404)
        assert client.post(path, json={}).status_code != 404, path
    pki = app.state.sandbox_pki
    assert pki.issuing_ca in app.state.iamsmart_setup.cert_issuers
    assert app.state.iamsmart_setup.tsa_url.endswith("/sandbox/pki/tsa")
    trust = _trust(SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace())), settings)
    assert any(p.kind is ProfileKind.SANDBOX for p in trust.profiles)
    app.state.engine.dispose()


def test_create_app_refuses_an_incomplete_production(tmp_path):
    from api.app import create_app
    from api.settings import SettingsProblems

    with pytest.raises(SettingsProblems) as raised:
        create_app(Settings(data_dir=tmp_path, environment="ite"))
    assert len(raised.value.problems) == len(MISSING)

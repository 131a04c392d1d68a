"""Rotating the key-encryption key: during a rollover both keys open what iAM Smart wrapped."""

from __future__ import annotations

import json

from cryptography.hazmat.primitives.asymmetric import rsa

from signing.iamsmart import protocol
from signing.iamsmart.client import IamSmartClient
from signing.iamsmart.codes import ReturnCode
from signing.iamsmart.config import ClientConfig

from .processes import ServiceProcess, cli, free_port


def _callback(kek_public, content: dict) -> bytes:
    cek = protocol.new_cek()
    return json.dumps(
        protocol.callback_envelope(
            ReturnCode.SUCCESS, protocol.encrypt_content(cek, content), protocol.wrap_cek(kek_public, cek)
        )
    ).encode()


def test_callbacks_under_the_old_and_the_new_kek_both_open():
    old, new = (rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2))
    client = IamSmartClient(ClientConfig("http://127.0.0.1:9/api/v1", "cid", "secret", (new, old)))
    for key in (old, new):
        cb = client.decrypt_callback(
            _callback(key.public_key(), {"businessID": "b1", "pdfSignature": "AA=="})
        )
        assert cb.business_id == "b1" and cb.ok
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    try:
        client.decrypt_callback(_callback(stranger.public_key(), {"businessID": "b1"}))
    except Exception as exc:  # noqa: BLE001
        assert "D3000" in str(exc) or "decrypt" in str(exc).lower()
    else:
        raise AssertionError("a callback for another KEK must not open")


def test_renew_key_command_against_a_running_service(tmp_path):
    port = free_port()
    env = {"IAMSIGN_PORT": str(port)}
    server = ServiceProcess(
        "serve", ["serve", "--port", str(port), "--data-dir", str(tmp_path)], env, tmp_path, port=port
    ).start()
    try:
        out = cli(["iamsmart", "renew-key", "--data-dir", str(tmp_path)], env)
        assert "new CEK issued" in out
    finally:
        server.stop()

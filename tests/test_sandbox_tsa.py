"""The sandbox's RFC 3161 time-stamping authority: each token is what pyHanko's own dummy TSA would give
for the same request (status, TSTInfo, signed attributes, certificates), at the PKI clock's time, and
pyHanko validates it as intact and trusted."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib

import pytest
from asn1crypto import algos, tsp
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import serialization
from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper
from pyhanko.sign.validation.generic_cms import validate_tst_signed_data
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.registry import SimpleCertificateStore

from signing.sandbox.pki import SandboxPki

AT = dt.datetime(2026, 12, 7, 9, 30, 15, 250000, tzinfo=dt.UTC)


def _asn1(cert) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def _request(data: bytes, nonce: int | None) -> tsp.TimeStampReq:
    fields = {
        "version": 1,
        "message_imprint": {
            "hash_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
            "hashed_message": hashlib.sha256(data).digest(),
        },
        "cert_req": True,
    }
    if nonce is not None:
        fields["nonce"] = nonce
    return tsp.TimeStampReq(fields)


def _pyhanko_dummy(pki: SandboxPki) -> DummyTimeStamper:
    key = pki.keys["tsa"].private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    from asn1crypto import keys

    return DummyTimeStamper(
        tsa_cert=_asn1(pki.tsa_cert),
        tsa_key=keys.PrivateKeyInfo.load(key),
        certs_to_embed=SimpleCertificateStore.from_certs([_asn1(pki.issuing_ca)]),
        fixed_dt=AT,
    )


def _without_serial(resp: tsp.TimeStampResp) -> dict:
    signed = resp["time_stamp_token"]["content"]
    info = signed["encap_content_info"]["content"].parsed.native
    info.pop("serial_number")  # random in both
    signer = signed["signer_infos"][0]
    attrs = {a["type"].native: a["values"].native for a in signer["signed_attrs"]}
    attrs.pop("message_digest")  # over the TSTInfo, whose serial differs
    return {
        "status": resp["status"].native,
        "info": info,
        "attrs": attrs,
        "sid": signer["sid"].native,
        "algorithms": (signer["digest_algorithm"].native, signer["signature_algorithm"].native),
        "certificates": sorted(c.chosen.dump() for c in signed["certificates"]),
        "version": signed["version"].native,
    }


@pytest.mark.parametrize("nonce", [123456789, None])
def test_a_token_is_what_pyhankos_dummy_tsa_gives_and_it_validates(tmp_path, nonce) -> None:
    pki = SandboxPki.open_or_create(tmp_path / "pki", "http://127.0.0.1:9/sandbox/pki", clock=lambda: AT)
    req = _request(b"the document", nonce)
    ours = tsp.TimeStampResp.load(pki.timestamp_response(req.dump()))
    theirs = _pyhanko_dummy(pki).request_tsa_response(req)
    assert _without_serial(ours) == _without_serial(theirs)
    info = ours["time_stamp_token"]["content"]["encap_content_info"]["content"].parsed
    assert info["gen_time"].native == AT and info["nonce"].native == nonce

    context = ValidationContext(
        trust_roots=[_asn1(pki.root)], allow_fetching=False, revocation_mode="soft-fail"
    )
    status = asyncio.run(
        validate_tst_signed_data(
            ours["time_stamp_token"]["content"],
            context,
            lambda _algo: hashlib.sha256(b"the document").digest(),
        )
    )
    assert status["intact"] and status["valid"] and status["trust_problem_indic"] is None
    assert status["timestamp"] == AT

    other = hashlib.sha256(b"another document").digest()  # the token vouches for its own imprint only
    wrong = asyncio.run(
        validate_tst_signed_data(ours["time_stamp_token"]["content"], context, lambda _a: other)
    )
    assert wrong["intact"] is False


def test_each_token_reads_the_clock_and_tokens_stay_independent(tmp_path) -> None:
    now = [AT]
    pki = SandboxPki.open_or_create(tmp_path / "pki", "http://127.0.0.1:9/sandbox/pki", clock=lambda: now[0])
    first = tsp.TimeStampResp.load(pki.timestamp_response(_request(b"one", 7).dump()))
    now[0] = AT + dt.timedelta(hours=5)  # the sandbox clock moved (POST /sandbox/v1/clock/advance)
    second = tsp.TimeStampResp.load(pki.timestamp_response(_request(b"two", 7).dump()))
    infos = [
        r["time_stamp_token"]["content"]["encap_content_info"]["content"].parsed for r in (first, second)
    ]
    assert [i["gen_time"].native for i in infos] == [AT, AT + dt.timedelta(hours=5)]
    assert [i["message_imprint"]["hashed_message"].native for i in infos] == [
        hashlib.sha256(b"one").digest(),
        hashlib.sha256(b"two").digest(),
    ]
    assert infos[0]["serial_number"].native != infos[1]["serial_number"].native


def test_stamps_inside_a_shared_session_reuse_one_connection_and_others_do_not(tmp_path) -> None:
    """A batch chunk's TSA calls share a session (signing.observe.shared_tsa_session); a lone call
    still gets a session of its own, closed after it."""
    from fastapi import FastAPI, Request

    from api.sandbox.pki import pki_router
    from signing.observe import ObservedTimeStamper, shared_tsa_session

    from .support import LoopbackServer

    pki = SandboxPki.open_or_create(tmp_path / "pki", "http://127.0.0.1:9/sandbox/pki")
    clients: list[tuple[str, int]] = []
    app = FastAPI()

    @app.middleware("http")
    async def note_client(request: Request, call_next):
        clients.append((request.client.host, request.client.port) if request.client else ("", 0))
        return await call_next(request)

    app.include_router(pki_router(lambda: pki), prefix="/pki")
    with LoopbackServer() as server:
        server.start(app)
        stamper = ObservedTimeStamper(f"{server.url}/pki/tsa", timeout=10)

        async def stamp(n: int) -> None:
            for i in range(n):
                await stamper.async_timestamp(hashlib.sha256(b"%d" % i).digest(), "sha256")

        async def shared() -> None:
            async with shared_tsa_session():
                await stamp(4)

        asyncio.run(shared())
        assert len(clients) == 4 and len(set(clients)) == 1
        clients.clear()
        asyncio.run(stamp(3))
        assert len(clients) == 3 and len(set(clients)) == 3

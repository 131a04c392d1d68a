"""The protocol layer on its own: pinned vectors (HMAC §2, AES-GCM §4, HKICHash §6.1, signCode §6.6),
CEK wrapping, envelopes and the field rules."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from signing.iamsmart import fields as F
from signing.iamsmart.codes import CEK_ERRORS, ReturnCode, message_for
from signing.iamsmart.config import Environment, load_or_create_local_credentials
from signing.iamsmart.errors import EnvelopeError, FieldRuleError
from signing.iamsmart.protocol import (
    CallbackEnvelope,
    ResponseEnvelope,
    check_fields,
    compute_signature,
    decrypt_content,
    decrypt_json,
    encrypt_content,
    encrypted_body,
    flatten_content,
    hkic_hash,
    hkid_check_digit,
    new_nonce,
    new_tx_id,
    normalise_hkid,
    sign_code_account,
    sign_code_anonymous,
    signed_headers,
    unwrap_cek,
    verify_signature,
    wrap_cek,
)

NONCE = "e893647dc4204eb9b7b8eddd527b687c"
TS = "1557048906183"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"content":"AAAADAAAAAAAAAAAAAAAAA=="}', "sOZ4oTnPWKDoH45mcKiGAouAra%2BhAate51AWA0SfxMY%3D"),
        (b"", "hX%2FrOttp6NbcPjgWZbDsTAqa%2FyY82c9tkfEye2UzScA%3D"),
        (b"{}", "V8OHNpzWKeH%2BuS7Ap7TadQIUwHq3i2aF%2BXZzg8738W0%3D"),
    ],
)
def test_hmac_vectors(body: bytes, expected: str) -> None:
    assert compute_signature("cid", "secret", TS, NONCE, body) == expected
    assert verify_signature("cid", "secret", TS, NONCE, body, expected)
    raw = expected.replace("%2B", "+").replace("%2F", "/").replace("%3D", "=")
    assert not verify_signature("cid", "secret", TS, NONCE, body, raw)
    assert verify_signature("cid", "secret", TS, NONCE, body, raw, accept_raw_base64=True)
    assert not verify_signature("cid", "secret2", TS, NONCE, body, expected)


def test_signed_headers_carry_the_protocol_fields() -> None:
    h = signed_headers("cid", "secret", b"{}", int(TS), NONCE)
    assert h == {
        "clientID": "cid",
        "signatureMethod": "HmacSHA256",
        "timestamp": TS,
        "nonce": NONCE,
        "signature": "V8OHNpzWKeH%2BuS7Ap7TadQIUwHq3i2aF%2BXZzg8738W0%3D",
        "Content-Type": "application/json",
    }
    assert len(new_nonce()) == 32 and new_nonce() != new_nonce()
    tx = new_tx_id()
    assert tx.startswith("<T=") and tx.endswith(">") and len(tx) == 36


def test_aes_gcm_vector_byte_for_byte() -> None:
    cek, iv = bytes(range(32)), bytes(range(12))
    enc = encrypt_content(cek, b'{"businessID":"b1"}', iv)
    assert enc == "AAAADAABAgMEBQYHCAkKCzwgtG62jKx+/jLez5PTWg+y9PrSecp6ujPpooOg5xwg4Q0V"
    blob = base64.b64decode(enc)
    assert blob[:4] == b"\x00\x00\x00\x0c" and blob[4:16] == iv and len(blob) == 4 + 12 + 19 + 16
    assert decrypt_json(cek, enc) == {"businessID": "b1"}
    # a mapping is sent as compact JSON, so the vector also comes out of the dict form
    assert encrypt_content(cek, {"businessID": "b1"}, iv) == enc
    assert encrypt_content(cek, {"a": 1}).startswith("AAAAD")


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "not base64!",
        base64.b64encode(b"short").decode(),
        base64.b64encode(b"\x00\x00\x00\x10" + bytes(40)).decode(),  # IV length 16
        "AAAADAABAgMEBQYHCAkKCzwgtG62jKx+/jLez5PTWg+y9PrSecp6ujPpooOg5xwg4Q0W",
    ],  # tag flipped
)
def test_garbage_ciphertext_is_d30004(garbage: str) -> None:
    with pytest.raises(EnvelopeError) as exc:
        decrypt_content(bytes(range(32)), garbage)
    assert exc.value.code is ReturnCode.DECRYPTION_EXCEPTION


def test_decrypted_content_must_be_a_json_object() -> None:
    cek = bytes(32)
    for plain in (b"[1,2]", b"\xff\xfe", b"nope"):
        with pytest.raises(EnvelopeError):
            decrypt_json(cek, encrypt_content(cek, plain))


@pytest.fixture(scope="module")
def kek() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_cek_wrap_accepts_raw_and_base64_plaintexts(kek) -> None:
    cek = bytes(range(32))
    raw = wrap_cek(kek.public_key(), cek)
    assert len(base64.b64decode(raw)) == 256
    assert kek.decrypt(base64.b64decode(raw), padding.PKCS1v15()) == cek
    assert unwrap_cek(kek, raw) == cek
    as_text = wrap_cek(kek.public_key(), cek, as_base64_text=True)
    assert len(kek.decrypt(base64.b64decode(as_text), padding.PKCS1v15())) == 44
    assert unwrap_cek(kek, as_text) == cek
    with pytest.raises(EnvelopeError):
        unwrap_cek(kek, base64.b64encode(kek.public_key().encrypt(b"x" * 16, padding.PKCS1v15())).decode())
    with pytest.raises(EnvelopeError):
        unwrap_cek(kek, "%%%")


def test_envelopes_parse_and_flatten() -> None:
    env = ResponseEnvelope.parse({"txID": "<T=1>", "code": "D00000", "message": "SUCCESS", "content": "x"})
    assert env.code == "D00000" and env.content == "x"
    with pytest.raises(EnvelopeError):
        ResponseEnvelope.parse({"message": "no code"})
    cb = CallbackEnvelope.parse(
        json.dumps({"code": "D70001", "message": "m", "content": "", "secretKey": "k"})
    )
    assert cb.content is None and cb.secret_key == "k"
    with pytest.raises(EnvelopeError):
        CallbackEnvelope.parse(b"not json")
    assert flatten_content({"content": {"businessID": "b"}, "x": 1}) == {"x": 1, "businessID": "b"}
    assert flatten_content({"content": '{"businessID": "b"}'}) == {"businessID": "b"}
    assert flatten_content({"businessID": "b"}) == {"businessID": "b"}


def test_encrypted_body_is_the_exact_bytes_signed() -> None:
    body = encrypted_body(bytes(32), {"a": "b"})
    assert body.startswith(b'{"content":"AAAAD') and b" " not in body


def test_hkic_hash_vector_and_hkid_forms() -> None:
    assert hkic_hash("A123456") == "rDcExehSzsiEp2laLaJqrtaX2ua9sdaugwaY5ONmYwk="
    assert hkic_hash("A123456(3)") == hkic_hash("a1234563") == hkic_hash("A123456")
    assert hkid_check_digit("A123456") == "3"
    assert hkid_check_digit("C345678") == "A"
    assert hkid_check_digit("XA112233") == "6"
    assert normalise_hkid("XA112233(6)") == "XA112233"
    for bad in ("A123456(4)", "123456", "A12345", "AAA123456"):
        with pytest.raises(ValueError):
            normalise_hkid(bad)


def test_sign_code_vectors() -> None:
    assert sign_code_account("dGVzdA==", "openid") == "2143"
    assert sign_code_anonymous(hashlib.sha256(b"doc").digest(), hkic_hash("A123456"), "cid") == "4603"


def test_return_codes_have_messages() -> None:
    assert ReturnCode("D00000").message == "SUCCESS"
    assert ReturnCode.DUPLICATE_BUSINESS_ID.value == "D20011"
    assert ReturnCode.SIGNING_TIMEOUT.value == "D70003"
    assert ReturnCode.BULK_INCONSISTENT.value == "D71009"
    for prefix in ("D2", "D3", "D4", "D7", "D71"):
        assert any(c.value.startswith(prefix) for c in ReturnCode)
    assert all(c.message for c in ReturnCode)
    assert message_for("D99999") == "Unknown code"
    assert {c.value for c in CEK_ERRORS} == {"D30001", "D30002", "D30003", "D30004"}


def test_environments_have_the_documented_hosts() -> None:
    assert Environment.PRODUCTION.default_base_url == "https://apigw.iamsmart.gov.hk/api/v1"
    assert Environment.ITE.default_base_url == "https://apigw-isit.staging-eid.gov.hk/api/v1"
    assert Environment.SANDBOX.default_base_url is None


def test_local_credentials_are_generated_once_and_private(tmp_path) -> None:
    a = load_or_create_local_credentials(tmp_path / "c")
    b = load_or_create_local_credentials(tmp_path / "c")
    assert a.client_secret == b.client_secret and a.kek_public_pem() == b.kek_public_pem()
    assert (tmp_path / "c" / "kek.key.pem").stat().st_mode & 0o077 == 0
    assert (tmp_path / "c" / "client.json").stat().st_mode & 0o077 == 0
    assert a.client_secret not in repr(a)


GOOD_HASH = {
    "businessID": "b1",
    "accessToken": "t",
    "openID": "o",
    "source": "PC_Browser",
    "hashCode": "dGVzdA==",
    "redirectURI": "https://svc/cb",
    "serviceName": "s",
    "documentName": "d",
}


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"businessID": None}, "D20001"),
        ({"businessID": ""}, "D20002"),
        ({"businessID": "x" * 37}, "D20003"),
        ({"state": "x" * 37}, "D20003"),
        ({"state": "bad state"}, "D20003"),
        ({"department": "x" * 101}, "D20003"),
        ({"serviceName": "x" * 256}, "D20003"),
        ({"documentName": "x" * 256}, "D20003"),
        ({"openID": "x" * 65}, "D20003"),
        ({"hashCode": "not base64"}, "D20003"),
        ({"source": "Nokia_Browser"}, "D20007"),
        ({"sigAlgo": "MD5withRSA"}, "D20003"),
        ({"serviceName": 5}, "D20003"),
    ],
)
def test_field_rules(change: dict, code: str) -> None:
    data = {k: v for k, v in {**GOOD_HASH, **change}.items() if v is not None}
    with pytest.raises(FieldRuleError) as exc:
        check_fields(F.ACCOUNT_HASH, data)
    assert exc.value.code == code


def test_field_rules_accept_the_limits() -> None:
    check_fields(
        F.ACCOUNT_HASH,
        {
            **GOOD_HASH,
            "businessID": "x" * 36,
            "state": "a-b_C" * 7,
            "department": "部" * 100,
            "serviceName": "服" * 255,
            "documentName": "文" * 255,
        },
    )
    with pytest.raises(FieldRuleError) as exc:
        check_fields(
            F.ANONYMOUS_PDF,
            {
                "businessID": "b",
                "source": "PC_Browser",
                "docDigest": "AAAA",
                "redirectURI": "https://x",
                "serviceName": "s",
                "documentName": "d",
            },
        )
    assert exc.value.code == "D20001" and exc.value.field == "HKICHash"

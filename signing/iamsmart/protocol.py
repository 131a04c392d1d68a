"""The iAM Smart wire protocol, shared by the client and the sandbox (protocol doc §2-§6).

Pure functions and small records: request-signing headers (HMAC-SHA256), the CEK wrapped with RSA
PKCS#1 v1.5 under the KEK, the AES-256-GCM content format ``Base64(int32BE(12) || IV || ct || tag)``,
response and callback envelopes, the ``signCode`` algorithm, ``HKICHash`` and the field-length rules.
No HTTP and no web framework here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import struct
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .codes import ReturnCode
from .errors import EnvelopeError, FieldRuleError

__all__ = [
    "HEADER_NAMES",
    "LANGS",
    "SCOPES",
    "SIGNATURE_METHOD",
    "SOURCES",
    "CallbackEnvelope",
    "FieldRule",
    "ResponseEnvelope",
    "b64decode_strict",
    "bulk_digest",
    "bulk_sign_code",
    "callback_envelope",
    "check_fields",
    "compute_signature",
    "decrypt_content",
    "decrypt_json",
    "encrypt_content",
    "encrypted_body",
    "flatten_content",
    "hkic_hash",
    "hkid_check_digit",
    "new_cek",
    "new_nonce",
    "new_tx_id",
    "normalise_hkid",
    "public_key_b64",
    "response_envelope",
    "sign_code_account",
    "sign_code_anonymous",
    "signed_headers",
    "unwrap_cek",
    "verify_signature",
    "wrap_cek",
]

SIGNATURE_METHOD = "HmacSHA256"
HEADER_NAMES = ("clientID", "signatureMethod", "timestamp", "nonce", "signature")

SCOPES = frozenset(
    {
        "eidapi_auth",
        "eidapi_profiles",
        "eidapi_formFilling",
        "eidapi_sign",
        "eidapi_fr",
        "eidapi_bulksign",
        "eidapi_sua",
    }
)
SOURCES = frozenset(
    {
        "PC_Browser",
        "Android_Chrome",
        "Android_Firefox",
        "Android_Edge",
        "Android_Samsung",
        "Android_Huawei",
        "Android_Xiaomi",
        "iOS_Safari",
        "iOS_Chrome",
        "iOS_Firefox",
        "iOS_Edge",
        "App_Link",
        "App_Package",
        "App_Scheme",
        "Android_IMS_InAppBrowser",
        "iOS_IMS_InAppBrowser",
    }
)
LANGS = frozenset({"en-US", "zh-HK", "zh-CN"})

_IV_LEN = 12
_TAG_LEN = 16
_CEK_LEN = 32


# ---------------------------------------------------------------------------------------------- HMAC


def compute_signature(client_id: str, client_secret: str, timestamp: str, nonce: str, body: bytes) -> str:
    """The ``signature`` header: URL-encoded Base64 HMAC-SHA256 over clientID+method+timestamp+nonce+body."""
    msg = (client_id + SIGNATURE_METHOD + timestamp + nonce).encode() + body
    mac = hmac.new(client_secret.encode(), msg, hashlib.sha256).digest()
    return quote(base64.b64encode(mac).decode(), safe="")


def new_nonce() -> str:
    """A fresh nonce: 32 lower-case hex digits."""
    return uuid.uuid4().hex


def signed_headers(
    client_id: str, client_secret: str, body: bytes, timestamp_ms: int, nonce: str | None = None
) -> dict[str, str]:
    """All headers of a signed POST whose exact body bytes are ``body``."""
    nonce = nonce or new_nonce()
    ts = str(timestamp_ms)
    return {
        "clientID": client_id,
        "signatureMethod": SIGNATURE_METHOD,
        "timestamp": ts,
        "nonce": nonce,
        "signature": compute_signature(client_id, client_secret, ts, nonce, body),
        "Content-Type": "application/json",
    }


def verify_signature(
    client_id: str,
    client_secret: str,
    timestamp: str,
    nonce: str,
    body: bytes,
    signature: str,
    *,
    accept_raw_base64: bool = False,
) -> bool:
    """Constant-time check of a ``signature`` header (URL-encoded; raw Base64 too if asked)."""
    expected = compute_signature(client_id, client_secret, timestamp, nonce, body)
    if hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        return True
    if accept_raw_base64:
        raw = expected.replace("%2B", "+").replace("%2F", "/").replace("%3D", "=")
        return hmac.compare_digest(raw.encode(), signature.encode("utf-8", "replace"))
    return False


def new_tx_id() -> str:
    """A transaction id as iAM Smart writes it: ``<T=`` + 32 hex + ``>``."""
    return f"<T={uuid.uuid4().hex}>"


# ---------------------------------------------------------------------------------------------- CEK / KEK


def new_cek() -> bytes:
    """32 random bytes: an AES-256 content-encryption key."""
    return secrets.token_bytes(_CEK_LEN)


def wrap_cek(kek_public_key: rsa.RSAPublicKey, cek: bytes, *, as_base64_text: bool = False) -> str:
    """Base64 of the CEK encrypted with RSA PKCS#1 v1.5 under the KEK (``as_base64_text``: CorpID style)."""
    plain = base64.b64encode(cek) if as_base64_text else cek
    return base64.b64encode(kek_public_key.encrypt(plain, padding.PKCS1v15())).decode()


def unwrap_cek(kek_private_key: rsa.RSAPrivateKey, secret_key_b64: str) -> bytes:
    """The 32-byte CEK from a ``secretKey``; the plaintext may be 32 raw bytes or its 44-char Base64."""
    try:
        wrapped = b64decode_strict(secret_key_b64)
        plain = kek_private_key.decrypt(wrapped, padding.PKCS1v15())
    except (ValueError, TypeError) as exc:
        raise EnvelopeError(ReturnCode.DECRYPTION_EXCEPTION, "secretKey cannot be unwrapped") from exc
    if len(plain) == _CEK_LEN:
        return plain
    if len(plain) == 44:
        try:
            key = base64.b64decode(plain, validate=True)
        except binascii.Error as exc:
            raise EnvelopeError(ReturnCode.DECRYPTION_EXCEPTION, "secretKey is not a Base64 key") from exc
        if len(key) == _CEK_LEN:
            return key
    raise EnvelopeError(
        ReturnCode.DECRYPTION_EXCEPTION, f"secretKey unwraps to {len(plain)} bytes, not a CEK"
    )


def public_key_b64(public_key: rsa.RSAPublicKey) -> str:
    """Base64 DER SubjectPublicKeyInfo (getKey's ``pubKey``)."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


# ---------------------------------------------------------------------------------------------- AES-GCM


def encrypt_content(cek: bytes, plaintext: bytes | Mapping[str, Any], iv: bytes | None = None) -> str:
    """``Base64(int32BE(12) || IV || ciphertext || tag)``; a mapping is sent as compact UTF-8 JSON."""
    if isinstance(plaintext, Mapping):
        plaintext = json.dumps(plaintext, ensure_ascii=False, separators=(",", ":")).encode()
    iv = iv if iv is not None else secrets.token_bytes(_IV_LEN)
    if len(iv) != _IV_LEN or len(cek) != _CEK_LEN:
        raise ValueError("AES-256-GCM needs a 32-byte key and a 12-byte IV")
    ct = AESGCM(cek).encrypt(iv, plaintext, None)
    return base64.b64encode(struct.pack(">i", _IV_LEN) + iv + ct).decode()


def decrypt_content(cek: bytes, content_b64: str) -> bytes:
    """The plaintext of an encrypted ``content``; :class:`EnvelopeError` D30004 on any fault."""
    try:
        blob = b64decode_strict(content_b64)
        if len(blob) < 4 + _IV_LEN + _TAG_LEN:
            raise ValueError("too short")
        (iv_len,) = struct.unpack(">i", blob[:4])
        if iv_len != _IV_LEN:
            raise ValueError(f"IV length {iv_len}")
        iv, ct = blob[4 : 4 + _IV_LEN], blob[4 + _IV_LEN :]
        return AESGCM(cek).decrypt(iv, ct, None)
    except (ValueError, TypeError, InvalidTag) as exc:
        raise EnvelopeError(ReturnCode.DECRYPTION_EXCEPTION, "content cannot be decrypted") from exc


def decrypt_json(cek: bytes, content_b64: str) -> dict[str, Any]:
    """Decrypt ``content`` and parse it as a JSON object (D30004 if it is not one)."""
    plain = decrypt_content(cek, content_b64)
    try:
        data = json.loads(plain.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise EnvelopeError(ReturnCode.DECRYPTION_EXCEPTION, "content is not JSON") from exc
    if not isinstance(data, dict):
        raise EnvelopeError(ReturnCode.DECRYPTION_EXCEPTION, "content is not a JSON object")
    return data


def encrypted_body(cek: bytes, payload: Mapping[str, Any]) -> bytes:
    """The exact request body bytes ``{"content":"<b64>"}`` for an encrypted API."""
    return json.dumps({"content": encrypt_content(cek, payload)}, separators=(",", ":")).encode()


# ---------------------------------------------------------------------------------------------- envelopes


@dataclass(frozen=True)
class ResponseEnvelope:
    """``{txID, code, message, content}`` as iAM Smart answers every API."""

    tx_id: str | None
    code: str
    message: str
    content: Any
    """A Base64 AES-GCM string, a plain object (getKey), or empty/absent on errors."""

    @classmethod
    def parse(cls, data: Any) -> ResponseEnvelope:
        if not isinstance(data, dict) or not isinstance(data.get("code"), str):
            raise EnvelopeError(ReturnCode.PARAMETER_INVALID, "not an iAM Smart response envelope")
        return cls(data.get("txID"), data["code"], str(data.get("message", "")), data.get("content"))


@dataclass(frozen=True)
class CallbackEnvelope:
    """``{txID, code, message, content, secretKey}`` as iAM Smart POSTs it to ``redirectURI``."""

    tx_id: str | None
    code: str
    message: str
    content: str | None
    secret_key: str | None

    @classmethod
    def parse(cls, data: Any) -> CallbackEnvelope:
        if isinstance(data, (bytes, str)):
            try:
                data = json.loads(data)
            except ValueError as exc:
                raise EnvelopeError(ReturnCode.PARAMETER_INVALID, "callback body is not JSON") from exc
        if not isinstance(data, dict) or not isinstance(data.get("code"), str):
            raise EnvelopeError(ReturnCode.PARAMETER_INVALID, "not an iAM Smart callback envelope")
        content, key = data.get("content"), data.get("secretKey")
        return cls(
            data.get("txID"),
            data["code"],
            str(data.get("message", "")),
            content if isinstance(content, str) and content else None,
            key if isinstance(key, str) and key else None,
        )


def response_envelope(code: ReturnCode, content: Any = None, *, tx_id: str | None = None) -> dict[str, Any]:
    """A response envelope; ``content`` is left out when ``None``."""
    env: dict[str, Any] = {"txID": tx_id or new_tx_id(), "code": code.value, "message": code.message}
    if content is not None:
        env["content"] = content
    return env


def callback_envelope(
    code: ReturnCode, content_b64: str, secret_key_b64: str, *, tx_id: str | None = None
) -> dict[str, Any]:
    """A callback envelope with encrypted ``content`` and the wrapped CEK as ``secretKey``."""
    return {
        "txID": tx_id or new_tx_id(),
        "code": code.value,
        "message": code.message,
        "content": content_b64,
        "secretKey": secret_key_b64,
    }


def flatten_content(data: dict[str, Any]) -> dict[str, Any]:
    """Unwrap a nested ``content`` member (seen in a 2022 client's profile callbacks) when present."""
    inner = data.get("content")
    if isinstance(inner, dict):
        merged = {k: v for k, v in data.items() if k != "content"}
        merged.update(inner)
        return merged
    if isinstance(inner, str) and inner.startswith("{"):
        try:
            parsed = json.loads(inner)
        except ValueError:
            return data
        if isinstance(parsed, dict):
            merged = {k: v for k, v in data.items() if k != "content"}
            merged.update(parsed)
            return merged
    return data


# ---------------------------------------------------------------------------------------------- signCode, HKID


def _sign_code(src: bytes) -> str:
    m = hashlib.md5(hashlib.sha512(src).digest()).digest()
    return "".join(str(((m[4 * i] >> 4) & 0xF) % 10) for i in range(4))


def sign_code_account(hash_code_b64: str, open_id: str) -> str:
    """Logged-in ``signCode``: over SHA256(hashCode text) || SHA256(openID) (§6.6)."""
    return _sign_code(
        hashlib.sha256(hash_code_b64.encode()).digest() + hashlib.sha256(open_id.encode()).digest()
    )


def sign_code_anonymous(digest: bytes, hkic_hash_b64: str, client_id: str) -> str:
    """Anonymous ``signCode``: over digest bytes || Base64-decoded HKICHash || clientID (§6.6)."""
    return _sign_code(digest + base64.b64decode(hkic_hash_b64) + client_id.encode())


def bulk_digest(digests: Iterable[bytes]) -> bytes:
    """One SHA-256 over the decoded ``hashCode``/``docDigest`` bytes of a bulk request, in request order."""
    h = hashlib.sha256()
    for digest in digests:
        h.update(digest)
    return h.digest()


def bulk_sign_code(
    digests: Iterable[bytes],
    *,
    open_id: str | None = None,
    hkic_hash: str | None = None,
    client_id: str | None = None,
) -> str:
    """The code shown to the signer of a bulk request (simulator choice: iAM Smart sends none for bulk).

    The §6.6 algorithm over :func:`bulk_digest`: the logged-in rule with ``open_id`` (its ``hashCode`` text
    is the Base64 of the bulk digest), otherwise the anonymous rule with ``hkic_hash`` (empty when the
    request has none) and ``client_id``.
    """
    total = bulk_digest(digests)
    if open_id is not None:
        return sign_code_account(base64.b64encode(total).decode(), open_id)
    if client_id is None:
        raise ValueError("an anonymous bulk sign code needs the clientID")
    return sign_code_anonymous(total, hkic_hash or "", client_id)


_HKID_RE = re.compile(r"^([A-Z]{1,2})([0-9]{6})(?:\(?([0-9A])\)?)?$")


def hkid_check_digit(prefix_and_digits: str) -> str:
    """The check digit (``0``-``9`` or ``A``) of an HKID body such as ``A123456``."""
    body = prefix_and_digits.upper()
    if len(body) == 7:
        body = " " + body
    total = 0
    for weight, ch in zip(range(9, 1, -1), body, strict=True):
        value = 36 if ch == " " else (ord(ch) - 55 if ch.isalpha() else int(ch))
        total += weight * value
    check = (11 - total % 11) % 11
    return "A" if check == 10 else str(check)


def normalise_hkid(hkid: str) -> str:
    """The HKID body without its check digit (``A123456``); ValueError when malformed or the digit is wrong."""
    m = _HKID_RE.match(hkid.replace(" ", "").upper())
    if not m:
        raise ValueError("not an HKID number")
    body = m.group(1) + m.group(2)
    if m.group(3) is not None and m.group(3) != hkid_check_digit(body):
        raise ValueError("the HKID check digit is wrong")
    return body


def hkic_hash(hkid: str) -> str:
    """``Base64(SHA-256(HKID without check digit))``; accepts ``A123456``, ``A1234563`` or ``A123456(3)``."""
    return base64.b64encode(hashlib.sha256(normalise_hkid(hkid).encode()).digest()).decode()


# ---------------------------------------------------------------------------------------------- field rules


def b64decode_strict(text: str) -> bytes:
    """Standard Base64 with padding; ValueError otherwise."""
    if not isinstance(text, str):
        raise ValueError("not a string")  # noqa: TRY004 - callers map ValueError to D20003
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError("not Base64") from exc


@dataclass(frozen=True)
class FieldRule:
    """One request field: mandatory or not, maximum length, format."""

    name: str
    required: bool = True
    max_len: int | None = None
    base64: bool = False
    ascii_only: bool = False
    pattern: str | None = None
    choices: frozenset[str] | None = None
    choice_code: ReturnCode = ReturnCode.PARAMETER_INVALID


def check_fields(rules: Iterable[FieldRule], data: Mapping[str, Any]) -> None:
    """Apply the §12.5 rules: missing D20001, empty D20002, wrong type / too long / bad Base64 D20003."""
    for rule in rules:
        value = data.get(rule.name)
        if value is None:
            if rule.required:
                raise FieldRuleError(ReturnCode.PARAMETER_MISSING, rule.name, "missing")
            continue
        if not isinstance(value, str):
            raise FieldRuleError(ReturnCode.PARAMETER_INVALID, rule.name, "must be a string")
        if value == "":
            if rule.required:
                raise FieldRuleError(ReturnCode.PARAMETER_EMPTY, rule.name, "empty")
            continue
        if rule.max_len is not None and len(value) > rule.max_len:
            raise FieldRuleError(ReturnCode.PARAMETER_INVALID, rule.name, f"longer than {rule.max_len}")
        if rule.ascii_only and not value.isascii():
            raise FieldRuleError(ReturnCode.PARAMETER_INVALID, rule.name, "must be ASCII")
        if rule.pattern is not None and not re.fullmatch(rule.pattern, value):
            raise FieldRuleError(
                ReturnCode.PARAMETER_INVALID, rule.name, "has characters that are not allowed"
            )
        if rule.base64:
            try:
                if not b64decode_strict(value):
                    raise ValueError("empty")
            except ValueError:
                raise FieldRuleError(ReturnCode.PARAMETER_INVALID, rule.name, "is not Base64") from None
        if rule.choices is not None and value not in rule.choices:
            raise FieldRuleError(rule.choice_code, rule.name, "is not a supported value")

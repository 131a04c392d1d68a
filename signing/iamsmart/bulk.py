"""Bulk signing on the wire (protocol doc §8, §12.4): document items, statuses, the multipart result
callback (``sigFile`` + ``sigMetada``) and how to read it. Shared by the client and the sandbox.

The callback parts may be encrypted (the sandbox default: ``sigMetada`` is the usual envelope with an
AES-GCM ``content`` and a ``secretKey``; ``sigFile`` is the AES-GCM Base64 of ``{"signatures":[...]}``
under the same CEK) or clear text like the CorpID samples, where ``sigFile`` lacks its outer braces.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from .codes import ReturnCode
from .errors import EnvelopeError
from .protocol import b64decode_strict, bulk_sign_code, decrypt_content, flatten_content

__all__ = [
    "SIG_FILE",
    "SIG_METADATA",
    "BulkCallback",
    "BulkDocument",
    "BulkHashSignature",
    "BulkInitiated",
    "BulkPdfSignature",
    "BulkSignature",
    "BulkStatus",
    "documents_wire",
    "multipart_body",
    "read_bulk_callback",
    "read_signatures_text",
    "sign_code_for",
    "split_multipart",
]

SIG_FILE = "sigFile"
SIG_METADATA = "sigMetada"
"""Spelled as in the specification."""
_SIG_FILE_NAME = "signatures.txt"


class BulkStatus(StrEnum):
    """enquireStatus's ``status``."""

    PENDING = "SS001"
    IN_PROGRESS = "SS002"
    COMPLETED = "SS003"
    CANCELLED = "SS004"
    FAILED = "SS005"
    NO_RECORD = "SS006"


@dataclass(frozen=True)
class BulkDocument:
    """One item of ``documents``: a hash item (``hashCode``, ``sigAlgo``) or a PDF item (``docDigest``)."""

    id: str
    document_name: str
    kind: Literal["hash", "pdf"]
    data: bytes = field(repr=False)
    """The bytes to sign (hash item) or the /ByteRange SHA-256 (PDF item)."""
    sig_algo: str | None = None

    @classmethod
    def hash(cls, id: str, document_name: str, hash_code: bytes, sig_algo: str | None = None) -> BulkDocument:
        return cls(id, document_name, "hash", hash_code, sig_algo)

    @classmethod
    def pdf(cls, id: str, document_name: str, doc_digest: bytes) -> BulkDocument:
        return cls(id, document_name, "pdf", doc_digest)

    def wire(self) -> dict[str, str]:
        item = {"id": self.id, "documentName": self.document_name}
        item["hashCode" if self.kind == "hash" else "docDigest"] = base64.b64encode(self.data).decode()
        if self.sig_algo is not None:
            item["sigAlgo"] = self.sig_algo
        return item


def sign_code_for(
    documents: Iterable[BulkDocument],
    *,
    open_id: str | None = None,
    hkic_hash: str | None = None,
    client_id: str | None = None,
) -> str:
    """:func:`~signing.iamsmart.protocol.bulk_sign_code` over these documents, in order."""
    return bulk_sign_code(
        (d.data for d in documents), open_id=open_id, hkic_hash=hkic_hash, client_id=client_id
    )


@dataclass(frozen=True)
class BulkInitiated:
    """A bulk initiateRequest's answer. ``sign_code`` is computed locally (simulator choice, §12.4)."""

    business_id: str
    sign_code: str
    auth_by_qr: bool | None
    ticket_id: str | None
    documents: int


@dataclass(frozen=True)
class BulkHashSignature:
    """A hash item's result: the raw PKCS#1 v1.5 ``signature`` over the item's ``hashCode``."""

    id: str
    hash_code: str
    """The ``hash`` echo (Base64 of the signed bytes)."""
    signature: bytes
    timestamp: int | None


@dataclass(frozen=True)
class BulkPdfSignature:
    """A PDF item's result: a DER detached CMS over ``doc_digest``, to write into /Contents unchanged."""

    id: str
    doc_digest: str
    cms_der: bytes


BulkSignature = BulkHashSignature | BulkPdfSignature


@dataclass(frozen=True)
class BulkCallback:
    """One decrypted result callback. On whole-request failure ``code`` is D71xxx and ``signatures`` is empty."""

    tx_id: str | None
    code: ReturnCode | str
    message: str
    business_id: str | None
    state: str | None
    cert_der: bytes | None
    total_callbacks: int
    callback_seq: int
    total_sign_num: int | None
    """Documents in the request (simulator choice)."""
    fail_sign_num: int | None
    """Documents declined or failed; they are left out of ``signatures``."""
    signatures: tuple[BulkSignature, ...]
    content: dict[str, Any] = field(repr=False)

    @property
    def ok(self) -> bool:
        return self.code == ReturnCode.SUCCESS


# ---------------------------------------------------------------------------------------------- multipart


def multipart_body(sig_metada: str, sig_file: str | None) -> tuple[bytes, str]:
    """The ``multipart/form-data`` body of a result callback and its Content-Type."""
    boundary = "iamsmart-" + secrets.token_hex(16)
    chunks: list[bytes] = []
    if sig_file is not None:
        chunks.append(
            _part(
                boundary,
                f'form-data; name="{SIG_FILE}"; filename="{_SIG_FILE_NAME}"',
                "text/plain",
                sig_file.encode(),
            )
        )
    chunks.append(
        _part(boundary, f'form-data; name="{SIG_METADATA}"', "application/json", sig_metada.encode())
    )
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def _part(boundary: str, disposition: str, content_type: str, data: bytes) -> bytes:
    head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\nContent-Type: {content_type}\r\n\r\n"
    return head.encode() + data + b"\r\n"


_BOUNDARY_RE = re.compile(r'boundary=(?:"([^"]{1,70})"|([^\s;"]{1,70}))', re.IGNORECASE)
_NAME_RE = re.compile(r'(?:^|;)\s*name="([^"]*)"', re.IGNORECASE)


def split_multipart(body: bytes, content_type: str) -> dict[str, bytes]:
    """The parts of a ``multipart/form-data`` body by name; :class:`EnvelopeError` (D20003) for anything else."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise EnvelopeError(ReturnCode.PARAMETER_INVALID, "not multipart/form-data")
    m = _BOUNDARY_RE.search(content_type)
    if not m:
        raise EnvelopeError(ReturnCode.PARAMETER_INVALID, "multipart without a boundary")
    delimiter = b"--" + (m.group(1) or m.group(2)).encode("ascii", "replace")
    sections = body.split(delimiter)
    if len(sections) < 3 or not sections[-1].startswith(b"--"):
        raise EnvelopeError(ReturnCode.PARAMETER_INVALID, "multipart body is not terminated")
    parts: dict[str, bytes] = {}
    for section in sections[1:-1]:
        if not section.startswith(b"\r\n"):
            raise EnvelopeError(ReturnCode.PARAMETER_INVALID, "malformed multipart section")
        head, sep, data = section[2:].partition(b"\r\n\r\n")
        if not sep:
            raise EnvelopeError(ReturnCode.PARAMETER_INVALID, "multipart section without headers")
        name = None
        for line in head.decode("latin-1").split("\r\n"):
            key, _, value = line.partition(":")
            if key.strip().lower() == "content-disposition":
                found = _NAME_RE.search(value)
                name = found.group(1) if found else None
        if name is None:
            raise EnvelopeError(ReturnCode.PARAMETER_INVALID, "multipart section without a name")
        parts[name] = data[:-2] if data.endswith(b"\r\n") else data
    return parts


# ---------------------------------------------------------------------------------------------- reading


def _text(value: bytes | str, what: str) -> str:
    if isinstance(value, str):
        return value.strip()
    try:
        return value.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise EnvelopeError(ReturnCode.PARAMETER_INVALID, f"{what} is not UTF-8") from None


def _json_object(text: str, what: str) -> dict[str, Any]:
    """A JSON object; a text without its outer braces (``"signatures":[...]``, as in the samples) gets them."""
    if text.startswith('"'):
        text = "{" + text + "}"
    try:
        data = json.loads(text)
    except ValueError:
        raise EnvelopeError(ReturnCode.PARAMETER_INVALID, f"{what} is not JSON") from None
    if not isinstance(data, dict):
        raise EnvelopeError(ReturnCode.PARAMETER_INVALID, f"{what} is not a JSON object")
    return data


def _int(content: Mapping[str, Any], name: str, default: int | None) -> int | None:
    value = content.get(name)
    if value is None or value == "":
        return default
    try:
        if isinstance(value, bool):
            raise TypeError
        return int(value)
    except (TypeError, ValueError):
        raise EnvelopeError(ReturnCode.PARAMETER_INVALID, f"{name} is not a number") from None


def _signature(item: Any) -> BulkSignature:
    if not isinstance(item, dict) or not isinstance(item.get("id"), str):
        raise EnvelopeError(ReturnCode.PARAMETER_INVALID, "a signatures item has no id")
    try:
        if "pdfSignature" in item:
            return BulkPdfSignature(
                item["id"], str(item.get("docDigest", "")), b64decode_strict(item["pdfSignature"])
            )
        ts = item.get("timestamp")
        return BulkHashSignature(
            item["id"],
            str(item.get("hash", "")),
            b64decode_strict(item["signature"]),
            int(ts) if ts is not None else None,
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise EnvelopeError(
            ReturnCode.PARAMETER_INVALID, f"signatures item {item['id']!r} incomplete"
        ) from exc


def read_signatures_text(text: str) -> tuple[BulkSignature, ...]:
    """The typed items of a clear ``sigFile`` text (with or without outer braces)."""
    data = _json_object(text, SIG_FILE)
    items = data.get("signatures")
    if not isinstance(items, list):
        raise EnvelopeError(ReturnCode.PARAMETER_INVALID, "sigFile has no signatures list")
    return tuple(_signature(i) for i in items)


def read_bulk_callback(parts: Mapping[str, bytes | str], unwrap: Callable[[str], bytes]) -> BulkCallback:
    """Read the two parts of a result callback; ``unwrap`` turns ``secretKey`` into the CEK.

    Raises :class:`EnvelopeError` (D20003 for malformed parts, D30004 for what cannot be decrypted).
    """
    raw_meta = parts.get(SIG_METADATA)
    if raw_meta is None:
        raise EnvelopeError(ReturnCode.PARAMETER_MISSING, "the sigMetada part is missing")
    meta = _json_object(_text(raw_meta, SIG_METADATA), SIG_METADATA)
    code = meta.get("code")
    if not isinstance(code, str):
        raise EnvelopeError(ReturnCode.PARAMETER_INVALID, "sigMetada is not an envelope")
    secret_key = (
        meta.get("secretKey") if isinstance(meta.get("secretKey"), str) and meta.get("secretKey") else None
    )
    cek = unwrap(secret_key) if secret_key is not None else None
    content_value = meta.get("content")
    if isinstance(content_value, dict):
        content = content_value
    elif isinstance(content_value, str) and content_value.strip().startswith("{"):
        content = _json_object(content_value.strip(), "sigMetada content")
    elif isinstance(content_value, str) and content_value:
        if cek is None:
            raise EnvelopeError(ReturnCode.DECRYPTION_EXCEPTION, "encrypted content without secretKey")
        content = _json_object(_text(decrypt_content(cek, content_value), "content"), "sigMetada content")
    elif content_value in (None, ""):
        content = {}
    else:
        raise EnvelopeError(ReturnCode.PARAMETER_INVALID, "sigMetada content is not an object")
    content = flatten_content(content)
    signatures: tuple[BulkSignature, ...] = ()
    raw_file = parts.get(SIG_FILE)
    if raw_file is not None:
        text = _text(raw_file, SIG_FILE)
        if text and not text.startswith(("{", '"')):
            if cek is None:
                raise EnvelopeError(ReturnCode.DECRYPTION_EXCEPTION, "encrypted sigFile without secretKey")
            text = _text(decrypt_content(cek, text), SIG_FILE)
        if text:
            signatures = read_signatures_text(text)
    cert = content.get("cert")
    try:
        cert_der = b64decode_strict(cert) if isinstance(cert, str) and cert else None
    except ValueError:
        raise EnvelopeError(ReturnCode.PARAMETER_INVALID, "cert is not Base64") from None
    state = content.get("state")
    business_id = content.get("businessID")
    try:
        parsed_code: ReturnCode | str = ReturnCode(code)
    except ValueError:
        parsed_code = code
    return BulkCallback(
        tx_id=meta.get("txID") if isinstance(meta.get("txID"), str) else None,
        code=parsed_code,
        message=str(meta.get("message", "")),
        business_id=business_id if isinstance(business_id, str) else None,
        state=state if isinstance(state, str) else None,
        cert_der=cert_der,
        total_callbacks=_int(content, "totalCallbacks", 1) or 1,
        callback_seq=_int(content, "callbackSeq", 1) or 1,
        total_sign_num=_int(content, "totalSignNum", None),
        fail_sign_num=_int(content, "failSignNum", None),
        signatures=signatures,
        content=content,
    )


def documents_wire(documents: Sequence[BulkDocument]) -> list[dict[str, str]]:
    return [d.wire() for d in documents]

"""Async iAM Smart client (httpx): keys, login, single-document and bulk signing, results, acks, callbacks.

Every POST is signed (§2); encrypted APIs use the cached CEK, which is refreshed before expiry and, after
a D30001-D30004 answer, fetched again with the request retried once (§4, §13).
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Self
from urllib.parse import urlencode

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa

from signing.observe import observed_call
from signing.tls import shared_tls_context

from . import fields as F
from .bulk import (
    BulkCallback,
    BulkDocument,
    BulkInitiated,
    BulkStatus,
    documents_wire,
    read_bulk_callback,
    sign_code_for,
)
from .codes import CEK_ERRORS, ReturnCode
from .config import ClientConfig
from .errors import EnvelopeError, IamSmartApiError, IamSmartTransportError
from .protocol import (
    CallbackEnvelope,
    FieldRule,
    ResponseEnvelope,
    b64decode_strict,
    check_fields,
    decrypt_json,
    encrypted_body,
    flatten_content,
    public_key_b64,
    signed_headers,
    unwrap_cek,
)

__all__ = [
    "BulkCallback",
    "BulkDocument",
    "BulkInitiated",
    "BulkStatus",
    "Callback",
    "Cek",
    "HashSignature",
    "IamSmartClient",
    "Initiated",
    "PdfSignature",
    "SigningResult",
    "Token",
]

_D_CODE = re.compile(r"D\d{5}")  # iAM Smart's return codes; anything else is reported as "other"


class SigningResult(StrEnum):
    """``signingResult`` of ackResult."""

    ACCEPTED = "SR001"
    REJECTED = "SR002"
    NOT_RECEIVED = "SR003"


@dataclass(frozen=True)
class Cek:
    """A content-encryption key from getKey."""

    key: bytes = field(repr=False)
    issue_at: int
    expires_in: int
    pub_key: str

    @property
    def expires_at(self) -> int:
        return self.issue_at + self.expires_in


@dataclass(frozen=True)
class Token:
    """getToken's answer. ``user_type`` ``sign`` is iAM Smart+ (can sign), ``default`` plain iAM Smart."""

    access_token: str = field(repr=False)
    open_id: str
    token_type: str
    issue_at: int
    expires_in: int
    last_modified_date: int | None
    user_type: str
    scope: str

    @property
    def can_sign(self) -> bool:
        return self.user_type == "sign"


@dataclass(frozen=True)
class Initiated:
    """initiateRequest's answer: show ``sign_code``; ``ticket_id`` opens the app on the same device."""

    business_id: str
    sign_code: str
    auth_by_qr: bool | None
    ticket_id: str | None


@dataclass(frozen=True)
class HashSignature:
    """A hash-signing result: raw PKCS#1 v1.5 ``signature`` and the signer's DER certificate."""

    hash_code: str
    signature: bytes
    cert_der: bytes
    timestamp: int | None


@dataclass(frozen=True)
class PdfSignature:
    """A PDF-signing result: ``pdfSignature``, a DER detached CMS to write into /Contents unchanged."""

    doc_digest: str
    cms_der: bytes


@dataclass(frozen=True)
class Callback:
    """A decrypted callback: the outcome ``code`` and the flat content."""

    tx_id: str | None
    code: ReturnCode | str
    message: str
    content: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.code == ReturnCode.SUCCESS

    @property
    def business_id(self) -> str | None:
        return self.content.get("businessID")

    @property
    def bsqc_token(self) -> str | None:
        """The ``BSQCToken`` of a bulk request's token callback."""
        return self.content.get("BSQCToken")

    def hash_signature(self) -> HashSignature:
        """The hash result of a successful hash-signing callback."""
        return _hash_signature(self.content)

    def pdf_signature(self) -> PdfSignature:
        """The result of a successful PDF-signing callback."""
        return _pdf_signature(self.content)


def _hash_signature(content: Mapping[str, Any]) -> HashSignature:
    try:
        return HashSignature(
            hash_code=str(content.get("hashCode", "")),
            signature=b64decode_strict(content["signature"]),
            cert_der=b64decode_strict(content["cert"]),
            timestamp=int(content["timestamp"]) if content.get("timestamp") is not None else None,
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise EnvelopeError(ReturnCode.PARAMETER_INVALID, f"hash result incomplete: {exc}") from exc


def _pdf_signature(content: Mapping[str, Any]) -> PdfSignature:
    try:
        return PdfSignature(str(content.get("docDigest", "")), b64decode_strict(content["pdfSignature"]))
    except (KeyError, ValueError, TypeError) as exc:
        raise EnvelopeError(ReturnCode.PARAMETER_INVALID, f"PDF result incomplete: {exc}") from exc


def _code(code: str) -> ReturnCode | str:
    try:
        return ReturnCode(code)
    except ValueError:
        return code


class IamSmartClient:
    """One online service's client. Use as ``async with IamSmartClient(config) as c: ...``."""

    def __init__(
        self,
        config: ClientConfig,
        http: httpx.AsyncClient | None = None,
        *,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        nonce_factory: Callable[[], str] | None = None,
    ) -> None:
        self.config = config
        self._http = http or httpx.AsyncClient(timeout=config.timeout_s, verify=shared_tls_context())
        self._own_http = http is None
        self._clock_ms = clock_ms
        self._nonce_factory = nonce_factory
        self._cek: Cek | None = None
        self._cek_lock = asyncio.Lock()
        self._last_ts = 0
        self.get_key_calls = 0
        """How many times getKey was called (for tests and metrics)."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    # ------------------------------------------------------------------ transport

    def _url(self, path: str) -> str:
        return self.config.base_url.rstrip("/") + path

    def _timestamp(self) -> int:
        ts = max(self._clock_ms(), self._last_ts)  # never go backwards (§2)
        self._last_ts = ts
        return ts

    async def _post_signed(self, path: str, body: bytes) -> ResponseEnvelope:
        env = await self._post_signed_once(path, body)
        if env.code == ReturnCode.PARAMETER_INVALID:
            # Requests of one clientID must carry non-decreasing timestamps (§2). Concurrent requests of a
            # busy service (several workers, several replicas) can reach iAM Smart out of order; the one
            # that loses the race is refused before it has any effect, so it is sent again, once, afresh.
            env = await self._post_signed_once(path, body)
        return env

    async def _post_signed_once(self, path: str, body: bytes) -> ResponseEnvelope:
        with observed_call("iamsmart", path) as outcome:
            outcome.value = "transport_error"
            env = await self._post_signed_raw(path, body)
            code = getattr(env.code, "value", env.code)
            outcome.value = code if _D_CODE.fullmatch(str(code)) else "other"
            return env

    async def _post_signed_raw(self, path: str, body: bytes) -> ResponseEnvelope:
        nonce = self._nonce_factory() if self._nonce_factory else None
        headers = signed_headers(
            self.config.client_id, self.config.client_secret, body, self._timestamp(), nonce
        )
        try:
            resp = await self._http.post(self._url(path), content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise IamSmartTransportError(f"POST {path} failed: {exc.__class__.__name__}") from exc
        try:
            data = resp.json()
        except ValueError:
            raise IamSmartTransportError(
                f"POST {path}: HTTP {resp.status_code}, not JSON", resp.status_code
            ) from None
        if resp.status_code >= 400 and not (isinstance(data, dict) and isinstance(data.get("code"), str)):
            raise IamSmartTransportError(f"POST {path}: HTTP {resp.status_code}", resp.status_code)
        return ResponseEnvelope.parse(data)

    @staticmethod
    def _raise_for(env: ResponseEnvelope) -> None:
        if env.code != ReturnCode.SUCCESS:
            raise IamSmartApiError(env.code, env.message, env.tx_id, env.content)

    # ------------------------------------------------------------------ keys

    def _kek_for(self, pub_key: str | None) -> rsa.RSAPrivateKey:
        keys = self.config.kek_private_keys
        if not keys:
            raise EnvelopeError(ReturnCode.KEK_INVALID, "no KEK private key configured")
        for key in keys:
            if pub_key and public_key_b64(key.public_key()) == pub_key:
                return key
        return keys[0]

    async def get_key(self) -> Cek:
        """POST /security/getKey (body ``{}``) and cache the unwrapped CEK."""
        self.get_key_calls += 1
        env = await self._post_signed("/security/getKey", b"{}")
        self._raise_for(env)
        content = env.content
        if not isinstance(content, dict):
            raise EnvelopeError(ReturnCode.PARAMETER_INVALID, "getKey content is not an object")
        try:
            pub = content.get("pubKey")
            key = unwrap_cek(self._kek_for(pub), content["secretKey"])
            cek = Cek(key, int(content["issueAt"]), int(content["expiresIn"]), str(pub or ""))
        except (KeyError, TypeError, ValueError) as exc:
            raise EnvelopeError(ReturnCode.PARAMETER_INVALID, f"getKey content incomplete: {exc}") from exc
        self._cek = cek
        return cek

    async def revoke_key(self) -> None:
        """POST /security/revokeKey and forget the cached CEK."""
        env = await self._post_signed("/security/revokeKey", b"{}")
        self._cek = None
        self._raise_for(env)

    async def current_cek(self) -> Cek:
        """The cached CEK, fetched again when missing or about to expire."""
        async with self._cek_lock:
            cek = self._cek
            if cek is None or cek.expires_at - self.config.cek_refresh_margin_ms <= self._clock_ms():
                cek = await self.get_key()
            return cek

    def forget_cek(self) -> None:
        self._cek = None

    async def _call(
        self, path: str, payload: Mapping[str, Any], rules: Iterable[FieldRule] = ()
    ) -> dict[str, Any]:
        """An encrypted API call; returns the decrypted content (``{}`` if none)."""
        payload = {k: v for k, v in payload.items() if v is not None}
        if self.config.check_fields:
            check_fields(rules, payload)
        for attempt in (1, 2):
            cek = await self.current_cek()
            env = await self._post_signed(path, encrypted_body(cek.key, payload))
            if env.code in CEK_ERRORS and attempt == 1:
                async with self._cek_lock:
                    if self._cek is cek:
                        self._cek = None
                continue
            self._raise_for(env)
            if not env.content:
                return {}
            if not isinstance(env.content, str):
                raise EnvelopeError(ReturnCode.PARAMETER_INVALID, "response content is not encrypted text")
            return flatten_content(decrypt_json(cek.key, env.content))
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------------ login

    def qr_url(
        self,
        redirect_uri: str,
        scopes: Iterable[str] = ("eidapi_auth", "eidapi_sign"),
        *,
        source: str = "PC_Browser",
        lang: str = "zh-HK",
        state: str | None = None,
        ticket_id: str | None = None,
        broker_page: bool | None = None,
    ) -> str:
        """The browser URL of ``GET /auth/getQR`` (not signed)."""
        params: dict[str, str] = {
            "clientID": self.config.client_id,
            "responseType": "code",
            "source": source,
            "redirectURI": redirect_uri,
            "scope": " ".join(scopes),
            "lang": lang,
        }
        if state is not None:
            params["state"] = state
        if broker_page is not None:
            params["brokerPage"] = "true" if broker_page else "false"
        if ticket_id is not None:
            params["ticketID"] = ticket_id
        return self._url("/auth/getQR") + "?" + urlencode(params, safe="")

    async def get_token(self, code: str, *, direct_login_v2: bool = False) -> Token:
        """POST /auth/getToken for an authorisation code."""
        payload: dict[str, Any] = {"code": code, "grantType": "authorization_code"}
        if direct_login_v2:
            payload["isDirectLoginV2"] = "true"
        c = await self._call("/auth/getToken", payload, F.GET_TOKEN)
        try:
            return Token(
                access_token=str(c["accessToken"]),
                open_id=str(c["openID"]),
                token_type=str(c.get("tokenType", "Bearer")),
                issue_at=int(c.get("issueAt", 0)),
                expires_in=int(c.get("expiresIn", 0)),
                last_modified_date=int(c["lastModifiedDate"])
                if c.get("lastModifiedDate") is not None
                else None,
                user_type=str(c.get("userType", "default")),
                scope=str(c.get("scope", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise EnvelopeError(ReturnCode.PARAMETER_INVALID, f"getToken content incomplete: {exc}") from exc

    # ------------------------------------------------------------------ signing

    @staticmethod
    def _initiated(business_id: str, c: Mapping[str, Any]) -> Initiated:
        auth_by_qr = c.get("authByQR")
        if isinstance(auth_by_qr, str):
            auth_by_qr = auth_by_qr.lower() == "true"
        return Initiated(business_id, str(c.get("signCode", "")), auth_by_qr, c.get("ticketID") or None)

    async def account_sign_hash(
        self,
        *,
        business_id: str,
        token: Token,
        hash_code: bytes,
        redirect_uri: str,
        service_name: str,
        document_name: str,
        source: str = "PC_Browser",
        state: str | None = None,
        department: str | None = None,
        hkic_hash: str | None = None,
        sig_algo: str | None = None,
        **extra: Any,
    ) -> Initiated:
        """POST /account/signing/initiateRequest (hash signing after login)."""
        payload = {
            "businessID": business_id,
            "accessToken": token.access_token,
            "openID": token.open_id,
            "source": source,
            "state": state,
            "hashCode": base64.b64encode(hash_code).decode(),
            "redirectURI": redirect_uri,
            "department": department,
            "serviceName": service_name,
            "documentName": document_name,
            "HKICHash": hkic_hash,
            "sigAlgo": sig_algo,
            **extra,
        }
        return self._initiated(
            business_id, await self._call("/account/signing/initiateRequest", payload, F.ACCOUNT_HASH)
        )

    async def account_sign_pdf(
        self,
        *,
        business_id: str,
        token: Token,
        doc_digest: bytes,
        redirect_uri: str,
        service_name: str,
        document_name: str,
        source: str = "PC_Browser",
        state: str | None = None,
        department: str | None = None,
        hkic_hash: str | None = None,
        **extra: Any,
    ) -> Initiated:
        """POST /account/pdfsigning/initiateRequest (PDF signing after login)."""
        payload = {
            "businessID": business_id,
            "accessToken": token.access_token,
            "openID": token.open_id,
            "source": source,
            "state": state,
            "docDigest": base64.b64encode(doc_digest).decode(),
            "redirectURI": redirect_uri,
            "department": department,
            "serviceName": service_name,
            "documentName": document_name,
            "HKICHash": hkic_hash,
            **extra,
        }
        return self._initiated(
            business_id, await self._call("/account/pdfsigning/initiateRequest", payload, F.ACCOUNT_PDF)
        )

    async def anonymous_sign_hash(
        self,
        *,
        business_id: str,
        hash_code: bytes,
        hkic_hash: str,
        redirect_uri: str,
        service_name: str,
        document_name: str,
        source: str = "PC_Browser",
        state: str | None = None,
        department: str | None = None,
        sig_algo: str | None = None,
        **extra: Any,
    ) -> Initiated:
        """POST /anonymous/signing/initiateRequest (HKICHash mandatory; ticket valid 12 min)."""
        payload = {
            "businessID": business_id,
            "source": source,
            "state": state,
            "hashCode": base64.b64encode(hash_code).decode(),
            "redirectURI": redirect_uri,
            "department": department,
            "documentName": document_name,
            "serviceName": service_name,
            "HKICHash": hkic_hash,
            "sigAlgo": sig_algo,
            **extra,
        }
        return self._initiated(
            business_id, await self._call("/anonymous/signing/initiateRequest", payload, F.ANONYMOUS_HASH)
        )

    async def anonymous_sign_pdf(
        self,
        *,
        business_id: str,
        doc_digest: bytes,
        hkic_hash: str,
        redirect_uri: str,
        service_name: str,
        document_name: str,
        source: str = "PC_Browser",
        state: str | None = None,
        department: str | None = None,
        **extra: Any,
    ) -> Initiated:
        """POST /anonymous/pdfsigning/initiateRequest."""
        payload = {
            "businessID": business_id,
            "source": source,
            "redirectURI": redirect_uri,
            "state": state,
            "docDigest": base64.b64encode(doc_digest).decode(),
            "HKICHash": hkic_hash,
            "department": department,
            "documentName": document_name,
            "serviceName": service_name,
            **extra,
        }
        return self._initiated(
            business_id, await self._call("/anonymous/pdfsigning/initiateRequest", payload, F.ANONYMOUS_PDF)
        )

    async def anonymous_hash_result(self, token: Token) -> HashSignature:
        """POST /anonymous/signing/getResult with the token from the redirect's code.

        The body is ``{accessToken, openID}`` only, as the protocol doc gives it for iAM Smart (§6.5;
        ``businessID`` is CorpID's variant): the token names the request."""
        c = await self._call(
            "/anonymous/signing/getResult",
            {"accessToken": token.access_token, "openID": token.open_id},
            F.GET_RESULT,
        )
        return _hash_signature(c)

    async def anonymous_pdf_result(self, token: Token) -> PdfSignature:
        """POST /anonymous/pdfsigning/getResult with ``{accessToken, openID}`` only (§6.5)."""
        c = await self._call(
            "/anonymous/pdfsigning/getResult",
            {"accessToken": token.access_token, "openID": token.open_id},
            F.GET_RESULT,
        )
        return _pdf_signature(c)

    async def ack_result(self, business_id: str, result: SigningResult | str) -> None:
        """POST /account/signing/ackResult (for every outcome: SR001, SR002 or SR003)."""
        await self._call(
            "/account/signing/ackResult",
            {"businessID": business_id, "signingResult": SigningResult(result).value},
            F.ACK_RESULT,
        )

    # ------------------------------------------------------------------ bulk signing (§8, §12.4)

    async def bulk_initiate(
        self,
        *,
        business_id: str,
        documents: Sequence[BulkDocument],
        callback_result_uri: str,
        service_name: str,
        request_name: str,
        token: Token | None = None,
        redirect_uri: str | None = None,
        hkic_hash: str | None = None,
        source: str | None = "PC_Browser",
        state: str | None = None,
        department: str | None = None,
        max_callback_sigs: int | None = None,
        **extra: Any,
    ) -> BulkInitiated:
        """POST /bdss/initiateRequest (with ``token``: logged in, ``redirect_uri`` gets the BSQC token) or
        /bdss/anonymous/initiateRequest (without). The sign code is computed locally (§12.4 choice)."""
        anonymous = token is None
        payload: dict[str, Any] = {
            "businessID": business_id,
            "redirectURI": redirect_uri,
            "callbackResultURI": callback_result_uri,
            "source": source,
            "state": state,
            "HKICHash": hkic_hash,
            "department": department,
            "serviceName": service_name,
            "requestName": request_name,
            "maxCallbackSigs": max_callback_sigs,
            "documents": documents_wire(documents),
            **extra,
        }
        if token is not None:
            payload.update(accessToken=token.access_token, openID=token.open_id)
        payload = {k: v for k, v in payload.items() if v is not None}
        if self.config.check_fields:
            F.check_bulk_request(payload, anonymous=anonymous)
        path = "/bdss/anonymous/initiateRequest" if anonymous else "/bdss/initiateRequest"
        c = await self._call(path, payload)
        sign_code = (
            sign_code_for(documents, hkic_hash=hkic_hash, client_id=self.config.client_id)
            if anonymous
            else sign_code_for(documents, open_id=token.open_id if token else None)
        )
        init = self._initiated(business_id, c)
        return BulkInitiated(business_id, sign_code, init.auth_by_qr, init.ticket_id, len(documents))

    async def bulk_bsqc_token(self, token: Token, business_id: str | None = None) -> str:
        """POST /bdss/getBSQCToken: the BSQC token of this user's (latest, or given) bulk request."""
        c = await self._call(
            "/bdss/getBSQCToken",
            {"accessToken": token.access_token, "openID": token.open_id, "businessID": business_id},
            F.GET_BSQC_TOKEN,
        )
        value = c.get("BSQCToken")
        if not isinstance(value, str) or not value:
            raise EnvelopeError(ReturnCode.PARAMETER_INVALID, "getBSQCToken content has no BSQCToken")
        return value

    async def bulk_status(self, business_id: str, bsqc_token: str, open_id: str | None = None) -> BulkStatus:
        """POST /bdss/enquireStatus: SS001 pending ... SS006 no record."""
        c = await self._call(
            "/bdss/enquireStatus",
            {"BSQCToken": bsqc_token, "businessID": business_id, "openID": open_id},
            F.BULK_ENQUIRY,
        )
        try:
            return BulkStatus(str(c.get("status")))
        except ValueError:
            raise EnvelopeError(ReturnCode.PARAMETER_INVALID, "enquireStatus gave no known status") from None

    async def bulk_cancel(self, business_id: str, bsqc_token: str, open_id: str | None = None) -> None:
        """POST /bdss/cancelRequest (only while SS001, otherwise D71007)."""
        await self._call(
            "/bdss/cancelRequest",
            {"BSQCToken": bsqc_token, "businessID": business_id, "openID": open_id},
            F.BULK_ENQUIRY,
        )

    async def bulk_ack(
        self,
        business_id: str,
        result: SigningResult | str | None = None,
        per_document: Mapping[str, SigningResult | str] | None = None,
    ) -> None:
        """POST /bdss/ackResult for the whole request (``result``) or per document (``per_document``)."""
        if (result is None) == (per_document is None):
            raise ValueError("give either result or per_document")
        payload: dict[str, Any] = {"businessID": business_id}
        if result is not None:
            payload["signingResult"] = SigningResult(result).value
        else:
            assert per_document is not None
            payload["signingResult"] = ""
            payload["signatures"] = [
                {"id": i, "signingResult": SigningResult(r).value} for i, r in per_document.items()
            ]
        if self.config.check_fields:
            F.parse_bulk_ack(payload)
        await self._call("/bdss/ackResult", payload)

    def decrypt_bulk_callback(self, parts: Mapping[str, bytes | str]) -> BulkCallback:
        """Read a result callback's parts ``{"sigMetada": ..., "sigFile": ...}`` (encrypted or clear; a
        ``sigFile`` without outer braces is accepted). :class:`EnvelopeError` when they cannot be read."""
        return read_bulk_callback(parts, self._unwrap)

    # ------------------------------------------------------------------ callbacks

    def _unwrap(self, secret_key: str) -> bytes:
        key = self._kek_for(None) if len(self.config.kek_private_keys) == 1 else self._kek_trying(secret_key)
        return unwrap_cek(key, secret_key)

    def decrypt_callback(self, body: bytes | str | Mapping[str, Any]) -> Callback:
        """Read a callback POST body: unwrap its own ``secretKey``, decrypt, flatten a nested ``content``.

        Also reads the bulk BSQC-token callback ``{businessID, state, BSQCToken}``."""
        env = CallbackEnvelope.parse(dict(body) if isinstance(body, Mapping) else body)
        content: dict[str, Any] = {}
        if env.content is not None:
            if env.secret_key is None:
                raise EnvelopeError(ReturnCode.DECRYPTION_EXCEPTION, "callback content without secretKey")
            content = flatten_content(decrypt_json(self._unwrap(env.secret_key), env.content))
        return Callback(env.tx_id, _code(env.code), env.message, content)

    def _kek_trying(self, secret_key: str) -> rsa.RSAPrivateKey:
        for key in self.config.kek_private_keys:
            try:
                unwrap_cek(key, secret_key)
            except EnvelopeError:
                continue
            return key
        return self._kek_for(None)

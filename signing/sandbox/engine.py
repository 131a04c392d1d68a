"""The simulated iAM Smart's state machine (protocol doc §11), with the checks and codes of the real API.

HTTP-free: :meth:`SandboxEngine.handle` takes a path, the request headers and the exact body bytes and
returns the response envelope. Outbound traffic (result callbacks, the redirect the sandbox drives in the
anonymous flow when no browser is involved) goes through httpx. Lifetimes run on a
:class:`~signing.sandbox.clock.MovableClock`; header timestamps and nonces on the wall clock.

What both desks share (gate, courier, users, clock, tokens, businessIDs, background tasks) is the
:class:`~signing.sandbox.core.SandboxCore` the engine receives. Bulk signing lives in
:mod:`signing.sandbox.bulk` (``self.bulk``), which receives the same core; the phone and the test hooks
here reach both kinds of request.

State (CEKs, nonces, codes, tokens, signing requests, QR sessions) is kept in memory: a restart of the
sandbox forgets pending requests, like a fresh test environment. Registered services, users, keys and
the PKI persist in the data folder.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import secrets
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from cryptography.hazmat.primitives.serialization import Encoding

from signing.iamsmart import fields as F
from signing.iamsmart.codes import ReturnCode
from signing.iamsmart.errors import FieldRuleError
from signing.iamsmart.protocol import (
    LANGS,
    SCOPES,
    SOURCES,
    b64decode_strict,
    callback_envelope,
    check_fields,
    encrypt_content,
    public_key_b64,
    response_envelope,
    sign_code_account,
    sign_code_anonymous,
    wrap_cek,
)

from .bulk import BulkDesk, BulkRequest
from .clock import MovableClock
from .core import AccessToken, SandboxCore, check_stepup
from .delivery import Courier
from .errors import HookError, SandboxError
from .gate import RequestGate
from .options import SandboxOptions
from .pki import SandboxPki
from .registry import RegisteredService, ServiceRegistry
from .remote_signer import UnsupportedHashError
from .users import SandboxUser, UserDirectory, UserStatus

__all__ = ["QrSession", "RequestStatus", "SandboxEngine", "SigningRequest"]

log = logging.getLogger("iamsign.sandbox")

_STATE_RE = r"[A-Za-z0-9_-]{1,36}"


class RequestStatus(StrEnum):
    PENDING = "PENDING"
    SIGNED = "SIGNED"
    """Signed; account: callback on its way; anonymous: result held for getResult."""
    CALLBACK_SENT = "CALLBACK_SENT"
    CALLBACK_FAILED = "CALLBACK_FAILED"
    RESULT_FETCHED = "RESULT_FETCHED"
    CLOSED = "CLOSED"
    """Anonymous flow ended without a result (rejected, cancelled, timed out, mismatch)."""
    ACKED = "ACKED"


_ACKABLE = {
    RequestStatus.CALLBACK_SENT,
    RequestStatus.CALLBACK_FAILED,
    RequestStatus.RESULT_FETCHED,
    RequestStatus.CLOSED,
}


@dataclass
class _AuthCode:
    client_id: str
    user_id: str
    scopes: tuple[str, ...]
    expires_ms: int
    by_qr: bool
    business_id: str | None = None


@dataclass
class QrSession:
    """An open getQR page: a login, or (with ``business_id``) a signing ticket."""

    session_id: str
    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    state: str | None
    lang: str
    source: str
    expires_ms: int
    business_id: str | None = None


@dataclass
class SigningRequest:
    """One single-document signing request and where it stands."""

    client_id: str
    business_id: str
    kind: str
    """``hash`` or ``pdf``."""
    anonymous: bool
    data: bytes = field(repr=False)
    """Decoded ``hashCode`` / ``docDigest``."""
    data_b64: str
    sig_algo: str
    state: str | None
    redirect_uri: str
    source: str
    service_name: str
    document_name: str
    department: str | None
    hkic_hash: str | None = field(repr=False)
    user_id: str | None
    sign_code: str
    ticket_id: str
    created_ms: int
    expires_ms: int
    status: RequestStatus = RequestStatus.PENDING
    outcome: ReturnCode | None = None
    result: dict[str, Any] | None = field(default=None, repr=False)
    closed_ms: int | None = None
    ack: str | None = None
    callback_attempts: int = 0

    def echo(self) -> dict[str, Any]:
        out: dict[str, Any] = {"businessID": self.business_id}
        if self.state is not None:
            out["state"] = self.state
        out["hashCode" if self.kind == "hash" else "docDigest"] = self.data_b64
        return out

    def public(self) -> dict[str, Any]:
        """The JSON the sandbox's hooks show (no HKICHash, no signature)."""
        return {
            "business_id": self.business_id,
            "client_id": self.client_id,
            "kind": self.kind,
            "anonymous": self.anonymous,
            "status": self.status.value,
            "outcome": self.outcome.value if self.outcome else None,
            "sign_code": self.sign_code,
            "ticket_id": self.ticket_id,
            "service_name": self.service_name,
            "document_name": self.document_name,
            "department": self.department,
            "created_ms": self.created_ms,
            "expires_ms": self.expires_ms,
            "ack": self.ack,
            "callback_attempts": self.callback_attempts,
        }


def _with_query(uri: str, params: Mapping[str, str | None]) -> str:
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query += [(k, v) for k, v in params.items() if v is not None]
    return urlunsplit(parts._replace(query=urlencode(query)))


class SandboxEngine:
    """The simulated iAM Smart, for any number of registered online services: logins, single-document
    signing requests, the phone and the test hooks; bulk requests through :attr:`bulk`."""

    def __init__(self, core: SandboxCore) -> None:
        self.core = core
        self._codes: dict[str, _AuthCode] = {}
        self._requests: dict[tuple[str, str], SigningRequest] = {}
        self._tickets: dict[str, tuple[str, str]] = {}
        self._qr: dict[str, QrSession] = {}
        self._ticker: asyncio.Task[Any] | None = None
        self._routes: dict[str, tuple[bool, Callable[[RegisteredService, Any], Awaitable[Any]]]] = {
            "/security/getKey": (True, self._get_key),
            "/security/revokeKey": (True, self._revoke_key),
            "/auth/getToken": (False, self._get_token),
            "/account/signing/initiateRequest": (False, lambda s, p: self._initiate(s, p, "hash", False)),
            "/account/pdfsigning/initiateRequest": (False, lambda s, p: self._initiate(s, p, "pdf", False)),
            "/account/signing/ackResult": (False, self._ack),
            "/anonymous/signing/initiateRequest": (False, lambda s, p: self._initiate(s, p, "hash", True)),
            "/anonymous/pdfsigning/initiateRequest": (False, lambda s, p: self._initiate(s, p, "pdf", True)),
            "/anonymous/signing/getResult": (False, lambda s, p: self._get_result(s, p, "hash")),
            "/anonymous/pdfsigning/getResult": (False, lambda s, p: self._get_result(s, p, "pdf")),
        }
        self.bulk = BulkDesk(core)
        self._routes.update(self.bulk.routes())

    @property
    def api_paths(self) -> tuple[str, ...]:
        return tuple(self._routes)

    # the core's parts, for the HTTP face and the tests
    @property
    def options(self) -> SandboxOptions:
        return self.core.options

    @property
    def registry(self) -> ServiceRegistry:
        return self.core.registry

    @property
    def users(self) -> UserDirectory:
        return self.core.users

    @property
    def pki(self) -> SandboxPki:
        return self.core.pki

    @property
    def clock(self) -> MovableClock:
        return self.core.clock

    @property
    def gate(self) -> RequestGate:
        return self.core.gate

    @property
    def courier(self) -> Courier:
        return self.core.courier

    # ================================================================== background work

    def ensure_ticker(self, period_s: float = 1.0) -> None:
        """Start (once, in the running loop) the task that fires timeouts in real time."""
        if self._ticker is None or self._ticker.done():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # not in the event loop's thread: the next request starts it
                return
            self._ticker = loop.create_task(self._tick_forever(period_s))

    async def _tick_forever(self, period_s: float) -> None:
        while True:
            await asyncio.sleep(period_s)
            try:
                await self.sweep()
            except Exception:
                log.exception("sandbox sweep failed")

    async def aclose(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        await self.core.aclose()

    async def sweep(self) -> None:
        """Fire what the clock says is due: D70003 for requests past their ticket; forget stale state."""
        now = self.clock.now_ms()
        for req in list(self._requests.values()):
            if req.status is RequestStatus.PENDING and now >= req.expires_ms:
                await self._fail(req, ReturnCode.SIGNING_TIMEOUT)
        await self.bulk.sweep(now)
        self._codes = {k: v for k, v in self._codes.items() if v.expires_ms > now}
        self.core.forget_expired_tokens(now)
        self._qr = {k: v for k, v in self._qr.items() if v.expires_ms > now}

    async def advance_clock(self, ms: int) -> int:
        """Move the sandbox clock and fire what became due."""
        now = self.clock.advance(ms)
        await self.sweep()
        return now

    # ================================================================== API entry

    async def handle(self, path: str, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
        """Answer one signed POST to ``/api/v1{path}`` with its envelope; never raises."""
        self.ensure_ticker()
        try:
            route = self._routes.get(path)
            if route is None:
                raise SandboxError(ReturnCode.NOT_FOUND, "no such API")
            if len(body) > self.options.max_body_bytes:
                raise SandboxError(ReturnCode.PARAMETER_INVALID, "request entity too large")
            plain, handler = route
            service = self.gate.authenticate(headers, body)
            if plain:
                return response_envelope(ReturnCode.SUCCESS, await handler(service, body))
            payload, cek = self.gate.decrypt_body(service, body)
            content = await handler(service, payload)
            enc = encrypt_content(cek.key, content) if content is not None else None
            return response_envelope(ReturnCode.SUCCESS, enc)
        except SandboxError as exc:
            log.warning("sandbox %s -> %s %s", path, exc.code.value, getattr(exc, "detail", "") or "")
            return response_envelope(exc.code, exc.content)
        except FieldRuleError as exc:
            log.warning("sandbox %s -> %s (%s)", path, exc.code, exc.field)
            return response_envelope(ReturnCode(exc.code))
        except Exception as exc:  # noqa: BLE001 - the protocol answers D20000, never a 500
            log.error("sandbox %s failed: %s", path, exc.__class__.__name__)
            return response_envelope(ReturnCode.UNKNOWN_EXCEPTION)

    # ================================================================== keys

    async def _get_key(self, service: RegisteredService, body: bytes) -> dict[str, Any]:
        kek = service.kek_public_key()
        if kek is None:
            raise SandboxError(ReturnCode.KEK_INVALID)
        cek = self.gate.current_cek(service.client_id)
        try:
            wrapped = wrap_cek(kek, cek.key)
        except ValueError:
            raise SandboxError(ReturnCode.ENCRYPTION_EXCEPTION) from None
        return {
            "secretKey": wrapped,
            "pubKey": public_key_b64(kek),
            "issueAt": cek.issue_ms,
            "expiresIn": cek.expires_ms - cek.issue_ms,
        }

    async def _revoke_key(self, service: RegisteredService, body: bytes) -> None:
        self.gate.revoke_cek(service.client_id)

    # ================================================================== login

    def open_qr(self, params: Mapping[str, str]) -> QrSession:
        """Check a getQR query like the real page does and open a session (raises :class:`SandboxError`)."""

        def need(name: str) -> str:
            value = params.get(name)
            if value is None:
                raise SandboxError(ReturnCode.PARAMETER_MISSING, f"{name} missing")
            if value == "":
                raise SandboxError(ReturnCode.PARAMETER_EMPTY, f"{name} empty")
            return value

        service = self.registry.get(need("clientID"))
        if service is None:
            raise SandboxError(ReturnCode.ACCESS_DENIED, "unknown clientID")
        if need("responseType") != "code":
            raise SandboxError(ReturnCode.PARAMETER_INVALID, "responseType must be code")
        source = need("source")
        if source not in SOURCES:
            raise SandboxError(ReturnCode.UNSUPPORTED_SOURCE)
        redirect_uri = need("redirectURI")
        if not service.allows_redirect(redirect_uri):
            raise SandboxError(ReturnCode.REDIRECT_URI_NOT_REGISTERED)
        scopes = tuple(s for s in need("scope").split(" ") if s)
        if not scopes or any(s not in SCOPES for s in scopes):
            raise SandboxError(ReturnCode.PARAMETER_INVALID, "unknown scope")
        if any(s not in service.scopes for s in scopes):
            raise SandboxError(ReturnCode.INSUFFICIENT_SCOPE)
        lang = params.get("lang") or "zh-HK"
        if lang not in LANGS:
            raise SandboxError(ReturnCode.PARAMETER_INVALID, "lang")
        state = params.get("state")
        if state is not None and not re.fullmatch(_STATE_RE, state):
            raise SandboxError(ReturnCode.PARAMETER_INVALID, "state")
        if params.get("brokerPage") not in (None, "true", "false"):
            raise SandboxError(ReturnCode.PARAMETER_INVALID, "brokerPage")
        business_id = None
        ticket = params.get("ticketID")
        if ticket is not None:
            key = self._tickets.get(ticket)
            if key is None or key[0] != service.client_id:
                raise SandboxError(ReturnCode.NOT_FOUND, "unknown ticketID")
            req = self._requests[key]
            if req.status is not RequestStatus.PENDING or req.expires_ms <= self.clock.now_ms():
                raise SandboxError(ReturnCode.SIGNING_TIMEOUT, "the ticket is no longer valid")
            if "eidapi_sign" not in scopes:
                raise SandboxError(ReturnCode.INSUFFICIENT_SCOPE)
            business_id = req.business_id
        now = self.clock.now_ms()
        session = QrSession(
            uuid.uuid4().hex,
            service.client_id,
            redirect_uri,
            scopes,
            state,
            lang,
            source,
            now + self.options.qr_session_lifetime_ms,
            business_id,
        )
        self._qr[session.session_id] = session
        return session

    def qr_session(self, session_id: str) -> QrSession:
        session = self._qr.get(session_id)
        if session is None or session.expires_ms <= self.clock.now_ms():
            raise HookError(404, "qr_session_not_found", "this QR page has expired or does not exist")
        return session

    def _new_code(
        self,
        client_id: str,
        user: SandboxUser,
        scopes: tuple[str, ...],
        by_qr: bool,
        business_id: str | None = None,
    ) -> str:
        code = secrets.token_urlsafe(24)
        self._codes[code] = _AuthCode(
            client_id,
            user.user_id,
            scopes,
            self.clock.now_ms() + self.options.auth_code_lifetime_ms,
            by_qr,
            business_id,
        )
        return code

    async def qr_approve(self, session_id: str, hkid: str) -> str:
        """A tester approves a getQR page as ``hkid``; returns where the browser goes next."""
        session = self.qr_session(session_id)
        user = self.user_by_hkid(hkid)
        del self._qr[session_id]
        if session.business_id is not None:
            req = self._requests[(session.client_id, session.business_id)]
            if not req.anonymous and req.user_id != user.user_id:
                raise HookError(409, "wrong_user", "this ticket belongs to another user's request")
            url = await self._approve(req, user, via_browser=True)
            return url or _with_query(req.redirect_uri, {"state": req.state, "businessID": req.business_id})
        if user.status is UserStatus.DEREGISTERED:
            return _with_query(
                session.redirect_uri, {"error_code": ReturnCode.AUTH_FAILED.value, "state": session.state}
            )
        by_qr = not session.source.startswith("App_")
        code = self._new_code(session.client_id, user, session.scopes, by_qr)
        return _with_query(session.redirect_uri, {"code": code, "state": session.state})

    async def qr_reject(self, session_id: str) -> str:
        """A tester rejects a getQR page; returns where the browser goes next."""
        session = self.qr_session(session_id)
        del self._qr[session_id]
        if session.business_id is not None:
            req = self._requests[(session.client_id, session.business_id)]
            url = await self._fail(req, ReturnCode.SIGNING_REJECTED, via_browser=True)
            return url or _with_query(req.redirect_uri, {"state": req.state, "businessID": req.business_id})
        return _with_query(
            session.redirect_uri, {"error_code": ReturnCode.AUTH_REJECTED.value, "state": session.state}
        )

    async def _get_token(self, service: RegisteredService, payload: dict[str, Any]) -> dict[str, Any]:
        check_fields(F.GET_TOKEN, payload)
        code = self._codes.pop(payload["code"], None)
        now = self.clock.now_ms()
        if code is None or code.client_id != service.client_id or code.expires_ms <= now:
            raise SandboxError(ReturnCode.AUTH_CODE_INVALID)
        user = self.users.get(code.user_id)
        if user.status is UserStatus.DEREGISTERED:
            raise SandboxError(ReturnCode.AUTH_CODE_INVALID, "the account is de-registered")
        open_id = self.users.open_id(user, service.client_id)
        access = secrets.token_urlsafe(32)
        self.core.tokens[access] = AccessToken(
            service.client_id,
            user.user_id,
            open_id,
            code.scopes,
            now,
            now + self.options.token_lifetime_ms,
            code.by_qr,
            code.business_id,
        )
        return {
            "accessToken": access,
            "tokenType": "Bearer",
            "issueAt": now,
            "expiresIn": self.options.token_lifetime_ms,
            "openID": open_id,
            "lastModifiedDate": user.last_modified_ms,
            "userType": user.user_type.value,
            "scope": " ".join(code.scopes),
        }

    # ================================================================== signing requests

    async def _initiate(
        self, service: RegisteredService, payload: dict[str, Any], kind: str, anonymous: bool
    ) -> dict[str, Any]:
        rules = {
            ("hash", False): F.ACCOUNT_HASH,
            ("pdf", False): F.ACCOUNT_PDF,
            ("hash", True): F.ANONYMOUS_HASH,
            ("pdf", True): F.ANONYMOUS_PDF,
        }[(kind, anonymous)]
        check_fields(rules, payload)
        if not service.allows_redirect(payload["redirectURI"]):
            raise SandboxError(ReturnCode.REDIRECT_URI_NOT_REGISTERED)
        data_b64 = payload["hashCode" if kind == "hash" else "docDigest"]
        data = b64decode_strict(data_b64)
        sig_algo = payload.get("sigAlgo") or "SHA256withRSA"
        if kind == "hash":
            if sig_algo not in ("SHA256withRSA", "NONEwithRSA"):
                raise SandboxError(ReturnCode.PARAMETER_INVALID, "the sandbox signs with RSA only")
            if sig_algo == "NONEwithRSA" and len(data) != 32:
                raise SandboxError(ReturnCode.PARAMETER_INVALID, "NONEwithRSA needs a 32-byte digest")
        elif len(data) != 32:
            raise SandboxError(ReturnCode.PARAMETER_INVALID, "docDigest must be a SHA-256 digest")
        check_stepup(payload)
        user: SandboxUser | None
        by_qr = True
        if anonymous:
            user = self.users.by_hkic_hash(payload["HKICHash"])
            open_id = None
        else:
            token, user = self.core.token_user(service, payload)
            if "eidapi_sign" not in token.scopes:
                raise SandboxError(ReturnCode.INSUFFICIENT_SCOPE)
            open_id, by_qr = token.open_id, token.by_qr
        key = (service.client_id, payload["businessID"])
        if self.core.business_id_taken(*key):
            raise SandboxError(
                ReturnCode.DUPLICATE_BUSINESS_ID, content={"businessID": payload["businessID"]}
            )
        if not anonymous and user is not None and not user.can_sign:
            raise SandboxError(ReturnCode.USER_NOT_ALLOWED, content={"businessID": payload["businessID"]})
        if anonymous:
            sign_code = sign_code_anonymous(data, payload["HKICHash"], service.client_id)
            by_qr = not payload["source"].startswith("App_")
        else:
            assert open_id is not None
            sign_code = sign_code_account(data_b64, open_id)
        now = self.clock.now_ms()
        lifetime = self.options.anonymous_ticket_lifetime_ms if anonymous else self.options.ticket_lifetime_ms
        req = SigningRequest(
            client_id=service.client_id,
            business_id=payload["businessID"],
            kind=kind,
            anonymous=anonymous,
            data=data,
            data_b64=data_b64,
            sig_algo=sig_algo,
            state=payload.get("state") or None,
            redirect_uri=payload["redirectURI"],
            source=payload["source"],
            service_name=payload["serviceName"],
            document_name=payload["documentName"],
            department=payload.get("department") or None,
            hkic_hash=payload.get("HKICHash") or None,
            user_id=user.user_id if user else None,
            sign_code=sign_code,
            ticket_id=uuid.uuid4().hex,
            created_ms=now,
            expires_ms=now + lifetime,
        )
        self._requests[key] = req
        self.core.claim_business_id(*key)
        self._tickets[req.ticket_id] = key
        log.info(
            "sandbox request %s/%s %s%s pending",
            req.client_id,
            req.business_id,
            "anonymous " if anonymous else "",
            kind,
        )
        if not anonymous and user is not None and req.hkic_hash and req.hkic_hash != user.hkic_hash:
            self.core.spawn(self._fail(req, ReturnCode.HKIC_MISMATCH))
        elif user is not None:
            self._schedule_auto(req, user)
        content: dict[str, Any] = {"signCode": sign_code}
        if not (anonymous and kind == "hash"):
            content["authByQR"] = by_qr
        content["ticketID"] = req.ticket_id
        return content

    def _schedule_auto(self, req: SigningRequest, user: SandboxUser) -> None:
        self.core.schedule_auto(
            user,
            lambda: req.status is RequestStatus.PENDING,
            lambda u: self._approve(req, u),
            lambda: self._fail(req, ReturnCode.SIGNING_REJECTED),
        )

    async def _sign(self, req: SigningRequest, user: SandboxUser) -> dict[str, Any]:
        signer = self.users.signer(user, req.client_id)
        out = req.echo()
        if req.kind == "hash":
            signature = signer.sign_hash(
                req.data, req.sig_algo, none_with_rsa_digestinfo=self.options.none_with_rsa_digestinfo
            )
            out.update(
                {
                    "timestamp": self.clock.now_ms(),
                    "signature": base64.b64encode(signature).decode(),
                    "cert": base64.b64encode(
                        self.users.certificate(user, req.client_id).public_bytes(Encoding.DER)
                    ).decode(),
                }
            )
        else:
            cms_der = await signer.sign_pdf_digest(req.data, self.clock.now(), self.core.pdf_timestamper())
            out["pdfSignature"] = base64.b64encode(cms_der).decode()
        return out

    async def _approve(
        self, req: SigningRequest, user: SandboxUser, *, via_browser: bool = False
    ) -> str | None:
        """The user approves on the phone. Returns the browser's next URL in a browser-driven anonymous flow."""
        if req.status is not RequestStatus.PENDING:
            raise HookError(409, "not_pending", f"the request is {req.status.value}")
        if req.anonymous and (req.hkic_hash is None or req.hkic_hash != user.hkic_hash):
            return await self._fail(req, ReturnCode.HKIC_MISMATCH, via_browser=via_browser)
        if not user.can_sign:
            return await self._fail(req, ReturnCode.USER_NOT_ALLOWED, via_browser=via_browser)
        try:
            result = await self._sign(req, user)
        except UnsupportedHashError:
            return await self._fail(req, ReturnCode.SIGNING_FAILED, via_browser=via_browser)
        req.result, req.outcome, req.status = result, ReturnCode.SUCCESS, RequestStatus.SIGNED
        req.user_id = user.user_id
        log.info("sandbox request %s/%s signed", req.client_id, req.business_id)
        if not req.anonymous:
            self.core.spawn(self._deliver_callback(req))
            return None
        code = self._new_code(req.client_id, user, ("eidapi_sign",), True, req.business_id)
        url = _with_query(req.redirect_uri, {"code": code, "state": req.state, "businessID": req.business_id})
        if via_browser:
            return url
        self.core.spawn(self._drive_redirect(req, url))
        return None

    async def _fail(self, req: SigningRequest, code: ReturnCode, *, via_browser: bool = False) -> str | None:
        """End a pending request with an error outcome, delivered as the real system would."""
        if req.status is not RequestStatus.PENDING:
            return None
        req.outcome = code
        log.info("sandbox request %s/%s -> %s", req.client_id, req.business_id, code.value)
        if not req.anonymous:
            req.status = RequestStatus.SIGNED  # outcome decided, callback on its way
            self.core.spawn(self._deliver_callback(req))
            return None
        req.status, req.closed_ms = RequestStatus.CLOSED, self.clock.now_ms()
        url = _with_query(
            req.redirect_uri, {"error_code": code.value, "state": req.state, "businessID": req.business_id}
        )
        if via_browser:
            return url
        if self.options.anonymous_error_redirect:
            self.core.spawn(self._drive_redirect(req, url))
        return None

    # ================================================================== outbound

    def callback_body(self, req: SigningRequest) -> dict[str, Any]:
        """The callback envelope for ``req``'s outcome, encrypted with the client's current CEK."""
        sealer = self.core.sealer(req.client_id)
        content: dict[str, Any] = (
            dict(req.result) if req.outcome is ReturnCode.SUCCESS and req.result else req.echo()
        )
        if self.options.nest_callback_content:
            content = {"content": content}
        assert req.outcome is not None
        return callback_envelope(req.outcome, sealer.encrypt(content), sealer.secret_key)

    async def _deliver_callback(self, req: SigningRequest) -> None:
        try:
            body = self.callback_body(req)
        except SandboxError:
            req.status, req.closed_ms = RequestStatus.CALLBACK_FAILED, self.clock.now_ms()
            return

        def count() -> None:
            req.callback_attempts += 1

        ok = await self.courier.deliver("POST", req.redirect_uri, body, count)
        req.status = RequestStatus.CALLBACK_SENT if ok else RequestStatus.CALLBACK_FAILED
        req.closed_ms = self.clock.now_ms()
        if not ok:
            log.info(
                "sandbox request %s/%s: callback failed after %d attempts",
                req.client_id,
                req.business_id,
                req.callback_attempts,
            )

    async def _drive_redirect(self, req: SigningRequest, url: str) -> None:
        """Do what the user's browser would: GET ``redirectURI?code|error_code&state&businessID``."""

        def count() -> None:
            req.callback_attempts += 1

        await self.courier.deliver("GET", url, None, count)

    # ================================================================== results and acks

    async def _get_result(
        self, service: RegisteredService, payload: dict[str, Any], kind: str
    ) -> dict[str, Any]:
        check_fields(F.GET_RESULT, payload)
        token, _user = self.core.token_user(service, payload)
        bid = token.business_id
        if bid is None or (payload.get("businessID") and payload["businessID"] != bid):
            raise SandboxError(ReturnCode.NOT_FOUND, "no anonymous signing result for this token")
        req = self._requests.get((service.client_id, bid))
        if req is None or req.kind != kind or not req.anonymous:
            raise SandboxError(ReturnCode.NOT_FOUND)
        if req.status is RequestStatus.CLOSED and req.outcome is not None:
            raise SandboxError(req.outcome, content={"businessID": bid})
        if req.status is not RequestStatus.SIGNED or req.result is None:
            raise SandboxError(ReturnCode.NOT_FOUND, "the result was already fetched")
        if self.clock.now_ms() >= req.expires_ms:
            req.status, req.outcome, req.closed_ms = (
                RequestStatus.CLOSED,
                ReturnCode.SIGNING_TIMEOUT,
                self.clock.now_ms(),
            )
            raise SandboxError(ReturnCode.SIGNING_TIMEOUT, content={"businessID": bid})
        req.status, req.closed_ms = RequestStatus.RESULT_FETCHED, self.clock.now_ms()
        return dict(req.result)

    async def _ack(self, service: RegisteredService, payload: dict[str, Any]) -> None:
        check_fields(F.ACK_RESULT, payload)
        req = self._requests.get((service.client_id, payload["businessID"]))
        result = payload["signingResult"]
        if req is None or req.status not in _ACKABLE or req.closed_ms is None:
            raise SandboxError(ReturnCode.ACK_FAILED, content={"businessID": payload["businessID"]})
        if self.clock.now_ms() > req.closed_ms + self.options.ack_window_ms:
            raise SandboxError(ReturnCode.ACK_FAILED, "the acknowledgement window has passed")
        if result in ("SR001", "SR002") and (
            req.outcome is not ReturnCode.SUCCESS or req.status is RequestStatus.CALLBACK_FAILED
        ):
            raise SandboxError(ReturnCode.ACK_FAILED, "no signature was delivered for this request")
        req.status, req.ack = RequestStatus.ACKED, result

    # ================================================================== phone and hooks

    def user_by_hkid(self, hkid: str) -> SandboxUser:
        """The sandbox user with this HKID, else a 404 hook error."""
        return self.core.user_by_hkid(hkid)

    def pending_for(self, hkid: str) -> list[SigningRequest | BulkRequest]:
        """What waits on this user's phone (their account requests, anonymous ones for their HKICHash),
        single and bulk."""
        user = self.user_by_hkid(hkid)
        now = self.clock.now_ms()
        single: list[SigningRequest | BulkRequest] = [
            r
            for r in self._requests.values()
            if r.status is RequestStatus.PENDING
            and r.expires_ms > now
            and (r.user_id == user.user_id if not r.anonymous else r.hkic_hash == user.hkic_hash)
        ]
        return single + list(self.bulk.pending_for(user, now))

    def _pending_by_code(self, hkid: str, sign_code: str) -> tuple[SigningRequest | BulkRequest, SandboxUser]:
        """The one request waiting for this user with this code. Codes are 4 digits, so two can share one;
        a real signer tells them apart on the phone, a script cannot, so the sandbox refuses to guess."""
        user = self.user_by_hkid(hkid)
        matches = [req for req in self.pending_for(hkid) if req.sign_code == sign_code]
        if not matches:
            raise HookError(404, "no_pending_request", "nothing with this sign code waits for this user")
        if len(matches) > 1:
            raise HookError(
                409,
                "ambiguous_sign_code",
                f"{len(matches)} requests waiting for this user show sign code {sign_code}; "
                "approve or reject one by its businessID (POST /sandbox/v1/requests/{businessID}/approve)",
            )
        return matches[0], user

    async def phone_approve(self, hkid: str, sign_code: str) -> SigningRequest | BulkRequest:
        req, user = self._pending_by_code(hkid, sign_code)
        if isinstance(req, BulkRequest):
            await self.bulk.approve(req, user)
        else:
            await self._approve(req, user)
        return req

    async def phone_reject(self, hkid: str, sign_code: str) -> SigningRequest | BulkRequest:
        req, _ = self._pending_by_code(hkid, sign_code)
        if isinstance(req, BulkRequest):
            await self.bulk.fail(req, ReturnCode.BULK_REJECTED)
        else:
            await self._fail(req, ReturnCode.SIGNING_REJECTED)
        return req

    def find_request(self, business_id: str, client_id: str | None = None) -> SigningRequest | BulkRequest:
        matches: list[SigningRequest | BulkRequest] = [
            r
            for (cid, bid), r in self._requests.items()
            if bid == business_id and (client_id is None or cid == client_id)
        ]
        matches += self.bulk.find(business_id, client_id)
        if not matches:
            raise HookError(404, "unknown_request", "no such businessID")
        if len(matches) > 1:
            raise HookError(409, "ambiguous_request", "several services use this businessID; give client_id")
        return matches[0]

    async def hook(
        self,
        business_id: str,
        action: str,
        client_id: str | None = None,
        hkid: str | None = None,
        ids: list[str] | None = None,
    ) -> SigningRequest | BulkRequest:
        """Test hooks: ``approve`` (as the request's user or ``hkid``), ``reject``, ``cancel``, ``timeout``,
        ``fail``; for bulk requests also ``decline`` (``ids``: documents the user will refuse)."""
        req = self.find_request(business_id, client_id)
        if isinstance(req, BulkRequest):
            return await self.bulk.hook(req, action, hkid, ids)
        if req.status is not RequestStatus.PENDING:
            raise HookError(409, "not_pending", f"the request is {req.status.value}")
        if action == "approve":
            if hkid is not None:
                user = self.user_by_hkid(hkid)
            elif req.user_id is not None:
                user = self.users.get(req.user_id)
            else:
                raise HookError(422, "hkid_needed", "no sandbox user has this HKICHash; give hkid")
            await self._approve(req, user)
        elif action in _HOOK_CODES:
            await self._fail(req, _HOOK_CODES[action])
        else:
            raise HookError(404, "unknown_action", f"unknown action {action}")
        return req

    def request_ticket(self, ticket_id: str) -> SigningRequest | None:
        key = self._tickets.get(ticket_id)
        return self._requests.get(key) if key else None


_HOOK_CODES = {
    "reject": ReturnCode.SIGNING_REJECTED,
    "cancel": ReturnCode.SIGNING_CANCELLED,
    "timeout": ReturnCode.SIGNING_TIMEOUT,
    "fail": ReturnCode.SIGNING_FAILED,
}

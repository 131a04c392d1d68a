"""Bulk signing in the simulated iAM Smart (protocol doc §8, §11 bulk line, §12.4).

``/bdss/initiateRequest`` (logged in), ``/bdss/anonymous/initiateRequest``, ``/bdss/getBSQCToken``,
``/bdss/ackResult``, ``/bdss/enquireStatus`` and ``/bdss/cancelRequest``. The desk receives the sandbox's
:class:`~signing.sandbox.core.SandboxCore`: its gate checks the headers, nonce and CEK and decrypts the body;
its courier delivers; its users sign. Statuses::

    SS001 pending --approve--> SS002 signing / delivering --> SS003 completed
    SS001 --cancel (hook or cancelRequest)--> SS004 ; SS001 --reject/fail/timeout/D71004/D71005--> SS005

Simulator choices are listed in docs/iamsmart-sandbox.md ("Bulk signing").
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding

from signing.iamsmart import fields as F
from signing.iamsmart.bulk import BulkStatus
from signing.iamsmart.codes import ReturnCode
from signing.iamsmart.protocol import b64decode_strict, bulk_sign_code, callback_envelope, check_fields

from .bulk_results import BulkDoc, pages, result_parts, sign_documents, signable
from .core import SandboxCore, check_stepup
from .errors import HookError, SandboxError
from .registry import RegisteredService
from .users import SandboxUser

__all__ = ["BulkDesk", "BulkRequest"]

log = logging.getLogger("iamsign.sandbox")

_HOOK_CODES = {
    "reject": ReturnCode.BULK_REJECTED,
    "cancel": ReturnCode.BULK_CANCELLED,
    "timeout": ReturnCode.BULK_TIMEOUT,
    "fail": ReturnCode.BULK_FAILED,
}


@dataclass
class BulkRequest:
    """One bulk request and where it stands."""

    client_id: str
    business_id: str
    anonymous: bool
    documents: list[BulkDoc] = field(repr=False)
    state: str | None
    redirect_uri: str | None
    callback_result_uri: str
    source: str | None
    service_name: str
    request_name: str
    department: str | None
    hkic_hash: str | None = field(repr=False)
    user_id: str | None
    open_id: str | None = field(repr=False)
    sign_code: str
    ticket_id: str
    bsqc_token: str = field(repr=False)
    max_callback_sigs: int
    created_ms: int
    expires_ms: int
    status: BulkStatus = BulkStatus.PENDING
    outcome: ReturnCode | None = None
    declined: set[str] = field(default_factory=set)
    """Ids the user will refuse (test hook)."""
    failed_ids: list[str] = field(default_factory=list)
    total_callbacks: int = 0
    sent_ids: set[str] = field(default_factory=set, repr=False)
    pages_ok: list[bool] = field(default_factory=list)
    all_sent: bool = False
    closed_ms: int | None = None
    ack: str | None = None
    doc_acks: dict[str, str] = field(default_factory=dict, repr=False)
    callback_attempts: int = 0
    token_callback: str | None = None
    """``sent`` / ``failed`` once the BSQC-token callback to ``redirectURI`` was tried."""

    @property
    def ids(self) -> Iterator[str]:
        return (d.id for d in self.documents)

    def public(self) -> dict[str, Any]:
        """The JSON the sandbox's phone and hooks show (no HKICHash, no BSQC token, no signatures)."""
        return {
            "business_id": self.business_id,
            "client_id": self.client_id,
            "kind": "bulk",
            "anonymous": self.anonymous,
            "status": self.status.value,
            "outcome": self.outcome.value if self.outcome else None,
            "sign_code": self.sign_code,
            "ticket_id": self.ticket_id,
            "service_name": self.service_name,
            "document_name": self.request_name,
            "request_name": self.request_name,
            "department": self.department,
            "documents": len(self.documents),
            "declined": sorted(self.declined),
            "fail_sign_num": len(self.failed_ids),
            "max_callback_sigs": self.max_callback_sigs,
            "total_callbacks": self.total_callbacks,
            "pages_delivered": sum(self.pages_ok),
            "created_ms": self.created_ms,
            "expires_ms": self.expires_ms,
            "ack": self.ack,
            "document_acks": len(self.doc_acks),
            "callback_attempts": self.callback_attempts,
            "token_callback": self.token_callback,
        }


def _doc(item: dict[str, Any]) -> BulkDoc:
    if "hashCode" in item:
        return BulkDoc(
            item["id"],
            item["documentName"],
            "hash",
            b64decode_strict(item["hashCode"]),
            item["hashCode"],
            item.get("sigAlgo") or "SHA256withRSA",
        )
    return BulkDoc(
        item["id"], item["documentName"], "pdf", b64decode_strict(item["docDigest"]), item["docDigest"]
    )


class BulkDesk:
    """The bulk APIs and bulk requests of one sandbox."""

    def __init__(self, core: SandboxCore) -> None:
        self.core = core
        self._requests: dict[tuple[str, str], BulkRequest] = {}

    def routes(self) -> dict[str, tuple[bool, Callable[[RegisteredService, Any], Awaitable[Any]]]]:
        return {
            "/bdss/initiateRequest": (False, lambda s, p: self._initiate(s, p, anonymous=False)),
            "/bdss/anonymous/initiateRequest": (False, lambda s, p: self._initiate(s, p, anonymous=True)),
            "/bdss/getBSQCToken": (False, self._get_bsqc_token),
            "/bdss/ackResult": (False, self._ack),
            "/bdss/enquireStatus": (False, self._enquire),
            "/bdss/cancelRequest": (False, self._cancel),
        }

    def find(self, business_id: str, client_id: str | None = None) -> list[BulkRequest]:
        return [
            r
            for (cid, bid), r in self._requests.items()
            if bid == business_id and (client_id is None or cid == client_id)
        ]

    def pending_for(self, user: SandboxUser, now_ms: int) -> Iterator[BulkRequest]:
        """Pending requests on this user's phone: their logged-in ones, anonymous ones for their HKICHash."""
        for r in self._requests.values():
            if (
                r.status is BulkStatus.PENDING
                and r.expires_ms > now_ms
                and (r.user_id == user.user_id if not r.anonymous else r.hkic_hash == user.hkic_hash)
            ):
                yield r

    async def sweep(self, now_ms: int) -> None:
        """D71003 for pending requests past their 18 minutes."""
        for req in list(self._requests.values()):
            if req.status is BulkStatus.PENDING and now_ms >= req.expires_ms:
                await self.fail(req, ReturnCode.BULK_TIMEOUT)

    # ================================================================== API

    async def _initiate(
        self, service: RegisteredService, payload: dict[str, Any], *, anonymous: bool
    ) -> dict[str, Any]:
        core = self.core
        F.check_bulk_request(payload, anonymous=anonymous)
        for name in ("redirectURI", "callbackResultURI"):
            if payload.get(name) and not service.allows_redirect(payload[name]):
                raise SandboxError(ReturnCode.REDIRECT_URI_NOT_REGISTERED, f"{name} is not registered")
        check_stepup(payload)
        docs = [_doc(item) for item in payload["documents"]]
        if not core.options.bulk_decline_unsignable:
            bad = next((d for d in docs if not signable(d)), None)
            if bad is not None:
                raise SandboxError(ReturnCode.PARAMETER_INVALID, f"document {bad.id} cannot be signed")
        user: SandboxUser | None
        open_id: str | None = None
        source = payload.get("source") or None
        by_qr = not source.startswith("App_") if source else True
        if anonymous:
            hkic = payload.get("HKICHash")
            user = core.users.by_hkic_hash(hkic) if hkic else None
        else:
            token, user = core.token_user(service, payload)
            if "eidapi_bulksign" not in token.scopes:
                raise SandboxError(ReturnCode.INSUFFICIENT_SCOPE)
            open_id, by_qr = token.open_id, token.by_qr
        business_id = payload["businessID"]
        if core.business_id_taken(service.client_id, business_id):
            raise SandboxError(ReturnCode.DUPLICATE_BUSINESS_ID, content={"businessID": business_id})
        if not anonymous and user is not None and not user.can_sign:
            raise SandboxError(ReturnCode.BULK_USER_NOT_ALLOWED, content={"businessID": business_id})
        digests = [d.data for d in docs]
        sign_code = (
            bulk_sign_code(digests, open_id=open_id)
            if open_id is not None
            else bulk_sign_code(digests, hkic_hash=payload.get("HKICHash"), client_id=service.client_id)
        )
        now = core.clock.now_ms()
        req = BulkRequest(
            client_id=service.client_id,
            business_id=business_id,
            anonymous=anonymous,
            documents=docs,
            state=payload.get("state") or None,
            redirect_uri=payload.get("redirectURI") or None,
            callback_result_uri=payload["callbackResultURI"],
            source=source,
            service_name=payload["serviceName"],
            request_name=payload["requestName"],
            department=payload.get("department") or None,
            hkic_hash=payload.get("HKICHash") or None,
            user_id=user.user_id if user else None,
            open_id=open_id,
            sign_code=sign_code,
            ticket_id=uuid.uuid4().hex,
            bsqc_token=secrets.token_hex(16),
            max_callback_sigs=F.max_callback_sigs(payload),
            created_ms=now,
            expires_ms=now + core.options.bulk_ticket_lifetime_ms,
        )
        self._requests[(service.client_id, business_id)] = req
        core.claim_business_id(service.client_id, business_id)
        log.info(
            "sandbox bulk request %s/%s %s%d documents pending",
            req.client_id,
            business_id,
            "anonymous " if anonymous else "",
            len(docs),
        )
        if req.redirect_uri:
            core.spawn(self._send_token(req))
        if not anonymous and user is not None and req.hkic_hash and req.hkic_hash != user.hkic_hash:
            core.spawn(self.fail(req, ReturnCode.BULK_HKIC_MISMATCH))
        elif user is not None:
            self._schedule_auto(req, user)
        return {"authByQR": by_qr, "ticketID": req.ticket_id}

    async def _get_bsqc_token(self, service: RegisteredService, payload: dict[str, Any]) -> dict[str, Any]:
        check_fields(F.GET_BSQC_TOKEN, payload)
        _token, user = self.core.token_user(service, payload)
        wanted = payload.get("businessID")
        mine = [
            r
            for (cid, bid), r in self._requests.items()
            if cid == service.client_id and r.user_id == user.user_id and (not wanted or bid == wanted)
        ]
        if not mine:
            raise SandboxError(ReturnCode.BULK_TOKEN_NOT_FOUND)
        req = max(mine, key=lambda r: r.created_ms)
        return {"businessID": req.business_id, "BSQCToken": req.bsqc_token}

    def _lookup(self, service: RegisteredService, payload: dict[str, Any]) -> BulkRequest | None:
        """The request named by ``{BSQCToken, businessID, openID}``; None if there is no such businessID."""
        check_fields(F.BULK_ENQUIRY, payload)
        req = self._requests.get((service.client_id, payload["businessID"]))
        if req is None:
            return None
        if not hmac.compare_digest(req.bsqc_token.encode(), payload["BSQCToken"].encode()):
            raise SandboxError(ReturnCode.BULK_TOKEN_NOT_FOUND)
        open_id = payload.get("openID") or None
        if not req.anonymous and open_id is None:
            raise SandboxError(ReturnCode.PARAMETER_MISSING, "openID missing")
        if open_id is not None:
            expected = req.open_id
            if expected is None and req.user_id is not None:
                expected = self.core.users.open_id(self.core.users.get(req.user_id), req.client_id)
            if expected is None or not hmac.compare_digest(expected.encode(), open_id.encode()):
                raise SandboxError(ReturnCode.OPENID_NOT_FOUND)
        return req

    async def _enquire(self, service: RegisteredService, payload: dict[str, Any]) -> dict[str, Any]:
        req = self._lookup(service, payload)
        status = req.status if req is not None else BulkStatus.NO_RECORD
        return {"businessID": payload["businessID"], "status": status.value}

    async def _cancel(self, service: RegisteredService, payload: dict[str, Any]) -> None:
        req = self._lookup(service, payload)
        if req is None:
            raise SandboxError(ReturnCode.BULK_TOKEN_NOT_FOUND, content={"businessID": payload["businessID"]})
        if req.status is not BulkStatus.PENDING:
            raise SandboxError(ReturnCode.BULK_NOT_PENDING, content={"businessID": req.business_id})
        await self.fail(req, ReturnCode.BULK_CANCELLED, callback=self.core.options.bulk_cancel_callback)

    async def _ack(self, service: RegisteredService, payload: dict[str, Any]) -> None:
        whole, per_doc = F.parse_bulk_ack(payload)
        req = self._requests.get((service.client_id, payload["businessID"]))

        def refuse(detail: str) -> SandboxError:
            return SandboxError(
                ReturnCode.BULK_ACK_FAILED, detail, content={"businessID": payload["businessID"]}
            )

        if req is None or req.outcome is None or req.ack is not None:
            raise refuse("unknown, still pending or already acknowledged")
        if (
            req.closed_ms is not None
            and self.core.clock.now_ms() > req.closed_ms + self.core.options.ack_window_ms
        ):
            raise refuse("the acknowledgement window has passed")
        delivered = req.outcome is ReturnCode.SUCCESS and (req.closed_ms is None or any(req.pages_ok))
        if whole is not None:
            if req.closed_ms is None and not req.all_sent:
                raise refuse("the results are still being delivered")
            if whole in ("SR001", "SR002") and not delivered:
                raise refuse("no signature was delivered for this request")
            req.ack = whole
            return
        ids = set(req.ids)
        for doc_id, result in per_doc.items():
            if doc_id not in ids or doc_id in req.doc_acks:
                raise refuse(f"document {doc_id} is unknown or already acknowledged")
            if result in ("SR001", "SR002") and doc_id not in req.sent_ids:
                raise refuse(f"no signature was delivered for document {doc_id}")
            if result == "SR003" and req.closed_ms is None and doc_id not in req.sent_ids:
                raise refuse("the results are still being delivered")
        req.doc_acks.update(per_doc)
        if len(req.doc_acks) == len(req.documents):
            req.ack = "per-document"

    # ================================================================== the user's decision

    def _schedule_auto(self, req: BulkRequest, user: SandboxUser) -> None:
        self.core.schedule_auto(
            user,
            lambda: req.status is BulkStatus.PENDING,
            lambda u: self.approve(req, u),
            lambda: self.fail(req, ReturnCode.BULK_REJECTED),
        )

    async def approve(self, req: BulkRequest, user: SandboxUser) -> None:
        """One approval signs every document (in the background; the callbacks follow)."""
        if req.status is not BulkStatus.PENDING:
            raise HookError(409, "not_pending", f"the request is {req.status.value}")
        if not req.anonymous and req.user_id != user.user_id:
            raise HookError(409, "wrong_user", "this request belongs to another user")
        if req.anonymous and req.hkic_hash is not None and req.hkic_hash != user.hkic_hash:
            await self.fail(req, ReturnCode.BULK_HKIC_MISMATCH)
            return
        if not user.can_sign:
            await self.fail(req, ReturnCode.BULK_USER_NOT_ALLOWED)
            return
        req.user_id, req.status = user.user_id, BulkStatus.IN_PROGRESS
        log.info("sandbox bulk request %s/%s approved", req.client_id, req.business_id)
        self.core.spawn(self._sign_and_deliver(req, user))

    async def fail(self, req: BulkRequest, code: ReturnCode, *, callback: bool = True) -> None:
        """End a pending request with a D71xxx outcome: only ``sigMetada`` goes to ``callbackResultURI``."""
        if req.status is BulkStatus.PENDING:
            self._close_failed(req, code, callback=callback)

    def _close_failed(self, req: BulkRequest, code: ReturnCode, *, callback: bool = True) -> None:
        req.outcome = code
        req.status = BulkStatus.CANCELLED if code is ReturnCode.BULK_CANCELLED else BulkStatus.FAILED
        req.failed_ids = list(req.ids)
        log.info("sandbox bulk request %s/%s -> %s", req.client_id, req.business_id, code.value)
        if callback:
            self.core.spawn(self._deliver_failure(req))
        else:
            req.closed_ms = self.core.clock.now_ms()

    async def hook(
        self, req: BulkRequest, action: str, hkid: str | None, ids: list[str] | None
    ) -> BulkRequest:
        """The sandbox's ``/v1/requests/{businessID}/{action}`` hooks for a bulk request."""
        if req.status is not BulkStatus.PENDING:
            raise HookError(409, "not_pending", f"the request is {req.status.value}")
        if action == "approve":
            if hkid is not None:
                user = self.core.user_by_hkid(hkid)
            elif req.user_id is not None:
                user = self.core.users.get(req.user_id)
            else:
                raise HookError(422, "hkid_needed", "no sandbox user has this HKICHash; give hkid")
            await self.approve(req, user)
        elif action == "decline":
            unknown = set(ids or ()) - set(req.ids)
            if not ids or unknown:
                raise HookError(422, "unknown_documents", "give the ids of documents of this request")
            req.declined.update(ids)
        elif action in _HOOK_CODES:
            await self.fail(req, _HOOK_CODES[action])
        else:
            raise HookError(404, "unknown_action", f"unknown action {action}")
        return req

    # ================================================================== outbound

    def _count(self, req: BulkRequest) -> Callable[[], None]:
        def count() -> None:
            req.callback_attempts += 1

        return count

    async def _send_token(self, req: BulkRequest) -> None:
        """The BSQC token as a normal encrypted callback to ``redirectURI`` (§12.4)."""
        assert req.redirect_uri is not None
        content: dict[str, Any] = {"businessID": req.business_id, "BSQCToken": req.bsqc_token}
        if req.state is not None:
            content["state"] = req.state
        if self.core.options.nest_callback_content:
            content = {"content": content}
        try:
            sealer = self.core.sealer(req.client_id)
        except SandboxError:
            req.token_callback = "failed"
            return
        body = callback_envelope(ReturnCode.SUCCESS, sealer.encrypt(content), sealer.secret_key)
        ok = await self.core.courier.deliver("POST", req.redirect_uri, body)
        req.token_callback = "sent" if ok else "failed"

    def _metadata(self, req: BulkRequest, seq: int, *, cert: str | None) -> dict[str, Any]:
        content: dict[str, Any] = {"businessID": req.business_id}
        if req.state is not None:
            content["state"] = req.state
        if cert is not None:
            content["cert"] = cert
        content.update(
            totalCallbacks=max(1, req.total_callbacks),
            callbackSeq=seq,
            totalSignNum=len(req.documents),
            failSignNum=len(req.failed_ids),
        )
        return content

    async def _post(
        self,
        req: BulkRequest,
        code: ReturnCode,
        content: dict[str, Any],
        signatures: list[dict[str, Any]] | None,
    ) -> bool | None:
        """One multipart result callback; None when it cannot be built (no KEK)."""
        try:
            sealer = self.core.sealer(req.client_id)
        except SandboxError:
            return None
        raw = await asyncio.to_thread(result_parts, code, content, signatures, self.core.options, sealer)
        return await self.core.courier.deliver(
            "POST", req.callback_result_uri, None, self._count(req), raw=raw
        )

    async def _deliver_failure(self, req: BulkRequest) -> None:
        assert req.outcome is not None
        await self._post(req, req.outcome, self._metadata(req, 1, cert=None), None)
        req.all_sent, req.closed_ms = True, self.core.clock.now_ms()

    async def _sign_and_deliver(self, req: BulkRequest, user: SandboxUser) -> None:
        core = self.core
        signer = core.users.signer(user, req.client_id)
        try:
            batch = await sign_documents(
                req.documents,
                signer,
                declined=frozenset(req.declined),
                signing_time=core.clock.now(),
                options=core.options,
                timestamper=core.pdf_timestamper(),
            )
        except Exception as exc:  # noqa: BLE001 - the request fails with D71002, the sandbox goes on
            log.error(
                "sandbox bulk request %s/%s: signing failed: %s",
                req.client_id,
                req.business_id,
                exc.__class__.__name__,
            )
            batch = None
        if batch is None or not batch.signatures:
            self._close_failed(req, ReturnCode.BULK_FAILED)
            return
        req.outcome, req.failed_ids = ReturnCode.SUCCESS, batch.declined
        cert = base64.b64encode(signer.certificate.public_bytes(Encoding.DER)).decode()
        chunks = pages(batch.signatures, req.max_callback_sigs)
        req.total_callbacks = len(chunks)
        for seq, chunk in enumerate(chunks, 1):
            req.sent_ids.update(item["id"] for item in chunk)
            req.all_sent = seq == len(chunks)
            ok = await self._post(req, ReturnCode.SUCCESS, self._metadata(req, seq, cert=cert), chunk)
            req.pages_ok.append(bool(ok))
        req.status, req.closed_ms = BulkStatus.COMPLETED, core.clock.now_ms()
        log.info(
            "sandbox bulk request %s/%s: %d signed, %d declined, %d callbacks",
            req.client_id,
            req.business_id,
            len(batch.signatures),
            len(batch.declined),
            len(chunks),
        )

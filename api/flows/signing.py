"""Signing requests from creation to a signed revision: the state machine behind ``/v1/signing-requests``.

Everything needed to resume lives in the database and storage. Each step claims its transition with a
compare-and-set UPDATE (``WHERE phase = <expected>``), so a duplicate callback, a second replica or a
restarted process can never embed twice:

    prepared --initiate--> sent --result--> result_received --claim--> embedding --> signed (completed)
                             \\--failure code / refusal / expiry / cancel--> done (rejected|cancelled|expired|failed)
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hmac
import json
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypedDict

import httpx
from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from api.flows.audit import AuditHead, append_audit
from api.flows.certificate_status import certificate_standing, cms_signer_certificate
from api.flows.crashpoints import crashpoint
from api.flows.enrolment_state import REENROLMENT_CODE, mark_reenrolment_required
from api.flows.iamsmart_gateway import IamSmartSetup, issued_by_trusted_issuer
from api.flows.idempotency import check_same_request, wait_until_sent
from api.flows.identity import ResolvedSigner, SignerSpec, resolve_signer
from api.flows.retry import retry_transient
from api.flows.signer_sessions import forget_expired_sessions
from api.flows.status_changes import StatusChanges
from api.settings import Settings
from api.store.db import autocommit, in_thread
from api.store.files import DocumentStore
from api.store.models import AuditEntry, Document, Organisation, SigningRequest, utcnow
from api.telemetry.logs import bind_signing_request
from api.worker.leases import heartbeat
from api.worker.webhooks import enqueue_webhook
from signing import cms as cms_checks
from signing import pades
from signing.errors import FinishInProgressError, PreparedStateError, SigningError
from signing.iamsmart.client import IamSmartClient, SigningResult, Token
from signing.iamsmart.codes import ReturnCode, message_for
from signing.iamsmart.errors import IamSmartApiError, IamSmartError
from signing.inspect import inspect_pdf
from signing.model import Appearance, PadesLevel, PreparedSignature, RemoteMode, SignOptions
from signing.summary import read_signature_summary

__all__ = ["CERTIFICATE_CHANGED", "TERMINAL_STATUSES", "SigningFlow", "names_something"]

log = logging.getLogger("iamsign.flow")

CERTIFICATE_CHANGED = "signer_certificate_changed"
"""Error code of a hash-mode request whose signer's certificate was renewed since the known one."""
TERMINAL_STATUSES = frozenset({"completed", "rejected", "cancelled", "expired", "failed"})
_STATUS_FOR_CODE = {
    ReturnCode.SIGNING_CANCELLED.value: "cancelled",
    ReturnCode.SIGNING_REJECTED.value: "rejected",
    ReturnCode.SIGNING_TIMEOUT.value: "expired",
}
_SIGNING_OUTCOMES = frozenset(
    c.value
    for c in (
        ReturnCode.SIGNING_CANCELLED,
        ReturnCode.SIGNING_REJECTED,
        ReturnCode.SIGNING_FAILED,
        ReturnCode.SIGNING_TIMEOUT,
        ReturnCode.USER_NOT_ALLOWED,
        ReturnCode.HKIC_MISMATCH,
    )
)
"""Codes that end a signing request when iAM Smart itself answers them to our own (signed) call."""
_SENT_WAIT_S = 5.0
"""How long an answer that arrives before its request was recorded as sent waits for that record."""
_MAX_NOTES = 20
"""Hints and refusals recorded in one request's audit; more are only logged (anyone may send them)."""


def _code_text(code: Any) -> str:
    return code.value if isinstance(code, ReturnCode) else str(code)


class _Initiation(TypedDict):
    """The arguments every iAM Smart signing initiation takes."""

    business_id: str
    service_name: str
    document_name: str
    department: str | None
    state: str


def _to_be_signed(record: PreparedSignature) -> bytes:
    """The bytes the signer's key signs in hash mode (phase 1 always records them there)."""
    if record.to_be_signed is None:
        raise ValueError("a hash-mode signature was prepared without the bytes to be signed")
    return record.to_be_signed


class SigningFlow:
    """Creates signing requests, takes iAM Smart's answers, embeds, and moves requests to their end."""

    def __init__(
        self,
        settings: Settings,
        engine,
        store: DocumentStore,
        setup: IamSmartSetup,
        client: IamSmartClient,
        secret: bytes,
        clock=utcnow,
        queue=None,
        changes: StatusChanges | None = None,
    ) -> None:
        self.settings, self.engine, self.store, self.setup = settings, engine, store, setup
        self.client, self.secret, self.clock = client, secret, clock
        self.queue = queue
        """The task queue that runs embedding; without one, embedding runs in this event loop."""
        self.prepared_dir = store.root / "prepared"
        self.prepared_dir.mkdir(parents=True, exist_ok=True)
        self._tasks: set[asyncio.Task] = set()
        self.changes = changes or StatusChanges()
        """Told of each request that reached a terminal status (it wakes ``GET ...?wait=``)."""
        self.on_ended: Callable[[str], Awaitable[None]] | None = None
        """Told the id of each request that reached a terminal status (envelopes start their next step)."""

    # ------------------------------------------------------------------ helpers

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def _prepared_path(self, req: SigningRequest) -> Path:
        return self.prepared_dir / req.prepared_name

    def _signed_path(self, req: SigningRequest) -> Path:
        return self.store.tmp_dir / f"{req.id}.signed.pdf"

    @property
    def callback_url(self) -> str:
        return f"{self.settings.base_url}/v1/iamsmart/callback"

    @property
    def redirect_url(self) -> str:
        return f"{self.settings.base_url}/v1/iamsmart/redirect"

    def signer_url(self, req: SigningRequest) -> str:
        return f"{self.settings.base_url}/sign/{req.id}"

    def qr_url(self, req: SigningRequest) -> str | None:
        if req.flow != "anonymous" or not req.ticket_id:
            return None
        # no state here: iAM Smart echoes the one given in initiateRequest, which stays between us and it
        return self.client.qr_url(self.redirect_url, ("eidapi_sign",), ticket_id=req.ticket_id)

    def _claim(
        self,
        session: Session,
        req_id: str,
        expect_phase: str | tuple[str, ...],
        *,
        expect_updated_at: dt.datetime | None = None,
        **values: Any,
    ) -> AuditHead | None:
        """Move a pending request out of ``expect_phase``: for the one caller that did it, the request's
        audit head as the claim left it (the row is held until the commit, so the caller's next entry
        can follow it without reading the trail); ``None`` for everyone else."""
        phases = (expect_phase,) if isinstance(expect_phase, str) else expect_phase
        values["updated_at"] = self.clock()
        conditions = [
            col(SigningRequest.id) == req_id,
            col(SigningRequest.status) == "pending",
            col(SigningRequest.phase).in_(phases),
        ]
        if expect_updated_at is not None:
            conditions.append(col(SigningRequest.updated_at) == expect_updated_at)
        row = session.exec(
            update(SigningRequest)
            .where(*conditions)
            .values(**values)
            .returning(col(SigningRequest.audit_count), col(SigningRequest.audit_head_hash))
        ).first()
        return None if row is None else AuditHead(row[0], row[1])

    def _ended(self, req_id: str) -> None:
        self.changes.notify(req_id)
        if self.on_ended is not None:
            self.spawn(self.on_ended(req_id))

    def spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)

    async def drain(self) -> None:
        """Wait for background work started by this process (tests and shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # ------------------------------------------------------------------ create

    @staticmethod
    def _by_key(session: Session, organisation_id: str, key: str) -> SigningRequest | None:
        return session.exec(
            select(SigningRequest).where(
                SigningRequest.organisation_id == organisation_id, SigningRequest.idempotency_key == key
            )
        ).first()

    def _known_certificate(self, session: Session, organisation_id: str, signer_key: str) -> bytes | None:
        """The certificate this signer's last completed hash-mode signature for this organisation carried
        (for PAdES baseline); another organisation's requests are its own business, never used here.

        Forgotten once a later request of theirs came back signed by another one (a renewed certificate).
        """
        rows = session.exec(
            select(SigningRequest)
            .where(
                SigningRequest.organisation_id == organisation_id,
                SigningRequest.signer_key == signer_key,
                SigningRequest.mode == "hash",
                (SigningRequest.status == "completed") | (SigningRequest.error_code == CERTIFICATE_CHANGED),
            )
            .order_by(col(SigningRequest.updated_at).desc())
            .limit(1)
        ).all()
        for row in rows:
            if row.status != "completed":
                return None  # the stale certificate is forgotten
            cert = json.loads(row.result_json or "{}").get("cert")
            if cert:
                return base64.b64decode(cert)
        return None

    async def create(
        self,
        session: Session,
        org: Organisation,
        document: Document,
        signer: SignerSpec,
        *,
        mode: str,
        level: str,
        reason: str | None,
        location: str | None,
        appearance: dict | None,
        webhook_url: str | None,
        idempotency_key: str | None = None,
        signer_certificate_der: bytes | None = None,
        request_hash: str | None = None,
    ) -> SigningRequest:
        """Prepare the document, ask iAM Smart for a signature, return the stored request.

        With an ``idempotency_key`` already used by this organisation, the earlier request is returned
        once it has been sent (422 if ``request_hash``, the body's, differs from the earlier one's).
        ``signer_certificate_der`` (hash mode): the signer's enrolled certificate, for PAdES baseline.
        """

        def look_up() -> tuple[SigningRequest | None, ResolvedSigner | None, bytes | None]:
            if idempotency_key and (earlier := self._by_key(session, org.id, idempotency_key)) is not None:
                return earlier, None, None
            who = resolve_signer(self.secret, signer, session, self.clock(), org.id)
            known = None
            if mode == "hash":
                known = signer_certificate_der or self._known_certificate(session, org.id, who.signer_key)
            session.commit()  # end the read transaction: no pooled connection is held while the PDF is prepared
            return None, who, known

        earlier, who, known_cert = await in_thread(look_up)  # database round trips: off the loop
        if earlier is not None:
            check_same_request(earlier, request_hash)
            return await wait_until_sent(session, earlier)
        assert who is not None
        flow, signer_key, hkic, token = who.flow, who.signer_key, who.hkic_hash, who.token
        options = SignOptions(
            mode=RemoteMode(mode),
            level=PadesLevel(level),
            reason=reason,
            location=location,
            appearance=Appearance.from_json(appearance) if appearance else None,
            signer_certificate_der=known_cert,
        )
        req_id = f"sr_{uuid.uuid4().hex}"
        bind_signing_request(req_id)  # every later line of this call is about it
        prepared_name = f"{req_id}.pdf"
        record: PreparedSignature = await asyncio.to_thread(
            _run,
            pades.prepare_for_signing(
                self.store.path_for(document.sha256), self.prepared_dir / prepared_name, options
            ),
        )
        now = self.clock()
        req = SigningRequest(
            id=req_id,
            organisation_id=org.id,
            document_id=document.id,
            business_id=uuid.uuid4().hex,
            state=secrets.token_urlsafe(24),
            status="pending",
            phase="prepared",
            flow=flow,
            mode=mode,
            level=level,
            signer_key=signer_key,
            reason=reason,
            location=location,
            appearance_json=json.dumps(appearance) if appearance else None,
            webhook_url=webhook_url,
            record_json=record.dumps(),
            prepared_name=prepared_name,
            idempotency_key=idempotency_key,
            request_hash=request_hash if idempotency_key else None,
            expires_at=now + dt.timedelta(seconds=self.settings.request_ttl_s),
            created_at=now,
            updated_at=now,
        )

        def insert() -> SigningRequest | None:
            """Store the request and its first audit entry; the earlier request if the key lost a race."""
            try:
                session.add(req)
                append_audit(  # flushes the request, its row already carrying the head
                    session,
                    req.id,
                    new_request=req,
                    actor=f"org:{org.id}",
                    event="created",
                    status="pending",
                    sha_before=document.sha256,
                    detail=f"{flow} {mode} signing at {level}; signature profile {record.profile.value}",
                )
                session.commit()
            except IntegrityError:  # the same Idempotency-Key won a moment ago in another request
                session.rollback()
                (self.prepared_dir / prepared_name).unlink(missing_ok=True)
                earlier = self._by_key(session, org.id, idempotency_key) if idempotency_key else None
                if earlier is None:
                    raise
                return earlier
            return None

        if (earlier := await in_thread(insert)) is not None:
            check_same_request(earlier, request_hash)
            return await wait_until_sent(session, earlier)
        crashpoint("prepared")
        try:
            initiated = await self._initiate(req, record, hkic, token, document.filename)
        except IamSmartError as exc:
            code = _code_text(getattr(exc, "code", "D20000"))
            message = f"iAM Smart refused the request: {exc}"

            def refused() -> bool:
                ended = self._end(session, req, "failed", code, message, actor="iamsmart")
                session.refresh(req)
                return ended

            if await in_thread(refused):
                self._after_end(req, ack=False)
            return req

        def sent() -> None:
            if head := self._claim(
                session,
                req.id,
                "prepared",
                phase="sent",
                sign_code=initiated.sign_code,
                ticket_id=initiated.ticket_id,
            ):
                append_audit(
                    session,
                    req.id,
                    after=head,
                    actor="iamsmart",
                    event="sent",
                    status="pending",
                    iamsmart_code=ReturnCode.SUCCESS.value,
                    detail=f"businessID {req.business_id}",
                )
            else:  # moved on meanwhile (iAM Smart's answer may have recorded the sending): keep its codes
                self._keep_sending_codes(session, req.id, initiated.sign_code, initiated.ticket_id)
            session.refresh(req)  # in the same transaction: the row as committed, without a new one
            session.commit()

        await in_thread(sent)
        return req

    @staticmethod
    def _keep_sending_codes(
        session: Session, req_id: str, sign_code: str | None, ticket_id: str | None
    ) -> None:
        """Store the sign code and ticket iAM Smart gave create on a request that left ``prepared`` before
        create could record the sending: they are the sending's, whoever recorded it. Only create sets them,
        so a request without them has none yet; its phase, status and ``updated_at`` stay as they are."""
        session.exec(
            update(SigningRequest)
            .where(col(SigningRequest.id) == req_id, col(SigningRequest.sign_code).is_(None))
            .values(sign_code=sign_code, ticket_id=ticket_id)
        )

    async def _initiate(
        self,
        req: SigningRequest,
        record: PreparedSignature,
        hkic: str | None,
        token: Token | None,
        filename: str,
    ):
        common = _Initiation(
            business_id=req.business_id,
            service_name=self.settings.service_name,
            document_name=filename[:255],
            department=self.settings.department,
            state=req.state or req.business_id,  # rows from before migration 0006 echo the businessID
        )
        # resolve_signer gives the anonymous flow an HKICHash and the account flow a token; hash mode
        # always prepares the bytes to be signed
        if req.flow == "anonymous":
            if hkic is None:
                raise ValueError("anonymous signing needs the signer's HKICHash")
            if record.mode is RemoteMode.PDF:
                return await self.client.anonymous_sign_pdf(
                    doc_digest=record.document_digest,
                    hkic_hash=hkic,
                    redirect_uri=self.redirect_url,
                    **common,
                )
            return await self.client.anonymous_sign_hash(
                hash_code=_to_be_signed(record),
                hkic_hash=hkic,
                redirect_uri=self.redirect_url,
                sig_algo=record.sig_algo,
                **common,
            )
        if token is None:
            raise ValueError("account signing needs the signer's iAM Smart token")
        if record.mode is RemoteMode.PDF:
            return await self.client.account_sign_pdf(
                token=token, doc_digest=record.document_digest, redirect_uri=self.callback_url, **common
            )
        return await self.client.account_sign_hash(
            token=token,
            hash_code=_to_be_signed(record),
            redirect_uri=self.callback_url,
            sig_algo=record.sig_algo,
            **common,
        )

    # ------------------------------------------------------------------ answers from iAM Smart

    def find_by_business_id(self, session: Session, business_id: str | None) -> SigningRequest | None:
        if not names_something(business_id):
            return None
        return session.exec(select(SigningRequest).where(SigningRequest.business_id == business_id)).first()

    def find_by_state(self, session: Session, state: str | None) -> SigningRequest | None:
        if not names_something(state):
            return None
        return session.exec(select(SigningRequest).where(SigningRequest.state == state)).first()

    def _note(
        self,
        session: Session,
        req: SigningRequest,
        actor: str,
        event: str,
        detail: str,
        *,
        iamsmart_code: str | None = None,
    ) -> bool:
        """Record a hint or a refusal in the audit; the request stays pending. True if it was recorded.

        Anyone may send what leads here, so at most ``_MAX_NOTES`` are kept per request (the rest is
        logged). The no-op UPDATE takes the row's lock, so a real transition never races the entry.
        """
        locked = session.exec(
            update(SigningRequest)
            .where(
                col(SigningRequest.id) == req.id,
                col(SigningRequest.status) == "pending",
                col(SigningRequest.phase).in_(("prepared", "sent")),
            )
            .values(phase=SigningRequest.phase)
        )
        if locked.rowcount != 1:
            session.rollback()
            return False
        kept = session.exec(
            select(func.count())
            .select_from(AuditEntry)
            .where(
                col(AuditEntry.request_id) == req.id, col(AuditEntry.event).in_(("hint", "result_refused"))
            )
        ).one()
        if kept >= _MAX_NOTES:
            session.rollback()
            log.warning("%s for %s not recorded (too many): %s", event, req.id, detail)
            return False
        append_audit(
            session,
            req.id,
            actor=actor,
            event=event,
            status="pending",
            iamsmart_code=iamsmart_code,
            detail=detail,
        )
        session.commit()
        return True

    async def take_result(
        self,
        business_id: str | None,
        code: Any,
        content: dict[str, Any],
        actor: str,
        *,
        authenticated: bool = False,
    ) -> str:
        """Record what iAM Smart answered for ``business_id`` (once); start embedding. Returns an outcome word.

        A success is checked (signature, certificate, digest) before it counts. A failure code ends the
        request only when ``authenticated`` (iAM Smart answered our own signed call); arriving by callback
        or browser, which anyone can send, it is recorded as a ``hint`` and the request stays pending.
        The checks and the database work run in a worker thread; what follows a commit, on the event loop.
        """
        deadline = time.monotonic() + _SENT_WAIT_S
        while True:
            outcome, req_id, then = await in_thread(
                self._record_result,
                business_id,
                _code_text(code),
                content,
                actor,
                authenticated,
                time.monotonic() < deadline,
            )
            if outcome != "early":
                break
            await asyncio.sleep(0.02)
        if req_id is not None:
            bind_signing_request(req_id)
        for step in then:
            step()
        if outcome == "accepted" and req_id is not None:
            crashpoint("result_received")
            self.schedule_embed(req_id)
        return outcome

    def _record_result(
        self,
        business_id: str | None,
        code: str,
        content: dict[str, Any],
        actor: str,
        authenticated: bool,
        wait_for_sent: bool = False,
    ) -> tuple[str, str | None, list[Callable[[], None]]]:
        """:meth:`take_result`'s checks and transaction (any thread): the outcome, the request's id and
        what the event loop does next (tell who waits for an end, acknowledge).

        ``early`` (nothing done) while ``wait_for_sent`` and the request is still ``prepared``: iAM Smart
        answered before create recorded that it was sent, which create does in a thread (or on another
        replica); the answer is taken once it has, so the trail reads created, sent, then the result. After
        the wait a verified answer is taken from ``prepared`` too, and records the sending itself."""
        then: list[Callable[[], None]] = []

        def end(
            req: SigningRequest, status: str, code: str, message: str, by: str, ack_result: SigningResult
        ) -> None:
            if self._end(session, req, status, code, message, actor=by):
                then.append(lambda: self._after_end(req, ack=req.flow == "account", ack_result=ack_result))

        with self.session() as session:
            req = self.find_by_business_id(session, business_id)
            if req is None:
                log.warning("answer for an unknown businessID refused")
                return "unknown", None, then
            bind_signing_request(req.id)
            if req.status != "pending":
                late = "duplicate" if req.phase in ("result_received", "embedding", "done") else "late"
                return late, req.id, then
            if wait_for_sent and req.phase == "prepared":
                return "early", req.id, then
            echoed = content.get("state")
            if echoed is not None and not _same_secret(echoed, req.state):
                self._note(session, req, actor, "result_refused", "the state echoed is not this request's")
                return "refused", req.id, then
            if code != ReturnCode.SUCCESS.value:
                if not authenticated:
                    self._note(
                        session,
                        req,
                        actor,
                        "hint",
                        f"reported {code} ({message_for(code)}); not authenticated, so the request stays "
                        "pending until iAM Smart's signed answer or expiry",
                        iamsmart_code=code if code.startswith("D") else None,
                    )
                    return "hint", req.id, then
                status = _STATUS_FOR_CODE.get(code, "failed")
                end(req, status, code, message_for(code), actor, SigningResult.NOT_RECEIVED)
                return status, req.id, then
            result = _result_fields(req.mode, content)
            if result is None:
                self._note(session, req, actor, "result_refused", "the answer has no signature")
                return "refused", req.id, then
            try:
                self._verify_result(req, result)
            except _CertificateChanged as exc:
                # iAM Smart's genuine signature, by a certificate other than the one we built for: renewed.
                # An enrolled signer is sent back to enrolment; otherwise the stale certificate is forgotten.
                enrolled = mark_reenrolment_required(
                    session, req.organisation_id, req.signer_key, exc.message
                )
                code, message = (
                    (
                        REENROLMENT_CODE,
                        (
                            "the signer signed with another certificate than the enrolled one (renewed?); "
                            "enrol the signer again (POST /v1/signers) and create a new request"
                        ),
                    )
                    if enrolled
                    else (CERTIFICATE_CHANGED, exc.message)
                )
                end(req, "failed", code, message, "service", SigningResult.REJECTED)
                return "failed", req.id, then
            except (SigningError, _Refused, ValueError, KeyError, TypeError) as exc:
                # Anyone can encrypt to our public KEK: an answer that does not verify changes nothing.
                log.warning("result for %s refused: %s", req.id, getattr(exc, "message", exc))
                noted = self._note(session, req, actor, "result_refused", str(getattr(exc, "message", exc)))
                if (
                    noted and req.flow == "account"
                ):  # as bounded as the notes: forged answers cost us no flood
                    refused = req
                    then.append(
                        lambda: self.spawn(
                            self._ack(refused.business_id, SigningResult.REJECTED, refused.flow)
                        )
                    )
                return "refused", req.id, then
            taken = self._take_answer(session, req, result, code)
            if taken is None:
                return "duplicate", req.id, then
            unsent, head = taken
            if unsent:
                head = AuditHead.of(
                    append_audit(
                        session,
                        req.id,
                        after=head,
                        actor="iamsmart",
                        event="sent",
                        status="pending",
                        detail=f"businessID {req.business_id} (recorded when iAM Smart's answer came first)",
                    )
                )
            append_audit(
                session,
                req.id,
                after=head,
                actor=actor,
                event="result_received",
                status="pending",
                iamsmart_code=code,
            )
            session.commit()
        return "accepted", req.id, then

    def _take_answer(
        self, session: Session, req: SigningRequest, result: dict, code: str
    ) -> tuple[bool, AuditHead] | None:
        """Claim a verified answer: ``(True, head)`` if it took the request from ``prepared`` (the sending
        is not recorded yet, so the caller records it), ``(False, head)`` from ``sent``, None if someone
        else moved it first; ``head`` is the audit head the claim returned.

        Still ``prepared`` after the wait: create has not recorded the sending (a slow database, or its
        process died after iAM Smart took the request). The answer verified, so iAM Smart had it. Which
        phase it left is the claim's to say, not ``req``'s (read before the checks, when create may have
        recorded the sending since)."""
        values: dict[str, Any] = {
            "phase": "result_received",
            "result_json": json.dumps(result),
            "iamsmart_code": code,
        }
        if req.phase == "prepared" and (head := self._claim(session, req.id, "prepared", **values)):
            return True, head
        head = self._claim(session, req.id, "sent", **values)
        return None if head is None else (False, head)

    def schedule_embed(self, req_id: str) -> None:
        if self.queue is not None:
            self.queue.enqueue_embed(req_id)
        else:
            self.spawn(self.embed(req_id))

    async def take_redirect(
        self, business_id: str | None, state: str | None, code: str | None, error_code: str | None
    ) -> tuple[str, str | None]:
        """Anonymous flow: the signer's browser came back. Returns the outcome word and the request id.

        The browser must bring the request's ``state`` (a secret only iAM Smart and we know). Its
        ``error_code`` is only a hint; a ``code`` is exchanged (getToken) and the result fetched
        (getResult), whose answer, coming from iAM Smart, can end the request.
        """
        req = await in_thread(self._redirected_request, business_id, state)  # off the event loop
        if req is None or req.flow != "anonymous":
            return "unknown", None
        if not _same_secret(state, req.state):
            log.warning("redirect for %s refused: state missing or wrong", req.id)
            return "refused", None
        req_id, mode, business_id = req.id, req.mode, req.business_id
        actor = "browser:redirect"
        if error_code:
            return await self.take_result(business_id, error_code, {}, actor=actor), req_id
        if not code:
            return "unknown", req_id
        try:
            token = await self.client.get_token(code)
        except IamSmartError as exc:
            code_text = _code_text(getattr(exc, "code", "D20000"))
            return await self.take_result(business_id, code_text, {}, actor=actor), req_id
        actor = "iamsmart:getResult"
        try:
            if mode == "pdf":
                pdf = await self.client.anonymous_pdf_result(token)
                content = {
                    "pdfSignature": base64.b64encode(pdf.cms_der).decode(),
                    "docDigest": pdf.doc_digest,
                }
            else:
                sig = await self.client.anonymous_hash_result(token)
                content = {
                    "signature": base64.b64encode(sig.signature).decode(),
                    "cert": base64.b64encode(sig.cert_der).decode(),
                    "hashCode": sig.hash_code,
                }
        except IamSmartApiError as exc:
            code_text = _code_text(exc.code)
            about = exc.content.get("businessID") if isinstance(exc.content, dict) else None
            # iAM Smart's own answer about this very request ends it; anything else is only a hint
            authentic = code_text in _SIGNING_OUTCOMES and about == business_id
            outcome = await self.take_result(business_id, code_text, {}, actor=actor, authenticated=authentic)
            return outcome, req_id
        except IamSmartError as exc:
            code_text = _code_text(getattr(exc, "code", "D20000"))
            return await self.take_result(business_id, code_text, {}, actor=actor), req_id
        return await self.take_result(business_id, ReturnCode.SUCCESS, content, actor=actor), req_id

    def _redirected_request(self, business_id: str | None, state: str | None) -> SigningRequest | None:
        with Session(autocommit(self.engine), expire_on_commit=False) as session:  # one read
            if business_id:
                return self.find_by_business_id(session, business_id)
            # the doc has iAM Smart add businessID; the state alone names the request as well
            return self.find_by_state(session, state)

    # ------------------------------------------------------------------ embedding

    async def embed(self, req_id: str) -> None:
        """Check and embed a received result; exactly one caller wins the claim."""
        bind_signing_request(req_id)
        with self.session() as session:
            if not self._claim(session, req_id, "result_received", phase="embedding"):
                return
            session.commit()
        await self._embed_claimed(req_id)

    async def _embed_claimed(self, req_id: str) -> None:
        with self.session() as session:
            req = session.get_one(SigningRequest, req_id)  # claimed just now: it exists
            source = session.get_one(Document, req.document_id)
            record = PreparedSignature.loads(req.record_json)
            if req.result_json is None:
                raise ValueError(f"{req_id} was claimed for embedding without a stored result")
            result = json.loads(req.result_json)
            signed_path = self._signed_path(req)
            revocation_note = None
            try:
                if not signed_path.exists():  # a previous attempt may have finished before a crash
                    # verified against the digest and the issuers when it was accepted; the core checks again
                    cert_der = base64.b64decode(result["cert"]) if req.mode == "hash" else None
                    revocation_note = await self._check_not_revoked(req, record, result)
                    crashpoint("embedding")
                    async with self._heartbeat(req.id):
                        await retry_transient(
                            lambda: asyncio.to_thread(
                                _run, self._finish(record, req, result, cert_der, signed_path)
                            ),
                            self.settings.augment_attempts,
                            self.settings.augment_retry_delay_s,
                            f"finishing {req.id}",
                        )
                info = await asyncio.to_thread(inspect_pdf, signed_path)
                achieved = await asyncio.to_thread(read_signature_summary, signed_path, record.field_name)
                stored = await asyncio.to_thread(self.store.adopt, signed_path)
            except FinishInProgressError:
                return  # another worker holds the prepared file: it will record the result
            except PreparedStateError:
                if not signed_path.exists():
                    raise
                return  # finished by another worker a moment ago
            except (SigningError, _Refused) as exc:
                code = getattr(exc, "code", "refused")
                self._finish_unsuccessfully(
                    session,
                    req,
                    "failed",
                    code,
                    getattr(exc, "message", str(exc)),
                    actor="service",
                    ack=True,
                    ack_result=SigningResult.REJECTED,
                    expect_phase="embedding",
                )
                return
            signed = Document(
                organisation_id=req.organisation_id,
                sha256=stored.sha256,
                size=stored.size,
                filename=signed_name(source.filename),
                pages=info.pages,
                signature_count=info.signature_count,
            )
            session.add(signed)
            session.flush()
            head = self._claim(
                session,
                req.id,
                "embedding",
                phase="done",
                status="completed",
                signed_document_id=signed.id,
                signature_json=json.dumps(achieved.to_json()),
            )
            if head is None:
                session.rollback()  # someone else finished (or ended) it; our copy is not needed
                signed_path.unlink(missing_ok=True)
                return
            append_audit(
                session,
                req.id,
                after=head,
                actor="service",
                event="completed",
                status="completed",
                sha_before=source.sha256,
                sha_after=stored.sha256,
                iamsmart_code=req.iamsmart_code,
                detail=f"signed: {achieved.label} (requested {req.level}); signature {json.dumps(achieved.to_json())}"
                + (f"; certificate status {revocation_note}" if revocation_note else ""),
            )
            self._enqueue_terminal_webhook(
                session, req, "completed", signed_document_id=signed.id, signature=achieved.to_json()
            )
            crashpoint("before_completion_commit")
            session.commit()
        signed_path.unlink(missing_ok=True)
        self._ended(req.id)
        await self._ack(req.business_id, SigningResult.ACCEPTED, req.flow)

    async def _check_not_revoked(self, req: SigningRequest, record: PreparedSignature, result: dict) -> str:
        """Ask OCSP (then the CRL) about the signer's certificate before it is embedded, at every level.

        Raises :class:`_Refused` ``certificate_revoked``, or ``revocation_status_unknown`` when no
        responder or CRL gave a usable answer; returns where the good status came from.
        """
        if req.mode == "hash":
            cert_der: bytes | None = base64.b64decode(result["cert"])
        else:
            cert_der = cms_signer_certificate(base64.b64decode(result["pdfSignature"]))
        if cert_der is None:
            raise _Refused("certificate_missing", "the signature carries no signer certificate")
        standing = await certificate_standing(cert_der, self.setup.cert_issuers, self.clock())
        if standing.code is not None:
            raise _Refused(standing.code, standing.detail)
        return standing.detail

    def _heartbeat(self, req_id: str):
        """Keep a claimed request fresh while it is embedded, so the sweep never hands it on meanwhile."""
        return heartbeat(
            self.session,
            lambda: (
                update(SigningRequest)
                .where(col(SigningRequest.id) == req_id, col(SigningRequest.phase) == "embedding")
                .values(updated_at=self.clock())
            ),
            self.settings.stale_after_s,
        )

    def _verify_result(self, req: SigningRequest, result: dict) -> bytes:
        """Check a result against what was sent (the echo, protocol doc §13), the stored digest and the
        iAM Smart-Cert issuers; return the cert DER. :class:`_CertificateChanged` when a genuine signature
        comes from a certificate other than the known one the signed attributes name."""
        record = PreparedSignature.loads(req.record_json)
        sent = record.to_be_signed if req.mode == "hash" else record.document_digest
        echo_name = "hashCode" if req.mode == "hash" else "docDigest"
        if not _echo_matches(result.get(echo_name), sent):
            raise _Refused("echo_mismatch", f"the {echo_name} echoed is not the one sent for this request")
        if req.mode == "hash":
            cert_der = base64.b64decode(result["cert"])
            cert = cms_checks.load_certificate(cert_der)
            if record.signed_attrs_der is None:
                raise ValueError("a hash-mode signature was prepared without its signed attributes")
            cms_checks.verify_raw_signature(
                base64.b64decode(result["signature"]), record.signed_attrs_der, cert
            )
            if issued_by_trusted_issuer(cert_der, self.setup.cert_issuers) is None:
                raise _Refused(
                    "untrusted_certificate",
                    "the signer's certificate was not issued by an iAM Smart-Cert issuer in the trust list",
                )
            try:
                cms_checks.check_certificate_matches(record.signer_certificate_der, cert)
            except SigningError as exc:
                raise _CertificateChanged(
                    CERTIFICATE_CHANGED,
                    "the signer's certificate has changed (renewed) since their last signature; the old "
                    "one is forgotten: create a new signing request",
                ) from exc
        else:
            checked = cms_checks.check_external_cms(
                base64.b64decode(result["pdfSignature"]),
                record.document_digest,
                record.md_algorithm,
                record.profile,
            )
            cert_der = checked.signer_cert.dump()
        if issued_by_trusted_issuer(cert_der, self.setup.cert_issuers) is None:
            raise _Refused(
                "untrusted_certificate",
                "the signer's certificate was not issued by an iAM Smart-Cert issuer in the trust list",
            )
        return cert_der

    async def _finish(self, record, req, result, cert_der, out: Path):
        prepared = self._prepared_path(req)

        def stage(name: str) -> None:
            crashpoint(f"finish:{name}")

        if req.mode == "pdf":
            return await pades.finish_with_cms(
                record,
                prepared,
                out,
                base64.b64decode(result["pdfSignature"]),
                self.setup.signing_services,
                on_stage=stage,
            )
        return await pades.finish_with_raw_signature(
            record,
            prepared,
            out,
            base64.b64decode(result["signature"]),
            cert_der,
            self.setup.signing_services,
            on_stage=stage,
        )

    # ------------------------------------------------------------------ endings

    def _finish_unsuccessfully(
        self,
        session: Session,
        req: SigningRequest,
        status: str,
        code: str,
        message: str,
        *,
        actor: str,
        ack: bool,
        ack_result: SigningResult = SigningResult.NOT_RECEIVED,
        expect_phase: str | tuple[str, ...] = ("prepared", "sent"),
    ) -> bool:
        if not self._end(session, req, status, code, message, actor=actor, expect_phase=expect_phase):
            return False
        self._after_end(req, ack=ack, ack_result=ack_result)
        return True

    def _end(
        self,
        session: Session,
        req: SigningRequest,
        status: str,
        code: str,
        message: str,
        *,
        actor: str,
        expect_phase: str | tuple[str, ...] = ("prepared", "sent"),
    ) -> bool:
        """The database half of ending a request unsuccessfully (any thread): claim, audit, webhook, commit."""
        head = self._claim(
            session,
            req.id,
            expect_phase,
            phase="done",
            status=status,
            error_code=code,
            error_message=message[:2000],
            iamsmart_code=code if code.startswith("D") else None,
        )
        if head is None:
            session.rollback()
            return False
        append_audit(
            session,
            req.id,
            after=head,
            actor=actor,
            event=status,
            status=status,
            iamsmart_code=code if code.startswith("D") else None,
            detail=message,
        )
        self._enqueue_terminal_webhook(session, req, status, error={"code": code, "message": message})
        session.commit()
        return True

    def _after_end(
        self, req: SigningRequest, *, ack: bool, ack_result: SigningResult = SigningResult.NOT_RECEIVED
    ) -> None:
        """The event loop's half of an unsuccessful end, once committed: the prepared file, who is told."""
        self._prepared_path(req).unlink(missing_ok=True)
        self._ended(req.id)
        if ack:
            self.spawn(self._ack(req.business_id, ack_result, req.flow))

    def _enqueue_terminal_webhook(self, session: Session, req: SigningRequest, status: str, **extra) -> None:
        if req.webhook_url:
            payload = {
                "event": f"signing_request.{status}",
                "signing_request_id": req.id,
                "status": status,
                "document_id": req.document_id,
                "requested_level": req.level,
                **extra,
            }
            enqueue_webhook(
                session, req.organisation_id, req.id, req.webhook_url, f"signing_request.{status}", payload
            )

    async def _ack(self, business_id: str, result: SigningResult, flow: str) -> None:
        if flow != "account":
            return  # the anonymous flow has no confirmed ack (protocol doc §6.5)
        try:
            await self.client.ack_result(business_id, result)
        except (IamSmartError, httpx.HTTPError) as exc:
            log.warning("ackResult %s for %s failed: %s", result.value, business_id, exc)

    async def cancel(self, session: Session, req: SigningRequest, actor: str) -> bool:
        bind_signing_request(req.id)
        return self._finish_unsuccessfully(
            session, req, "cancelled", "cancelled", "cancelled by the online service", actor=actor, ack=False
        )

    # ------------------------------------------------------------------ the sweeper

    async def sweep(self) -> None:
        """Expire overdue requests and resume work a crashed process left behind."""
        now = self.clock()
        with self.session() as session:
            forget_expired_sessions(session, now)
            overdue = session.exec(
                select(SigningRequest)
                .where(
                    SigningRequest.status == "pending",
                    col(SigningRequest.phase).in_(("prepared", "sent")),
                    SigningRequest.expires_at < now,
                )
                .limit(500)
            ).all()
            for req in overdue:
                self._finish_unsuccessfully(
                    session,
                    req,
                    "expired",
                    ReturnCode.SIGNING_TIMEOUT.value,
                    "no approval within the time iAM Smart allows",
                    actor="sweeper",
                    ack=req.flow == "account",
                )
            stale = now - dt.timedelta(seconds=self.settings.stale_after_s)
            orphans = session.exec(
                select(SigningRequest)
                .where(
                    SigningRequest.status == "pending",
                    SigningRequest.phase == "prepared",
                    SigningRequest.updated_at < stale,
                )
                .limit(100)
            ).all()
            for req in orphans:  # prepared, and create never recorded the sending (its process died)
                self._finish_unsuccessfully(
                    session,
                    req,
                    "failed",
                    "interrupted",
                    "the service stopped while sending the request to iAM Smart; create a new signing request",
                    actor="sweeper",
                    ack=False,
                    expect_phase="prepared",
                )
            stuck = session.exec(
                select(SigningRequest)
                .where(
                    SigningRequest.status == "pending",
                    col(SigningRequest.phase).in_(("result_received", "embedding")),
                    SigningRequest.updated_at < stale,
                )
                .limit(100)
            ).all()
        for req in stuck:
            if req.phase == "embedding":
                with self.session() as session:  # a stale embedding: its process died; hand it on
                    ok = self._claim(
                        session,
                        req.id,
                        "embedding",
                        expect_updated_at=req.updated_at,
                        phase="result_received",
                    )
                    session.commit()
                if not ok:
                    continue
            self.schedule_embed(req.id)


def _log_failure(task: asyncio.Task) -> None:
    """Background work that raised says so (the sweep redoes what it left undone)."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("background work failed: %r", exc, exc_info=exc)


def names_something(key: object) -> bool:
    """``key`` (a businessID or state an answer names) could be one we issued: non-empty text without NUL.

    Anyone can encrypt a callback to our KEK or open the redirect, so it may be any JSON value; a list or
    an object cannot be compared with a text column, nor can PostgreSQL compare text holding a NUL."""
    return isinstance(key, str) and bool(key) and "\x00" not in key


def _same_secret(given: object, expected: str | None) -> bool:
    """``given`` equals the stored secret (constant time); nothing matches a missing one."""
    if not isinstance(given, str) or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


class _Refused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class _CertificateChanged(_Refused):
    """A genuine signature by a certificate other than the known one (renewed): the request fails."""


def _echo_matches(echo: object, sent: bytes | None) -> bool:
    """The ``hashCode``/``docDigest`` a result echoes decodes to the bytes that were sent."""
    if not isinstance(echo, str) or sent is None:
        return False
    try:
        return hmac.compare_digest(base64.b64decode(echo, validate=True), sent)
    except ValueError:
        return False


def _result_fields(mode: str, content: dict[str, Any]) -> dict[str, Any] | None:
    if mode == "pdf":
        if not content.get("pdfSignature"):
            return None
        return {"pdfSignature": content["pdfSignature"], "docDigest": content.get("docDigest")}
    if content.get("signature") and content.get("cert"):
        return {
            "signature": content["signature"],
            "cert": content["cert"],
            "timestamp": content.get("timestamp"),
            "hashCode": content.get("hashCode"),
        }
    return None


def signed_name(filename: str) -> str:
    """The file name of a signed revision: ``letter.pdf`` -> ``letter.signed.pdf``."""
    stem = filename[:-4] if filename.lower().endswith(".pdf") else filename
    return f"{stem}.signed.pdf"[:255]


def _run(coro):
    """Run a signing-core coroutine in this worker thread's own event loop (pyHanko work off the main loop)."""
    return asyncio.run(coro)

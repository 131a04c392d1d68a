"""Envelopes: one document signed by several signers in order, each on the file the previous one produced.

An envelope is a list of steps, one signing request each. The first step's request starts at creation;
when a step's request completes (``SigningFlow.on_ended``, and the sweep as a backstop), the next step's
request starts on that step's signed revision. Earlier steps sign at B-T (B-B when that was asked) and the
last step at the envelope's level: its DSS covers every signature in the file (``signing.pades``), so the
final file carries the LTV data for all of them. A rejection, expiry, cancellation or failure of a step
ends the envelope with that step named; the steps after it are skipped.

Each transition is a compare-and-set UPDATE, so the hook in one process and the sweep in another never
start a step twice. Signers are kept sealed (AES-GCM under a key derived from the server secret) until
their step starts, then dropped: the HKID is never stored in clear.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from api.errors import ApiError
from api.flows.audit import append_audit
from api.flows.enrolment import EnrolmentFlow
from api.flows.identity import SignerSpec, resolve_signer
from api.flows.signing import TERMINAL_STATUSES, SigningFlow
from api.store.db import autocommit
from api.store.models import (
    Document,
    Envelope,
    EnvelopeStep,
    Organisation,
    SignerEnrolment,
    SigningRequest,
)
from api.worker.webhooks import enqueue_webhook
from signing.errors import SigningError

__all__ = ["MAX_SIGNERS", "EnvelopeFlow", "EnvelopeSigner", "step_level"]

log = logging.getLogger("iamsign.envelopes")

MAX_SIGNERS = 20
_ACTOR = "envelope"


@dataclass(frozen=True)
class EnvelopeSigner:
    """One signer as the online service names them: an HKID or an iAM Smart session, optionally with the
    id of their enrolment (``sg_...``: hash mode, PAdES baseline), and where their signature shows."""

    spec: SignerSpec
    signer_id: str | None = None
    appearance: dict | None = None

    def __repr__(self) -> str:  # no HKID or token in logs and tracebacks
        return f"EnvelopeSigner(signer_id={self.signer_id})"


def step_level(level: str, position: int, count: int) -> str:
    """The level a step signs at: the envelope's level for the last step, B-T (or B-B) before it."""
    if position == count - 1 or level in ("B-B", "B-T"):
        return level
    return "B-T"


def _seal_key(secret: bytes) -> bytes:
    return hmac.new(secret, b"iamsign envelope signer seal v1", hashlib.sha256).digest()


def seal(secret: bytes, spec: SignerSpec) -> str:
    """The signer, encrypted (AES-GCM, random nonce) under a key derived from the server secret."""
    plain = json.dumps({"hkid": spec.hkid, "session_id": spec.session_id})
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(_seal_key(secret)).encrypt(nonce, plain.encode(), b"envelope-signer")
    return base64.b64encode(nonce + sealed).decode()


def unseal(secret: bytes, value: str) -> SignerSpec:
    raw = base64.b64decode(value)
    plain = AESGCM(_seal_key(secret)).decrypt(raw[:12], raw[12:], b"envelope-signer")
    return SignerSpec(**json.loads(plain))


class EnvelopeFlow:
    """Creates envelopes, starts each step when the previous one completes, ends and cancels them."""

    def __init__(self, flow: SigningFlow, enrolment: EnrolmentFlow) -> None:
        self.flow, self.enrolment = flow, enrolment
        self.secret = flow.secret

    def session(self) -> Session:
        return self.flow.session()

    # ------------------------------------------------------------------ create

    def _checked_signer(self, session: Session, org: Organisation, signer: EnvelopeSigner) -> tuple[str, str]:
        """(kind, signer_key) of a signer, or 422 / 404 saying what is wrong with it."""
        who = resolve_signer(self.secret, signer.spec, session, self.flow.clock(), org.id)
        if signer.signer_id is None:
            return ("hkid" if who.flow == "anonymous" else "account"), who.signer_key
        row = session.get(SignerEnrolment, signer.signer_id)
        if row is None or row.organisation_id != org.id:
            raise ApiError(404, "not_found", f"no signer {signer.signer_id}")
        if row.signer_key != who.signer_key:
            raise ApiError(
                422,
                "signer_mismatch",
                f"the HKID or iAM Smart session given is not the one enrolled as {signer.signer_id}",
            )
        return "enrolled", who.signer_key

    async def create(
        self,
        session: Session,
        org: Organisation,
        document: Document,
        signers: list[EnvelopeSigner],
        *,
        level: str,
        reason: str | None,
        location: str | None,
        webhook_url: str | None,
    ) -> Envelope:
        """Store the envelope and its steps, start the first signer's request; return the envelope."""
        if not 1 <= len(signers) <= MAX_SIGNERS:
            raise ApiError(422, "invalid_signers", f"give 1 to {MAX_SIGNERS} signers, in signing order")
        checked = [self._checked_signer(session, org, s) for s in signers]
        for n, signer in enumerate(signers, start=1):
            page = (signer.appearance or {}).get("page", 1)
            if page != -1 and not 1 <= page <= document.pages:
                raise ApiError(
                    422,
                    "invalid_appearance",
                    f"signer {n}: page {page} does not exist: the document has {document.pages} page(s)",
                )
        now = self.flow.clock()
        env = Envelope(
            organisation_id=org.id,
            document_id=document.id,
            level=level,
            reason=reason,
            location=location,
            webhook_url=webhook_url,
            step_count=len(signers),
            created_at=now,
            updated_at=now,
        )
        session.add(env)
        session.flush()
        for position, (signer, (kind, signer_key)) in enumerate(zip(signers, checked, strict=True)):
            session.add(
                EnvelopeStep(
                    envelope_id=env.id,
                    position=position,
                    signer_kind=kind,
                    signer_key=signer_key,
                    signer_sealed=seal(self.secret, signer.spec),
                    appearance_json=json.dumps(signer.appearance) if signer.appearance else None,
                    document_id=document.id if position == 0 else None,
                    updated_at=now,
                )
            )
        session.commit()
        log.info("envelope %s created with %d signers", env.id, len(signers))
        await self.start_step(env.id, 0)
        session.refresh(env)
        return env

    # ------------------------------------------------------------------ steps

    def steps(self, session: Session, envelope_id: str) -> list[EnvelopeStep]:
        return list(
            session.exec(
                select(EnvelopeStep)
                .where(EnvelopeStep.envelope_id == envelope_id)
                .order_by(col(EnvelopeStep.position))
            )
        )

    def _step(self, session: Session, envelope_id: str, position: int) -> EnvelopeStep | None:
        return session.exec(
            select(EnvelopeStep).where(
                EnvelopeStep.envelope_id == envelope_id, EnvelopeStep.position == position
            )
        ).first()

    async def start_step(self, envelope_id: str, position: int) -> None:
        """Start the signing request of a waiting step (exactly one caller does)."""
        with self.session() as session:
            env = session.get(Envelope, envelope_id)
            step = self._step(session, envelope_id, position)
            if env is None or step is None or env.status != "pending" or step.status != "waiting":
                return
            claimed = session.exec(
                update(EnvelopeStep)
                .where(col(EnvelopeStep.id) == step.id, col(EnvelopeStep.status) == "waiting")
                .values(status="starting", updated_at=self.flow.clock())
            )
            if claimed.rowcount != 1:
                session.rollback()
                return
            session.commit()
            try:
                req = await self._create_request(session, env, step)
            except Exception as exc:  # a step that cannot start ends the envelope, never hangs
                if not isinstance(exc, (ApiError, SigningError, ValueError)):
                    log.exception("step %d of envelope %s could not start", position + 1, envelope_id)
                code = getattr(exc, "code", "failed")
                message = getattr(exc, "message", str(exc))
                self._record_step(session, step, "failed", None, code, message)
                self._end(session, env, step, "failed", code, message)
                session.commit()
                return
            session.exec(
                update(EnvelopeStep)
                .where(col(EnvelopeStep.id) == step.id)
                .values(status="pending", request_id=req.id, signer_sealed=None, updated_at=self.flow.clock())
            )
            session.commit()
            self._audit(
                req.id,
                event="envelope_step_started",
                status=req.status,
                detail=f"envelope {env.id}: step {position + 1} of {env.step_count}",
            )
            session.refresh(env)
            if env.status != "pending" and req.status == "pending":  # cancelled while it started
                await self.flow.cancel(session, session.get_one(SigningRequest, req.id), f"envelope:{env.id}")
                return
            session.refresh(req)
            if req.status in TERMINAL_STATUSES:  # ended before the step knew its request (refused at once)
                await self.step_ended(req.id)

    async def _create_request(self, session: Session, env: Envelope, step: EnvelopeStep) -> SigningRequest:
        org = session.get_one(Organisation, env.organisation_id)
        if step.document_id is None or step.signer_sealed is None:
            raise ValueError(f"step {step.position + 1} has no document or signer to start with")
        doc = session.get(Document, step.document_id)
        if doc is None or doc.deleted_at is not None:
            raise ApiError(410, "document_deleted", "the document to sign was deleted")
        spec = unseal(self.secret, step.signer_sealed)
        usable = await self.enrolment.usable_certificate(session, org, step.signer_key)
        if step.signer_kind == "enrolled" and usable is None:
            raise ApiError(409, "signer_reenrolment_required", "the enrolled signer must enrol again")
        return await self.flow.create(
            session,
            org,
            doc,
            spec,
            mode="hash" if usable else "pdf",
            level=step_level(env.level, step.position, env.step_count),
            reason=env.reason,
            location=env.location,
            appearance=json.loads(step.appearance_json) if step.appearance_json else None,
            webhook_url=None,  # the envelope sends its own webhooks, per step and at the end
            signer_certificate_der=usable.cert_der if usable else None,
        )

    async def step_ended(self, request_id: str) -> None:
        """A step's request reached a terminal status: record it, start the next step or end the envelope."""
        with Session(autocommit(self.flow.engine)) as probe:  # most requests are no envelope's: one read
            pending = select(EnvelopeStep.id).where(
                EnvelopeStep.request_id == request_id, EnvelopeStep.status == "pending"
            )
            if probe.exec(pending).first() is None:
                return
        with self.session() as session:
            step = session.exec(select(EnvelopeStep).where(EnvelopeStep.request_id == request_id)).first()
            if step is None or step.status != "pending":
                return
            req = session.get_one(SigningRequest, request_id)
            if req.status not in TERMINAL_STATUSES:
                return
            env = session.get_one(Envelope, step.envelope_id)
            if not self._record_step(
                session, step, req.status, req.signed_document_id, req.error_code, req.error_message
            ):
                return
            if env.status != "pending":  # cancelled meanwhile: only the step is recorded
                session.commit()
                return
            if req.status != "completed":
                code = req.error_code or req.status
                self._end(session, env, step, req.status, code, req.error_message or req.status)
                session.commit()
                return
            following = step.position + 1
            if following < env.step_count:
                session.exec(
                    update(EnvelopeStep)
                    .where(
                        col(EnvelopeStep.envelope_id) == env.id,
                        col(EnvelopeStep.position) == following,
                        col(EnvelopeStep.status) == "waiting",
                    )
                    .values(document_id=req.signed_document_id)
                )
                session.exec(
                    update(Envelope)
                    .where(col(Envelope.id) == env.id, col(Envelope.status) == "pending")
                    .values(current_step=following, updated_at=self.flow.clock())
                )
                session.commit()
                await self.start_step(env.id, following)
                return
            done = session.exec(
                update(Envelope)
                .where(col(Envelope.id) == env.id, col(Envelope.status) == "pending")
                .values(
                    status="completed",
                    signed_document_id=req.signed_document_id,
                    updated_at=self.flow.clock(),
                )
            )
            if done.rowcount != 1:
                session.rollback()
                return
            self._webhook(
                session,
                env,
                "envelope.completed",
                status="completed",
                signed_document_id=req.signed_document_id,
            )
            session.commit()
        self._audit(
            request_id,
            event="envelope_completed",
            status="completed",
            detail=f"envelope {env.id}: all {env.step_count} signers signed",
        )
        log.info("envelope %s completed", env.id)

    def _record_step(
        self,
        session: Session,
        step: EnvelopeStep,
        status: str,
        signed_document_id: str | None,
        code: str | None,
        message: str | None,
    ) -> bool:
        """Move a step to its end (once) and queue its webhook; the caller commits."""
        moved = session.exec(
            update(EnvelopeStep)
            .where(col(EnvelopeStep.id) == step.id, col(EnvelopeStep.status).in_(("pending", "starting")))
            .values(
                status=status,
                signed_document_id=signed_document_id,
                error_code=code if status != "completed" else None,
                error_message=(message or "")[:2000] if status != "completed" else None,
                signer_sealed=None,
                updated_at=self.flow.clock(),
            )
        )
        if moved.rowcount != 1:
            session.rollback()
            return False
        env = session.get_one(Envelope, step.envelope_id)
        extra: dict[str, Any] = {"step": step.position + 1, "signing_request_id": step.request_id}
        if status == "completed":
            extra["signed_document_id"] = signed_document_id
        else:
            extra["error"] = {"code": code, "message": message}
        self._webhook(session, env, f"envelope.step.{status}", status=env.status, **extra)
        return True

    def _end(
        self, session: Session, env: Envelope, step: EnvelopeStep | None, status: str, code: str, message: str
    ) -> bool:
        """End a pending envelope (rejected, expired, cancelled, failed) at ``step``; skip the steps after."""
        position = step.position if step is not None else env.current_step
        named = f"step {position + 1} of {env.step_count}: {message}"
        ended = session.exec(
            update(Envelope)
            .where(col(Envelope.id) == env.id, col(Envelope.status) == "pending")
            .values(
                status=status,
                ended_step=position,
                error_code=code,
                error_message=named[:2000],
                updated_at=self.flow.clock(),
            )
        )
        if ended.rowcount != 1:
            return False
        session.exec(
            update(EnvelopeStep)
            .where(col(EnvelopeStep.envelope_id) == env.id, col(EnvelopeStep.status) == "waiting")
            .values(status="skipped", signer_sealed=None, updated_at=self.flow.clock())
        )
        self._webhook(
            session,
            env,
            f"envelope.{status}",
            status=status,
            step=position + 1,
            error={"code": code, "message": named},
        )
        log.info("envelope %s %s at step %d", env.id, status, position + 1)
        return True

    # ------------------------------------------------------------------ cancel and sweep

    async def cancel(self, session: Session, env: Envelope, actor: str) -> bool:
        """Stop the remaining steps: the envelope and its current request are cancelled (False: not pending)."""
        if env.status != "pending":
            return False
        current = self._step(session, env.id, env.current_step)
        if not self._end(session, env, current, "cancelled", "cancelled", "cancelled by the online service"):
            session.rollback()
            return False
        session.commit()
        if current is not None and current.request_id:
            req = session.get_one(SigningRequest, current.request_id)
            if req.status == "pending":
                await self.flow.cancel(session, req, actor)
            await self.step_ended(req.id)  # the step's end recorded here, not only by the flow's hook
            self._audit(req.id, event="envelope_cancelled", status=req.status, detail=f"envelope {env.id}")
        session.refresh(env)
        return True

    async def sweep(self) -> None:
        """Advance what the hook missed (a process died between a step's end and the next step's start)."""
        stale = self.flow.clock() - dt.timedelta(seconds=self.flow.settings.stale_after_s)
        with self.session() as session:
            rows = session.exec(
                select(Envelope, EnvelopeStep)
                .join(EnvelopeStep, col(EnvelopeStep.envelope_id) == col(Envelope.id))
                .where(
                    Envelope.status == "pending",
                    col(EnvelopeStep.position) == col(Envelope.current_step),
                )
                .limit(200)
            ).all()
            work: list[tuple[str, str | None, int]] = []
            for env, step in rows:
                if step.status == "pending" and step.request_id:
                    req = session.get(SigningRequest, step.request_id)
                    if req is not None and req.status in TERMINAL_STATUSES:
                        work.append(("ended", step.request_id, step.position))
                elif step.status == "waiting":
                    work.append(("start", env.id, step.position))
                elif (
                    step.status == "starting"
                    and step.updated_at.replace(tzinfo=dt.UTC) < stale
                    and self._record_step(session, step, "failed", None, "interrupted", "the service stopped")
                ):
                    self._end(
                        session, env, step, "failed", "interrupted", "the service stopped while starting"
                    )
                    session.commit()
        for kind, key, position in work:
            try:
                if kind == "ended" and key:
                    await self.step_ended(key)
                elif key:
                    await self.start_step(key, position)
            except Exception:  # one envelope that cannot advance must not hold up the others
                log.exception("the sweep could not advance envelope work %s (step %d)", key, position + 1)

    # ------------------------------------------------------------------ webhooks and audit

    def _webhook(self, session: Session, env: Envelope, event: str, **extra: Any) -> None:
        if env.webhook_url:
            payload = {"event": event, "envelope_id": env.id, "document_id": env.document_id, **extra}
            enqueue_webhook(session, env.organisation_id, env.id, env.webhook_url, event, payload)

    def _audit(self, request_id: str, *, event: str, status: str, detail: str) -> None:
        """An entry in the step's request trail, while the request's own flow may be appending to it.

        The request's row is locked first, as every transition of the signing flow does (its UPDATE comes
        before its entry): the same order in both, so two appends queue instead of deadlocking.
        """
        for _ in range(5):
            with self.session() as session:
                try:
                    session.exec(
                        select(SigningRequest.id).where(SigningRequest.id == request_id).with_for_update()
                    ).first()
                    append_audit(session, request_id, actor=_ACTOR, event=event, status=status, detail=detail)
                    session.commit()
                    return
                except IntegrityError:
                    session.rollback()
        log.warning("could not add %s to the audit trail of %s", event, request_id)

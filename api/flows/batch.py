"""Batches: many documents, one signer, one approval (iAM Smart bulk signing, ``eidapi_bulksign``).

Creating a batch prepares every document (in worker processes) while the HKICHash is still in memory,
then sends one bulk request; nothing about the signer but a keyed hash is stored. iAM Smart's result
callbacks (multipart, paged) are checked signature by signature and stored per document; embedding runs
as a queued job. Every document has its own compare-and-set state, so each is embedded exactly once
whichever process, retry or duplicate callback gets there:

    item: pending --callback--> received --claim--> embedding --> completed | failed
          pending --(all callbacks seen, not in them)--> declined
    batch: pending --> signing --> completed | partially_completed ; or rejected | cancelled | expired | failed
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import logging
import shutil
import uuid
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import bindparam, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from api.flows.certificate_status import CertificateStanding, certificate_standing, cms_signer_certificate
from api.flows.cpu import chunks, finish_pdfs, prepare_pdfs, verify_hash_signatures, verify_pdf_signatures
from api.flows.crashpoints import crashpoint
from api.flows.enrolment_state import REENROLMENT_CODE, mark_reenrolment_required
from api.flows.idempotency import check_same_request, wait_until_sent
from api.flows.identity import SignerSpec, resolve_signer
from api.flows.retry import retry_transient_jobs
from api.flows.signing import names_something, signed_name
from api.store.models import Batch, BatchCallbackPage, BatchItem, Document, Organisation, new_id, utcnow
from api.telemetry.logs import bind_batch
from api.worker.leases import heartbeat
from api.worker.webhooks import enqueue_webhook
from signing.iamsmart.bulk import BulkDocument, BulkHashSignature, BulkPdfSignature
from signing.iamsmart.client import BulkStatus, IamSmartClient, SigningResult
from signing.iamsmart.codes import ReturnCode, message_for
from signing.iamsmart.errors import IamSmartError
from signing.model import PreparedSignature, RemoteMode

__all__ = ["BATCH_TERMINAL", "MAX_BATCH_DOCUMENTS", "BatchFlow"]

log = logging.getLogger("iamsign.batches")

MAX_BATCH_DOCUMENTS = 1000
BATCH_TERMINAL = frozenset({"completed", "partially_completed", "rejected", "cancelled", "expired", "failed"})
_ITEM_OPEN = ("pending", "received", "embedding")
_STATUS_FOR_CODE = {
    ReturnCode.BULK_CANCELLED.value: "cancelled",
    ReturnCode.BULK_REJECTED.value: "rejected",
    ReturnCode.BULK_TIMEOUT.value: "expired",
}


class BatchFlow:
    """Batch creation, iAM Smart's bulk answers, embedding and endings."""

    def __init__(self, ctx, client: IamSmartClient) -> None:
        self.ctx = ctx
        self.client = client
        self.settings = ctx.settings
        self.store = ctx.store

    def session(self) -> Session:
        return Session(self.ctx.engine, expire_on_commit=False)

    def _folder(self, batch_id: str):
        return self.store.root / "prepared" / batch_id

    def signer_url(self, batch: Batch) -> str:
        return f"{self.settings.base_url}/sign/{batch.id}"

    # ------------------------------------------------------------------ create

    async def create(
        self,
        session: Session,
        org: Organisation,
        documents: list[Document],
        signer: SignerSpec,
        *,
        level: str,
        reason: str | None,
        location: str | None,
        webhook_url: str | None,
        idempotency_key: str | None = None,
        mode: str = "pdf",
        signer_certificate_der: bytes | None = None,
        request_hash: str | None = None,
    ) -> Batch:
        """Prepare every document and send one bulk request; an ``idempotency_key`` used before returns that batch.

        The earlier batch is returned once it has been sent (422 if ``request_hash`` differs from its own).
        ``mode="hash"`` with the signer's enrolled certificate sends hash items (``hashCode``): every
        signature is PAdES baseline at ``level``. PDF mode sends ``docDigest`` items (PKCS#7).
        """
        if idempotency_key and (earlier := self._by_key(session, org.id, idempotency_key)) is not None:
            check_same_request(earlier, request_hash)
            return await wait_until_sent(session, earlier)
        who = resolve_signer(self.ctx.secret, signer, session, self.ctx.clock(), org.id)
        session.commit()  # end the read transaction: no pooled connection is held while documents are prepared
        now = self.ctx.clock()
        batch = Batch(
            organisation_id=org.id,
            business_id=uuid.uuid4().hex,
            idempotency_key=idempotency_key,
            request_hash=request_hash if idempotency_key else None,
            flow=who.flow,
            mode=mode,
            level=level,
            signer_key=who.signer_key,
            reason=reason,
            location=location,
            webhook_url=webhook_url,
            expires_at=now + dt.timedelta(seconds=self.settings.request_ttl_s),
            created_at=now,
            updated_at=now,
        )
        folder = self._folder(batch.id)
        folder.mkdir(parents=True, exist_ok=True)
        items = [BatchItem(batch_id=batch.id, document_id=d.id, position=i) for i, d in enumerate(documents)]
        options = {
            "level": level,
            "reason": reason,
            "location": location,
            "mode": mode,
            "signer_certificate_der": signer_certificate_der if mode == "hash" else None,
        }
        jobs = [
            (str(self.store.path_for(d.sha256)), str(folder / f"{it.id}.pdf"))
            for d, it in zip(documents, items, strict=True)
        ]
        try:
            parts = await asyncio.gather(
                *(
                    self.ctx.cpu.run(prepare_pdfs, part, options)
                    for part in chunks(jobs, self.ctx.cpu.workers * 4)
                )
            )
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        results = [r for part in parts for r in part]
        for it, res in zip(items, results, strict=True):
            if res.startswith("error:"):
                _, code, message = res.split(":", 2)
                it.status, it.error_code, it.error_message = "failed", code, message
            else:
                it.record_json, it.prepared_name = res, f"{it.id}.pdf"
        try:
            session.add(batch)
            session.flush()
            session.add_all(items)
            session.commit()
        except IntegrityError:  # the same Idempotency-Key won a moment ago in another request
            session.rollback()
            shutil.rmtree(folder, ignore_errors=True)
            earlier = self._by_key(session, org.id, idempotency_key) if idempotency_key else None
            if earlier is None:
                raise
            check_same_request(earlier, request_hash)
            return await wait_until_sent(session, earlier)
        crashpoint("batch_prepared")
        wanted = [(d, it) for d, it in zip(documents, items, strict=True) if it.status == "pending"]
        if not wanted:
            self._end(
                session, batch, "failed", "nothing_to_sign", "no document of the batch could be prepared"
            )
            return batch
        bulk_docs = [
            _bulk_document(it.id, d.filename[:255], _stored(it.record_json, it.id)) for d, it in wanted
        ]
        try:
            initiated = await self.client.bulk_initiate(
                business_id=batch.business_id,
                documents=bulk_docs,
                token=who.token,
                hkic_hash=who.hkic_hash,
                callback_result_uri=f"{self.settings.base_url}/v1/iamsmart/bulk/callback",
                redirect_uri=f"{self.settings.base_url}/v1/iamsmart/bulk/token",
                service_name=self.settings.service_name,
                department=self.settings.department,
                request_name=f"{len(bulk_docs)} document(s) from {self.settings.service_name}"[:255],
                state=batch.business_id,
                max_callback_sigs=self.settings.bulk_callback_page,
            )
        except IamSmartError as exc:
            code = getattr(exc, "code", "D20000")
            code = code.value if isinstance(code, ReturnCode) else str(code)
            self._end(session, batch, "failed", code, f"iAM Smart refused the bulk request: {exc}")
            return batch
        self._claim_batch(session, batch.id, ("prepared",), phase="sent", sign_code=initiated.sign_code)
        session.commit()
        session.refresh(batch)
        return batch

    @staticmethod
    def _by_key(session: Session, organisation_id: str, key: str) -> Batch | None:
        return session.exec(
            select(Batch).where(Batch.organisation_id == organisation_id, Batch.idempotency_key == key)
        ).first()

    # ------------------------------------------------------------------ transitions

    def _claim_batch(self, session: Session, batch_id: str, phases: tuple[str, ...], **values: Any) -> bool:
        values["updated_at"] = self.ctx.clock()
        r = session.exec(
            update(Batch)
            .where(
                col(Batch.id) == batch_id,
                col(Batch.phase).in_(phases),
                col(Batch.status).in_(("pending", "signing")),
            )
            .values(**values)
        )
        return r.rowcount == 1

    def _claim_item(self, session: Session, item_id: str, from_status: str, **values: Any) -> bool:
        values["updated_at"] = self.ctx.clock()
        r = session.exec(
            update(BatchItem)
            .where(col(BatchItem.id) == item_id, col(BatchItem.status) == from_status)
            .values(**values)
        )
        return r.rowcount == 1

    def _end(
        self,
        session: Session,
        batch: Batch,
        status: str,
        code: str | None,
        message: str | None,
        phases: tuple[str, ...] = ("prepared", "sent", "receiving"),
    ) -> bool:
        """A whole-batch ending: open documents end the same way; prepared files go."""
        if not self._claim_batch(
            session,
            batch.id,
            phases,
            phase="done",
            status=status,
            error_code=code,
            error_message=(message or "")[:2000] or None,
        ):
            session.rollback()
            return False
        item_status = status if status in ("cancelled", "expired", "rejected") else "failed"
        session.exec(
            update(BatchItem)
            .where(col(BatchItem.batch_id) == batch.id, col(BatchItem.status) == "pending")
            .values(status=item_status, error_code=code, error_message=message, updated_at=utcnow())
        )
        self._webhook(session, batch, status)
        session.commit()
        shutil.rmtree(self._folder(batch.id), ignore_errors=True)
        return True

    def _webhook(self, session: Session, batch: Batch, status: str) -> None:
        if batch.webhook_url:
            items = session.exec(
                select(BatchItem).where(BatchItem.batch_id == batch.id).order_by(col(BatchItem.position))
            ).all()
            documents = [
                {
                    "document_id": it.document_id,
                    "status": it.status,
                    "signed_document_id": it.signed_document_id,
                    "signature": json.loads(it.signature_json) if it.signature_json else None,
                }
                for it in items
            ]
            enqueue_webhook(
                session,
                batch.organisation_id,
                batch.id,
                batch.webhook_url,
                f"batch.{status}",
                {
                    "event": f"batch.{status}",
                    "batch_id": batch.id,
                    "status": status,
                    "mode": batch.mode,
                    "requested_level": batch.level,
                    "documents": documents,
                },
            )

    # ------------------------------------------------------------------ iAM Smart's answers

    def find(self, session: Session, business_id: str | None) -> Batch | None:
        if not names_something(business_id):
            return None
        return session.exec(select(Batch).where(Batch.business_id == business_id)).first()

    def take_token(self, business_id: str | None, token: str | None) -> str:
        """iAM Smart's BSQC token for an open batch. Anyone can encrypt to our KEK, so the first token is
        kept and a later one (or one for an ended batch) changes nothing: a forged token cannot cut the
        batch off from enquireStatus and cancel."""
        with self.session() as session:
            batch = self.find(session, business_id)
            if batch is None or not token:
                return "unknown"
            if batch.status in BATCH_TERMINAL or batch.bsqc_token:
                return "duplicate" if batch.bsqc_token == token[:64] else "ignored"
            session.exec(
                update(Batch)
                .where(col(Batch.id) == batch.id, col(Batch.bsqc_token).is_(None))
                .values(bsqc_token=token[:64])
            )
            session.commit()
        return "accepted"

    async def _confirmed_status(self, batch: Batch) -> BulkStatus | None:
        """iAM Smart's own answer (enquireStatus) about ``batch``; None when it cannot be asked."""
        if not batch.bsqc_token:
            return None
        try:
            return await self.client.bulk_status(batch.business_id, batch.bsqc_token)
        except IamSmartError as exc:
            log.info("batch %s: enquireStatus failed (%s)", batch.id, exc)
            return None

    async def _with_token(self, batch: Batch, wait_s: float = 5.0) -> Batch:
        """The batch once its BSQC token is stored: iAM Smart sends the token and the result by separate
        callbacks, which may arrive in either order; enquireStatus needs the token."""
        deadline = asyncio.get_running_loop().time() + wait_s
        while not batch.bsqc_token and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.2)
            with self.session() as session:
                batch = session.get(Batch, batch.id) or batch
        return batch

    async def _take_failure(self, batch: Batch, code: str) -> str:
        """A failure code by callback, which anyone can encrypt to our KEK: it ends the batch only once
        iAM Smart's answer to our own enquireStatus confirms it (SS004/SS005); otherwise it is a hint
        and the batch stays open until a result or expiry."""
        batch = await self._with_token(batch)
        confirmed = await self._confirmed_status(batch)
        if confirmed not in (BulkStatus.CANCELLED, BulkStatus.FAILED):
            log.warning(
                "batch %s: a callback reports %s, not confirmed by iAM Smart (%s): only a hint",
                batch.id,
                code,
                confirmed.value if confirmed else "no status",
            )
            return "hint"
        status = "cancelled" if confirmed is BulkStatus.CANCELLED else _STATUS_FOR_CODE.get(code, "failed")
        with self.session() as session:
            return status if self._end(session, batch, status, code, message_for(code)) else "late"

    async def take_callback(self, parts: dict[str, bytes]) -> str:
        """One (page of the) result callback. Signatures that do not verify are left out, changing nothing."""
        cb = self.client.decrypt_bulk_callback(parts)
        code = cb.code.value if isinstance(cb.code, ReturnCode) else str(cb.code)
        with self.session() as session:
            batch = self.find(session, cb.business_id)
            if batch is None:
                return "unknown"
            bind_batch(batch.id)
            if batch.status in BATCH_TERMINAL:
                return "late"
        if code != ReturnCode.SUCCESS.value:
            return await self._take_failure(batch, code)
        with self.session() as session:
            if batch.mode == "hash":
                page = {sig.id: sig.signature for sig in cb.signatures if isinstance(sig, BulkHashSignature)}
            else:
                page = {sig.id: sig.cms_der for sig in cb.signatures if isinstance(sig, BulkPdfSignature)}
            records = (
                dict(
                    session.exec(
                        select(BatchItem.id, BatchItem.record_json).where(
                            BatchItem.batch_id == batch.id,
                            BatchItem.status == "pending",
                            col(BatchItem.id).in_(list(page)),
                        )
                    ).all()
                )
                if page
                else {}
            )
        # verified in the signing processes, with no database connection held meanwhile
        jobs = [(i, record, page[i]) for i, record in records.items()]
        issuers = [c.public_bytes(Encoding.DER) for c in self.ctx.iamsmart.cert_issuers]
        if batch.mode == "hash":
            cert_der = cb.cert_der or b""
            checks = [
                self.ctx.cpu.run(verify_hash_signatures, part, cert_der, issuers)
                for part in chunks(jobs, self.ctx.cpu.workers)
            ]
        else:
            checks = [
                self.ctx.cpu.run(verify_pdf_signatures, part, issuers)
                for part in chunks(jobs, self.ctx.cpu.workers)
            ]
        parts_ok = await asyncio.gather(*checks)
        good = [i for part in parts_ok for i in part]
        if len(good) < len(page):
            log.warning("%d bulk signature(s) for batch %s refused", len(page) - len(good), batch.id)
        # genuine signatures by another certificate than the enrolled one: renewed since enrolment
        if (
            batch.mode == "hash"
            and jobs
            and not good
            and _other_certificate(jobs[0], cb.cert_der)
            and await self.ctx.cpu.run(verify_hash_signatures, jobs[:1], cb.cert_der or b"", issuers, False)
        ):
            return self._reenrolment_required(batch.id)
        if not good and await self._confirmed_status(batch) not in _SIGNED_OR_ENDED:
            # a "success" with no signature that verifies proves nothing (anyone can encrypt to our KEK):
            # recording it would decline every pending document; only iAM Smart's own status may
            log.warning("batch %s: a success page without a valid signature, unconfirmed: a hint", batch.id)
            return "hint"
        now = self.ctx.clock()
        with self.session() as session:
            accepted = 0
            if good:
                # one executemany of compare-and-set updates (Core, not ORM bulk); SQLModel sets __table__ on
                # table classes at runtime but does not declare it
                t = BatchItem.__table__  # type: ignore[attr-defined]
                accepted = (
                    session.connection()
                    .execute(
                        update(t)
                        .where(t.c.id == bindparam("item_id"), t.c.status == "pending")
                        .values(status="received", result_json=bindparam("result"), updated_at=now),
                        [
                            {"item_id": i, "result": json.dumps(_result(batch.mode, page[i], cb.cert_der))}
                            for i in good
                        ],
                    )
                    .rowcount
                )
            if session.get(BatchCallbackPage, (batch.id, cb.callback_seq)) is None:
                session.add(BatchCallbackPage(batch_id=batch.id, seq=cb.callback_seq, received_at=now))
            session.exec(
                update(Batch)
                .where(col(Batch.id) == batch.id)
                .values(callbacks_expected=cb.total_callbacks, updated_at=now)
            )
            self._claim_batch(session, batch.id, ("sent",), phase="receiving", status="signing")
            try:
                session.flush()
            except IntegrityError:  # the same page recorded by a concurrent delivery: fine
                session.rollback()
                return "duplicate"
            if self._pages_seen(session, batch.id) >= cb.total_callbacks:
                # all pages in: whatever is still pending was declined
                session.exec(
                    update(BatchItem)
                    .where(col(BatchItem.batch_id) == batch.id, col(BatchItem.status) == "pending")
                    .values(
                        status="declined",
                        error_code="declined",
                        error_message="iAM Smart did not return a signature for this document",
                        updated_at=now,
                    )
                )
            session.commit()
        crashpoint("batch_callback_received")
        self.ctx.queue.enqueue_embed_batch(batch.id)
        return f"accepted {accepted}"

    def _reenrolment_required(self, batch_id: str) -> str:
        """End the batch at once: the signer must enrol again (their certificate was renewed)."""
        why = "the signer signed with another certificate than the enrolled one (renewed?)"
        with self.session() as session:
            batch = session.get(Batch, batch_id)
            if batch is None:
                return "unknown"
            mark_reenrolment_required(session, batch.organisation_id, batch.signer_key, why)
            ended = self._end(
                session,
                batch,
                "failed",
                REENROLMENT_CODE,
                f"{why}; enrol the signer again (POST /v1/signers) and start a new batch",
            )
        return "failed" if ended else "late"

    @staticmethod
    def _pages_seen(session: Session, batch_id: str) -> int:
        return len(
            session.exec(select(BatchCallbackPage.seq).where(BatchCallbackPage.batch_id == batch_id)).all()
        )

    # ------------------------------------------------------------------ embedding

    async def embed(self, batch_id: str) -> None:
        """Embed every received signature of the batch (in worker processes), then close the batch if done."""
        bind_batch(batch_id)
        spec = self.ctx.iamsmart.services_spec()
        with self.session() as session:
            batch = session.get_one(Batch, batch_id)
            # one compare-and-set for every received item: what another worker claimed first is not returned
            claimed = session.exec(
                update(BatchItem)
                .where(col(BatchItem.batch_id) == batch_id, col(BatchItem.status) == "received")
                .values(status="embedding", updated_at=self.ctx.clock())
                .returning(col(BatchItem.id))
            ).all()
            mine = list(
                session.exec(
                    select(BatchItem)
                    .where(col(BatchItem.id).in_([row[0] for row in claimed]))
                    .order_by(col(BatchItem.position))
                ).all()
            )
            session.commit()
        mine = await self._refuse_unfit_certificates(mine)
        folder = self._folder(batch_id)
        jobs = [
            (
                it.record_json,
                str(folder / it.prepared_name),
                str(self.store.tmp_dir / f"{it.id}.signed.pdf"),
                _answer(json.loads(_stored(it.result_json, it.id))),
            )
            for it in mine
        ]

        async def finish(some: list) -> list[dict]:
            parts = await asyncio.gather(
                *(
                    self.ctx.cpu.run(finish_pdfs, part, spec)
                    for part in chunks(some, self.ctx.cpu.workers * 4, at_most=25)
                )
            )
            return [r for part in parts for r in part]

        settings = self.ctx.settings
        async with self._heartbeat([it.id for it in mine]):
            results = await retry_transient_jobs(
                finish, jobs, settings.augment_attempts, settings.augment_retry_delay_s, f"batch {batch_id}"
            )
        # another worker is finishing some of them right now (its claim was taken over): leave those to it
        busy = {
            it.id
            for it, res in zip(mine, results, strict=True)
            if res.get("error", "").startswith("finish_in_progress")
        }
        mine, results = (
            [it for it in mine if it.id not in busy],
            [r for it, r in zip(mine, results, strict=True) if it.id not in busy],
        )
        crashpoint("batch_embedded")
        ok = [
            (it, res, self.store.tmp_dir / f"{it.id}.signed.pdf")
            for it, res in zip(mine, results, strict=True)
            if "error" not in res
        ]
        # files first (no database lock held while the disk works), then one short transaction
        stored = await asyncio.to_thread(
            self.store.adopt_many, [(path, res["sha256"], res["size"]) for _, res, path in ok]
        )
        with self.session() as session:
            sources = (
                {
                    d.id: d
                    for d in session.exec(
                        select(Document).where(col(Document.id).in_([it.document_id for it in mine]))
                    )
                }
                if mine
                else {}
            )
            for item, res in zip(mine, results, strict=True):
                if "error" in res:
                    code, _, message = res["error"].partition(":")
                    self._claim_item(
                        session,
                        item.id,
                        "embedding",
                        status="failed",
                        error_code=code,
                        error_message=message[:2000],
                    )
            done_paths = []
            for (item, res, path), file in zip(ok, stored, strict=True):
                doc_id = new_id("doc")
                if self._claim_item(
                    session,
                    item.id,
                    "embedding",
                    status="completed",
                    signed_document_id=doc_id,
                    signature_json=json.dumps(res["signature"]),
                ):
                    src = sources[item.document_id]
                    session.add(
                        Document(
                            id=doc_id,
                            organisation_id=batch.organisation_id,
                            sha256=file.sha256,
                            size=file.size,
                            filename=signed_name(src.filename),
                            pages=src.pages,
                            signature_count=src.signature_count + res["added_signatures"],
                        )
                    )
                    done_paths.append(path)
            session.commit()
        for path in done_paths:
            path.unlink(missing_ok=True)
        await self._close_if_done(batch_id)

    async def _refuse_unfit_certificates(self, items: list[BatchItem]) -> list[BatchItem]:
        """Check each distinct signer certificate (OCSP, then CRL) before embedding; items whose certificate
        is revoked or of unknown status fail with that code. Returns the items that may be embedded."""
        by_cert: dict[bytes, list[BatchItem]] = {}
        unfit: list[tuple[BatchItem, CertificateStanding]] = []
        for it in items:
            der = _signer_certificate(json.loads(_stored(it.result_json, it.id)))
            if der is None:
                unfit.append(
                    (it, CertificateStanding("certificate_missing", "the signature has no certificate"))
                )
            else:
                by_cert.setdefault(der, []).append(it)
        fit: list[BatchItem] = []
        for der, group in by_cert.items():
            standing = await certificate_standing(der, self.ctx.iamsmart.cert_issuers, self.ctx.clock())
            if standing.code is None:
                fit.extend(group)
            else:
                unfit.extend((it, standing) for it in group)
        if unfit:
            with self.session() as session:
                for it, standing in unfit:
                    log.warning("batch item %s not embedded: %s", it.id, standing.detail)
                    self._claim_item(
                        session,
                        it.id,
                        "embedding",
                        status="failed",
                        error_code=standing.code,
                        error_message=standing.detail[:2000],
                    )
                session.commit()
        return fit

    def _heartbeat(self, item_ids: list[str]):
        """Keep claimed items fresh while they are worked on, so the sweep never hands them on meanwhile."""
        return heartbeat(
            self.session,
            lambda: (
                update(BatchItem)
                .where(col(BatchItem.id).in_(item_ids), col(BatchItem.status) == "embedding")
                .values(updated_at=self.ctx.clock())
            ),
            self.settings.stale_after_s,
        )

    async def _close_if_done(self, batch_id: str) -> None:
        with self.session() as session:
            batch = session.get_one(Batch, batch_id)
            if batch.status in BATCH_TERMINAL or batch.phase != "receiving":
                return
            if (
                batch.callbacks_expected is None
                or self._pages_seen(session, batch_id) < batch.callbacks_expected
            ):
                return
            items = session.exec(select(BatchItem).where(BatchItem.batch_id == batch_id)).all()
            if any(it.status in _ITEM_OPEN for it in items):
                return
            status = "completed" if all(it.status == "completed" for it in items) else "partially_completed"
            if not self._claim_batch(session, batch_id, ("receiving",), phase="done", status=status):
                return
            self._webhook(session, batch, status)
            session.commit()
        shutil.rmtree(self._folder(batch_id), ignore_errors=True)
        per_doc = {
            it.id: (SigningResult.ACCEPTED if it.status == "completed" else SigningResult.REJECTED)
            for it in items
            if it.status in ("completed", "failed")
        }
        if per_doc:
            try:
                await self.client.bulk_ack(batch.business_id, per_document=per_doc)
            except IamSmartError as exc:
                log.warning("bulk ack for %s failed: %s", batch_id, exc)

    # ------------------------------------------------------------------ cancel, sweep

    async def cancel(self, session: Session, batch: Batch) -> bool:
        bind_batch(batch.id)
        if batch.status != "pending":
            return False
        if batch.bsqc_token:
            try:
                await self.client.bulk_cancel(batch.business_id, batch.bsqc_token)
            except IamSmartError as exc:
                if str(getattr(exc, "code", "")) == ReturnCode.BULK_NOT_PENDING.value:
                    return False
                log.warning("bulk cancel at iAM Smart failed for %s: %s", batch.id, exc)
        return self._end(
            session,
            batch,
            "cancelled",
            "cancelled",
            "cancelled by the online service",
            phases=("prepared", "sent"),
        )

    async def sweep(self) -> None:
        now = self.ctx.clock()
        stale = now - dt.timedelta(seconds=self.settings.stale_after_s)
        with self.session() as session:
            for batch in session.exec(
                select(Batch).where(
                    Batch.status == "pending",
                    Batch.expires_at < now,
                    col(Batch.phase).in_(("prepared", "sent")),
                )
            ).all():
                self._end(
                    session,
                    batch,
                    "expired",
                    ReturnCode.BULK_TIMEOUT.value,
                    "no approval within the time iAM Smart allows",
                )
            for batch in session.exec(
                select(Batch).where(
                    Batch.status == "pending", Batch.phase == "prepared", Batch.updated_at < stale
                )
            ).all():
                self._end(
                    session,
                    batch,
                    "failed",
                    "interrupted",
                    "the service stopped before the batch reached iAM Smart; create a new batch",
                )
            stuck = session.exec(
                select(BatchItem).where(BatchItem.status == "embedding", BatchItem.updated_at < stale)
            ).all()
            batches = set()
            for it in stuck:  # its process died: hand it on
                if self._claim_item(session, it.id, "embedding", status="received"):
                    batches.add(it.batch_id)
            waiting = session.exec(
                select(BatchItem.batch_id).where(BatchItem.status == "received", BatchItem.updated_at < stale)
            ).all()
            batches.update(waiting)
            open_batches = session.exec(
                select(Batch.id).where(Batch.phase == "receiving", Batch.updated_at < stale)
            ).all()
            batches.update(open_batches)
            session.commit()
        for batch_id in batches:
            self.ctx.queue.enqueue_embed_batch(batch_id)


def _signer_certificate(result: dict[str, str]) -> bytes | None:
    """The certificate a stored answer was signed with: hash mode keeps it beside the signature, PDF mode
    finds it in iAM Smart's CMS."""
    if "cert" in result:
        return base64.b64decode(result["cert"]) or None
    return cms_signer_certificate(base64.b64decode(result["pdfSignature"]))


def _stored(value: str | None, item_id: str) -> str:
    """A JSON column the item has by now (the record once prepared, the result once received)."""
    if value is None:
        raise ValueError(f"batch item {item_id} reached this step without its stored JSON")
    return value


_SIGNED_OR_ENDED = (BulkStatus.COMPLETED, BulkStatus.CANCELLED, BulkStatus.FAILED)
"""enquireStatus answers under which a page without signatures may count (the signer answered)."""


def _other_certificate(job: tuple[str, str | None, bytes], cert_der: bytes | None) -> bool:
    """The answer's certificate is not the one the item's signed attributes name."""
    if job[1] is None:
        return False
    expected = PreparedSignature.loads(job[1]).signer_certificate_der
    return expected is not None and cert_der is not None and cert_der != expected


def _bulk_document(item_id: str, name: str, record_json: str) -> BulkDocument:
    """A bulk item: ``hashCode`` (hash mode, the signed attributes) or ``docDigest`` (PDF mode)."""
    record = PreparedSignature.loads(record_json)
    if record.mode is RemoteMode.HASH and record.to_be_signed is not None:
        algo = record.sig_algo.value if record.sig_algo else None
        return BulkDocument.hash(item_id, name, record.to_be_signed, algo)
    return BulkDocument.pdf(item_id, name, record.document_digest)


def _result(mode: str, value: bytes, cert_der: bytes | None) -> dict[str, str]:
    """What is stored of a checked answer until it is embedded."""
    if mode == "hash":
        return {
            "signature": base64.b64encode(value).decode(),
            "cert": base64.b64encode(cert_der or b"").decode(),
        }
    return {"pdfSignature": base64.b64encode(value).decode()}


def _answer(result: dict[str, str]) -> bytes | tuple[bytes, bytes]:
    """The stored answer as :func:`api.flows.cpu.finish_pdf` takes it."""
    if "pdfSignature" in result:
        return base64.b64decode(result["pdfSignature"])
    return base64.b64decode(result["signature"]), base64.b64decode(result["cert"])

"""A small client of the iamsign REST API, sync (:class:`IamsignClient`) and async (:class:`AsyncIamsignClient`).

Both have the same methods::

    with IamsignClient("http://127.0.0.1:8000", api_key) as c:
        doc = c.upload_document("letter.pdf")
        req = c.create_signing_request(doc.id, hkid="A123456(3)")
        print("sign code", req.sign_code)
        c.wait_signing_request(req.id, timeout=600)
        c.download_signed_document(req.id, "letter.signed.pdf")

Every API error is an :class:`IamsignError` (``status``, ``code``, ``message``); a server that cannot be
reached is an :class:`IamsignConnectionError` (``status`` None). Idempotent calls (GETs, verification) are
retried with exponential backoff on transport errors and on 502/503/504; other calls are retried only when
the connection could not even be opened (nothing was sent). Downloads are written atomically: a temp file
in the destination folder, fsync, then rename.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import httpx
from pydantic import BaseModel, ConfigDict

__all__ = [
    "BATCH_TERMINAL",
    "ENVELOPE_TERMINAL",
    "REQUEST_TERMINAL",
    "AsyncIamsignClient",
    "Batch",
    "BatchCounts",
    "BatchDocument",
    "Document",
    "Downloaded",
    "Envelope",
    "EnvelopeStep",
    "ErrorInfo",
    "IamsignClient",
    "IamsignConnectionError",
    "IamsignError",
    "IamsignTimeout",
    "Signature",
    "SigningRequest",
]

REQUEST_TERMINAL = frozenset({"completed", "rejected", "cancelled", "expired", "failed"})
"""Statuses after which a signing request no longer changes."""
BATCH_TERMINAL = frozenset({"completed", "partially_completed", "rejected", "cancelled", "expired", "failed"})
"""Statuses after which a batch no longer changes."""
ENVELOPE_TERMINAL = REQUEST_TERMINAL
"""Statuses after which an envelope no longer changes."""
RETRY_STATUSES = frozenset({502, 503, 504})
LONG_POLL_S = 20.0
"""The longest a wait asks the server to hold one status read (``GET ...?wait=``; the server allows 60)."""
_CHUNK = 1 << 20


# ---------------------------------------------------------------------------------------------- errors


class IamsignError(Exception):
    """An error answered by the API (``{"error": {"code", "message"}}``), or raised by the client."""

    def __init__(self, status: int | None, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}" + (f" (HTTP {status})" if status else ""))
        self.status, self.code, self.message = status, code, message


class IamsignConnectionError(IamsignError):
    """The server could not be reached (after the retries)."""

    def __init__(self, message: str) -> None:
        super().__init__(None, "unreachable", message)


class IamsignTimeout(IamsignError):
    """A ``wait_*`` call ran out of time; the last state seen is in ``last``."""

    def __init__(self, message: str, last: Any = None) -> None:
        super().__init__(None, "wait_timeout", message)
        self.last = last


# ---------------------------------------------------------------------------------------------- models


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class ErrorInfo(_Model):
    code: str
    message: str = ""


class Document(_Model):
    """An uploaded PDF or a signed revision."""

    id: str
    sha256: str
    size: int
    filename: str
    pages: int
    signature_count: int


class Signature(_Model):
    """What a signature is: ``profile`` (pades-baseline or pkcs7-detached), PAdES ``level`` or None."""

    profile: str
    level: str | None = None
    augmentations: list[str] = []


class SigningRequest(_Model):
    """One signer asked to sign one document."""

    id: str
    status: str
    error: ErrorInfo | None = None
    document_id: str
    signed_document_id: str | None = None
    sign_code: str | None = None
    expires_at: str | None = None
    signer_url: str | None = None
    mode: str | None = None
    requested_level: str | None = None
    level: str | None = None
    """Deprecated: the same as ``requested_level``."""
    expected_signature: Signature | None = None
    signature: Signature | None = None
    """Once completed: what the signed file holds."""

    @property
    def done(self) -> bool:
        return self.status in REQUEST_TERMINAL


class BatchCounts(_Model):
    total: int = 0
    completed: int = 0
    failed: int = 0
    pending: int = 0


class BatchDocument(_Model):
    document_id: str
    status: str
    signed_document_id: str | None = None
    error: ErrorInfo | None = None
    signature: Signature | None = None


class Batch(_Model):
    """Many documents, one signer, one approval."""

    id: str
    status: str
    error: ErrorInfo | None = None
    sign_code: str | None = None
    expires_at: str | None = None
    mode: str | None = None
    requested_level: str | None = None
    level: str | None = None
    expected_signature: Signature | None = None
    signer_url: str | None = None
    counts: BatchCounts = BatchCounts()
    documents: list[BatchDocument] = []
    created_at: str | None = None
    updated_at: str | None = None

    @property
    def done(self) -> bool:
        return self.status in BATCH_TERMINAL

    def document(self, document_id: str) -> BatchDocument | None:
        return next((d for d in self.documents if d.document_id == document_id), None)


class EnvelopeStep(_Model):
    """One signer of an envelope (``position`` 1-based, in signing order)."""

    position: int
    status: str
    signer: str | None = None
    signing_request_id: str | None = None
    sign_code: str | None = None
    signer_url: str | None = None
    expires_at: str | None = None
    document_id: str | None = None
    signed_document_id: str | None = None
    error: ErrorInfo | None = None


class Envelope(_Model):
    """One document, several signers in order; ``signed_document_id`` once all signed."""

    id: str
    status: str
    error: ErrorInfo | None = None
    ended_step: int | None = None
    document_id: str
    signed_document_id: str | None = None
    level: str | None = None
    current_step: int = 1
    steps: list[EnvelopeStep] = []
    signer_url: str | None = None
    created_at: str | None = None
    updated_at: str | None = None

    @property
    def done(self) -> bool:
        return self.status in ENVELOPE_TERMINAL


def _envelope_signer(signer: dict[str, Any] | str) -> dict[str, Any]:
    """A signer of an envelope: an HKID string, or a dict (hkid | session_id, signer_id,
    appearance)."""
    return {"hkid": signer} if isinstance(signer, str) else _drop_none(dict(signer))


def _envelope_body(
    document_id: str,
    signers: list[dict[str, Any] | str],
    level: str | None,
    reason: str | None,
    location: str | None,
    webhook_url: str | None,
) -> dict[str, Any]:
    return _drop_none(
        {
            "document_id": document_id,
            "signers": [_envelope_signer(s) for s in signers],
            "level": level,
            "reason": reason,
            "location": location,
            "webhook_url": webhook_url,
        }
    )


@dataclass(frozen=True)
class Downloaded:
    """A file written by a download: where, how big, its SHA-256."""

    path: Path
    size: int
    sha256: str


def _signer(hkid: str | None, session_id: str | None) -> dict[str, str]:
    if hkid and session_id:
        raise IamsignError(None, "invalid_signer", "give hkid or session_id, not both")
    if hkid:
        return {"hkid": hkid}
    if session_id:
        return {"session_id": session_id}
    raise IamsignError(None, "invalid_signer", "give hkid, or the session_id of an iAM Smart login")


def _idempotency(key: str | None) -> dict[str, str] | None:
    """The ``Idempotency-Key`` header: the server answers a repeated POST with its first result."""
    return {"Idempotency-Key": key} if key else None


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


# ---------------------------------------------------------------------------------------------- shared


class _Base:
    """What both clients share: configuration, retry policy, error decoding, atomic files."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        poll_interval: float = 0.5,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retries, self.backoff, self.max_backoff = retries, backoff, max_backoff
        self.poll_interval = poll_interval
        self._headers = {"user-agent": "iamsign-client/0.1", **(headers or {})}
        if api_key:
            self._headers["authorization"] = f"Bearer {api_key}"
        self._timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)

    @staticmethod
    def _server_wait(deadline: float) -> float:
        """How long the next status read may ask the server to hold its answer: within the caller's
        deadline, at most :data:`LONG_POLL_S`."""
        return round(max(0.0, min(deadline - time.monotonic(), LONG_POLL_S)), 1)

    def _held_read(self, wait: float) -> dict[str, Any]:
        """The request options of a status read held up to ``wait`` seconds: the read timeout outlasts it."""
        if not wait:
            return {}
        t = self._timeout
        if t.read is not None and t.read <= wait + 10:
            t = httpx.Timeout(connect=t.connect, read=wait + 10, write=t.write, pool=t.pool)
        return {"params": {"wait": wait}, "timeout": t}

    def _delay(self, attempt: int, response: httpx.Response | None = None) -> float:
        if response is not None:
            after = response.headers.get("retry-after", "")
            if after.isdigit():
                return min(float(after), self.max_backoff)
        return min(self.backoff * (2**attempt), self.max_backoff)

    def _should_retry(
        self, attempt: int, idempotent: bool, exc: Exception | None, response: httpx.Response | None
    ) -> bool:
        if attempt >= self.retries:
            return False
        if exc is not None:
            # Nothing was sent when the connection could not be opened: safe for any call.
            return idempotent or isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
        return idempotent and response is not None and response.status_code in RETRY_STATUSES

    @staticmethod
    def _error_of(response: httpx.Response, body: bytes) -> IamsignError:
        code, message = f"http_{response.status_code}", response.reason_phrase or "error"
        try:
            err = json.loads(body).get("error")
            if isinstance(err, dict):
                code, message = str(err.get("code", code)), str(err.get("message", message))
        except (ValueError, AttributeError):
            text = body[:200].decode("utf-8", "replace").strip()
            message = text or message
        return IamsignError(response.status_code, code, message)

    @staticmethod
    def _unreachable(method: str, url: str, exc: Exception) -> IamsignConnectionError:
        return IamsignConnectionError(f"{method} {url}: {type(exc).__name__}: {str(exc) or 'no answer'}")

    @staticmethod
    def _temp_for(dest: Path):
        dest.parent.mkdir(parents=True, exist_ok=True)
        return tempfile.NamedTemporaryFile(
            dir=dest.parent, prefix=f".{dest.name}.", suffix=".part", delete=False
        )

    @staticmethod
    def _publish(tmp_name: str, dest: Path) -> None:
        os.replace(tmp_name, dest)
        with contextlib.suppress(OSError):
            fd = os.open(dest.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    @staticmethod
    def _file_part(path: Path):
        return {"file": (path.name, open(path, "rb"), "application/pdf")}

    @staticmethod
    def _batch_body(
        document_ids: list[str],
        hkid,
        session_id,
        level,
        reason,
        location,
        webhook_url,
        mode=None,
        require_profile=None,
    ) -> dict[str, Any]:
        return _drop_none(
            {
                "document_ids": list(document_ids),
                "signer": _signer(hkid, session_id),
                "level": level,
                "mode": mode,
                "require_profile": require_profile,
                "reason": reason,
                "location": location,
                "webhook_url": webhook_url,
            }
        )

    @staticmethod
    def _request_body(
        document_id, hkid, session_id, level, mode, reason, location, appearance, webhook_url
    ) -> dict[str, Any]:
        return _drop_none(
            {
                "document_id": document_id,
                "signer": _signer(hkid, session_id),
                "level": level,
                "mode": mode,
                "reason": reason,
                "location": location,
                "appearance": appearance,
                "webhook_url": webhook_url,
            }
        )


# ---------------------------------------------------------------------------------------------- sync


class IamsignClient(_Base):
    """Blocking client; use as a context manager (``with IamsignClient(url, key) as c: ...``)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(base_url, api_key, **kw)
        self._http = httpx.Client(
            base_url=self.base_url, headers=self._headers, timeout=self._timeout, transport=transport
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- transport

    def _send(
        self, method: str, path: str, *, idempotent: bool, files: Callable[[], dict] | None = None, **kw: Any
    ) -> httpx.Response:
        attempt = 0
        while True:
            opened = files() if files else None
            try:
                response = self._http.request(method, path, files=opened, **kw)
            except httpx.TransportError as exc:
                if not self._should_retry(attempt, idempotent, exc, None):
                    raise self._unreachable(method, path, exc) from None
                time.sleep(self._delay(attempt))
            else:
                if response.is_success:
                    return response
                if not self._should_retry(attempt, idempotent, None, response):
                    raise self._error_of(response, response.content)
                time.sleep(self._delay(attempt, response))
            finally:
                for part in (opened or {}).values():
                    part[1].close()
            attempt += 1

    def _json(self, method: str, path: str, *, idempotent: bool, **kw: Any) -> Any:
        return self._send(method, path, idempotent=idempotent, **kw).json()

    def _download(self, path: str, dest: str | os.PathLike[str]) -> Downloaded:
        dest = Path(dest)
        attempt = 0
        while True:
            tmp = self._temp_for(dest)
            try:
                with self._http.stream("GET", path) as response:
                    if not response.is_success:
                        body = response.read()
                        if not self._should_retry(attempt, True, None, response):
                            raise self._error_of(response, body)
                        delay = self._delay(attempt, response)
                    else:
                        digest, size = hashlib.sha256(), 0
                        for chunk in response.iter_bytes(_CHUNK):
                            tmp.write(chunk)
                            digest.update(chunk)
                            size += len(chunk)
                        tmp.flush()
                        os.fsync(tmp.fileno())
                        tmp.close()
                        self._publish(tmp.name, dest)
                        return Downloaded(dest, size, digest.hexdigest())
            except httpx.TransportError as exc:
                if not self._should_retry(attempt, True, exc, None):
                    raise self._unreachable("GET", path, exc) from None
                delay = self._delay(attempt)
            finally:
                tmp.close()
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp.name)
            time.sleep(delay)
            attempt += 1

    # -- documents

    def upload_document(self, path: str | os.PathLike[str]) -> Document:
        """Upload a PDF (streamed from disk); 413/415/422 come back as :class:`IamsignError`."""
        path = Path(path)
        return Document(
            **self._json("POST", "/v1/documents", idempotent=False, files=lambda: self._file_part(path))
        )

    def get_document(self, document_id: str) -> Document:
        return Document(**self._json("GET", f"/v1/documents/{document_id}", idempotent=True))

    def download_document(self, document_id: str, dest: str | os.PathLike[str]) -> Downloaded:
        """Write the document's PDF to ``dest`` atomically."""
        return self._download(f"/v1/documents/{document_id}/content", dest)

    # -- signing requests

    def create_signing_request(
        self,
        document_id: str,
        *,
        hkid: str | None = None,
        session_id: str | None = None,
        level: str | None = None,
        mode: str | None = None,
        reason: str | None = None,
        location: str | None = None,
        appearance: dict | None = None,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
    ) -> SigningRequest:
        """Ask the signer (HKID, or the ``session_id`` of their iAM Smart login) to sign one document."""
        body = self._request_body(
            document_id, hkid, session_id, level, mode, reason, location, appearance, webhook_url
        )
        return SigningRequest(
            **self._json(
                "POST",
                "/v1/signing-requests",
                idempotent=idempotency_key is not None,
                json=body,
                headers=_idempotency(idempotency_key),
            )
        )

    def get_signing_request(self, request_id: str, wait: float = 0) -> SigningRequest:
        """The request as it stands; with ``wait`` (seconds, up to 60) the server holds the answer
        until the request is no longer pending or the time is up."""
        return SigningRequest(
            **self._json(
                "GET", f"/v1/signing-requests/{request_id}", idempotent=True, **self._held_read(wait)
            )
        )

    def cancel_signing_request(self, request_id: str) -> SigningRequest:
        return SigningRequest(
            **self._json("POST", f"/v1/signing-requests/{request_id}/cancel", idempotent=False)
        )

    def wait_signing_request(self, request_id: str, timeout: float = 1200.0) -> SigningRequest:
        """Until the request is terminal (long polls: each read waits on the server, answered as soon as
        the request ends); :class:`IamsignTimeout` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            asked = time.monotonic()
            req = self.get_signing_request(request_id, wait=self._server_wait(deadline))
            if req.done:
                return req
            if time.monotonic() >= deadline:
                raise IamsignTimeout(
                    f"signing request {request_id} still {req.status} after {timeout:g} s", req
                )
            # a server that does not hold reads (an older release) answers at once: poll, as before
            time.sleep(max(0.0, self.poll_interval - (time.monotonic() - asked)))

    def download_signed_document(self, request_id: str, dest: str | os.PathLike[str]) -> Downloaded:
        """The signed PDF of a completed request (409 ``not_completed`` before)."""
        return self._download(f"/v1/signing-requests/{request_id}/signed-document", dest)

    # -- batches

    def create_batch(
        self,
        document_ids: list[str],
        *,
        hkid: str | None = None,
        session_id: str | None = None,
        level: str | None = None,
        reason: str | None = None,
        location: str | None = None,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
        mode: str | None = None,
        require_profile: str | None = None,
    ) -> Batch:
        """Start one batch (up to 1000 documents, one approval); with ``idempotency_key`` retries are safe.

        ``require_profile="pades-baseline"`` makes the server refuse (422) a batch that would be PKCS#7.
        """
        body = self._batch_body(
            document_ids,
            hkid,
            session_id,
            level,
            reason,
            location,
            webhook_url,
            mode,
            require_profile,
        )
        return Batch(
            **self._json(
                "POST",
                "/v1/batches",
                idempotent=idempotency_key is not None,
                json=body,
                headers=_idempotency(idempotency_key),
            )
        )

    def get_batch(self, batch_id: str) -> Batch:
        return Batch(**self._json("GET", f"/v1/batches/{batch_id}", idempotent=True))

    def cancel_batch(self, batch_id: str) -> Batch:
        return Batch(**self._json("POST", f"/v1/batches/{batch_id}/cancel", idempotent=False))

    def iter_batch(self, batch_id: str, timeout: float | None = None) -> Iterator[Batch]:
        """Yield the batch each time it changes (status or counts), ending with its terminal state."""
        deadline = None if timeout is None else time.monotonic() + timeout
        seen = None
        while True:
            batch = self.get_batch(batch_id)
            key = (batch.status, batch.counts, batch.sign_code)
            if key != seen:
                seen = key
                yield batch
            if batch.done:
                return
            if deadline is not None and time.monotonic() >= deadline:
                raise IamsignTimeout(f"batch {batch_id} still {batch.status} after {timeout:g} s", batch)
            time.sleep(self.poll_interval)

    def wait_batch(
        self, batch_id: str, timeout: float = 1200.0, on_progress: Callable[[Batch], None] | None = None
    ) -> Batch:
        """Poll until the batch is terminal, calling ``on_progress`` on every change."""
        last: Batch | None = None
        for last in self.iter_batch(batch_id, timeout):
            if on_progress:
                on_progress(last)
        assert last is not None  # iter_batch yields at least once or raises
        return last

    def download_batch_document(
        self, batch_id: str, document_id: str, dest: str | os.PathLike[str]
    ) -> Downloaded:
        """One signed document of a batch (409 until that document is completed)."""
        return self._download(f"/v1/batches/{batch_id}/documents/{document_id}/signed-document", dest)

    def download_batch_zip(self, batch_id: str, dest: str | os.PathLike[str]) -> Downloaded:
        """All completed documents of a batch as one zip."""
        return self._download(f"/v1/batches/{batch_id}/signed.zip", dest)

    # -- envelopes

    def create_envelope(
        self,
        document_id: str,
        signers: list[dict[str, Any] | str],
        *,
        level: str | None = None,
        reason: str | None = None,
        location: str | None = None,
        webhook_url: str | None = None,
    ) -> Envelope:
        """Several signers of one document, in order (each an HKID or a dict with hkid / session_id,
        optional signer_id and appearance); the first signer's request starts at once."""
        body = _envelope_body(document_id, signers, level, reason, location, webhook_url)
        return Envelope(**self._json("POST", "/v1/envelopes", idempotent=False, json=body))

    def get_envelope(self, envelope_id: str) -> Envelope:
        return Envelope(**self._json("GET", f"/v1/envelopes/{envelope_id}", idempotent=True))

    def cancel_envelope(self, envelope_id: str) -> Envelope:
        """Stop the remaining steps (409 ``not_pending`` once it ended)."""
        return Envelope(**self._json("POST", f"/v1/envelopes/{envelope_id}/cancel", idempotent=False))

    def envelope_audit(self, envelope_id: str) -> dict[str, Any]:
        """Each step's hash-chained audit trail, in signing order."""
        return self._json("GET", f"/v1/envelopes/{envelope_id}/audit", idempotent=True)

    def wait_envelope(self, envelope_id: str, timeout: float = 3600.0) -> Envelope:
        """Poll until the envelope is terminal; :class:`IamsignTimeout` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            env = self.get_envelope(envelope_id)
            if env.done:
                return env
            if time.monotonic() >= deadline:
                raise IamsignTimeout(f"envelope {envelope_id} still {env.status} after {timeout:g} s", env)
            time.sleep(self.poll_interval)

    # -- verification

    def verify(self, path: str | os.PathLike[str], *, offline: bool = False) -> dict[str, Any]:
        """``POST /v1/verifications``: the verification report (JSON) of a signed PDF."""
        path = Path(path)
        return self._json(
            "POST",
            "/v1/verifications",
            idempotent=True,
            params={"offline": str(offline).lower()},
            files=lambda: self._file_part(path),
        )


# ---------------------------------------------------------------------------------------------- async


class AsyncIamsignClient(_Base):
    """The same methods as :class:`IamsignClient`, awaitable (``async with AsyncIamsignClient(...) as c``)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(base_url, api_key, **kw)
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=self._headers, timeout=self._timeout, transport=transport
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- transport

    async def _send(
        self, method: str, path: str, *, idempotent: bool, files: Callable[[], dict] | None = None, **kw: Any
    ) -> httpx.Response:
        attempt = 0
        while True:
            opened = files() if files else None
            try:
                response = await self._http.request(method, path, files=opened, **kw)
            except httpx.TransportError as exc:
                if not self._should_retry(attempt, idempotent, exc, None):
                    raise self._unreachable(method, path, exc) from None
                delay = self._delay(attempt)
            else:
                if response.is_success:
                    return response
                if not self._should_retry(attempt, idempotent, None, response):
                    raise self._error_of(response, response.content)
                delay = self._delay(attempt, response)
            finally:
                for part in (opened or {}).values():
                    part[1].close()
            await asyncio.sleep(delay)
            attempt += 1

    async def _json(self, method: str, path: str, *, idempotent: bool, **kw: Any) -> Any:
        return (await self._send(method, path, idempotent=idempotent, **kw)).json()

    async def _download(self, path: str, dest: str | os.PathLike[str]) -> Downloaded:
        dest = Path(dest)
        attempt = 0
        while True:
            tmp = self._temp_for(dest)
            try:
                async with self._http.stream("GET", path) as response:
                    if not response.is_success:
                        body = await response.aread()
                        if not self._should_retry(attempt, True, None, response):
                            raise self._error_of(response, body)
                        delay = self._delay(attempt, response)
                    else:
                        digest, size = hashlib.sha256(), 0
                        async for chunk in response.aiter_bytes(_CHUNK):
                            tmp.write(chunk)
                            digest.update(chunk)
                            size += len(chunk)
                        tmp.flush()
                        await asyncio.to_thread(os.fsync, tmp.fileno())
                        tmp.close()
                        self._publish(tmp.name, dest)
                        return Downloaded(dest, size, digest.hexdigest())
            except httpx.TransportError as exc:
                if not self._should_retry(attempt, True, exc, None):
                    raise self._unreachable("GET", path, exc) from None
                delay = self._delay(attempt)
            finally:
                tmp.close()
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp.name)
            await asyncio.sleep(delay)
            attempt += 1

    # -- documents

    async def upload_document(self, path: str | os.PathLike[str]) -> Document:
        """Upload a PDF (streamed from disk); 413/415/422 come back as :class:`IamsignError`."""
        path = Path(path)
        return Document(
            **await self._json("POST", "/v1/documents", idempotent=False, files=lambda: self._file_part(path))
        )

    async def get_document(self, document_id: str) -> Document:
        return Document(**await self._json("GET", f"/v1/documents/{document_id}", idempotent=True))

    async def download_document(self, document_id: str, dest: str | os.PathLike[str]) -> Downloaded:
        """Write the document's PDF to ``dest`` atomically."""
        return await self._download(f"/v1/documents/{document_id}/content", dest)

    # -- signing requests

    async def create_signing_request(
        self,
        document_id: str,
        *,
        hkid: str | None = None,
        session_id: str | None = None,
        level: str | None = None,
        mode: str | None = None,
        reason: str | None = None,
        location: str | None = None,
        appearance: dict | None = None,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
    ) -> SigningRequest:
        """Ask the signer (HKID, or the ``session_id`` of their iAM Smart login) to sign one document."""
        body = self._request_body(
            document_id, hkid, session_id, level, mode, reason, location, appearance, webhook_url
        )
        return SigningRequest(
            **await self._json(
                "POST",
                "/v1/signing-requests",
                idempotent=idempotency_key is not None,
                json=body,
                headers=_idempotency(idempotency_key),
            )
        )

    async def get_signing_request(self, request_id: str, wait: float = 0) -> SigningRequest:
        """As :meth:`IamsignClient.get_signing_request`."""
        return SigningRequest(
            **await self._json(
                "GET", f"/v1/signing-requests/{request_id}", idempotent=True, **self._held_read(wait)
            )
        )

    async def cancel_signing_request(self, request_id: str) -> SigningRequest:
        return SigningRequest(
            **await self._json("POST", f"/v1/signing-requests/{request_id}/cancel", idempotent=False)
        )

    async def wait_signing_request(self, request_id: str, timeout: float = 1200.0) -> SigningRequest:
        """As :meth:`IamsignClient.wait_signing_request`."""
        deadline = time.monotonic() + timeout
        while True:
            asked = time.monotonic()
            req = await self.get_signing_request(request_id, wait=self._server_wait(deadline))
            if req.done:
                return req
            if time.monotonic() >= deadline:
                raise IamsignTimeout(
                    f"signing request {request_id} still {req.status} after {timeout:g} s", req
                )
            await asyncio.sleep(max(0.0, self.poll_interval - (time.monotonic() - asked)))

    async def download_signed_document(self, request_id: str, dest: str | os.PathLike[str]) -> Downloaded:
        """The signed PDF of a completed request (409 ``not_completed`` before)."""
        return await self._download(f"/v1/signing-requests/{request_id}/signed-document", dest)

    # -- batches

    async def create_batch(
        self,
        document_ids: list[str],
        *,
        hkid: str | None = None,
        session_id: str | None = None,
        level: str | None = None,
        reason: str | None = None,
        location: str | None = None,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
        mode: str | None = None,
        require_profile: str | None = None,
    ) -> Batch:
        """Start one batch (up to 1000 documents, one approval); with ``idempotency_key`` retries are safe.

        ``require_profile="pades-baseline"`` makes the server refuse (422) a batch that would be PKCS#7.
        """
        body = self._batch_body(
            document_ids,
            hkid,
            session_id,
            level,
            reason,
            location,
            webhook_url,
            mode,
            require_profile,
        )
        return Batch(
            **await self._json(
                "POST",
                "/v1/batches",
                idempotent=idempotency_key is not None,
                json=body,
                headers=_idempotency(idempotency_key),
            )
        )

    async def get_batch(self, batch_id: str) -> Batch:
        return Batch(**await self._json("GET", f"/v1/batches/{batch_id}", idempotent=True))

    async def cancel_batch(self, batch_id: str) -> Batch:
        return Batch(**await self._json("POST", f"/v1/batches/{batch_id}/cancel", idempotent=False))

    async def iter_batch(self, batch_id: str, timeout: float | None = None) -> AsyncIterator[Batch]:
        """Yield the batch each time it changes (status or counts), ending with its terminal state."""
        deadline = None if timeout is None else time.monotonic() + timeout
        seen = None
        while True:
            batch = await self.get_batch(batch_id)
            key = (batch.status, batch.counts, batch.sign_code)
            if key != seen:
                seen = key
                yield batch
            if batch.done:
                return
            if deadline is not None and time.monotonic() >= deadline:
                raise IamsignTimeout(f"batch {batch_id} still {batch.status} after {timeout:g} s", batch)
            await asyncio.sleep(self.poll_interval)

    async def wait_batch(
        self, batch_id: str, timeout: float = 1200.0, on_progress: Callable[[Batch], None] | None = None
    ) -> Batch:
        """Poll until the batch is terminal, calling ``on_progress`` on every change."""
        last: Batch | None = None
        async for last in self.iter_batch(batch_id, timeout):
            if on_progress:
                on_progress(last)
        assert last is not None  # iter_batch yields at least once or raises
        return last

    async def download_batch_document(
        self, batch_id: str, document_id: str, dest: str | os.PathLike[str]
    ) -> Downloaded:
        """One signed document of a batch (409 until that document is completed)."""
        return await self._download(f"/v1/batches/{batch_id}/documents/{document_id}/signed-document", dest)

    async def download_batch_zip(self, batch_id: str, dest: str | os.PathLike[str]) -> Downloaded:
        """All completed documents of a batch as one zip."""
        return await self._download(f"/v1/batches/{batch_id}/signed.zip", dest)

    # -- envelopes

    async def create_envelope(
        self,
        document_id: str,
        signers: list[dict[str, Any] | str],
        *,
        level: str | None = None,
        reason: str | None = None,
        location: str | None = None,
        webhook_url: str | None = None,
    ) -> Envelope:
        """Several signers of one document, in order (each an HKID or a dict with hkid / session_id,
        optional signer_id and appearance); the first signer's request starts at once."""
        body = _envelope_body(document_id, signers, level, reason, location, webhook_url)
        return Envelope(**await self._json("POST", "/v1/envelopes", idempotent=False, json=body))

    async def get_envelope(self, envelope_id: str) -> Envelope:
        return Envelope(**await self._json("GET", f"/v1/envelopes/{envelope_id}", idempotent=True))

    async def cancel_envelope(self, envelope_id: str) -> Envelope:
        """Stop the remaining steps (409 ``not_pending`` once it ended)."""
        return Envelope(**await self._json("POST", f"/v1/envelopes/{envelope_id}/cancel", idempotent=False))

    async def envelope_audit(self, envelope_id: str) -> dict[str, Any]:
        """Each step's hash-chained audit trail, in signing order."""
        return await self._json("GET", f"/v1/envelopes/{envelope_id}/audit", idempotent=True)

    async def wait_envelope(self, envelope_id: str, timeout: float = 3600.0) -> Envelope:
        """Poll until the envelope is terminal; :class:`IamsignTimeout` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            env = await self.get_envelope(envelope_id)
            if env.done:
                return env
            if time.monotonic() >= deadline:
                raise IamsignTimeout(f"envelope {envelope_id} still {env.status} after {timeout:g} s", env)
            await asyncio.sleep(self.poll_interval)

    # -- verification

    async def verify(self, path: str | os.PathLike[str], *, offline: bool = False) -> dict[str, Any]:
        """``POST /v1/verifications``: the verification report (JSON) of a signed PDF."""
        path = Path(path)
        return await self._json(
            "POST",
            "/v1/verifications",
            idempotent=True,
            params={"offline": str(offline).lower()},
            files=lambda: self._file_part(path),
        )

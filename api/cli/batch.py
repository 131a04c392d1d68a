"""``iamsign batch sign``: sign a folder of PDFs as one batch, resumably (the command is in api/cli.py).

A run: hash every PDF under DIR; skip the files already signed (their signed copy in OUTDIR still has the
SHA-256 of the state file); upload the others; follow the batches a previous run left unfinished; start
one new batch for the documents not yet signed; print its sign code; download each signed document as it
completes; keep the state and the manifests in OUTDIR up to date. See :mod:`api.batch_state`.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from api.cli.batch_state import FAILED_STATUSES, STATE_NAME, BatchRecord, FileEntry, RunState, sha256_file
from api.client import AsyncIamsignClient, Batch, ErrorInfo, IamsignConnectionError, IamsignError

__all__ = ["LEVELS", "MAX_BATCH", "SignConfig", "UsageError", "default_out", "find_pdfs", "run_sign"]

T = TypeVar("T")
LEVELS = ("B-B", "B-T", "B-LT", "B-LTA")
MAX_BATCH = 1000
"""Documents per batch (iAM Smart's bulk-signing limit); more files make several batches in a row."""
SERVER_AWAY = (502, 503, 504)


class UsageError(Exception):
    """The command cannot run as given (exit 2)."""


class ServerAway(Exception):
    """The server did not answer for longer than ``--give-up-after`` (exit 3; the state is kept)."""


class WaitTimeout(Exception):
    """A batch did not finish within ``--timeout`` (exit 3; the state is kept)."""


@dataclass(frozen=True)
class SignConfig:
    source: Path
    out: Path
    server: str
    api_key: str
    hkid: str
    level: str = "B-LTA"
    require_pades: bool = False
    """Ask the server to refuse a batch that would not be PAdES baseline."""
    concurrency: int = 4
    reason: str | None = None
    give_up_after: float = 120.0
    timeout: float = 3600.0
    poll_interval: float = 0.5


def default_out(source: Path) -> Path:
    """``DIR-signed`` next to DIR."""
    source = source.resolve()
    return source.parent / f"{source.name}-signed"


def find_pdfs(source: Path, out: Path) -> list[tuple[str, Path]]:
    """Every ``*.pdf`` under ``source`` (not under ``out``, no hidden files), sorted by relative path."""
    out_r = out.resolve()
    found = []
    for path in source.rglob("*"):
        rel = path.relative_to(source)
        if path.suffix.lower() != ".pdf" or any(p.startswith(".") for p in rel.parts) or not path.is_file():
            continue
        if path.resolve().is_relative_to(out_r):
            continue
        found.append((rel.as_posix(), path))
    return sorted(found)


def _err(exc: IamsignError | ErrorInfo) -> str:
    return f"{exc.code}: {exc.message}"


async def _all(coros: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run all; the first failure cancels the others and is raised as itself (not as a group)."""
    try:
        async with asyncio.TaskGroup() as tg:
            for c in coros:
                tg.create_task(c)
    except BaseExceptionGroup as group:
        raise group.exceptions[0] from None


class SignRun:
    """One run of ``iamsign batch sign``."""

    def __init__(
        self, cfg: SignConfig, client: AsyncIamsignClient, state: RunState, progress: Progress
    ) -> None:
        self.cfg, self.client, self.state, self.progress = cfg, client, state, progress
        self.sem = asyncio.Semaphore(cfg.concurrency)
        self._saved_at = 0.0
        self._away_noted = False

    # -- plumbing

    def echo(self, line: str) -> None:
        """A line for the user on stdout (for scripts); above the progress bars when both are the terminal."""
        if sys.stdout.isatty() and self.progress.console.is_terminal:
            self.progress.console.print(line, markup=False, highlight=False)
        else:
            print(line, flush=True)

    def save(self, force: bool = False) -> None:
        """Persist the state; at most twice a second unless ``force`` (batch ids are always forced)."""
        now = time.monotonic()
        if force or now - self._saved_at >= 0.5:
            self.state.save()
            self._saved_at = now

    async def patient(self, what: str, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Call ``fn``, riding out an unreachable or overloaded server for up to ``give_up_after`` seconds."""
        since = None
        while True:
            try:
                result = await fn(*args)
            except IamsignConnectionError as exc:
                problem = exc.message
            except IamsignError as exc:
                if exc.status not in SERVER_AWAY:
                    raise
                problem = _err(exc)
            else:
                if since is not None:
                    self._away_noted = False
                    self.progress.console.print("[green]server back[/green]")
                return result
            now = time.monotonic()
            since = since or now
            if now - since >= self.cfg.give_up_after:
                raise ServerAway(f"{what}: {problem}")
            if not self._away_noted:
                self._away_noted = True
                self.progress.console.print(
                    f"[yellow]server not answering ({problem}); retrying for up to "
                    f"{self.cfg.give_up_after:g} s[/yellow]"
                )
            await asyncio.sleep(min(1.0, self.cfg.give_up_after / 4 or 0.1))

    # -- the run

    async def run(self, files: list[tuple[str, Path]]) -> None:
        to_upload = self.reconcile(files)
        self.save(force=True)
        await self.redownload()
        await self.upload(to_upload)
        self.save(force=True)
        for record in list(self.state.batches):
            if any(e.status == "batched" and e.batch_id == record.id for e in self.state.files.values()):
                await self.follow(record.id)
        todo = [
            e
            for e in self._entries()
            if e.document_id
            and (
                e.status in ("uploaded", *FAILED_STATUSES)
                or (e.status == "download_failed" and not e.signed_document_id)
            )
        ]
        for start in range(0, len(todo), MAX_BATCH):
            await self.start_batch(todo[start : start + MAX_BATCH])

    def _entries(self) -> list[FileEntry]:
        return [self.state.files[k] for k in sorted(self.state.files)]

    def reconcile(self, files: list[tuple[str, Path]]) -> list[tuple[FileEntry, Path]]:
        """Match DIR with the saved state: what is done, what needs a download, what needs an upload."""
        seen = set()
        to_upload = []
        task = self.progress.add_task("check files", total=len(files))
        for rel, path in files:
            seen.add(rel)
            sha, size = sha256_file(path), path.stat().st_size
            entry = self.state.files.get(rel)
            if entry is None or entry.sha256_before != sha:
                entry = self.state.files[rel] = FileEntry(rel, sha, size)
            if entry.status == "signed":
                signed = self.cfg.out / rel
                if not (signed.is_file() and sha256_file(signed) == entry.sha256_after):
                    entry.status, entry.error = (
                        "download_failed",
                        "the signed file in OUTDIR is missing or changed",
                    )
            if entry.status in ("new", "upload_failed"):
                entry.status, entry.error, entry.document_id = "new", None, None
                to_upload.append((entry, path))
            elif entry.status == "uploaded":
                to_upload.append((entry, path))  # checked on the server, uploaded again if gone
            self.progress.advance(task)
        for rel in set(self.state.files) - seen:
            del self.state.files[rel]
        return to_upload

    async def upload(self, items: list[tuple[FileEntry, Path]]) -> None:
        if not items:
            return
        task = self.progress.add_task("upload", total=len(items))

        async def one(entry: FileEntry, path: Path) -> None:
            async with self.sem:
                if entry.status == "uploaded" and entry.document_id:
                    try:
                        await self.patient(
                            f"document {entry.file}", self.client.get_document, entry.document_id
                        )
                        self.progress.advance(task)
                        return
                    except IamsignError as exc:
                        if exc.status != 404:
                            raise
                try:
                    doc = await self.patient(f"upload {entry.file}", self.client.upload_document, path)
                except IamsignError as exc:
                    if exc.status in (401, 403):
                        raise  # a wrong key: every upload would fail the same way
                    entry.status, entry.error, entry.document_id = "upload_failed", _err(exc), None
                else:
                    if doc.sha256 != entry.sha256_before:
                        entry.status, entry.document_id = "upload_failed", None
                        entry.error = "changed_while_uploading: the file changed while it was uploaded"
                    else:
                        entry.status, entry.error, entry.document_id = "uploaded", None, doc.id
                self.progress.advance(task)
                self.save()

        await _all(one(e, p) for e, p in items)

    async def redownload(self) -> None:
        """Files signed on the server whose local copy is missing: fetch them again (never re-sign)."""
        items = [e for e in self._entries() if e.status == "download_failed" and e.signed_document_id]
        if not items:
            return
        task = self.progress.add_task("download again", total=len(items))

        async def one(entry: FileEntry, signed_id: str) -> None:
            async with self.sem:
                await self.fetch(entry, lambda dest: self.client.download_document(signed_id, dest))
                self.progress.advance(task)

        await _all(one(e, e.signed_document_id) for e in items if e.signed_document_id)

    async def fetch(self, entry: FileEntry, download: Callable[[Path], Awaitable[Any]]) -> None:
        """Download a signed document to OUTDIR/<file>, check it against the server's SHA-256, record it."""
        dest = self.cfg.out / entry.file
        try:
            got = await self.patient(f"download {entry.file}", download, dest)
            meta = await self.patient(
                f"document {entry.signed_document_id}", self.client.get_document, entry.signed_document_id
            )
        except IamsignError as exc:
            entry.status, entry.error = "download_failed", _err(exc)
        else:
            if meta.sha256 != got.sha256:
                dest.unlink(missing_ok=True)
                entry.status, entry.error = (
                    "download_failed",
                    "sha256_mismatch: the download differs from the server's",
                )
            else:
                entry.status, entry.error, entry.sha256_after = "signed", None, got.sha256
        self.save()

    async def start_batch(self, entries: list[FileEntry]) -> None:
        ids = [e.document_id for e in entries if e.document_id]
        if self.state.pending_batch_key is None:  # saved before the POST: a lost answer is found again
            self.state.pending_batch_key = uuid.uuid4().hex
            self.state.pending_batch_documents = ids
            self.save(force=True)
        elif self.state.pending_batch_documents:  # the same body as the lost POST, or the server says 422
            ids = self.state.pending_batch_documents
        try:
            batch = await self.client.create_batch(
                ids,
                hkid=self.cfg.hkid,
                level=self.cfg.level,
                reason=self.cfg.reason,
                idempotency_key=self.state.pending_batch_key,
                require_profile="pades-baseline" if self.cfg.require_pades else None,
            )
        except IamsignConnectionError as exc:
            raise ServerAway(f"starting the batch: {exc.message}") from None
        except IamsignError as exc:
            if exc.status in SERVER_AWAY:
                raise ServerAway(f"starting the batch: {_err(exc)}") from None
            for e in entries:
                e.status, e.error = "failed", _err(exc)
            self.echo(f"the server refused the batch: {_err(exc)}")
            self.save(force=True)
            return
        in_batch = {d.document_id for d in batch.documents}  # an earlier POST's batch may hold other files
        self.state.pending_batch_key, self.state.pending_batch_documents = None, []
        self.state.batches.append(BatchRecord(batch.id, batch.status, len(in_batch), batch.sign_code))
        for e in entries:
            if e.document_id in in_batch:
                e.status, e.batch_id, e.server_status, e.error = "batched", batch.id, batch.status, None
                e.signed_document_id = e.sha256_after = None
                e.requested_level = batch.requested_level or self.cfg.level
                e.signature_profile = e.signature_level = e.signature_augmentations = None
        self.save(force=True)
        await self.follow(batch.id, batch)

    async def follow(self, batch_id: str, batch: Batch | None = None) -> None:
        """Poll the batch, announce the sign code, download each document as it completes, until terminal."""
        record = self.state.batch(batch_id)
        assert record is not None, batch_id
        mine = {
            e.document_id: e
            for e in self.state.files.values()
            if e.status == "batched" and e.batch_id == batch_id and e.document_id
        }
        sign = self.progress.add_task(f"batch {batch_id[:12]}", total=len(mine))
        fetched = self.progress.add_task("download", total=len(mine))
        downloads: dict[str, asyncio.Task] = {}
        announced = False
        deadline = time.monotonic() + self.cfg.timeout

        async def download(entry: FileEntry, document_id: str) -> None:
            async with self.sem:
                await self.fetch(
                    entry, lambda dest: self.client.download_batch_document(batch_id, document_id, dest)
                )
            self.progress.advance(fetched)

        try:
            while True:
                if batch is None:
                    try:
                        batch = await self.patient(f"batch {batch_id}", self.client.get_batch, batch_id)
                    except IamsignError as exc:
                        if exc.status != 404:
                            raise
                        for e in mine.values():
                            e.status, e.error = (
                                "failed",
                                f"{exc.code}: the server no longer knows batch {batch_id}",
                            )
                        return
                record.status, record.sign_code = batch.status, batch.sign_code
                if batch.sign_code and not announced:
                    announced = True
                    self.echo(
                        f"Sign code: {batch.sign_code}   (batch {batch.id}, {len(batch.documents)} documents)"
                    )
                    if batch.signer_url:
                        self.echo(f"Signer page: {batch.signer_url}")
                    self.echo(
                        "The signer approves once in iAM Smart, after checking that the app shows this code."
                    )
                    self.save(force=True)
                for d in batch.documents:
                    entry = mine.get(d.document_id)
                    if entry is None or entry.status != "batched":
                        continue
                    entry.server_status = d.status
                    if d.status == "completed" and d.signed_document_id and d.document_id not in downloads:
                        entry.signed_document_id = d.signed_document_id
                        if d.signature is not None:
                            entry.signature_profile = d.signature.profile
                            entry.signature_level = d.signature.level
                            entry.signature_augmentations = " ".join(d.signature.augmentations)
                        downloads[d.document_id] = asyncio.create_task(download(entry, d.document_id))
                    elif d.status in FAILED_STATUSES:
                        entry.status = d.status
                        why = d.error or batch.error
                        entry.error = _err(why) if why else d.status
                        self.progress.advance(fetched)
                finished = sum(
                    d.status == "completed" or d.status in FAILED_STATUSES
                    for d in batch.documents
                    if d.document_id in mine
                )
                self.progress.update(
                    sign, completed=finished, description=f"batch {batch_id[:12]}: {self._describe(batch)}"
                )
                for task in [t for t in downloads.values() if t.done()]:
                    task.result()  # a ServerAway in a download ends the run (the others are cancelled below)
                if batch.done:
                    await asyncio.gather(*downloads.values())
                    self._close(batch, mine)
                    return
                if time.monotonic() > deadline:
                    raise WaitTimeout(f"batch {batch_id} still {batch.status} after {self.cfg.timeout:g} s")
                self.save()
                await asyncio.sleep(self.cfg.poll_interval)
                batch = None
        finally:
            for task in downloads.values():
                task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.gather(*downloads.values(), return_exceptions=True)
            self.save(force=True)

    @staticmethod
    def _describe(batch: Batch) -> str:
        return {
            "preparing": "preparing the documents",
            "pending": "waiting for the signer's approval",
            "signing": "approved, signing",
        }.get(batch.status, batch.status.replace("_", " "))

    def _close(self, batch: Batch, mine: dict[str, FileEntry]) -> None:
        """A terminal batch: documents neither signed nor failed take the batch's outcome."""
        for entry in mine.values():
            if entry.status == "batched":
                status = entry.server_status if entry.server_status in FAILED_STATUSES else None
                status = status or (batch.status if batch.status in FAILED_STATUSES else "failed")
                entry.status = status
                entry.error = (
                    _err(batch.error) if batch.error else entry.error or f"batch ended {batch.status}"
                )


def summary(state: RunState, total: int) -> tuple[bool, str]:
    """(all signed, one line)."""
    counts = state.counts()
    signed = counts.get("signed", 0)
    if signed == total and total:
        return True, f"all {total} files signed into {state.out}"
    others = ", ".join(f"{n} {s}" for s, n in counts.items() if s != "signed")
    return False, f"{signed} of {total} files signed" + (
        f"; {others}" if others else ""
    ) + f" (see {state.out / 'manifest.csv'})"


def run_sign(cfg: SignConfig) -> int:
    """The whole command; returns the exit code (0 all signed, 1 some not, 2 usage, 3 server away / timeout)."""
    source, out = cfg.source, cfg.out
    if not source.is_dir():
        raise UsageError(f"{source} is not a folder")
    if out.resolve() == source.resolve():
        raise UsageError("--out must not be the source folder (the signed files would replace the originals)")
    if not cfg.server.startswith(("http://", "https://")):
        raise UsageError(f"--server must be an http:// or https:// URL, not {cfg.server!r}")
    if cfg.level not in LEVELS:
        raise UsageError(f"--level must be one of {', '.join(LEVELS)}")
    try:
        state = RunState.load(out)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    server = cfg.server.rstrip("/")
    if state is not None and state.server != server:
        raise UsageError(f"{out} holds a run against {state.server}; use that --server or another --out")
    state = state or RunState(out=out, server=server, source=str(source.resolve()), level=cfg.level)
    files = find_pdfs(source, out)
    if not files:
        raise UsageError(f"no PDF files under {source}")

    console = Console(stderr=True)
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )

    async def main() -> None:
        timeout = httpx.Timeout(120.0, connect=5.0)
        async with AsyncIamsignClient(
            server, cfg.api_key, retries=2, backoff=0.3, timeout=timeout, poll_interval=cfg.poll_interval
        ) as client:
            with Progress(
                *columns, console=console, redirect_stdout=False, redirect_stderr=False
            ) as progress:
                await SignRun(cfg, client, state, progress).run(files)

    code = 0
    try:
        asyncio.run(main())
    except (ServerAway, WaitTimeout) as exc:
        what = "the server did not answer" if isinstance(exc, ServerAway) else "gave up waiting"
        print(
            f"iamsign batch: {what} ({exc}); the state is kept in {out / STATE_NAME}: run the same command "
            "again to resume",
            file=sys.stderr,
            flush=True,
        )
        code = 3
    except IamsignError as exc:
        print(
            f"iamsign batch: {exc.code}: {exc.message}" + (f" (HTTP {exc.status})" if exc.status else ""),
            file=sys.stderr,
            flush=True,
        )
        code = 3 if exc.status in (None, *SERVER_AWAY) else 1
    except OSError as exc:
        print(f"iamsign batch: {exc}", file=sys.stderr, flush=True)
        code = 1
    except KeyboardInterrupt:
        print(f"iamsign batch: interrupted; the state is kept in {out / STATE_NAME}", file=sys.stderr)
        code = 130
    finally:
        state.save()
    ok, line = summary(state, len(files))
    print(f"iamsign batch: {line}", flush=True)
    return code or (0 if ok else 1)


def run_status(out: Path, api_key: str | None, server: str | None = None) -> int:
    """Print what the state file of ``out`` says and, with an API key, what the server says of its batches."""
    try:
        state = RunState.load(out)
    except ValueError as exc:
        print(f"iamsign batch status: {exc}", file=sys.stderr)
        return 2
    if state is None:
        print(f"iamsign batch status: no batch run in {out} (no {STATE_NAME})", file=sys.stderr)
        return 2
    print(f"folder:  {out.resolve()}")
    print(f"source:  {state.source}")
    print(f"server:  {state.server}")
    counts = state.counts()
    print(f"files:   {len(state.files)}  (" + ", ".join(f"{n} {s}" for s, n in counts.items()) + ")")
    for e in (e for e in state.files.values() if e.error):
        print(f"  {e.status:<14} {e.file}: {e.error}")
    server = (server or state.server).rstrip("/")
    for record in state.batches:
        line = f"batch {record.id}: {record.status} (last seen), {record.documents} documents"
        line += f", sign code {record.sign_code}" if record.sign_code else ""
        if api_key:
            line += "; server: " + _server_view(server, api_key, record.id)
        print(line)
    if not api_key and state.batches:
        print("(give --api-key or IAMSIGN_API_KEY to ask the server too)")
    return 0


def _server_view(server: str, api_key: str, batch_id: str) -> str:
    from api.client import IamsignClient

    try:
        with IamsignClient(server, api_key, retries=1, timeout=10) as client:
            b = client.get_batch(batch_id)
    except IamsignError as exc:
        return f"{exc.code}: {exc.message}"
    c = b.counts
    return f"{b.status}, {c.completed} completed, {c.failed} failed, {c.pending} pending of {c.total}" + (
        f" ({b.error.code}: {b.error.message})" if b.error else ""
    )

"""The resumable state of ``iamsign batch sign`` in its output folder, and the manifests written from it.

``OUTDIR/.iamsign-batch.json`` holds the server, the batches started and, for every file (relative path),
its SHA-256 before signing, its document id, batch, status and, once signed, the signed document id and
the SHA-256 of the file written. ``manifest.json`` and ``manifest.csv`` are views of the same state for
people and scripts. All three are written atomically (temp file in OUTDIR, fsync, rename).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from signing.files import atomic_write

__all__ = [
    "FAILED_STATUSES",
    "MANIFEST_FIELDS",
    "STATE_NAME",
    "BatchRecord",
    "FileEntry",
    "RunState",
    "atomic_write",
    "sha256_file",
]

STATE_NAME = ".iamsign-batch.json"
STATE_VERSION = 1
FAILED_STATUSES = frozenset({"failed", "declined", "cancelled", "expired", "rejected"})
"""Server outcomes of a document that leave it unsigned: a later run puts it in a new batch."""
MANIFEST_FIELDS = [
    "file",
    "status",
    "sha256_before",
    "sha256_after",
    "error",
    "document_id",
    "signed_document_id",
    "batch_id",
    "requested_level",
    "signature_profile",
    "signature_level",
    "signature_augmentations",
]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass
class FileEntry:
    """One source file and what happened to it.

    ``status``: ``new`` (to upload), ``uploaded`` (document id known, in no batch yet), ``upload_failed``
    (the server refused it: ``error``), ``batched`` (in ``batch_id``; ``server_status`` is the document's
    status there), ``signed`` (written to OUTDIR, ``sha256_after``), or a server failure (``failed``,
    ``declined``, ``cancelled``, ``expired``, ``rejected``).
    """

    file: str
    sha256_before: str
    size: int
    status: str = "new"
    document_id: str | None = None
    batch_id: str | None = None
    server_status: str | None = None
    signed_document_id: str | None = None
    sha256_after: str | None = None
    error: str | None = None
    requested_level: str | None = None
    signature_profile: str | None = None
    """What the server read from the signed file: ``pades-baseline`` or ``pkcs7-detached``."""
    signature_level: str | None = None
    """The PAdES baseline level achieved; None for a PKCS#7 signature."""
    signature_augmentations: str | None = None
    """Space-separated: signature-timestamp, dss, document-timestamp."""

    @classmethod
    def of(cls, data: dict[str, Any]) -> FileEntry:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class BatchRecord:
    """A batch this folder started, with the last status seen."""

    id: str
    status: str
    documents: int
    sign_code: str | None = None
    created_at: str = field(default_factory=_now)


@dataclass
class RunState:
    """Everything needed to resume: loaded from and saved to ``OUTDIR/.iamsign-batch.json``."""

    out: Path
    server: str
    source: str
    level: str = "B-LTA"
    batches: list[BatchRecord] = field(default_factory=list)
    files: dict[str, FileEntry] = field(default_factory=dict)
    pending_batch_key: str | None = None
    """Idempotency-Key of a batch being started: a POST whose answer was lost is not a second batch."""
    pending_batch_documents: list[str] = field(default_factory=list)
    """The document ids POSTed with ``pending_batch_key``: a retry must send the same body (else 422)."""

    @property
    def path(self) -> Path:
        return self.out / STATE_NAME

    @classmethod
    def load(cls, out: Path) -> RunState | None:
        """The saved state of ``out``, or None when there is none; ValueError when it is unreadable."""
        path = out / STATE_NAME
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path} is unreadable ({exc}); move it away to start afresh") from None
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise ValueError(f"{path} is not a state file of this version of iamsign")
        return cls(
            out=out,
            server=data["server"],
            source=data.get("source", ""),
            level=data.get("level", "B-LTA"),
            batches=[BatchRecord(**b) for b in data.get("batches", [])],
            files={e["file"]: FileEntry.of(e) for e in data.get("files", [])},
            pending_batch_key=data.get("pending_batch_key"),
            pending_batch_documents=list(data.get("pending_batch_documents") or []),
        )

    def batch(self, batch_id: str) -> BatchRecord | None:
        return next((b for b in self.batches if b.id == batch_id), None)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for e in self.files.values():
            out[e.status] = out.get(e.status, 0) + 1
        return dict(sorted(out.items()))

    def _ordered(self) -> list[FileEntry]:
        return [self.files[k] for k in sorted(self.files)]

    def save(self) -> None:
        """Write the state file, ``manifest.json`` and ``manifest.csv`` (each atomically)."""
        self.out.mkdir(parents=True, exist_ok=True)
        entries = self._ordered()
        state = {
            "version": STATE_VERSION,
            "server": self.server,
            "source": self.source,
            "level": self.level,
            "updated_at": _now(),
            "batches": [asdict(b) for b in self.batches],
            "files": [asdict(e) for e in entries],
            "pending_batch_key": self.pending_batch_key,
            "pending_batch_documents": self.pending_batch_documents,
        }
        atomic_write(self.path, json.dumps(state, indent=1).encode())
        manifest = {
            "server": self.server,
            "source": self.source,
            "updated_at": state["updated_at"],
            "summary": self.counts(),
            "batches": state["batches"],
            "files": [{k: getattr(e, k) for k in MANIFEST_FIELDS} for e in entries],
        }
        atomic_write(self.out / "manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False).encode())
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=MANIFEST_FIELDS, lineterminator="\n")
        writer.writeheader()
        for e in entries:
            writer.writerow({k: getattr(e, k) or "" for k in MANIFEST_FIELDS})
        atomic_write(self.out / "manifest.csv", buf.getvalue().encode("utf-8"))

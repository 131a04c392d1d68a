"""Documents on disk: content-addressed, written atomically (temp file + fsync + rename)."""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DocumentStore", "StoredFile"]


@dataclass(frozen=True)
class StoredFile:
    sha256: str
    size: int
    path: Path


class DocumentStore:
    """Files named by their SHA-256 under ``root/ab/abcdef....pdf``; a name never changes content."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.tmp_dir = self.root / "tmp"
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def path_for(self, sha256: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.pdf"

    def temp_path(self, suffix: str = ".partial") -> Path:
        return self.tmp_dir / f"{uuid.uuid4().hex}{suffix}"

    def publish(self, staged: StoredFile) -> StoredFile:
        """Move a staged temp file to its content address (idempotent for identical content)."""
        final = self.path_for(staged.sha256)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            staged.path.unlink(missing_ok=True)
        else:
            os.replace(staged.path, final)
            _fsync_dir(final.parent)
        return StoredFile(staged.sha256, staged.size, final)

    def adopt_many(self, files: list[tuple[Path, str, int]]) -> list[StoredFile]:
        """:meth:`adopt` for ``(path, sha256, size)`` whose digests are known; one directory fsync each."""
        stored, dirs = [], set()
        for path, sha256, size in files:
            final = self.path_for(sha256)
            if not final.exists():
                final.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.temp_path(".adopt")
                os.link(path, tmp)
                os.replace(tmp, final)
                dirs.add(final.parent)
            stored.append(StoredFile(sha256, size, final))
        for d in dirs:
            _fsync_dir(d)
        return stored

    def adopt(self, path: Path) -> StoredFile:
        """Publish a complete file made elsewhere in the store (a signed revision), by content.

        The file is hard-linked into place and left where it is, so a crash before the caller records the
        result loses nothing; the caller removes ``path`` once the database says where the document is.
        """
        h = hashlib.sha256()
        size = 0
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
                size += len(chunk)
        return self.adopt_many([(Path(path), h.hexdigest(), size)])[0]

    def discard(self, staged: StoredFile) -> None:
        staged.path.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

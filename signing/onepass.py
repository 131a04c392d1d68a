"""Copy a PDF and hash it in one pass, so that preparing a large file reads and hashes its bytes once.

The prepared file is the source plus an incremental update (signature field, reserved /Contents), so
the /ByteRange digest starts with every byte of the source. :func:`copy_hashing` copies the source
while feeding SHA-256 (in a helper thread for large files, overlapping the writes) and asks the
kernel to start writing back as it goes, so the fsync that publishes the file finds little left to
do. :class:`HashedPrefixFile` is the stream pyHanko writes its update through: once the update is
written inside :meth:`~HashedPrefixFile.skip_prefix_digest`, a chunked read of the already-hashed
source returns nothing, so pyHanko does not hash it a second time. The digest used is always
:meth:`~HashedPrefixFile.byte_range_digest`'s, computed by resuming the copy's hash; pyHanko's own
value is discarded. Should anything have been written inside the source, it is computed from scratch.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, Any

__all__ = ["HashedPrefixFile", "copy_hashing"]

_CHUNK = 1 << 20
# start write-back every this many bytes, so that the publishing fsync waits for little
_WRITEBACK_EVERY = 16 << 20
# files larger than this hash in a helper thread while the copy is written
_PIPELINE_FROM = 8 << 20


def _start_writeback(fd: int, offset: int, length: int) -> None:
    sync_range = getattr(os, "sync_file_range", None)
    flag = getattr(os, "SYNC_FILE_RANGE_WRITE", None)
    if sync_range is None or flag is None:  # pragma: no cover - not Linux
        return
    with contextlib.suppress(OSError):
        sync_range(fd, offset, length, flag)


def copy_hashing(source: os.PathLike[str] | str, target: os.PathLike[str] | str) -> tuple[Any, int]:
    """Copy ``source`` to a new file ``target``; return the SHA-256 state over its bytes and its size.

    Large files are hashed in a helper thread while the main thread writes (hashlib and file I/O
    release the GIL), one chunk behind the read: the copy then costs little more than the hash.
    """
    h = hashlib.sha256()
    bufs = (bytearray(_CHUNK), bytearray(_CHUNK))
    views = tuple(memoryview(b) for b in bufs)
    size = flushed = 0
    with contextlib.ExitStack() as stack:
        src = stack.enter_context(open(source, "rb", buffering=0))
        dst = stack.enter_context(open(target, "wb", buffering=0))
        pool = None
        if os.fstat(src.fileno()).st_size > _PIPELINE_FROM:
            pool = stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix="iamsign-hash"))
        fd = dst.fileno()
        pending: Future[None] | None = None
        i = 0
        while n := src.readinto(bufs[i]):
            chunk = views[i][:n]
            if pool is None:
                h.update(chunk)
            else:
                if pending is not None:
                    pending.result()  # the other buffer is free again for the next read
                pending = pool.submit(h.update, chunk)
            written = 0
            while written < n:
                written += dst.write(chunk[written:]) or 0
            size += n
            if size - flushed >= _WRITEBACK_EVERY:
                _start_writeback(fd, flushed, size - flushed)
                flushed = size
            i ^= 1
        if pending is not None:
            pending.result()
    return h, size


class HashedPrefixFile:
    """A read-write file whose first ``prefix_size`` bytes were hashed already (``prefix_hash``).

    Everything is passed to the wrapped file; see the module docstring for the one exception.
    """

    def __init__(self, raw: IO[bytes], prefix_hash: Any, prefix_size: int) -> None:
        self._raw = raw
        self._prefix_hash = prefix_hash
        self._prefix_size = prefix_size
        self._skipping = False
        self._lowest_write: int | None = None

    # -- the file interface pyHanko uses
    def read(self, n: int = -1) -> bytes:
        return self._raw.read(n)

    def readinto(self, buffer: Any) -> int:
        if self._skipping and self._raw.tell() < self._prefix_size:
            return 0
        return self._raw.readinto(buffer)  # type: ignore[attr-defined]

    def write(self, data: Any) -> int:
        pos = self._raw.tell()
        if self._lowest_write is None or pos < self._lowest_write:
            self._lowest_write = pos
        return self._raw.write(data)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def flush(self) -> None:
        self._raw.flush()

    def fileno(self) -> int:
        return self._raw.fileno()

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)

    # -- the digest
    @contextlib.contextmanager
    def skip_prefix_digest(self, writer: Any) -> Iterator[None]:
        """Within this block, once ``writer`` has written its update in place, chunked reads
        (``readinto``) inside the hashed prefix see nothing: pyHanko's digest pass skips it."""
        write_in_place = writer.write_in_place

        def write_then_skip() -> None:
            write_in_place()
            self._skipping = True

        setattr(writer, "write_in_place", write_then_skip)  # noqa: B010 - an instance attribute
        try:
            yield
        finally:
            self._skipping = False
            with contextlib.suppress(AttributeError):
                delattr(writer, "write_in_place")

    def byte_range_digest(self, gap_start: int, gap_end: int) -> bytes:
        """SHA-256 of the file without ``[gap_start, gap_end)``: the /ByteRange digest of the update."""
        end = self._raw.seek(0, os.SEEK_END)
        prefix_intact = self._lowest_write is None or self._lowest_write >= self._prefix_size
        if prefix_intact and self._prefix_size <= gap_start:
            h, pos = self._prefix_hash.copy(), self._prefix_size
        else:
            h, pos = hashlib.sha256(), 0
        self._hash_range(h, pos, gap_start)
        self._hash_range(h, gap_end, end)
        return h.digest()

    def _hash_range(self, h: Any, start: int, stop: int) -> None:
        self._raw.seek(start)
        left = stop - start
        while left > 0:
            chunk = self._raw.read(min(left, _CHUNK))
            if not chunk:
                raise OSError("the prepared file ended early while hashing it")
            h.update(chunk)
            left -= len(chunk)

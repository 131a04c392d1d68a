"""Stream one file field of a multipart upload to storage, hashing while it streams.

Starlette's form parser would spool the whole part first; this reads the body chunk by chunk with
python-multipart's push parser, stops as soon as the size limit is passed, and keeps nothing on error.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

from fastapi import Request
from python_multipart import MultipartParser
from python_multipart.multipart import parse_options_header

from api.errors import ApiError, is_out_of_space, no_room_error
from api.store.files import DocumentStore, StoredFile

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

__all__ = ["StagedUpload", "receive_pdf_upload"]


def _display_name(raw: str) -> str:
    """The client's file name as we keep and show it: its last path part, without control characters
    (NUL cannot be stored in PostgreSQL text; the others only confuse a listing), at most 255 characters."""
    name = os.path.basename(raw.replace("\\", "/"))
    return "".join(ch for ch in name if ch >= " " and ch != "\x7f")[:255] or "upload.pdf"


# Malformed bodies are answered with a clear 400; the parser's own complaints would only flood the log.
logging.getLogger("python_multipart").setLevel(logging.ERROR)


@dataclass(frozen=True)
class StagedUpload:
    file: StoredFile
    filename: str


class _FilePart:
    """Collects the part named ``field`` into a temp file."""

    def __init__(self, store: DocumentStore, field: str, limit: int) -> None:
        self.store, self.field, self.limit = store, field, limit
        self.tmp = store.temp_path()
        self.out: IO[bytes] | None = None  # opened when the target part's headers end
        self.hash = hashlib.sha256()
        self.size = 0
        self.filename: str | None = None
        self.found = False
        self._header_name = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._in_target = False

    # python-multipart callbacks -------------------------------------------------------------
    def on_part_begin(self) -> None:
        self._headers = {}
        self._in_target = False

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._header_name.lower()] = self._header_value
        self._header_name = self._header_value = b""

    def on_headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = params.get(b"name", b"").decode("utf-8", "replace")
        if name == self.field and not self.found:
            self.found = self._in_target = True
            raw = params.get(b"filename", b"upload.pdf").decode("utf-8", "replace")
            self.filename = _display_name(raw)
            self.out = open(self.tmp, "wb")  # noqa: SIM115 - closed in finish/abort

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if not self._in_target or self.out is None:  # out is open whenever _in_target is set
            return
        chunk = data[start:end]
        self.size += len(chunk)
        if self.size > self.limit:
            raise ApiError(413, "too_large", f"the file exceeds the upload limit of {self.limit} bytes")
        self.hash.update(chunk)
        self.out.write(chunk)

    def on_part_end(self) -> None:
        self._in_target = False

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
        }

    def finish(self) -> StoredFile:
        """The staged file; called only once the part was found (``found`` is set when ``out`` opens)."""
        if self.out is None:
            raise RuntimeError("finish() before the file part was found")
        self.out.flush()
        os.fsync(self.out.fileno())
        self.out.close()
        return StoredFile(self.hash.hexdigest(), self.size, self.tmp)

    def abort(self) -> None:
        if self.out is not None:
            self.out.close()
        self.tmp.unlink(missing_ok=True)


async def receive_pdf_upload(
    request: Request, store: DocumentStore, limit: int, field: str = "file"
) -> StagedUpload:
    """Read a ``multipart/form-data`` body; return the staged ``field`` part (still a temp file)."""
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or b"boundary" not in params:
        raise ApiError(
            415, "unsupported_media_type", "send the PDF as multipart/form-data with a 'file' field"
        )
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + 64 * 1024:
        raise ApiError(413, "too_large", f"the file exceeds the upload limit of {limit} bytes")
    part = _FilePart(store, field, limit)
    try:
        parser = MultipartParser(params[b"boundary"], part.callbacks(), max_size=limit + 64 * 1024)
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
        if not part.found:
            raise ApiError(422, "missing_file", f"the multipart body has no '{field}' field")
        return StagedUpload(part.finish(), part.filename or "upload.pdf")
    except ApiError:
        part.abort()
        raise
    except OSError as exc:
        part.abort()
        if is_out_of_space(exc):
            raise no_room_error() from exc
        raise
    except Exception as exc:  # malformed multipart bodies
        part.abort()
        if part.size > limit:
            raise ApiError(413, "too_large", f"the file exceeds the upload limit of {limit} bytes") from exc
        raise ApiError(400, "malformed_multipart", f"the multipart body cannot be parsed: {exc}") from exc
